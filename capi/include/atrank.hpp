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
 * - Threads. A loaded model is immutable: every const member of `Model` (score, score_cached,
 *   score_batch, backend, serving, stats, info) may be called from any number of threads at once on the same
 *   Model; `Handle`'s members likewise, reload included. Moving, assigning or
 *   destroying a Model must not overlap any other call on it (the usual rule for a C++
 *   object). `Error` is an ordinary value (a code and a copied string).
 */
#ifndef ATRANK_HPP
#define ATRANK_HPP

#include <array>
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

/// One raw behavior of a user (see atrank_behavior). Construct it with the fields in order,
/// e.g. `{"i3", std::nullopt, "click", 1300000000}` or, with a group and features,
/// `{"q1", std::nullopt, "search", t, "query", {{"shop", "s12"}}}`; later fields default.
struct Behavior {
    Behavior() = default;
    Behavior(std::string item_, std::optional<std::string> category_ = std::nullopt,
             std::optional<std::string> action_ = std::nullopt, int64_t timestamp_ = 0,
             std::optional<std::string> group_ = std::nullopt,
             std::vector<std::pair<std::string, std::string>> features_ = {})
        : item(std::move(item_)),
          category(std::move(category_)),
          action(std::move(action_)),
          timestamp(timestamp_),
          group(std::move(group_)),
          features(std::move(features_)) {}

    /// Raw item id. Ids the model never saw are scored as "unknown".
    std::string item;
    /// Raw category; std::nullopt takes the item's category from the package's catalog.
    std::optional<std::string> category;
    /// Raw action name (e.g. "like"); std::nullopt means "unknown action".
    std::optional<std::string> action;
    /// Unix time of the behavior, in seconds (any int64; negative is before 1970).
    int64_t timestamp = 0;
    /// The behavior group (object type, e.g. "query"); std::nullopt is the model's target group.
    std::optional<std::string> group;
    /// Caller-supplied object features {name, value}, overriding the package's catalog.
    std::vector<std::pair<std::string, std::string>> features;
};

/// One user's request, for Model::score_batch.
struct Request {
    /// The user's behaviors (may be empty).
    std::vector<Behavior> history;
    /// Raw ids of the target-group objects to score (1 .. limits.max_candidates).
    std::vector<std::string> candidates;
    /// Unix time of the request, in seconds.
    int64_t request_time = 0;
};

/// Load options (see atrank_model_builder_*). Unset optionals keep the library's defaults.
struct Options {
    /// ATRANK_BACKEND_ORT (the default) or ATRANK_BACKEND_TRACT.
    atrank_backend backend = ATRANK_BACKEND_ORT;
    /// ONNX Runtime intra-op threads for this model (1 ..= 1024).
    std::optional<std::size_t> intra_threads;
    /// ONNX Runtime sessions (1 ..= 64; default 1): concurrent callers of one model each take
    /// a free session. Each holds its own copy of the weights. tract ignores it.
    std::optional<std::size_t> sessions;
    /// ATRANK_GPU_OFF (default), ATRANK_GPU_STRICT or ATRANK_GPU_PERMISSIVE.
    std::optional<atrank_gpu_policy> gpu_policy;
    /// Full path of libonnxruntime.so.<version> (else $ATRANK_ORT_LIB, ...).
    std::optional<std::string> ort_library;
    /// User encodings cached by score_cached (0: off; default 1024).
    std::optional<std::size_t> cache_capacity;
    /// Which package files have their SHA-256 checked at load: ATRANK_VERIFY_HASHES_SMALL (the
    /// default: every file of at most 64 MiB) or ATRANK_VERIFY_HASHES_ALL. Sizes are always checked.
    std::optional<atrank_verify_hashes> verify_hashes;
    /// true: candidates the user already touched (a target-group behavior with their id) score
    /// -infinity, so they sort last. Default false: every candidate gets the model's score.
    std::optional<bool> exclude_seen;
    /// The most candidate rows one graph run of score_batch takes (default 1024; 0: no row
    /// limit): a batch with more runs in several, each request whole (see
    /// atrank_model_builder_set_batch_rows).
    std::optional<std::size_t> batch_rows;
    /// Which of atrank's own tract kernels run: ATRANK_TRACT_FUSE_NONE, or a bitwise OR of
    /// ATRANK_TRACT_FUSE_ATTENTION and ATRANK_TRACT_FUSE_LAYER_NORM (default: both in a release
    /// build of libatrank, none in a debug build). stats() counts what was fused.
    std::optional<atrank_tract_fusion> tract_fusion;
};

