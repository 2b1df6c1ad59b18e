/*
 * atrank: header-only C++17 binding over the C ABI in atrank.h.
 *
 * Written by hand (atrank.h is generated; this file is not). Link with -latrank as for C.
 *
 * Mapping to the C API (see README.md, "API conventions"):
 * - Errors. Every `atrank_error *` the C API returns is read, freed at once, and thrown as
 *   `atrank::Error`, which carries the stable `atrank_code` and the message. No function
 *   here returns an error object, so there is nothing for the caller to free.
 * - Ownership. `atrank::Model` owns one `const atrank_model *` and frees it in its destructor
 *   (RAII). It is move-only: a moved-from Model holds no handle, may be destroyed or assigned
 *   to, and its calls throw `atrank::Error` with ATRANK_ERROR_NULL_ARGUMENT.
 * - Inputs are borrowed only for the duration of one call, as in C: `Behavior` and candidate
 *   strings are converted to C structs and pointers that live on the stack of that call, and
 *   atrank keeps no pointer after it returns.
 * - Threads. A loaded model is immutable: `Model::score` and `Model::backend` are const and
 *   may be called from any number of threads at once on the same Model. Moving, assigning or
 *   destroying a Model must not overlap any other call on it (the usual rule for a C++
 *   object). `Error` is an ordinary value (a code and a copied string).
 */
#ifndef ATRANK_HPP
#define ATRANK_HPP

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "atrank.h"

namespace atrank {

/// An error reported by atrank: the stable numeric code (`ATRANK_ERROR_*`) and the message
/// (UTF-8, names the offending argument). `what()` returns the message.
///
/// Besides the library's own errors, the binding itself throws ATRANK_ERROR_INVALID_ARGUMENT
/// for a string holding a NUL byte (C strings cannot carry one, and truncating it would
/// silently change the id).
class Error : public std::runtime_error {
public:
    Error(atrank_code code, const std::string &message) : std::runtime_error(message), code_(code) {}

    /// The stable code; never ATRANK_OK.
    atrank_code code() const noexcept { return code_; }

private:
    atrank_code code_;
};

namespace detail {

struct ErrorFree {
    void operator()(atrank_error *error) const noexcept { atrank_error_free(error); }
};

/// Takes ownership of `error` (NULL = success) and throws it as atrank::Error; the C object
/// is freed on every path, also if building the exception throws (std::bad_alloc).
inline void check(atrank_error *error) {
    if (error == nullptr) {
        return;
    }
    std::unique_ptr<atrank_error, ErrorFree> owned(error);
    const atrank_code code = atrank_error_code(owned.get());
    const char *message = atrank_error_message(owned.get());
    throw Error(code, message != nullptr ? message : "");
}

/// `s` as a C string; throws if it holds a NUL byte. `what` names it in the message.
template <typename What>
inline const char *c_str(const std::string &s, What &&what) {
    if (s.find('\0') != std::string::npos) {
        throw Error(ATRANK_ERROR_INVALID_ARGUMENT, what() + " contains a NUL byte");
    }
    return s.c_str();
}

}  // namespace detail

/// One raw behavior of a user (see atrank_behavior).
struct Behavior {
    /// Raw item id. Ids the model never saw are scored as "unknown".
    std::string item;
    /// Raw category; std::nullopt takes the item's category from the package's catalog.
    std::optional<std::string> category;
    /// Raw action name (e.g. "like"); std::nullopt means "unknown action".
    std::optional<std::string> action;
    /// Unix time of the behavior, in seconds.
    int64_t timestamp = 0;
};

/// A loaded model package on one backend. Owns its `const atrank_model *` (freed by the
/// destructor); move-only.
///
/// Thread safety: immutable once loaded; the const members (score, backend) may be called
/// from any number of threads at once. Do not move, assign or destroy a Model while another
/// thread uses it.
class Model {
public:
    /// An empty Model (no handle), e.g. to assign a loaded one to later.
    Model() noexcept = default;

    /// Takes ownership of a handle from atrank_model_load (NULL gives an empty Model).
    explicit Model(const atrank_model *handle) noexcept : handle_(handle) {}

    Model(const Model &) = delete;
    Model &operator=(const Model &) = delete;

    Model(Model &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}

