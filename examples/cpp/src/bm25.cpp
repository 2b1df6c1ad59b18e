#include "bm25.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <unordered_set>

namespace movie_search {

namespace {

bool is_token_byte(unsigned char c) noexcept {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

char ascii_lower(unsigned char c) noexcept {
    return static_cast<char>((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
}

}  // namespace

std::vector<std::string> tokenize(std::string_view text) {
    std::vector<std::string> tokens;
    std::string current;
    for (char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        if (is_token_byte(c)) {
            current.push_back(ascii_lower(c));
        } else if (!current.empty()) {
            tokens.push_back(std::move(current));
            current.clear();
        }
    }
    if (!current.empty()) {
        tokens.push_back(std::move(current));
    }
    return tokens;
}

Bm25Index::Bm25Index(Bm25Params params) : params_(params) {
    if (!(params_.k1 >= 0.0) || !(params_.b >= 0.0 && params_.b <= 1.0)) {
        throw std::invalid_argument("BM25 needs k1 >= 0 and 0 <= b <= 1");
    }
}

std::size_t Bm25Index::add(const std::vector<std::string> &tokens) {
    if (doc_len_.size() >= std::numeric_limits<std::uint32_t>::max() ||
        tokens.size() >= std::numeric_limits<std::uint32_t>::max()) {
        throw std::length_error("BM25 index: too many documents or tokens");
    }
    const auto doc = static_cast<std::uint32_t>(doc_len_.size());
    std::unordered_map<std::string, std::uint32_t> tf;
    for (const std::string &t : tokens) {
        ++tf[t];
    }
    for (auto &[term, count] : tf) {
        postings_[term].push_back(Posting{doc, count});  // docs arrive in increasing order
    }
    doc_len_.push_back(static_cast<std::uint32_t>(tokens.size()));
    total_len_ += tokens.size();
    return doc;
}

double Bm25Index::average_length() const noexcept {
    return doc_len_.empty() ? 0.0 : static_cast<double>(total_len_) / static_cast<double>(doc_len_.size());
}

std::size_t Bm25Index::document_frequency(const std::string &term) const {
    auto it = postings_.find(term);
    return it == postings_.end() ? 0 : it->second.size();
}

double Bm25Index::idf(const std::string &term) const {
    const auto n = static_cast<double>(doc_len_.size());
    const auto df = static_cast<double>(document_frequency(term));
    return std::log(1.0 + (n - df + 0.5) / (df + 0.5));
}

double Bm25Index::term_weight(double idf, std::uint32_t tf, std::uint32_t doc_len) const noexcept {
    const double avgdl = average_length();
    // avgdl is 0 only when every document is empty, and then no term has a posting.
    const double relative_len = avgdl > 0.0 ? static_cast<double>(doc_len) / avgdl : 1.0;
    const double f = static_cast<double>(tf);
    return idf * f * (params_.k1 + 1.0) / (f + params_.k1 * (1.0 - params_.b + params_.b * relative_len));
}

std::vector<std::string> Bm25Index::distinct(const std::vector<std::string> &terms) {
    std::vector<std::string> out;
    std::unordered_set<std::string> seen;
    for (const std::string &t : terms) {
        if (seen.insert(t).second) {
            out.push_back(t);
        }
    }
    return out;
}

double Bm25Index::score(std::size_t doc, const std::vector<std::string> &query_terms) const {
    if (doc >= doc_len_.size()) {
        throw std::out_of_range("BM25 index: no document " + std::to_string(doc));
    }
    double total = 0.0;
    for (const std::string &term : distinct(query_terms)) {
        auto it = postings_.find(term);
        if (it == postings_.end()) {
            continue;
        }
        const std::vector<Posting> &list = it->second;
        auto p = std::lower_bound(list.begin(), list.end(), doc,
                                  [](const Posting &posting, std::size_t d) { return posting.doc < d; });
        if (p != list.end() && p->doc == doc) {
            total += term_weight(idf(term), p->tf, doc_len_[doc]);
        }
    }
    return total;
}

std::vector<Hit> Bm25Index::search(const std::vector<std::string> &query_terms, std::size_t k) const {
    std::vector<double> acc(doc_len_.size(), 0.0);
    std::vector<std::uint32_t> touched;
    for (const std::string &term : distinct(query_terms)) {
        auto it = postings_.find(term);
        if (it == postings_.end()) {
            continue;
        }
        const double term_idf = idf(term);
        for (const Posting &p : it->second) {
            if (acc[p.doc] == 0.0) {
                touched.push_back(p.doc);
            }
            acc[p.doc] += term_weight(term_idf, p.tf, doc_len_[p.doc]);
        }
    }
    // Every weight is > 0 (idf > 0, tf >= 1), so a touched document never goes back to 0.
    std::vector<Hit> hits;
    hits.reserve(touched.size());
    for (std::uint32_t d : touched) {
        hits.push_back(Hit{d, acc[d]});
    }
    auto better = [](const Hit &a, const Hit &b) {
        return a.score != b.score ? a.score > b.score : a.doc < b.doc;
    };
    const std::size_t keep = std::min(k, hits.size());
    std::partial_sort(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(keep), hits.end(), better);
    hits.resize(keep);
    return hits;
}

}  // namespace movie_search
