#include "golden.hpp"

#include <cjson/cJSON.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

namespace atrank_test {
namespace {

struct JsonDelete {
    void operator()(cJSON *json) const noexcept { cJSON_Delete(json); }
};
using Json = std::unique_ptr<cJSON, JsonDelete>;

std::string env(const char *name) {
    const char *v = std::getenv(name);
    return v != nullptr ? std::string(v) : std::string();
}

Json read_json(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
    }
    std::ostringstream text;
    text << in.rdbuf();
    Json json(cJSON_Parse(text.str().c_str()));
    if (!json) {
        const char *at = cJSON_GetErrorPtr();
        throw std::runtime_error(path + " is not valid JSON (near: " + std::string(at != nullptr ? at : "?").substr(0, 40) +
                                 ")");
    }
    return json;
}

const cJSON *field(const cJSON *object, const char *name) { return cJSON_GetObjectItemCaseSensitive(object, name); }

// An integral JSON number that fits an int64 exactly (cJSON numbers are doubles, exact up to
// 2^53, which covers any unix time).
int64_t to_int64(const cJSON *item, const std::string &what) {
    if (!cJSON_IsNumber(item)) {
        throw std::runtime_error(what + " is not a number");
    }
    const double v = item->valuedouble;
    if (!(v >= -9007199254740992.0 && v <= 9007199254740992.0) || v != std::floor(v)) {
        throw std::runtime_error(what + " is not an integer");
    }
    return static_cast<int64_t>(v);
}

std::optional<std::string> optional_string(const cJSON *item, const std::string &what) {
    if (item == nullptr || cJSON_IsNull(item)) {
        return std::nullopt;
    }
    if (!cJSON_IsString(item)) {
        throw std::runtime_error(what + " is neither a string nor null");
    }
    return std::string(item->valuestring);
}

std::string string(const cJSON *item, const std::string &what) {
    if (!cJSON_IsString(item)) {
        throw std::runtime_error(what + " is not a string");
    }
    return item->valuestring;
}

GoldenRequest parse_request(const cJSON *req, std::size_t index) {
    GoldenRequest out;
    const cJSON *name = field(req, "name");
    out.name = cJSON_IsString(name) ? name->valuestring : "(unnamed)";
    const std::string where = "requests[" + std::to_string(index) + "] (" + out.name + ")";
    out.request_time = to_int64(field(req, "request_time"), where + ".request_time");
    const cJSON *behaviors = field(req, "behaviors");
    const cJSON *candidates = field(req, "candidates");
    const cJSON *scores = field(req, "scores");
    if (!cJSON_IsArray(behaviors) || !cJSON_IsArray(candidates) || !cJSON_IsArray(scores)) {
        throw std::runtime_error(where + ": behaviors, candidates and scores must be arrays");
    }
    std::size_t i = 0;
    const cJSON *b = nullptr;
    cJSON_ArrayForEach(b, behaviors) {
        const std::string bw = where + ".behaviors[" + std::to_string(i++) + "]";
        atrank::Behavior behavior;
        const cJSON *id = field(b, "item");
        behavior.item = string(id != nullptr ? id : field(b, "id"), bw + ".item");  // formats 2 and 3 say "id"
        behavior.group = optional_string(field(b, "group"), bw + ".group");
        const cJSON *features = field(b, "features");
        const cJSON *f = nullptr;
        if (cJSON_IsObject(features)) {
            cJSON_ArrayForEach(f, features) {
                behavior.features.emplace_back(f->string, string(f, bw + ".features." + f->string));
            }
        }
        behavior.category = optional_string(field(b, "category"), bw + ".category");
        behavior.action = optional_string(field(b, "action"), bw + ".action");
        behavior.timestamp = to_int64(field(b, "timestamp"), bw + ".timestamp");
        out.behaviors.push_back(std::move(behavior));
    }
    i = 0;
    const cJSON *c = nullptr;
    cJSON_ArrayForEach(c, candidates) {
        out.candidates.push_back(string(c, where + ".candidates[" + std::to_string(i++) + "]"));
    }
    i = 0;
    const cJSON *s = nullptr;
    cJSON_ArrayForEach(s, scores) {
        if (!cJSON_IsNumber(s)) {
            throw std::runtime_error(where + ".scores[" + std::to_string(i) + "] is not a number");
        }
        out.scores.push_back(s->valuedouble);
        i++;
    }
    if (out.scores.size() != out.candidates.size()) {
        throw std::runtime_error(where + ": " + std::to_string(out.candidates.size()) + " candidates but " +
                                 std::to_string(out.scores.size()) + " scores");
    }
    return out;
}

}  // namespace

