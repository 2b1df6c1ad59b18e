// BM25 over an in-memory inverted index (standard library only).
//
// Scoring (Robertson/Sparck Jones BM25 with Lucene's non-negative idf):
//
//   score(d, q) = sum over distinct terms t of q that occur in d of
//                 idf(t) * tf(t,d) * (k1 + 1) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl))
//   idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
//
// N = number of documents, df(t) = documents holding t, |d| = tokens in d, avgdl = mean |d|.
// A term repeated in the query counts once.
#ifndef MOVIE_SEARCH_BM25_HPP
#define MOVIE_SEARCH_BM25_HPP

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace movie_search {

/// Splits `text` into lowercase tokens: maximal runs of ASCII letters and digits and of
/// non-ASCII bytes (so UTF-8 letters such as "é" stay inside their word); everything else
/// (spaces, punctuation, apostrophes, hyphens) separates tokens. Only ASCII is lowercased.
std::vector<std::string> tokenize(std::string_view text);

struct Bm25Params {
    double k1 = 1.2;
    double b = 0.75;
};

/// One retrieved document: its number (the order it was added in) and its BM25 score.
struct Hit {
    std::size_t doc = 0;
    double score = 0.0;
};

/// An inverted index: term -> postings (document, term frequency), documents numbered 0..N-1
/// in the order they are added. Not thread-safe while adding; const members may be called
/// concurrently.
class Bm25Index {
public:
    explicit Bm25Index(Bm25Params params = {});

    /// Adds one document given as tokens; returns its number.
    std::size_t add(const std::vector<std::string> &tokens);

    std::size_t size() const noexcept { return doc_len_.size(); }
    /// Mean document length in tokens (0 for an empty index).
    double average_length() const noexcept;
    /// Number of documents holding `term`.
    std::size_t document_frequency(const std::string &term) const;
    /// idf(term) as above (also for a term no document holds).
    double idf(const std::string &term) const;

    /// BM25 of document `doc` for the query terms (computed from the postings of each term;
    /// the same value search() reports). Throws std::out_of_range for an unknown doc.
    double score(std::size_t doc, const std::vector<std::string> &query_terms) const;

    /// The `k` best documents for the query terms, best first; only documents holding at least
    /// one query term. Equal scores keep document order (lower number first).
    std::vector<Hit> search(const std::vector<std::string> &query_terms, std::size_t k) const;

private:
    struct Posting {
        std::uint32_t doc;
        std::uint32_t tf;
    };

    double term_weight(double idf, std::uint32_t tf, std::uint32_t doc_len) const noexcept;
    static std::vector<std::string> distinct(const std::vector<std::string> &terms);

    Bm25Params params_;
    std::unordered_map<std::string, std::vector<Posting>> postings_;  // sorted by doc
    std::vector<std::uint32_t> doc_len_;
    std::uint64_t total_len_ = 0;
};

}  // namespace movie_search

#endif  // MOVIE_SEARCH_BM25_HPP
