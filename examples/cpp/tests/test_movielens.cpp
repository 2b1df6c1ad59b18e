// MovieLens readers and the history mapping, on small files written here in RecBole's format.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.hpp"
#include "movielens.hpp"

namespace ms = movie_search;

namespace {

std::string tmp_dir() {
    const char *d = std::getenv("MOVIE_SEARCH_TMP");
    return (d != nullptr && *d != '\0') ? d : ".";
}

std::string write_file(const std::string &name, const std::string &text) {
    const std::string path = tmp_dir() + "/test_movielens_" + name;
    std::ofstream out(path, std::ios::binary);
    out << text;
    if (!out) {
        check::fail(__FILE__, __LINE__, "cannot write " + path);
    }
    return path;
}

/// The message of the std::runtime_error `f` throws ("" and a failure when it does not).
template <typename F>
std::string error_of(F f) {
    try {
        f();
    } catch (const std::runtime_error &e) {
        return e.what();
    }
    check::fail(__FILE__, __LINE__, "no std::runtime_error thrown");
    return "";
}

bool contains(const std::string &s, const std::string &part) { return s.find(part) != std::string::npos; }

void test_movies() {
    // Columns in another order plus an extra one; CRLF line ends; a blank line; no genre.
    const std::string path = write_file("ok.item",
                                        "class:token_seq\titem_id:token\textra:float\tmovie_title:token_seq\t"
                                        "release_year:token\r\n"
                                        "Animation Children's Comedy\t1\t0.5\tToy Story\t1995\r\n"
                                        "\r\n"
                                        "\t267\t0\tunkonwn\tunkonwn\r\n"
                                        "Drama  Musical\t543\t1\tMisérables, Les\t1995\r\n");
    const std::vector<ms::Movie> movies = ms::load_movies(path);
    CHECK(movies.size() == 3);
    if (movies.size() == 3) {
        CHECK(movies[0].id == "1" && movies[0].title == "Toy Story" && movies[0].year == "1995");
        CHECK(movies[0].genres == (std::vector<std::string>{"Animation", "Children's", "Comedy"}));
        CHECK(movies[1].id == "267" && movies[1].genres.empty());
        CHECK(movies[2].title == "Misérables, Les");
        CHECK(movies[2].genres == (std::vector<std::string>{"Drama", "Musical"}));
    }

    CHECK(contains(error_of([] { ms::load_movies(tmp_dir() + "/does-not-exist.item"); }), "cannot open"));
    const std::string no_class = write_file("no-class.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\n");
    CHECK(contains(error_of([&] { ms::load_movies(no_class); }), ":1: header lacks the column 'class'"));
    const std::string empty = write_file("empty.item", "");
    CHECK(contains(error_of([&] { ms::load_movies(empty); }), "empty file"));
    const std::string short_line = write_file(
        "short.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n1\tToy Story\n");
    CHECK(contains(error_of([&] { ms::load_movies(short_line); }), ":2: line has no 'release_year' column"));
    const std::string twice = write_file(
        "twice.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n1\tA\t1\tDrama\n"
                      "1\tB\t2\tDrama\n");
    CHECK(contains(error_of([&] { ms::load_movies(twice); }), ":3: item_id '1' appears twice"));
}

const char *kInterHeader = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n";

void test_ratings_and_history() {
    const std::string path = write_file("ok.inter", std::string(kInterHeader) +
                                                        "7\t50\t5\t300\n"
                                                        "8\t1\t1\t100\n"
                                                        "7\t1\t3\t100\n"
                                                        "7\t2\t4.0\t200\n"
                                                        "7\t3\t3.5\t100\n"
                                                        "77\t9\t5\t50\n");
    const std::vector<ms::Rating> r = ms::load_user_ratings(path, "7");
    CHECK(r.size() == 4);  // not user "77" nor "8"
    if (r.size() == 4) {
        CHECK(r[0].item == "50" && r[0].rating == 5.0 && r[0].timestamp == 300);
        CHECK(r[3].item == "3" && r[3].rating == 3.5 && r[3].timestamp == 100);
    }
    CHECK(ms::load_user_ratings(path, "nobody").empty());

    // All ratings, by time; equal times keep file order (item 1 before item 3).
    const std::vector<atrank::Behavior> all = ms::history_before(r, std::nullopt);
    CHECK(all.size() == 4);
    if (all.size() == 4) {
        CHECK(all[0].item == "1" && all[1].item == "3" && all[2].item == "2" && all[3].item == "50");
        CHECK(all[0].timestamp == 100 && all[3].timestamp == 300);
        // rating >= 4 is "like", below is "other"; the catalog supplies the category.
        CHECK(all[0].action == std::optional<std::string>("other"));  // 3
        CHECK(all[1].action == std::optional<std::string>("other"));  // 3.5
        CHECK(all[2].action == std::optional<std::string>("like"));   // 4.0
        CHECK(all[3].action == std::optional<std::string>("like"));   // 5
        CHECK(!all[0].category.has_value());
    }
    // Strictly before the request time.
    const std::vector<atrank::Behavior> before200 = ms::history_before(r, 200);
    CHECK(before200.size() == 2);
    CHECK(ms::history_before(r, 100).empty());
    CHECK(ms::history_before(r, 301).size() == 4);

    const std::string bad_rating = write_file("bad-rating.inter", std::string(kInterHeader) + "7\t1\tfive\t100\n");
    CHECK(contains(error_of([&] { ms::load_user_ratings(bad_rating, "7"); }), ":2: bad rating 'five'"));
    // Other users' lines are checked too.
    const std::string bad_time = write_file("bad-time.inter", std::string(kInterHeader) + "8\t1\t3\t10.5\n");
    CHECK(contains(error_of([&] { ms::load_user_ratings(bad_time, "7"); }), ":2: timestamp is not a whole number"));
    const std::string huge_time = write_file("huge-time.inter", std::string(kInterHeader) + "8\t1\t3\t1e300\n");
    CHECK(contains(error_of([&] { ms::load_user_ratings(huge_time, "7"); }), "timestamp"));
    const std::string nan_time = write_file("nan-time.inter", std::string(kInterHeader) + "8\t1\t3\tnan\n");
    CHECK(contains(error_of([&] { ms::load_user_ratings(nan_time, "7"); }), "bad timestamp"));
    const std::string missing = write_file("missing.inter", std::string(kInterHeader) + "7\t1\t3\n");
    CHECK(contains(error_of([&] { ms::load_user_ratings(missing, "7"); }), ":2: line has no 'timestamp' column"));
    const std::string no_header = write_file("no-header.inter", "196\t242\t3\t881250949\n");
    CHECK(contains(error_of([&] { ms::load_user_ratings(no_header, "196"); }), "header lacks the column 'user_id'"));
}

}  // namespace

int main() {
    test_movies();
    test_ratings_and_history();
    return check::finish("test_movielens");
}
