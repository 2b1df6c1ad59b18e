// BM25 retrieval over the real MovieLens-100k item file ($MOVIES_ITEMS): known titles come
// first, and every query's ranking equals a brute-force BM25 written out below (a second,
// index-free computation over the catalog's tokens).
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "check.hpp"
#include "search.hpp"

namespace ms = movie_search;

namespace {

/// BM25 of every movie for `query`, computed by scanning all documents (no postings).
std::vector<double> brute_force(const std::vector<ms::Movie> &movies, const std::string &query) {
    std::vector<std::vector<std::string>> docs;
    double total = 0;
    for (const ms::Movie &m : movies) {
        docs.push_back(ms::movie_tokens(m));
        total += static_cast<double>(docs.back().size());
    }
    const double n = static_cast<double>(docs.size());
    const double avgdl = total / n;
    const std::vector<std::string> q = ms::tokenize(query);
    const std::set<std::string> terms(q.begin(), q.end());
    std::vector<double> scores(docs.size(), 0.0);
    for (const std::string &t : terms) {
        double df = 0;
        for (const auto &d : docs) {
            df += std::count(d.begin(), d.end(), t) > 0 ? 1 : 0;
        }
        const double idf = std::log(1.0 + (n - df + 0.5) / (df + 0.5));
        for (std::size_t i = 0; i < docs.size(); ++i) {
            const double tf = static_cast<double>(std::count(docs[i].begin(), docs[i].end(), t));
            if (tf > 0) {
                const double len = static_cast<double>(docs[i].size());
                scores[i] += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len / avgdl));
            }
        }
    }
    return scores;
}

void check_against_brute_force(const ms::MovieIndex &index, const std::string &query, std::size_t k) {
    const std::vector<ms::Hit> hits = index.retrieve(query, k);
    const std::vector<double> expected = brute_force(index.movies(), query);
    std::vector<std::size_t> order;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        if (expected[i] > 0) {
            order.push_back(i);
        }
    }
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return expected[a] > expected[b]; });
    if (order.size() > k) {
        order.resize(k);
    }
    CHECK(hits.size() == order.size());
    for (std::size_t i = 0; i < hits.size() && i < order.size(); ++i) {
        CHECK_NEAR(hits[i].score, expected[hits[i].doc], 1e-9);
        // Same ranking; where scores tie to rounding either document may come first.
        CHECK(hits[i].doc == order[i] || std::fabs(expected[hits[i].doc] - expected[order[i]]) < 1e-9);
        CHECK_NEAR(index.index().score(hits[i].doc, ms::tokenize(query)), hits[i].score, 1e-12);
        if (i > 0) {
            CHECK(hits[i - 1].score >= hits[i].score);
        }
    }
}

}  // namespace

int main() {
    const std::string items = check::env_or_skip("MOVIES_ITEMS");
    const ms::MovieIndex index(ms::load_movies(items));
    // ML-100k has 1682 movies, with ids 1..1682 in file order.
    CHECK(index.movies().size() == 1682);
    if (index.movies().size() != 1682) {
        return check::finish("test_retrieval");
    }
    CHECK(index.movies()[0].id == "1" && index.movies()[1681].id == "1682");

    const std::vector<ms::Hit> toy = index.retrieve("toy story", 10);
    CHECK(!toy.empty() && index.movies()[toy.front().doc].id == "1");
    CHECK(!toy.empty() && index.movies()[toy.front().doc].title == "Toy Story");

    const std::vector<ms::Hit> star = index.retrieve("Star Wars", 100);
    CHECK(!star.empty() && index.movies()[star.front().doc].id == "50");
    // Every hit holds "star" or "wars" in its title or genres (e.g. the "War" genre does not
    // match "wars"), and every movie that does is a hit (fewer than 100 match).
    std::size_t matching = 0;
    for (const ms::Movie &m : index.movies()) {
        const std::vector<std::string> t = ms::movie_tokens(m);
        matching += (std::count(t.begin(), t.end(), "star") + std::count(t.begin(), t.end(), "wars")) > 0 ? 1U : 0U;
    }
    CHECK(matching > 1 && matching < 100);
    CHECK(star.size() == matching);

    // Titles and genres are both indexed.
    CHECK(ms::movie_tokens(index.movies()[0]) ==
          (std::vector<std::string>{"toy", "story", "animation", "children", "s", "comedy"}));
    // A genre query finds every movie of that genre, also those whose title lacks the word.
    const std::vector<ms::Hit> noir = index.retrieve("film-noir", 500);
    std::set<std::size_t> hit_docs;
    for (const ms::Hit &h : noir) {
        hit_docs.insert(h.doc);
    }
    std::size_t noir_movies = 0;
    for (std::size_t i = 0; i < index.movies().size(); ++i) {
        const auto &g = index.movies()[i].genres;
        if (std::find(g.begin(), g.end(), "Film-Noir") != g.end()) {
            ++noir_movies;
            CHECK(hit_docs.count(i) == 1);
        }
    }
    CHECK(noir_movies > 10);

    for (const char *q : {"toy story", "star wars", "the", "love", "sci-fi war", "Café", "children's", "1"}) {
        check_against_brute_force(index, q, 100);
    }
    check_against_brute_force(index, "the", 5000);  // k above the catalog size

    CHECK(index.retrieve("", 10).empty());
    CHECK(index.retrieve("?!", 10).empty());
    CHECK(index.retrieve("qwzxv", 10).empty());
    CHECK(index.retrieve("star wars", 0).empty());
    return check::finish("test_retrieval");
}
