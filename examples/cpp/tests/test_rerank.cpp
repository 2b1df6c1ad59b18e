// End to end on the real data and a real ML-100k model package:
//   - the reranked list is a permutation of the BM25 candidates, ordered by final score;
//   - its atrank scores equal those of the same request scored directly through the C API
//     (atrank.h, one call, a separately loaded model), with and without chunking;
//   - candidate lists above the package's limit are refused by one call and scored in chunks;
//   - the trainer's golden requests ($ATRANK_GOLDEN_TSV, golden.json as TSV) are reproduced by
//     the chunked scorer within each request's derived tolerance.
// Tolerances (docs/tolerances.md): two float32 evaluations of one logit differ by at most
// 2 D U M; the exporter writes it per golden request and, for any request, as
// bound_any_request, which the comparisons of this test's own requests use (read from
// $ATRANK_GOLDEN_TSV).
// Environment: ATRANK_PACKAGE, MOVIES_ITEMS, MOVIES_INTERACTIONS (skips without them),
// ATRANK_BACKEND = tract (default) | ort (needs ATRANK_ORT_LIB), ATRANK_GOLDEN_TSV (optional).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "atrank.h"
#include "check.hpp"
#include "search.hpp"

namespace ms = movie_search;

namespace {

/// bound_any_request from $ATRANK_GOLDEN_TSV (see check_golden), or 0 with a failure.
double any_request_tolerance() {
    const char *path = std::getenv("ATRANK_GOLDEN_TSV");
    if (path != nullptr && *path != '\0') {
        std::ifstream in(path);
        std::string line;
        const std::string key = "bound_any_request\t";
        while (std::getline(in, line)) {
            if (line.compare(0, key.size(), key) == 0) return std::stod(line.substr(key.size()));
        }
    }
    check::fail(__FILE__, __LINE__, "no bound_any_request: ATRANK_GOLDEN_TSV must name golden.json as TSV");
    return 0.0;
}

double g_any_tol = 0.0;  // any_request_tolerance(), set first thing in main

struct CModelFree {
    void operator()(const atrank_model *m) const noexcept { atrank_model_free(m); }
};
using CModel = std::unique_ptr<const atrank_model, CModelFree>;

std::string take_message(atrank_error *err) {
    std::string msg = std::to_string(atrank_error_code(err)) + ": " + atrank_error_message(err);
    atrank_error_free(err);
    return msg;
}

/// Scores one request with the plain C API in a single call; false (and a failure) on error.
bool score_direct(const atrank_model *model, const std::vector<atrank::Behavior> &history,
                  const std::vector<std::string> &ids, std::int64_t time, std::vector<float> &out) {
    std::vector<atrank_behavior> behaviors(history.size());
    for (std::size_t i = 0; i < history.size(); ++i) {
        behaviors[i] = atrank_behavior{};
        behaviors[i].item = history[i].item.c_str();
        behaviors[i].category = history[i].category ? history[i].category->c_str() : nullptr;
        behaviors[i].action = history[i].action ? history[i].action->c_str() : nullptr;
        behaviors[i].timestamp = history[i].timestamp;
    }
    std::vector<const char *> c_ids;
    for (const std::string &id : ids) {
        c_ids.push_back(id.c_str());
    }
    out.assign(ids.size(), 0.0F);
    atrank_error *err = atrank_model_score(model, behaviors.empty() ? nullptr : behaviors.data(), behaviors.size(),
                                           c_ids.data(), c_ids.size(), time, out.data(), out.size());
    if (err != nullptr) {
        check::fail(__FILE__, __LINE__, "atrank_model_score: " + take_message(err));
        return false;
    }
    return true;
}

double g_max_chunk_diff = 0.0;

void check_request(const atrank::Model &model, const atrank_model *direct, const ms::MovieIndex &index,
                   const std::string &interactions, const std::string &user, const std::string &query,
                   std::size_t k, bool mid_time) {
    const std::vector<ms::Rating> ratings = ms::load_user_ratings(interactions, user);
    CHECK(!ratings.empty());
    if (ratings.empty()) {
        return;
    }
    std::vector<std::int64_t> times;
    for (const ms::Rating &r : ratings) {
        times.push_back(r.timestamp);
    }
    std::sort(times.begin(), times.end());
    const std::int64_t t = mid_time ? times[times.size() / 2] : times.back() + 1;
    const std::vector<atrank::Behavior> history = ms::history_before(ratings, t);
    CHECK(mid_time ? history.size() <= times.size() / 2 : history.size() == ratings.size());

    const std::vector<ms::Hit> hits = index.retrieve(query, k);
    CHECK(!hits.empty());
    std::vector<std::string> ids;
    for (const ms::Hit &h : hits) {
        ids.push_back(index.movies()[h.doc].id);
    }
    std::vector<float> expected;
    if (!score_direct(direct, history, ids, t, expected)) {
        return;
    }
    std::map<std::size_t, std::size_t> position;  // movie -> index in hits
    for (std::size_t i = 0; i < hits.size(); ++i) {
        position[hits[i].doc] = i;
    }
    CHECK(position.size() == hits.size());

    for (std::size_t chunk : {std::size_t{1000}, std::size_t{7}}) {
        ms::RerankOptions options;
        options.chunk = chunk;
        const std::vector<ms::Ranked> ranked = ms::rerank(model, index, history, hits, t, options);
        // A permutation of the candidates: same size, each candidate exactly once.
        CHECK(ranked.size() == hits.size());
        std::map<std::size_t, int> seen;
        for (const ms::Ranked &r : ranked) {
            ++seen[r.movie];
        }
        CHECK(seen.size() == hits.size());
        for (const ms::Ranked &r : ranked) {
            auto p = position.find(r.movie);
            CHECK(p != position.end());
            if (p == position.end()) {
                continue;
            }
            CHECK(r.bm25 == hits[p->second].score);
            CHECK(r.final_score == static_cast<double>(r.atrank));
            if (chunk >= hits.size()) {
                // The same single call: bit-identical.
                CHECK(r.atrank == expected[p->second]);
            } else {
                const double d = std::fabs(static_cast<double>(r.atrank) - static_cast<double>(expected[p->second]));
                g_max_chunk_diff = std::max(g_max_chunk_diff, d);
                CHECK_NEAR(r.atrank, expected[p->second], g_any_tol);
            }
        }
        for (std::size_t i = 1; i < ranked.size(); ++i) {
            CHECK(ranked[i - 1].final_score >= ranked[i].final_score);
        }
    }

    // blend 1: BM25 alone decides, so the retrieval order comes back unchanged.
    ms::RerankOptions bm25_only;
    bm25_only.blend = 1.0;
    const std::vector<ms::Ranked> same = ms::rerank(model, index, history, hits, t, bm25_only);
    for (std::size_t i = 0; i < same.size() && i < hits.size(); ++i) {
        CHECK(same[i].movie == hits[i].doc);
    }
    ms::RerankOptions half;
    half.blend = 0.5;
    for (const ms::Ranked &r : ms::rerank(model, index, history, hits, t, half)) {
        CHECK(r.final_score >= 0.0 && r.final_score <= 1.0);
    }
    std::printf("user %s, query \"%s\", %s: %zu behaviors, %zu candidates, top %s\n", user.c_str(), query.c_str(),
                mid_time ? "mid-history time" : "after all ratings", history.size(), hits.size(),
                ids.empty() ? "-" : index.movies()[ms::rerank(model, index, history, hits, t).front().movie].id.c_str());
}

/// More candidates than one call accepts (the package's limits.max_candidates, 10000 in the
/// exporter's packages): refused by a single call, scored in chunks, each chunk's scores equal
/// to the single-call scores of the same ids.
void check_over_limit(const atrank::Model &model, const atrank_model *direct, const ms::MovieIndex &index) {
    const std::size_t n = 10001;
    std::vector<std::string> ids;
    for (std::size_t i = 0; i < n; ++i) {
        ids.push_back(index.movies()[i % index.movies().size()].id);
    }
    std::vector<atrank::Behavior> history(1);
    history[0].item = "50";
    history[0].action = "like";
    history[0].timestamp = 880000000;
    const std::int64_t t = 880000100;
    try {
        (void)model.score(history, ids, t);
        check::fail(__FILE__, __LINE__, "10001 candidates in one call were accepted");
    } catch (const atrank::Error &e) {
        CHECK(e.code() == ATRANK_ERROR_INVALID_ARGUMENT);
    }
    CHECK(model.max_candidates() == 10000);
    const std::vector<float> chunked = ms::score_in_chunks(model, history, ids, t, 5000);
    CHECK(chunked.size() == n);
    // A chunk above the model's limit is capped to it, not refused.
    const std::vector<float> capped = ms::score_in_chunks(model, history, ids, t, 50000);
    CHECK(capped.size() == n);
    for (std::size_t i = 0; i < n && capped.size() == n && chunked.size() == n; ++i) {
        CHECK(std::fabs(static_cast<double>(capped[i]) - static_cast<double>(chunked[i])) <= g_any_tol);
    }
    std::vector<float> first;
    const std::vector<std::string> head(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(index.movies().size()));
    if (score_direct(direct, history, head, t, first) && chunked.size() == n) {
        for (std::size_t i = 0; i < n; ++i) {
            CHECK_NEAR(chunked[i], first[i % first.size()], g_any_tol);
        }
    }
    CHECK_THROWS(ms::score_in_chunks(model, history, ids, t, 0), std::invalid_argument);
}

/// golden.json's requests as TSV lines (written by scripts/test-example-cpp.sh):
///   tolerance <tol> | request <name> <time> | behavior <item> <category|\N> <action|\N> <ts>
///   | candidate <id> <score> | end
void check_golden(const atrank::Model &model, const std::string &path) {
    std::ifstream in(path);
    CHECK(static_cast<bool>(in));
    double top = -1.0, tol = -1.0;
    std::string name;
    std::int64_t time = 0;
    std::vector<atrank::Behavior> history;
    std::vector<std::string> ids;
    std::vector<double> expected;
    std::size_t requests = 0;
    double max_diff = 0.0;
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream f(line);
        std::string kind;
        std::getline(f, kind, '\t');
        std::vector<std::string> fields;
        for (std::string field; std::getline(f, field, '\t');) {
            fields.push_back(field);
        }
        auto opt = [](const std::string &s) { return s == "\\N" ? std::nullopt : std::optional<std::string>(s); };
        if (kind == "tolerance" && fields.size() == 1) {
            top = std::stod(fields[0]);
        } else if (kind == "bound_any_request" && fields.size() == 1) {
            // read by any_request_tolerance()
        } else if (kind == "request" && fields.size() == 2) {
            name = fields[0];
            time = std::stoll(fields[1]);
            tol = top;
            history.clear();
            ids.clear();
            expected.clear();
        } else if (kind == "request_tolerance" && fields.size() == 1) {
            tol = std::stod(fields[0]);
        } else if (kind == "behavior" && fields.size() == 4) {
            atrank::Behavior b;
            b.item = fields[0];
            b.category = opt(fields[1]);
            b.action = opt(fields[2]);
            b.timestamp = std::stoll(fields[3]);
            history.push_back(b);
        } else if (kind == "candidate" && fields.size() == 2) {
            ids.push_back(fields[0]);
            expected.push_back(std::stod(fields[1]));
        } else if (kind == "end") {
            ++requests;
            const std::vector<float> got = ms::score_in_chunks(model, history, ids, time, 3);
            CHECK(got.size() == expected.size());
            for (std::size_t i = 0; i < got.size() && i < expected.size(); ++i) {
                max_diff = std::max(max_diff, std::fabs(static_cast<double>(got[i]) - expected[i]));
                CHECK_NEAR(got[i], expected[i], tol);
            }
        } else {
            check::fail(__FILE__, __LINE__, "bad golden TSV line: " + line);
        }
    }
    CHECK(requests > 0);
    CHECK(top >= 0.0);
    std::printf("golden: %zu requests, max |atrank - trainer| = %.3g (tolerances up to %.3g)\n", requests, max_diff,
                top);
}

}  // namespace

