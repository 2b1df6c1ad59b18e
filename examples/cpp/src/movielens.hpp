// MovieLens-100k in RecBole's atomic-file layout (the files in the PyPI wheel recbole==1.2.1,
// recbole/dataset_example/ml-100k/): tab-separated, a header line of `name:type` columns.
//
//   ml-100k.item   item_id:token  movie_title:token_seq  release_year:token  class:token_seq
//   ml-100k.inter  user_id:token  item_id:token  rating:float  timestamp:float
//
// Columns are found by name, so their order does not matter and extra columns are ignored.
// Malformed input raises std::runtime_error naming the file and line.
#ifndef MOVIE_SEARCH_MOVIELENS_HPP
#define MOVIE_SEARCH_MOVIELENS_HPP

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "atrank.hpp"

namespace movie_search {

struct Movie {
    std::string id;                   // raw ML-100k item id, e.g. "50" (the model's item id)
    std::string title;                // e.g. "Star Wars"
    std::string year;                 // release year as written (may be empty or "unknown")
    std::vector<std::string> genres;  // e.g. {"Action", "Adventure", "Sci-Fi"}
};

/// Reads the item file. Throws std::runtime_error on an unreadable file, a missing column,
/// a short line or a repeated item id.
std::vector<Movie> load_movies(const std::string &path);

struct Rating {
    std::string item;
    double rating = 0.0;
    std::int64_t timestamp = 0;
};

/// Reads the ratings of `user` from the interaction file, in file order. Every line is
/// checked, not only the user's. Throws std::runtime_error on malformed input.
std::vector<Rating> load_user_ratings(const std::string &path, const std::string &user);

/// The atrank history for ratings made strictly before `before` (all when std::nullopt),
/// sorted by timestamp (stable: file order among equal times). Mapping (as the exporter
/// trains it): item = movie id, category = std::nullopt (the package's catalog supplies the
/// genre), action = "like" when rating >= 4 else "other", timestamp = rating time.
std::vector<atrank::Behavior> history_before(const std::vector<Rating> &ratings, std::optional<std::int64_t> before);

}  // namespace movie_search

#endif  // MOVIE_SEARCH_MOVIELENS_HPP