namespace detail {

struct BuilderFree {
    void operator()(atrank_model_builder *b) const noexcept { atrank_model_builder_free(b); }
};

/// A builder for `dir` with `options` applied, owned until it is handed to a consuming call.
inline std::unique_ptr<atrank_model_builder, BuilderFree> builder(const std::string &dir, const Options &options) {
    atrank_model_builder *raw = nullptr;
    check(atrank_model_builder_new(c_str(dir, [] { return std::string("package_dir"); }), &raw));
    std::unique_ptr<atrank_model_builder, BuilderFree> b(raw);
    check(atrank_model_builder_set_backend(b.get(), options.backend));
    if (options.intra_threads) check(atrank_model_builder_set_intra_threads(b.get(), *options.intra_threads));
    if (options.sessions) check(atrank_model_builder_set_sessions(b.get(), *options.sessions));
    if (options.gpu_policy) check(atrank_model_builder_set_gpu_policy(b.get(), *options.gpu_policy));
    if (options.ort_library) {
        check(atrank_model_builder_set_ort_library(
            b.get(), c_str(*options.ort_library, [] { return std::string("ort_library"); })));
    }
    if (options.cache_capacity) check(atrank_model_builder_set_cache_capacity(b.get(), *options.cache_capacity));
    if (options.verify_hashes) check(atrank_model_builder_set_verify_hashes(b.get(), *options.verify_hashes));
    if (options.exclude_seen) check(atrank_model_builder_set_exclude_seen(b.get(), *options.exclude_seen ? 1u : 0u));
    if (options.batch_rows) check(atrank_model_builder_set_batch_rows(b.get(), *options.batch_rows));
    if (options.tract_fusion) check(atrank_model_builder_set_tract_fusion(b.get(), *options.tract_fusion));
    return b;
}

/// One request converted to C structs; the pointers stay valid while this object lives and
/// the borrowed C++ request is not modified. Not copyable or movable (it points into itself).
class CRequest {
public:
    CRequest(const std::vector<Behavior> &history, const std::vector<std::string> &candidates, int64_t request_time,
             const std::string &at = "")
        : request_time_(request_time) {
        std::size_t n_features = 0;
        for (const Behavior &b : history) n_features += b.features.size();
        features_.reserve(n_features);
        behaviors_.reserve(history.size());
        for (std::size_t i = 0; i < history.size(); ++i) {
            const Behavior &b = history[i];
            auto name = [&at, i](const std::string &field) {
                return at + "history[" + std::to_string(i) + "]." + field;
            };
            atrank_behavior c{};
            c.item = c_str(b.item, [&] { return name("item"); });
            c.category = b.category ? c_str(*b.category, [&] { return name("category"); }) : nullptr;
            c.action = b.action ? c_str(*b.action, [&] { return name("action"); }) : nullptr;
            c.timestamp = b.timestamp;
            c.group = b.group ? c_str(*b.group, [&] { return name("group"); }) : nullptr;
            if (!b.features.empty()) {
                c.features = features_.data() + features_.size();  // reserved above: no reallocation
                c.features_len = b.features.size();
                for (std::size_t k = 0; k < b.features.size(); ++k) {
                    auto f = [&](const char *part) {
                        return name("features[" + std::to_string(k) + "]." + part);
                    };
                    features_.push_back(atrank_feature{c_str(b.features[k].first, [&] { return f("name"); }),
                                                       c_str(b.features[k].second, [&] { return f("value"); })});
                }
            }
            behaviors_.push_back(c);
        }
        ids_.reserve(candidates.size());
        for (std::size_t i = 0; i < candidates.size(); ++i) {
            ids_.push_back(c_str(candidates[i], [&at, i] { return at + "candidates[" + std::to_string(i) + "]"; }));
        }
    }
    CRequest(const CRequest &) = delete;
    CRequest &operator=(const CRequest &) = delete;

