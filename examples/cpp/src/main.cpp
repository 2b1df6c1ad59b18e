// movie_search: search MovieLens titles and genres with BM25, rerank the candidates for one
// user with atrank, print the top results. Run with --help for the options.
#include <algorithm>
#include <charconv>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "atrank.hpp"
#include "movielens.hpp"
#include "search.hpp"

namespace {

constexpr const char *kUsage = R"(usage: movie_search --items ml-100k.item --interactions ml-100k.inter
                    --package DIR --query TEXT --user ID [options]

Retrieves the --candidates best movies for --query by BM25 over titles and genres, reranks
them for --user with the atrank model package in --package, and prints the --top best.

  --items PATH         RecBole ml-100k.item (item_id, movie_title, release_year, class)
  --interactions PATH  RecBole ml-100k.inter (user_id, item_id, rating, timestamp)
  --package DIR        atrank model package trained on ML-100k (default: $ATRANK_PACKAGE)
  --query TEXT         free-text query, e.g. "star wars"
  --user ID            ML-100k user id; history = the user's ratings before --time
  --time T             request time, unix seconds (default: 1 s after the user's last rating)
  --backend NAME       tract (default) or ort (ONNX Runtime: set $ATRANK_ORT_LIB)
  --candidates K       BM25 candidates to rerank (default 100)
  --top N              results to print (default 10)
  --chunk C            candidates per atrank call (default 1000; capped at the model's
                       max_candidates, the most one call accepts)
  --blend W            weight of BM25 in the final score, 0..1 (default 0: atrank only)
  --help               this text

Exit status: 0 on success (also when nothing matches), 1 on a runtime error, 2 on bad usage.
)";

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Options {
    std::string items;
    std::string interactions;
    std::string package;
    std::string query;
    std::string user;
    std::optional<std::int64_t> time;
    atrank_backend backend = ATRANK_BACKEND_TRACT;
    std::string backend_name = "tract";
    std::size_t candidates = 100;
    std::size_t top = 10;
    std::size_t chunk = 1000;
    double blend = 0.0;
};

template <typename T>
T parse_integer(const std::string &flag, const std::string &text, T min) {
    T value{};
    const char *end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (text.empty() || ec != std::errc() || ptr != end || value < min) {
        const std::string range = min == std::numeric_limits<T>::min() ? "" : " >= " + std::to_string(min);
        throw UsageError(flag + " needs an integer" + range + ", not '" + text + "'");
    }
    return value;
}

double parse_weight(const std::string &flag, const std::string &text) {
    double value = 0.0;
    const char *end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (text.empty() || ec != std::errc() || ptr != end || !(value >= 0.0 && value <= 1.0)) {
        throw UsageError(flag + " needs a number in [0, 1], not '" + text + "'");
    }
    return value;
}

Options parse_args(int argc, char **argv) {
    Options o;
    if (const char *env = std::getenv("ATRANK_PACKAGE")) {
        o.package = env;
    }
    for (int i = 1; i < argc; ++i) {
        std::string flag = argv[i];
        std::optional<std::string> value;
        if (flag == "--help" || flag == "-h") {
            std::cout << kUsage;
            std::exit(0);
        }
        if (flag.rfind("--", 0) != 0) {
            throw UsageError("unexpected argument '" + flag + "'");
        }
        if (const std::size_t eq = flag.find('='); eq != std::string::npos) {
            value = flag.substr(eq + 1);
            flag.resize(eq);
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            throw UsageError(flag + " needs a value");
        }
        const std::string &v = *value;
        if (flag == "--items") {
            o.items = v;
        } else if (flag == "--interactions") {
            o.interactions = v;
        } else if (flag == "--package") {
            o.package = v;
        } else if (flag == "--query") {
            o.query = v;
        } else if (flag == "--user") {
            o.user = v;
        } else if (flag == "--time") {
            o.time = parse_integer<std::int64_t>(flag, v, INT64_MIN);
        } else if (flag == "--backend") {
            if (v == "tract") {
                o.backend = ATRANK_BACKEND_TRACT;
            } else if (v == "ort") {
                o.backend = ATRANK_BACKEND_ORT;
            } else {
                throw UsageError("--backend must be tract or ort, not '" + v + "'");
            }
            o.backend_name = v;
        } else if (flag == "--candidates") {
            o.candidates = parse_integer<std::size_t>(flag, v, 1);
        } else if (flag == "--top") {
            o.top = parse_integer<std::size_t>(flag, v, 1);
        } else if (flag == "--chunk") {
            o.chunk = parse_integer<std::size_t>(flag, v, 1);
        } else if (flag == "--blend") {
            o.blend = parse_weight(flag, v);
        } else {
            throw UsageError("unknown option " + flag);
        }
    }
    const std::pair<const char *, const std::string *> required[] = {
        {"--items", &o.items}, {"--interactions", &o.interactions}, {"--package", &o.package},
        {"--query", &o.query}, {"--user", &o.user}};
    for (const auto &[name, field] : required) {
        if (field->empty()) {
            throw UsageError(std::string(name) + " is required");
        }
    }
    return o;
}

std::string join(const std::vector<std::string> &parts, std::string_view sep) {
    std::string out;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        out += (i == 0 ? "" : std::string(sep)) + parts[i];
    }
    return out;
}

