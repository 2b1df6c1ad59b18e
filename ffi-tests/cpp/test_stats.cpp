// Model::stats() and Model::info(): counters that agree with the calls made here, and an info
// that agrees with the package's spec.json (read independently with cJSON).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include <cjson/cJSON.h>
#include <gtest/gtest.h>

#include "atrank.hpp"
#include "golden.hpp"

namespace {

using atrank_test::throws_code;

uint64_t histogram_count(const atrank_call_stats &c) {
    return std::accumulate(std::begin(c.latency_counts), std::end(c.latency_counts), uint64_t{0});
}

uint64_t failures(const atrank_call_stats &c) {
    return std::accumulate(std::begin(c.failures), std::end(c.failures), uint64_t{0});
}

TEST(Stats, CountsCallsFailuresAndLatency) {
    ATRANK_REQUIRE_PACKAGE(dir);
    const auto golden = atrank_test::load_golden(dir);
    ASSERT_FALSE(golden.requests.empty());
    const auto &r = golden.requests[0];
    const atrank::Model model = atrank::Model::load(dir, ATRANK_BACKEND_TRACT);
    EXPECT_EQ(model.stats().score.calls, 0U);
    const std::size_t n = 7;
    for (std::size_t i = 0; i < n; i++) {
        (void)model.score(r.behaviors, r.candidates, r.request_time);
    }
    std::vector<std::string> too_many(model.max_candidates() + 1, r.candidates[0]);
    EXPECT_TRUE(throws_code([&] { (void)model.score(r.behaviors, too_many, r.request_time); },
                            ATRANK_ERROR_INVALID_ARGUMENT));
    (void)model.score_batch({{r.behaviors, r.candidates, r.request_time}, {r.behaviors, r.candidates, r.request_time}});

    const atrank_stats s = model.stats();
    EXPECT_EQ(s.size, sizeof(atrank_stats));
    EXPECT_EQ(s.score.calls, n + 1);
    EXPECT_EQ(histogram_count(s.score), n);
    EXPECT_EQ(s.score.failures[ATRANK_ERROR_INVALID_ARGUMENT], 1U);
    EXPECT_EQ(failures(s.score), 1U);
    EXPECT_GT(s.score.latency_sum_ns, 0U);
    EXPECT_EQ(s.score_batch.calls, 1U);
    EXPECT_EQ(histogram_count(s.score_batch), 1U);
    EXPECT_EQ(s.score_cached.calls, 0U);
    EXPECT_EQ(s.tract_symbolic_runs + s.tract_concrete_runs, n + 1);

    const auto bounds = atrank::latency_bounds();
    EXPECT_EQ(bounds.front(), 50000U);
    EXPECT_EQ(bounds.back(), UINT64_MAX);
}

TEST(Stats, EmptyModelThrows) {
    const atrank::Model model;
    EXPECT_TRUE(throws_code([&] { (void)model.stats(); }, ATRANK_ERROR_NULL_ARGUMENT));
    EXPECT_TRUE(throws_code([&] { (void)model.info(); }, ATRANK_ERROR_NULL_ARGUMENT));
}

// A JSON string member, or "" when absent.
std::string str(const cJSON *object, const char *key) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(object, key));
    return s != nullptr ? s : "";
}

