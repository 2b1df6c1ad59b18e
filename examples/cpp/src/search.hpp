// The search backend: BM25 retrieval over MovieLens titles and genres, then a personal rerank
// of the retrieved candidates with an atrank model.
#ifndef MOVIE_SEARCH_SEARCH_HPP
#define MOVIE_SEARCH_SEARCH_HPP

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "atrank.hpp"
#include "bm25.hpp"
#include "movielens.hpp"

namespace movie_search {

/// The tokens a movie is indexed under: its title's, then its genres' (tokenize()).
std::vector<std::string> movie_tokens(const Movie &movie);

/// A BM25 index over a catalog of movies (document number = position in the catalog).
class MovieIndex {
public:
    explicit MovieIndex(std::vector<Movie> movies, Bm25Params params = {});

    const std::vector<Movie> &movies() const noexcept { return movies_; }
    const Bm25Index &index() const noexcept { return index_; }

    /// The `k` best movies for a free-text query (tokenize()d), best first.
    std::vector<Hit> retrieve(const std::string &query, std::size_t k) const;

private:
    std::vector<Movie> movies_;
    Bm25Index index_;
};

/// Scores `ids` for one user through `model`, at most `chunk` candidates per atrank call,
/// capped at model.max_candidates() (the package's limits.max_candidates; the C API refuses
/// more in one call). Each candidate is scored independently of the others, so the result equals one
/// call with every candidate; the history is encoded once per call. Throws atrank::Error,
/// or std::invalid_argument for chunk == 0.
std::vector<float> score_in_chunks(const atrank::Model &model, const std::vector<atrank::Behavior> &history,
                                   const std::vector<std::string> &ids, std::int64_t request_time,
                                   std::size_t chunk);

struct RerankOptions {
    /// Candidates per atrank call (see score_in_chunks).
    std::size_t chunk = 1000;
    /// Weight of BM25 in the final score, 0..1. 0 (the default): final = the atrank logit.
    /// Otherwise both scores are min-max normalised over the candidates and
    /// final = (1 - blend) * atrank' + blend * bm25'.
    double blend = 0.0;
};

struct Ranked {
    std::size_t movie = 0;  // position in the catalog (Hit::doc)
    double bm25 = 0.0;
    float atrank = 0.0F;    // the model's logit
    double final_score = 0.0;
};

/// Reranks retrieved hits for one user: scores every hit's movie id with atrank and orders by
/// final score (descending; ties keep the retrieval order; a NaN score ranks last). Returns
/// exactly the hits, permuted. Throws atrank::Error from the model, std::invalid_argument for
/// bad options.
std::vector<Ranked> rerank(const atrank::Model &model, const MovieIndex &index,
                           const std::vector<atrank::Behavior> &history, const std::vector<Hit> &hits,
                           std::int64_t request_time, const RerankOptions &options = {});

}  // namespace movie_search

#endif  // MOVIE_SEARCH_SEARCH_HPP