    const atrank_behavior *behaviors() const noexcept { return behaviors_.empty() ? nullptr : behaviors_.data(); }
    std::size_t behaviors_len() const noexcept { return behaviors_.size(); }
    const char *const *candidates() const noexcept { return ids_.empty() ? nullptr : ids_.data(); }
    std::size_t candidates_len() const noexcept { return ids_.size(); }
    int64_t request_time() const noexcept { return request_time_; }

    /// A score buffer for this request, and a non-NULL pointer into it even when it is empty
    /// (so the library reports the empty candidate list, not a NULL buffer).
    std::vector<float> buffer() const { return std::vector<float>(ids_.size()); }

private:
    std::vector<atrank_behavior> behaviors_;
    std::vector<atrank_feature> features_;
    std::vector<const char *> ids_;
    int64_t request_time_;
};

/// `v.data()`, or a pointer to a dummy float when `v` is empty (never NULL).
inline float *out_ptr(std::vector<float> &v) {
    static thread_local float dummy = 0.0F;
    return v.empty() ? &dummy : v.data();
}

}  // namespace detail

/// What identifies a loaded model (Model::info()): copied out of an atrank_info.
struct Info {
    /// The package's `name` (may be empty).
    std::string name;
    /// The package's `created_by` ("" when the spec does not say).
    std::string created_by;
    /// The package's `input_mapping` as JSON: what its actions and features mean and how equal
    /// timestamps are ordered ("" when the package has none).
    std::string input_mapping;
    /// SHA-256 of the graph file as loaded, 64 lower-case hex digits.
    std::string graph_sha256;
    /// What runs the graph: "ort-cpu", "ort-cuda" or "tract".
    std::string serving;
    /// The package's `spec_version`.
    uint32_t spec_version = 0;
    /// limits.max_candidates and limits.max_behaviors.
    std::size_t max_candidates = 0, max_behaviors = 0;
    /// (table, ids in its vocabulary), in the spec's order.
    std::vector<std::pair<std::string, std::size_t>> vocab_sizes;
    /// (behavior group, its max_history), in the spec's order.
    std::vector<std::pair<std::string, std::size_t>> max_history;
};

