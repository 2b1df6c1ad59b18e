#include "search.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace movie_search {

std::vector<std::string> movie_tokens(const Movie &movie) {
    std::vector<std::string> tokens = tokenize(movie.title);
    for (const std::string &genre : movie.genres) {
        for (std::string &t : tokenize(genre)) {
            tokens.push_back(std::move(t));
        }
    }
    return tokens;
}

MovieIndex::MovieIndex(std::vector<Movie> movies, Bm25Params params)
    : movies_(std::move(movies)), index_(params) {
    for (const Movie &m : movies_) {
        index_.add(movie_tokens(m));
    }
}

std::vector<Hit> MovieIndex::retrieve(const std::string &query, std::size_t k) const {
    return index_.search(tokenize(query), k);
}

std::vector<float> score_in_chunks(const atrank::Model &model, const std::vector<atrank::Behavior> &history,
                                   const std::vector<std::string> &ids, std::int64_t request_time,
                                   std::size_t chunk) {
    if (chunk == 0) {
        throw std::invalid_argument("chunk must be at least 1");
    }
    chunk = std::min(chunk, model.max_candidates());  // the most one call accepts
    std::vector<float> scores;
    scores.reserve(ids.size());
    for (std::size_t start = 0; start < ids.size(); start += chunk) {
        const std::size_t end = std::min(ids.size(), start + std::min(chunk, ids.size() - start));
        const std::vector<std::string> part(ids.begin() + static_cast<std::ptrdiff_t>(start),
                                            ids.begin() + static_cast<std::ptrdiff_t>(end));
        const std::vector<float> s = model.score(history, part, request_time);
        scores.insert(scores.end(), s.begin(), s.end());
    }
    return scores;
}

namespace {

/// Min-max normalisation to [0, 1]; every value 0 when they are all equal. NaN stays NaN.
std::vector<double> normalised(const std::vector<double> &values) {
    double lo = std::numeric_limits<double>::infinity();
    double hi = -std::numeric_limits<double>::infinity();
    for (double v : values) {
        if (!std::isnan(v)) {
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
    }
    std::vector<double> out(values.size(), 0.0);
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (std::isnan(values[i])) {
            out[i] = values[i];
        } else if (hi > lo && std::isfinite(hi - lo)) {
            out[i] = (values[i] - lo) / (hi - lo);
        }
    }
    return out;
}

}  // namespace

std::vector<Ranked> rerank(const atrank::Model &model, const MovieIndex &index,
                           const std::vector<atrank::Behavior> &history, const std::vector<Hit> &hits,
                           std::int64_t request_time, const RerankOptions &options) {
    if (!(options.blend >= 0.0 && options.blend <= 1.0)) {
        throw std::invalid_argument("blend must lie in [0, 1]");
    }
    if (hits.empty()) {
        return {};
    }
    std::vector<std::string> ids;
    ids.reserve(hits.size());
    for (const Hit &h : hits) {
        if (h.doc >= index.movies().size()) {
            throw std::invalid_argument("hit for a movie outside the catalog");
        }
        ids.push_back(index.movies()[h.doc].id);
    }
    const std::vector<float> scores = score_in_chunks(model, history, ids, request_time, options.chunk);

    std::vector<Ranked> ranked(hits.size());
    for (std::size_t i = 0; i < hits.size(); ++i) {
        ranked[i].movie = hits[i].doc;
        ranked[i].bm25 = hits[i].score;
        ranked[i].atrank = scores[i];
        ranked[i].final_score = scores[i];
    }
    if (options.blend > 0.0) {
        std::vector<double> a(hits.size());
        std::vector<double> b(hits.size());
        for (std::size_t i = 0; i < hits.size(); ++i) {
            a[i] = ranked[i].atrank;
            b[i] = ranked[i].bm25;
        }
        const std::vector<double> na = normalised(a);
        const std::vector<double> nb = normalised(b);
        for (std::size_t i = 0; i < hits.size(); ++i) {
            ranked[i].final_score = (1.0 - options.blend) * na[i] + options.blend * nb[i];
        }
    }
    // NaN compares as lowest, so the order stays a strict weak ordering whatever the model says.
    auto key = [](double v) { return std::isnan(v) ? -std::numeric_limits<double>::infinity() : v; };
    std::stable_sort(ranked.begin(), ranked.end(), [&key](const Ranked &x, const Ranked &y) {
        return key(x.final_score) > key(y.final_score);
    });
    return ranked;
}

}  // namespace movie_search
