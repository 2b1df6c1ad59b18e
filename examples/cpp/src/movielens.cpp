#include "movielens.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string_view>
#include <unordered_set>

namespace movie_search {

namespace {

std::vector<std::string_view> split_tabs(std::string_view line) {
    std::vector<std::string_view> fields;
    std::size_t start = 0;
    while (true) {
        const std::size_t tab = line.find('\t', start);
        if (tab == std::string_view::npos) {
            fields.push_back(line.substr(start));
            return fields;
        }
        fields.push_back(line.substr(start, tab - start));
        start = tab + 1;
    }
}

std::vector<std::string> split_spaces(std::string_view text) {
    std::vector<std::string> words;
    std::size_t i = 0;
    while (i < text.size()) {
        while (i < text.size() && text[i] == ' ') {
            ++i;
        }
        std::size_t j = i;
        while (j < text.size() && text[j] != ' ') {
            ++j;
        }
        if (j > i) {
            words.emplace_back(text.substr(i, j - i));
        }
        i = j;
    }
    return words;
}

/// A text file read line by line, with the position for error messages.
class LineReader {
public:
    explicit LineReader(const std::string &path) : path_(path), in_(path) {
        if (!in_) {
            throw std::runtime_error(path + ": cannot open file");
        }
    }

    /// The next line without its "\n" / "\r\n"; false at the end of the file.
    bool next(std::string &line) {
        if (!std::getline(in_, line)) {
            if (in_.bad()) {
                fail("read error");
            }
            return false;
        }
        ++number_;
        if (!line.empty() && line.back() == '\r') {
            line.pop_back();
        }
        return true;
    }

    [[noreturn]] void fail(const std::string &what) const {
        throw std::runtime_error(path_ + ":" + std::to_string(number_) + ": " + what);
    }

private:
    std::string path_;
    std::ifstream in_;
    std::size_t number_ = 0;
};

/// Column index of each wanted name in a `name:type` header line.
std::vector<std::size_t> header_columns(LineReader &reader, const std::vector<std::string> &wanted) {
    std::string header;
    if (!reader.next(header)) {
        reader.fail("empty file (expected a header line)");
    }
    std::vector<std::string> names;
    for (std::string_view field : split_tabs(header)) {
        names.emplace_back(field.substr(0, field.find(':')));
    }
    std::vector<std::size_t> columns;
    for (const std::string &w : wanted) {
        auto it = std::find(names.begin(), names.end(), w);
        if (it == names.end()) {
            reader.fail("header lacks the column '" + w + "'");
        }
        columns.push_back(static_cast<std::size_t>(it - names.begin()));
    }
    return columns;
}

std::string_view field_at(LineReader &reader, const std::vector<std::string_view> &fields, std::size_t column,
                          const char *name) {
    if (column >= fields.size()) {
        reader.fail(std::string("line has no '") + name + "' column (" + std::to_string(fields.size()) + " fields)");
    }
    return fields[column];
}

/// A finite number such as "3", "4.5" or "881250949"; throws via `reader` otherwise.
double parse_number(LineReader &reader, std::string_view text, const char *name) {
    double value = 0.0;
    const char *end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (text.empty() || ec != std::errc() || ptr != end || !std::isfinite(value)) {
        reader.fail(std::string("bad ") + name + " '" + std::string(text) + "'");
    }
    return value;
}

}  // namespace

std::vector<Movie> load_movies(const std::string &path) {
    LineReader reader(path);
    const std::vector<std::size_t> col = header_columns(reader, {"item_id", "movie_title", "release_year", "class"});
    std::vector<Movie> movies;
    std::unordered_set<std::string> ids;
    std::string line;
    while (reader.next(line)) {
        if (line.empty()) {
            continue;
        }
        const std::vector<std::string_view> f = split_tabs(line);
        Movie m;
        m.id = std::string(field_at(reader, f, col[0], "item_id"));
        if (m.id.empty()) {
            reader.fail("empty item_id");
        }
        if (!ids.insert(m.id).second) {
            reader.fail("item_id '" + m.id + "' appears twice");
        }
        m.title = std::string(field_at(reader, f, col[1], "movie_title"));
        m.year = std::string(field_at(reader, f, col[2], "release_year"));
        m.genres = split_spaces(field_at(reader, f, col[3], "class"));
        movies.push_back(std::move(m));
    }
    return movies;
}

std::vector<Rating> load_user_ratings(const std::string &path, const std::string &user) {
    LineReader reader(path);
    const std::vector<std::size_t> col = header_columns(reader, {"user_id", "item_id", "rating", "timestamp"});
    std::vector<Rating> ratings;
    std::string line;
    while (reader.next(line)) {
        if (line.empty()) {
            continue;
        }
        const std::vector<std::string_view> f = split_tabs(line);
        const std::string_view u = field_at(reader, f, col[0], "user_id");
        const std::string_view item = field_at(reader, f, col[1], "item_id");
        const double rating = parse_number(reader, field_at(reader, f, col[2], "rating"), "rating");
        const double ts = parse_number(reader, field_at(reader, f, col[3], "timestamp"), "timestamp");
        // Whole seconds within int64 (2^63 itself is not representable, hence the strict bound).
        if (ts != std::floor(ts) || ts < -9.2e18 || ts > 9.2e18) {
            reader.fail("timestamp is not a whole number of seconds in range");
        }
        if (item.empty()) {
            reader.fail("empty item_id");
        }
        if (u == user) {
            ratings.push_back(Rating{std::string(item), rating, static_cast<std::int64_t>(ts)});
        }
    }
    return ratings;
}

std::vector<atrank::Behavior> history_before(const std::vector<Rating> &ratings, std::optional<std::int64_t> before) {
    std::vector<Rating> kept;
    for (const Rating &r : ratings) {
        if (!before || r.timestamp < *before) {
            kept.push_back(r);
        }
    }
    std::stable_sort(kept.begin(), kept.end(),
                     [](const Rating &a, const Rating &b) { return a.timestamp < b.timestamp; });
    std::vector<atrank::Behavior> history;
    history.reserve(kept.size());
    for (const Rating &r : kept) {
        atrank::Behavior b;
        b.item = r.item;
        b.category = std::nullopt;
        b.action = r.rating >= 4.0 ? "like" : "other";
        b.timestamp = r.timestamp;
        history.push_back(std::move(b));
    }
    return history;
}

}  // namespace movie_search