int run(const Options &o) {
    movie_search::MovieIndex index(movie_search::load_movies(o.items));
    const std::vector<movie_search::Hit> hits = index.retrieve(o.query, o.candidates);

    const std::vector<movie_search::Rating> ratings = movie_search::load_user_ratings(o.interactions, o.user);
    std::int64_t request_time = 0;
    if (o.time) {
        request_time = *o.time;
    } else if (!ratings.empty()) {
        std::int64_t last = ratings.front().timestamp;
        for (const movie_search::Rating &r : ratings) {
            last = std::max(last, r.timestamp);
        }
        request_time = last == INT64_MAX ? last : last + 1;
    } else {
        throw std::runtime_error("user '" + o.user + "' has no ratings in " + o.interactions +
                                 ": pass --time to rank for a new user");
    }
    const std::vector<atrank::Behavior> history = movie_search::history_before(ratings, request_time);

    std::printf("query \"%s\": %zu candidates by BM25 over %zu movies (titles + genres)\n", o.query.c_str(),
                hits.size(), index.movies().size());
    std::printf("user %s: %zu ratings, %zu before request time %lld; atrank %s on %s\n", o.user.c_str(),
                ratings.size(), history.size(), static_cast<long long>(request_time), atrank::version().c_str(),
                o.backend_name.c_str());
    if (hits.empty()) {
        std::printf("no movie matches the query\n");
        return 0;
    }

    const atrank::Model model = atrank::Model::load(o.package, o.backend);
    movie_search::RerankOptions ro;
    ro.chunk = o.chunk;
    ro.blend = o.blend;
    const std::vector<movie_search::Ranked> ranked =
        movie_search::rerank(model, index, history, hits, request_time, ro);

    const bool blended = o.blend > 0.0;
    std::printf("%4s %5s %9s %8s%s  %s\n", "rank", "item", "atrank", "bm25", blended ? "    final" : "",
                "title (year) [genres]");
    for (std::size_t i = 0; i < ranked.size() && i < o.top; ++i) {
        const movie_search::Ranked &r = ranked[i];
        const movie_search::Movie &m = index.movies()[r.movie];
        std::string final_col;
        if (blended) {
            char buf[32];
            std::snprintf(buf, sizeof buf, " %8.4f", r.final_score);
            final_col = buf;
        }
        std::printf("%4zu %5s %9.4f %8.4f%s  %s (%s) [%s]\n", i + 1, m.id.c_str(), static_cast<double>(r.atrank),
                    r.bm25, final_col.c_str(), m.title.c_str(), m.year.c_str(), join(m.genres, "|").c_str());
    }
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    try {
        return run(parse_args(argc, argv));
    } catch (const UsageError &e) {
        std::cerr << "movie_search: " << e.what() << "\n(run with --help for usage)\n";
        return 2;
    } catch (const atrank::Error &e) {
        std::cerr << "movie_search: atrank error " << e.code() << ": " << e.what() << "\n";
        return 1;
    } catch (const std::exception &e) {
        std::cerr << "movie_search: " << e.what() << "\n";
        return 1;
    }
}
