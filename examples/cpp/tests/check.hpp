// Minimal test helpers (standard library only): CHECK records a failure and goes on;
// finish() prints the summary and gives the exit status; skip() exits with 77, which ctest
// reports as "skipped" (SKIP_RETURN_CODE).
#ifndef MOVIE_SEARCH_CHECK_HPP
#define MOVIE_SEARCH_CHECK_HPP

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace check {

inline int &failures() {
    static int n = 0;
    return n;
}

inline void fail(const char *file, int line, const std::string &what) {
    ++failures();
    std::fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, what.c_str());
}

inline int finish(const char *name) {
    if (failures() == 0) {
        std::printf("%s: all checks passed\n", name);
        return 0;
    }
    std::fprintf(stderr, "%s: %d check(s) failed\n", name, failures());
    return 1;
}

[[noreturn]] inline void skip(const std::string &why) {
    std::printf("SKIPPED: %s\n", why.c_str());
    std::exit(77);
}

/// The value of environment variable `name`, or skip() when it is unset or empty.
inline std::string env_or_skip(const char *name) {
    const char *v = std::getenv(name);
    if (v == nullptr || *v == '\0') {
        skip(std::string(name) + " is not set");
    }
    return v;
}

}  // namespace check

#define CHECK(cond)                                             \
    do {                                                        \
        if (!(cond)) {                                          \
            check::fail(__FILE__, __LINE__, #cond);             \
        }                                                       \
    } while (0)

// |actual - expected| <= tol (fails on NaN).
#define CHECK_NEAR(actual, expected, tol)                                                          \
    do {                                                                                           \
        const double check_a_ = static_cast<double>(actual);                                       \
        const double check_e_ = static_cast<double>(expected);                                     \
        if (!(std::fabs(check_a_ - check_e_) <= static_cast<double>(tol))) {                       \
            check::fail(__FILE__, __LINE__,                                                        \
                        std::string(#actual) + " = " + std::to_string(check_a_) + ", expected " +  \
                            std::to_string(check_e_) + " +- " + std::to_string(double(tol)));      \
        }                                                                                          \
    } while (0)

// `expr` throws an exception of type `type`.
#define CHECK_THROWS(expr, type)                                                     \
    do {                                                                             \
        bool check_thrown_ = false;                                                  \
        try {                                                                        \
            (void)(expr);                                                            \
        } catch (const type &) {                                                     \
            check_thrown_ = true;                                                    \
        } catch (...) {                                                              \
        }                                                                            \
        if (!check_thrown_) {                                                        \
            check::fail(__FILE__, __LINE__, std::string(#expr) + " did not throw " #type); \
        }                                                                            \
    } while (0)

#endif  // MOVIE_SEARCH_CHECK_HPP