int main() {
    const std::string package = check::env_or_skip("ATRANK_PACKAGE");
    const std::string items = check::env_or_skip("MOVIES_ITEMS");
    const std::string interactions = check::env_or_skip("MOVIES_INTERACTIONS");
    const char *backend_env = std::getenv("ATRANK_BACKEND");
    const std::string backend_name = backend_env != nullptr && *backend_env != '\0' ? backend_env : "tract";
    if (backend_name != "tract" && backend_name != "ort") {
        check::fail(__FILE__, __LINE__, "ATRANK_BACKEND must be tract or ort");
        return check::finish("test_rerank");
    }
    const atrank_backend backend = backend_name == "ort" ? ATRANK_BACKEND_ORT : ATRANK_BACKEND_TRACT;
    if (backend == ATRANK_BACKEND_ORT && std::getenv("ATRANK_ORT_LIB") == nullptr) {
        check::skip("ATRANK_BACKEND=ort needs ATRANK_ORT_LIB");
    }

    g_any_tol = any_request_tolerance();
    const ms::MovieIndex index(ms::load_movies(items));
    const atrank::Model model = atrank::Model::load(package, backend);
    const atrank_model *raw = nullptr;
    atrank_error *err = atrank_model_load(package.c_str(), backend, &raw);
    if (err != nullptr) {
        check::fail(__FILE__, __LINE__, "atrank_model_load: " + take_message(err));
        return check::finish("test_rerank");
    }
    const CModel direct(raw);
    std::printf("atrank %s, backend %s, package %s\n", atrank::version().c_str(), backend_name.c_str(),
                package.c_str());

    // User 196 (39 ratings), user 1 (272: more than the model's 50-behavior history),
    // user 405 (737 ratings).
    check_request(model, direct.get(), index, interactions, "196", "star wars", 100, false);
    check_request(model, direct.get(), index, interactions, "1", "the", 300, false);
    check_request(model, direct.get(), index, interactions, "1", "love", 100, true);
    check_request(model, direct.get(), index, interactions, "405", "sci-fi war", 100, false);
    check_over_limit(model, direct.get(), index);
    std::printf("chunked vs single call: max |diff| = %.3g\n", g_max_chunk_diff);

    if (const char *golden = std::getenv("ATRANK_GOLDEN_TSV"); golden != nullptr && *golden != '\0') {
        check_golden(model, golden);
    } else {
        std::printf("ATRANK_GOLDEN_TSV not set: golden requests not checked\n");
    }
    return check::finish("test_rerank");
}