std::string read_text(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

uint64_t le64(const std::string &bytes, std::size_t at) {
    uint64_t v = 0;
    for (std::size_t i = 8; i-- > 0;) v = v << 8 | static_cast<unsigned char>(bytes[at + i]);
    return v;
}

// The key count n of a format-3 atv file, from its header, after checking the magic and that
// the file is exactly 32 + 8 (n + 1) + key_bytes bytes (docs/package-format-v3.md); throws if not.
uint64_t atv_keys(const std::string &path) {
    const std::string bytes = read_text(path);
    if (bytes.size() < 40 || bytes.compare(0, 8, "ATRVOC01") != 0) throw std::runtime_error(path + ": not an atv file");
    const uint64_t n = le64(bytes, 8), key_bytes = le64(bytes, 16);
    if (n > (bytes.size() - 32) / 8 - 1 || 32 + 8 * (n + 1) + key_bytes != bytes.size())
        throw std::runtime_error(path + ": header does not match the file's size");
    return n;
}

TEST(Info, MatchesTheSpec) {
    for (const char *dir_c : {"tests/fixtures/tiny", "tests/fixtures/tiny-multigroup"}) {
        const std::string dir(dir_c);
        SCOPED_TRACE(dir);
        const std::string text = read_text(dir + "/spec.json");
        cJSON *spec = cJSON_Parse(text.c_str());
        ASSERT_NE(spec, nullptr) << dir << "/spec.json";
        const atrank::Info info = atrank::Model::load(dir, ATRANK_BACKEND_TRACT).info();
        EXPECT_EQ(info.name, str(spec, "name"));
        EXPECT_EQ(info.created_by, str(spec, "created_by"));
        // input_mapping: the spec's object as JSON, "" when the package has none.
        const cJSON *mapping = cJSON_GetObjectItem(spec, "input_mapping");
        if (mapping == nullptr || cJSON_IsNull(mapping)) {
            EXPECT_EQ(info.input_mapping, "");
        } else {
            cJSON *got = cJSON_Parse(info.input_mapping.c_str());
            EXPECT_TRUE(got != nullptr && cJSON_Compare(got, mapping, 1)) << info.input_mapping;
            cJSON_Delete(got);
        }
        EXPECT_EQ(info.spec_version, static_cast<uint32_t>(cJSON_GetNumberValue(cJSON_GetObjectItem(spec, "spec_version"))));
        const cJSON *limits = cJSON_GetObjectItem(spec, "limits");
        EXPECT_EQ(info.max_candidates, static_cast<std::size_t>(cJSON_GetNumberValue(cJSON_GetObjectItem(limits, "max_candidates"))));
        EXPECT_EQ(info.max_behaviors, static_cast<std::size_t>(cJSON_GetNumberValue(cJSON_GetObjectItem(limits, "max_behaviors"))));
        EXPECT_EQ(info.serving, "tract");
        EXPECT_EQ(info.graph_sha256.size(), 64U);
        const cJSON *groups = cJSON_GetObjectItem(spec, "groups");
        ASSERT_EQ(info.max_history.size(), static_cast<std::size_t>(cJSON_GetArraySize(groups)));
        for (std::size_t i = 0; i < info.max_history.size(); i++) {
            const cJSON *g = cJSON_GetArrayItem(groups, static_cast<int>(i));
            EXPECT_EQ(info.max_history[i].first, str(g, "name"));
            EXPECT_EQ(info.max_history[i].second, static_cast<std::size_t>(cJSON_GetNumberValue(cJSON_GetObjectItem(g, "max_history"))));
        }
        // Vocabulary sizes: each table's atv file's key count (its header, read here), which is
        // also the spec's tables.<name>.size (format 3).
        const cJSON *tables = cJSON_GetObjectItem(spec, "tables");
        ASSERT_FALSE(info.vocab_sizes.empty());
        EXPECT_EQ(info.vocab_sizes.size(), static_cast<std::size_t>(cJSON_GetArraySize(tables)));
        for (const auto &[table, size] : info.vocab_sizes) {
            const cJSON *t = cJSON_GetObjectItem(tables, table.c_str());
            const char *file = cJSON_GetStringValue(cJSON_GetObjectItem(t, "vocab"));
            ASSERT_NE(file, nullptr) << "table " << table << " not in spec.json's tables";
            const uint64_t keys = atv_keys(dir + "/" + file);
            EXPECT_EQ(size, keys) << table;
            EXPECT_EQ(static_cast<uint64_t>(cJSON_GetNumberValue(cJSON_GetObjectItem(t, "size"))), keys) << table;
        }
        cJSON_Delete(spec);
    }
}

}  // namespace