/// The upper bounds (nanoseconds, inclusive; the last is UINT64_MAX = +Inf) of the latency
/// buckets of atrank_call_stats.latency_counts (atrank_latency_bounds).
inline std::array<uint64_t, ATRANK_LATENCY_BUCKETS> latency_bounds() {
    std::array<uint64_t, ATRANK_LATENCY_BUCKETS> out{};
    detail::check(atrank_latency_bounds(out.data(), out.size()));
    return out;
}

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

    /// Loads the package in `dir` with `options` (backend, threads, GPU policy, ORT library,
    /// cache size) through the C builder. Throws atrank::Error as load(dir, backend) does, and
    /// ATRANK_ERROR_INVALID_ARGUMENT for an out-of-range option (named in the message).
    static Model load(const std::string &dir, const Options &options) {
        auto b = detail::builder(dir, options);
        const atrank_model *handle = nullptr;
        detail::check(atrank_model_builder_build(b.release(), &handle));  // consumes the builder
        return Model(handle);
    }

    /// The most candidates one score call accepts (the package's limits.max_candidates):
    /// score longer lists in chunks of this size.
    std::size_t max_candidates() const {
        std::size_t out = 0;
        detail::check(atrank_model_max_candidates(handle_, &out));
        return out;
    }

    /// What actually runs the graph (ATRANK_SERVING_ORT_CPU, _ORT_CUDA or _TRACT).
    atrank_serving serving() const {
        atrank_serving out = 0;
        detail::check(atrank_model_serving(handle_, &out));
        return out;
    }

    /// Scores `candidates` (raw target-group ids; 1 .. the package's limits.max_candidates) for
    /// one user with behaviors `history` (may be empty; any groups; features optional), as of
    /// `request_time` (unix seconds). Returns one logit per candidate, in the candidates' order
    /// (higher ranks first). Throws atrank::Error on failure (e.g.
    /// ATRANK_ERROR_INVALID_ARGUMENT for no or too many candidates or an unknown group).
    /// Nothing passed in is retained. Safe to call concurrently on one Model.
    std::vector<float> score(const std::vector<Behavior> &history, const std::vector<std::string> &candidates,
                             int64_t request_time) const {
        const detail::CRequest r(history, candidates, request_time);
        std::vector<float> scores = r.buffer();
        detail::check(atrank_model_score(handle_, r.behaviors(), r.behaviors_len(), r.candidates(),
                                         r.candidates_len(), r.request_time(), detail::out_ptr(scores),
                                         scores.size()));
        return scores;
    }

    /// Like score(), but reuses the encoding of `user_key`'s history when the same user comes
    /// back with the same behaviors and request time (packages with split graphs). Equal
    /// results. Safe to call concurrently on one Model.
    std::vector<float> score_cached(const std::string &user_key, const std::vector<Behavior> &history,
                                    const std::vector<std::string> &candidates, int64_t request_time) const {
        const char *key = detail::c_str(user_key, [] { return std::string("user_key"); });
        const detail::CRequest r(history, candidates, request_time);
        std::vector<float> scores = r.buffer();
        detail::check(atrank_model_score_cached(handle_, key, r.behaviors(), r.behaviors_len(), r.candidates(),
                                                r.candidates_len(), r.request_time(), detail::out_ptr(scores),
                                                scores.size()));
        return scores;
    }

    /// Scores several users in one call (1 ..= ATRANK_MAX_BATCH_REQUESTS requests); returns
    /// one score vector per request, in order. All or nothing: an invalid request throws, and
    /// the message names it (`requests[i]....`). Safe to call concurrently on one Model.
    std::vector<std::vector<float>> score_batch(const std::vector<Request> &requests) const {
        std::vector<std::unique_ptr<detail::CRequest>> converted;
        converted.reserve(requests.size());
        std::vector<atrank_request> c(requests.size());
        std::size_t total = 0;
        for (std::size_t i = 0; i < requests.size(); ++i) {
            const Request &q = requests[i];
            converted.push_back(std::make_unique<detail::CRequest>(q.history, q.candidates, q.request_time,
                                                                   "requests[" + std::to_string(i) + "]."));
            const detail::CRequest &r = *converted.back();
            c[i] = atrank_request{r.behaviors(), r.behaviors_len(), r.candidates(), r.candidates_len(),
                                  r.request_time()};
            total += r.candidates_len();
        }
        std::vector<float> flat(total);
        detail::check(atrank_model_score_batch(handle_, c.empty() ? nullptr : c.data(), c.size(),
                                               detail::out_ptr(flat), flat.size()));
        std::vector<std::vector<float>> out;
        out.reserve(requests.size());
        std::size_t at = 0;
        for (const Request &q : requests) {
            out.emplace_back(flat.begin() + static_cast<std::ptrdiff_t>(at),
                             flat.begin() + static_cast<std::ptrdiff_t>(at + q.candidates.size()));
            at += q.candidates.size();
        }
        return out;
    }

    /// A snapshot of the model's counters (atrank_model_stats): per entry point (score,
    /// score_cached, score_batch) the calls, failures by code (`failures[ATRANK_ERROR_*]`) and a
    /// latency histogram of the successful calls (latency_bounds()); the encoding cache; tract
    /// plans; busy ORT sessions. Cheap: fine on every metrics scrape.
    atrank_stats stats() const {
        atrank_stats out{};
        detail::check(atrank_model_stats(handle_, &out, sizeof out));
        return out;
    }

    /// What identifies the model: package name, spec version, creator, graph SHA-256,
    /// vocabulary sizes, limits and what serves it.
    Info info() const {
        atrank_info *raw = nullptr;
        detail::check(atrank_model_info(handle_, &raw));
        const std::unique_ptr<atrank_info, void (*)(atrank_info *)> owned(raw, atrank_info_free);
        auto str = [](const char *s) { return s != nullptr ? std::string(s) : std::string(); };
        Info i;
        i.name = str(atrank_info_name(raw));
        i.created_by = str(atrank_info_created_by(raw));
        i.input_mapping = str(atrank_info_input_mapping(raw));
        i.graph_sha256 = str(atrank_info_graph_sha256(raw));
        i.serving = str(atrank_info_serving(raw));
        i.spec_version = atrank_info_spec_version(raw);
        i.max_candidates = atrank_info_max_candidates(raw);
        i.max_behaviors = atrank_info_max_behaviors(raw);
        for (std::size_t k = 0; k < atrank_info_table_count(raw); k++) {
            i.vocab_sizes.emplace_back(str(atrank_info_table_name(raw, k)), atrank_info_table_vocab_size(raw, k));
        }
        for (std::size_t k = 0; k < atrank_info_group_count(raw); k++) {
            i.max_history.emplace_back(str(atrank_info_group_name(raw, k)), atrank_info_group_max_history(raw, k));
        }
        return i;
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

/// A hot-swappable model (atrank_handle): scoring uses the model current when the call starts;
/// reload() swaps a new one in atomically, and a failed reload throws and leaves the old model
/// serving. Move-only; owns its `atrank_handle *`.
///
/// Thread safety: score, reload, generation and current may be called from any number of
/// threads at once. Do not move, assign or destroy a Handle while another thread uses it.
class Handle {
public:
    /// A handle serving `model` (generation 1); the handle takes its own reference, `model`
    /// stays usable and owned by the caller.
    explicit Handle(const Model &model) {
        detail::check(atrank_handle_new(model.get(), &handle_));
    }
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;
    Handle(Handle &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    Handle &operator=(Handle &&other) noexcept {
        if (this != &other) {
            atrank_handle_free(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    ~Handle() { atrank_handle_free(handle_); }

    /// Loads `dir` with `options` and swaps it in; returns the new generation. Throws (and the
    /// old model keeps serving) if the new package cannot be loaded.
    uint64_t reload(const std::string &dir, const Options &options) {
        auto b = detail::builder(dir, options);
        uint64_t generation = 0;
        detail::check(atrank_handle_reload(handle_, b.release(), &generation));  // consumes the builder
        return generation;
    }

    /// 1 + the number of successful reloads.
    uint64_t generation() const {
        uint64_t g = 0;
        detail::check(atrank_handle_generation(handle_, &g));
        return g;
    }

    /// The model serving now (its own reference; stays valid after later reloads).
    Model current() const {
        const atrank_model *m = nullptr;
        detail::check(atrank_handle_current(handle_, &m));
        return Model(m);
    }

    /// The model serving now and its generation, read together (a reload between separate
    /// current() and generation() calls could mismatch them).
    std::pair<Model, uint64_t> snapshot() const {
        const atrank_model *m = nullptr;
        uint64_t g = 0;
        detail::check(atrank_handle_snapshot(handle_, &m, &g));
        return {Model(m), g};
    }

    /// Model::score on the current model.
    std::vector<float> score(const std::vector<Behavior> &history, const std::vector<std::string> &candidates,
                             int64_t request_time) const {
        const detail::CRequest r(history, candidates, request_time);
        std::vector<float> scores = r.buffer();
        detail::check(atrank_handle_score(handle_, r.behaviors(), r.behaviors_len(), r.candidates(),
                                          r.candidates_len(), r.request_time(), detail::out_ptr(scores),
                                          scores.size()));
        return scores;
    }

private:
    atrank_handle *handle_ = nullptr;
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