    Model &operator=(Model &&other) noexcept {
        if (this != &other) {
            atrank_model_free(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }

    ~Model() { atrank_model_free(handle_); }

    /// Loads the package in directory `dir` and prepares its graph on `backend`
    /// (ATRANK_BACKEND_ORT or ATRANK_BACKEND_TRACT). Throws atrank::Error (e.g.
    /// ATRANK_ERROR_IO for a missing directory, ATRANK_ERROR_INVALID_ARGUMENT for an unknown
    /// backend, ATRANK_ERROR_BACKEND_UNAVAILABLE when ONNX Runtime cannot be loaded).
    /// May be called from any thread.
    static Model load(const std::string &dir, atrank_backend backend) {
        const char *c_dir = detail::c_str(dir, [] { return std::string("package_dir"); });
        const atrank_model *handle = nullptr;
        detail::check(atrank_model_load(c_dir, backend, &handle));
        return Model(handle);
    }

    /// The backend serving this model (ATRANK_BACKEND_*). Throws atrank::Error
    /// (ATRANK_ERROR_NULL_ARGUMENT) on an empty Model.
    atrank_backend backend() const {
        atrank_backend out = 0;
        detail::check(atrank_model_backend(handle_, &out));
        return out;
    }

    /// Scores `candidates` (raw item ids; 1 .. the package's limits.max_candidates) for one
    /// user with behaviors `history` (may be empty), as of `request_time` (unix seconds).
    /// Returns one logit per candidate, in the candidates' order (higher ranks first).
    /// Throws atrank::Error on failure (e.g. ATRANK_ERROR_INVALID_ARGUMENT for no or too many
    /// candidates). Nothing passed in is retained. Safe to call concurrently on one Model.
    std::vector<float> score(const std::vector<Behavior> &history, const std::vector<std::string> &candidates,
                             int64_t request_time) const {
        std::vector<atrank_behavior> behaviors;
        behaviors.reserve(history.size());
        for (std::size_t i = 0; i < history.size(); ++i) {
            const Behavior &b = history[i];
            auto name = [i](const char *field) {
                return "history[" + std::to_string(i) + "]." + field;
            };
            atrank_behavior c{};
            c.item = detail::c_str(b.item, [&] { return name("item"); });
            c.category = b.category ? detail::c_str(*b.category, [&] { return name("category"); }) : nullptr;
            c.action = b.action ? detail::c_str(*b.action, [&] { return name("action"); }) : nullptr;
            c.timestamp = b.timestamp;
            behaviors.push_back(c);
        }
        std::vector<const char *> ids;
        ids.reserve(candidates.size());
        for (std::size_t i = 0; i < candidates.size(); ++i) {
            ids.push_back(detail::c_str(candidates[i], [i] { return "candidates[" + std::to_string(i) + "]"; }));
        }
        std::vector<float> scores(candidates.size());
        // Never pass a NULL scores_out: with no candidates the library must report the empty
        // candidate list (ATRANK_ERROR_INVALID_ARGUMENT), not a NULL buffer.
        float unused = 0.0F;
        float *out = scores.empty() ? &unused : scores.data();
        detail::check(atrank_model_score(handle_, behaviors.empty() ? nullptr : behaviors.data(), behaviors.size(),
                                         ids.empty() ? nullptr : ids.data(), ids.size(), request_time, out,
                                         scores.size()));
        return scores;
    }

    /// The C handle, still owned by this Model (NULL when empty); for calling the C API directly.
    const atrank_model *get() const noexcept { return handle_; }

    /// Gives up ownership: returns the handle (the caller frees it with atrank_model_free)
    /// and leaves this Model empty.
    const atrank_model *release() noexcept { return std::exchange(handle_, nullptr); }

    /// True when this Model holds a handle (false after a move).
    explicit operator bool() const noexcept { return handle_ != nullptr; }

private:
    const atrank_model *handle_ = nullptr;
};

/// The library version at run time, e.g. "0.1.0" (compare with ATRANK_VERSION_* of the header).
inline std::string version() {
    const char *v = atrank_version();
    return v != nullptr ? std::string(v) : std::string();
}

/// The C ABI version of the loaded library (compare with ATRANK_ABI_VERSION).
inline uint32_t abi_version() noexcept { return atrank_abi_version(); }

}  // namespace atrank

#endif  // ATRANK_HPP