std::optional<std::string> package_dir() {
    std::string dir = env("ATRANK_PACKAGE");
    if (dir.empty()) {
        return std::nullopt;
    }
    return dir;
}

bool ort_available() { return !env("ATRANK_ORT_LIB").empty(); }

GoldenSet load_golden(const std::string &dir) {
    Json spec = read_json(dir + "/spec.json");
    const cJSON *golden_name = field(spec.get(), "golden");
    const std::string path = dir + "/" + (cJSON_IsString(golden_name) ? golden_name->valuestring : "golden.json");
    Json json = read_json(path);
    const cJSON *format = field(json.get(), "format");
    const cJSON *tolerance = field(json.get(), "tolerance");
    const cJSON *requests = field(json.get(), "requests");
    if (!cJSON_IsString(format) || std::strcmp(format->valuestring, "atrank-golden") != 0 ||
        !cJSON_IsNumber(tolerance) || !cJSON_IsArray(requests)) {
        throw std::runtime_error(path + ": need format \"atrank-golden\", a numeric tolerance and a requests array");
    }
    GoldenSet out;
    out.tolerance = tolerance->valuedouble;
    const cJSON *bound = field(json.get(), "bound_any_request");
    if (cJSON_IsNumber(bound)) out.bound_any_request = bound->valuedouble;
    bool override = false;
    const std::string env_tol = env("ATRANK_TOLERANCE");
    if (!env_tol.empty()) {
        char *end = nullptr;
        const double t = std::strtod(env_tol.c_str(), &end);
        if (end == env_tol.c_str() || *end != '\0' || !(t >= 0.0) || !std::isfinite(t)) {
            throw std::runtime_error("ATRANK_TOLERANCE=" + env_tol + " is not a non-negative number");
        }
        out.tolerance = t;
        out.bound_any_request = t;
        override = true;
    }
    std::size_t i = 0;
    const cJSON *req = nullptr;
    cJSON_ArrayForEach(req, requests) {
        try {
            out.requests.push_back(parse_request(req, i++));
        } catch (const std::runtime_error &e) {
            throw std::runtime_error(path + ": " + e.what());
        }
        const cJSON *own = field(req, "tolerance");
        out.requests.back().tolerance = !override && cJSON_IsNumber(own) ? own->valuedouble : out.tolerance;
    }
    if (out.requests.empty()) {
        throw std::runtime_error(path + " has no requests");
    }
    return out;
}

double GoldenSet::any_request_tolerance() const {
    if (!bound_any_request) {
        throw std::runtime_error("golden.json has no bound_any_request (re-export the package)");
    }
    return *bound_any_request;
}

std::size_t spec_max_candidates(const std::string &dir) {
    const std::string path = dir + "/spec.json";
    Json spec = read_json(path);
    const int64_t max = to_int64(field(field(spec.get(), "limits"), "max_candidates"), path + ": limits.max_candidates");
    if (max <= 0) {
        throw std::runtime_error(path + ": limits.max_candidates is not positive");
    }
    return static_cast<std::size_t>(max);
}

const char *code_name(atrank_code code) {
    switch (code) {
    case ATRANK_OK: return "ATRANK_OK";
    case ATRANK_ERROR_NULL_ARGUMENT: return "ATRANK_ERROR_NULL_ARGUMENT";
    case ATRANK_ERROR_INVALID_ARGUMENT: return "ATRANK_ERROR_INVALID_ARGUMENT";
    case ATRANK_ERROR_INVALID_UTF8: return "ATRANK_ERROR_INVALID_UTF8";
    case ATRANK_ERROR_IO: return "ATRANK_ERROR_IO";
    case ATRANK_ERROR_INVALID_PACKAGE: return "ATRANK_ERROR_INVALID_PACKAGE";
    case ATRANK_ERROR_BACKEND_UNAVAILABLE: return "ATRANK_ERROR_BACKEND_UNAVAILABLE";
    case ATRANK_ERROR_BACKEND: return "ATRANK_ERROR_BACKEND";
    case ATRANK_ERROR_PANIC: return "ATRANK_ERROR_PANIC";
    case ATRANK_ERROR_BUFFER_SIZE: return "ATRANK_ERROR_BUFFER_SIZE";
    }
    return "(unknown code)";
}

const char *backend_name(atrank_backend backend) {
    switch (backend) {
    case ATRANK_BACKEND_ORT: return "ort";
    case ATRANK_BACKEND_TRACT: return "tract";
    default: return "(unknown backend)";
    }
}

}  // namespace atrank_test
