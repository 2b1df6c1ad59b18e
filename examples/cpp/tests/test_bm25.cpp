// Tokenizer and BM25 on a toy corpus, against values computed by hand (below).
#include <stdexcept>
#include <string>
#include <vector>

#include "bm25.hpp"
#include "check.hpp"

using movie_search::Bm25Index;
using movie_search::tokenize;
using Tokens = std::vector<std::string>;

namespace {

void test_tokenize() {
    CHECK(tokenize("Star Wars") == (Tokens{"star", "wars"}));
    CHECK(tokenize("  Children's Sci-Fi, Film-Noir!  ") == (Tokens{"children", "s", "sci", "fi", "film", "noir"}));
    CHECK(tokenize("Toy Story 2 (1999)") == (Tokens{"toy", "story", "2", "1999"}));
    // UTF-8 letters stay inside their word; only ASCII is lowercased.
    CHECK(tokenize("Metisse (Café au Lait)") == (Tokens{"metisse", "café", "au", "lait"}));
    CHECK(tokenize("").empty());
    CHECK(tokenize(" -- ").empty());
}

// Toy corpus (k1 = 1.2, b = 0.75):
//   d0 "The Quick brown fox" -> the quick brown fox   |d0| = 4
//   d1 "the lazy-dog"        -> the lazy dog          |d1| = 3
//   d2 "Quick! quick dog"    -> quick quick dog       |d2| = 3
// N = 3, avgdl = 10/3.
//
// idf = ln(1 + (N - df + 0.5) / (df + 0.5)):
//   quick, dog, the (df 2): ln(1 + 1.5/2.5) = ln 1.6      = 0.470003629
//   fox (df 1):             ln(1 + 2.5/1.5) = ln(8/3)     = 0.980829253
//   zebra (df 0):           ln(1 + 3.5/0.5) = ln 8        = 2.079441542
// Length norm K(d) = k1 * (1 - b + b * |d| / avgdl):
//   |d| = 4: 1.2 * (0.25 + 0.75 * 4 * 3/10) = 1.2 * 1.15  = 1.38
//   |d| = 3: 1.2 * (0.25 + 0.75 * 3 * 3/10) = 1.2 * 0.925 = 1.11
// Term weight = idf * tf * 2.2 / (tf + K(d)).
// Query "quick dog":
//   d0: quick tf 1: 0.470003629 * 2.2 / 2.38                = 0.434457136
//   d1: dog tf 1:   0.470003629 * 2.2 / 2.11                = 0.490051177
//   d2: quick tf 2: 0.470003629 * 4.4 / 3.11 = 0.664956903
//       dog tf 1:   0.490051177              -> total      = 1.155008081
// Query "fox": d0: 0.980829253 * 2.2 / 2.38                 = 0.906648889; d1, d2: 0.
void test_toy_corpus() {
    Bm25Index index;
    CHECK(index.add(tokenize("The Quick brown fox")) == 0);
    CHECK(index.add(tokenize("the lazy-dog")) == 1);
    CHECK(index.add(tokenize("Quick! quick dog")) == 2);
    CHECK(index.size() == 3);
    CHECK_NEAR(index.average_length(), 10.0 / 3.0, 1e-12);
    CHECK(index.document_frequency("quick") == 2);
    CHECK(index.document_frequency("zebra") == 0);

    const double tol = 1e-8;
    CHECK_NEAR(index.idf("quick"), 0.470003629, tol);
    CHECK_NEAR(index.idf("fox"), 0.980829253, tol);
    CHECK_NEAR(index.idf("zebra"), 2.079441542, tol);

    const Tokens q = tokenize("quick dog");
    CHECK_NEAR(index.score(0, q), 0.434457136, tol);
    CHECK_NEAR(index.score(1, q), 0.490051177, tol);
    CHECK_NEAR(index.score(2, q), 1.155008081, tol);
    // A repeated query term counts once; an unknown one adds nothing.
    CHECK_NEAR(index.score(2, tokenize("dog quick DOG zebra")), 1.155008081, tol);
    CHECK_NEAR(index.score(0, tokenize("fox")), 0.906648889, tol);
    CHECK(index.score(1, tokenize("fox")) == 0.0);
    CHECK_THROWS(index.score(3, q), std::out_of_range);

    // search: best first, scores as above, only documents that hold a query term.
    const std::vector<movie_search::Hit> hits = index.search(q, 10);
    CHECK(hits.size() == 3);
    if (hits.size() == 3) {
        CHECK(hits[0].doc == 2 && hits[1].doc == 1 && hits[2].doc == 0);
        CHECK_NEAR(hits[0].score, 1.155008081, tol);
        CHECK_NEAR(hits[1].score, 0.490051177, tol);
        CHECK_NEAR(hits[2].score, 0.434457136, tol);
    }
    const std::vector<movie_search::Hit> top1 = index.search(q, 1);
    CHECK(top1.size() == 1 && top1[0].doc == 2);
    const std::vector<movie_search::Hit> fox = index.search(tokenize("fox"), 10);
    CHECK(fox.size() == 1 && fox[0].doc == 0);
    CHECK(index.search(tokenize("zebra"), 10).empty());
    CHECK(index.search({}, 10).empty());
    CHECK(index.search(q, 0).empty());
}

void test_ties_and_edges() {
    // Two identical documents tie: the lower number comes first.
    Bm25Index index;
    index.add(tokenize("alien"));
    index.add(tokenize("alien"));
    index.add(tokenize("aliens"));
    const std::vector<movie_search::Hit> hits = index.search(tokenize("alien"), 10);
    CHECK(hits.size() == 2 && hits[0].doc == 0 && hits[1].doc == 1);

    // Empty documents and an empty index do not divide by zero.
    Bm25Index empty;
    CHECK(empty.search(tokenize("anything"), 5).empty());
    CHECK(empty.average_length() == 0.0);
    empty.add({});
    CHECK(empty.search(tokenize("anything"), 5).empty());
    CHECK(empty.score(0, tokenize("anything")) == 0.0);

    movie_search::Bm25Params negative_k1;
    negative_k1.k1 = -1.0;
    CHECK_THROWS(Bm25Index(negative_k1), std::invalid_argument);
    movie_search::Bm25Params b_above_1;
    b_above_1.b = 1.5;
    CHECK_THROWS(Bm25Index(b_above_1), std::invalid_argument);
}

}  // namespace

int main() {
    test_tokenize();
    test_toy_corpus();
    test_ties_and_edges();
    return check::finish("test_bm25");
}
