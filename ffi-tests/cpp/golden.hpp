// Shared helpers for the atrank C++ tests: locating the model package and ORT library, and
// reading spec.json and golden.json (cJSON). Readers throw std::runtime_error saying why.
#ifndef ATRANK_CPP_TEST_GOLDEN_HPP
#define ATRANK_CPP_TEST_GOLDEN_HPP

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "atrank.hpp"

namespace atrank_test {

struct GoldenRequest {
    std::string name;
    int64_t request_time = 0;
    std::vector<atrank::Behavior> behaviors;
    std::vector<std::string> candidates;
    std::vector<double> scores;  // the trainer's scores, one per candidate
    // The bound on any two float32 evaluations of this request's logits (runtime vs trainer,
    // batch vs single, cached vs plain): its derived 2 D U M (docs/tolerances.md), else the
    // file's top-level tolerance; $ATRANK_TOLERANCE when set.
    double tolerance = 0.0;
};

struct GoldenSet {
    double tolerance = 0.0;  // top-level (the largest per-request one), or $ATRANK_TOLERANCE
    // bound_any_request (2 D U M_max, for requests that are not golden ones), or
    // $ATRANK_TOLERANCE; nullopt when the file has none.
    std::optional<double> bound_any_request;
    std::vector<GoldenRequest> requests;

    // bound_any_request, or throws std::runtime_error when the file has none.
    double any_request_tolerance() const;
};

// $ATRANK_PACKAGE, or nullopt when unset or empty.
std::optional<std::string> package_dir();

// True when $ATRANK_ORT_LIB is set (the ORT backend is testable).
bool ort_available();

// <dir>/<spec.golden or "golden.json">, parsed; throws std::runtime_error on any problem.
GoldenSet load_golden(const std::string &dir);

// limits.max_candidates from <dir>/spec.json; throws if missing.
std::size_t spec_max_candidates(const std::string &dir);

// "ATRANK_ERROR_IO" etc., for messages.
const char *code_name(atrank_code code);

// "ort", "tract".
const char *backend_name(atrank_backend backend);

// Succeeds when `call()` throws atrank::Error with code `want` and a non-empty message.
template <typename Call>
::testing::AssertionResult throws_code(Call &&call, atrank_code want) {
    try {
        call();
    } catch (const atrank::Error &e) {
        if (e.code() != want) {
            return ::testing::AssertionFailure() << "expected " << code_name(want) << ", got " << code_name(e.code())
                                                 << " (" << static_cast<unsigned>(e.code()) << "): " << e.what();
        }
        if (std::string(e.what()).empty()) {
            return ::testing::AssertionFailure() << code_name(want) << " with an empty message";
        }
        return ::testing::AssertionSuccess() << code_name(want) << ": " << e.what();
    } catch (const std::exception &e) {
        return ::testing::AssertionFailure() << "expected atrank::Error " << code_name(want)
                                             << ", got another exception: " << e.what();
    }
    return ::testing::AssertionFailure() << "expected atrank::Error " << code_name(want) << ", but the call succeeded";
}

}  // namespace atrank_test

// Skips the current test unless $ATRANK_PACKAGE is set; binds its value to `var`.
#define ATRANK_REQUIRE_PACKAGE(var)                                                                 \
    const std::optional<std::string> var##_opt = ::atrank_test::package_dir();                      \
    if (!var##_opt) {                                                                               \
        GTEST_SKIP() << "no model package: set ATRANK_PACKAGE (e.g. tests/fixtures/tiny)";          \
    }                                                                                               \
    const std::string &var = *var##_opt

#endif  // ATRANK_CPP_TEST_GOLDEN_HPP
