// The wider C++ surface: load options (the C builder), serving, behavior groups and caller
// features, score_cached, score_batch and the hot-swap Handle. Scores are checked against the
// trainer's scores in each package's golden.json (the independent reference) and against
// Model::score on the same request.
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "atrank.hpp"
#include "golden.hpp"

namespace {

using atrank_test::throws_code;

const char *const kMulti = "tests/fixtures/tiny-multigroup";
const char *const kSingle = "tests/fixtures/tiny";

atrank::Options tract() {
    atrank::Options o;
    o.backend = ATRANK_BACKEND_TRACT;
    return o;
}

std::vector<atrank::Request> golden_requests(const atrank_test::GoldenSet &g) {
    std::vector<atrank::Request> out;
    for (const auto &r : g.requests) out.push_back(atrank::Request{r.behaviors, r.candidates, r.request_time});
    return out;
}

class Backends : public ::testing::TestWithParam<atrank_backend> {
protected:
    atrank::Options options() const {
        atrank::Options o;
        o.backend = GetParam();
        o.intra_threads = 2;
        o.cache_capacity = 8;
        o.sessions = 2;
        return o;
    }
    void SetUp() override {
        if (GetParam() == ATRANK_BACKEND_ORT && !atrank_test::ort_available()) {
            GTEST_SKIP() << "ort backend: ATRANK_ORT_LIB is unset";
        }
    }
};

// Groups and features from C++: the multigroup fixture's golden requests, one by one and as one
// batch, match the trainer; the batch equals single scoring.
TEST_P(Backends, MultiGroupGoldenSingleAndBatch) {
    const atrank_test::GoldenSet g = atrank_test::load_golden(kMulti);
    const atrank::Model m = atrank::Model::load(kMulti, options());
    const auto batch = m.score_batch(golden_requests(g));
    ASSERT_EQ(batch.size(), g.requests.size());
    double worst = 0.0;
    for (std::size_t i = 0; i < g.requests.size(); ++i) {
        const auto &r = g.requests[i];
        const auto single = m.score(r.behaviors, r.candidates, r.request_time);
        ASSERT_EQ(batch[i].size(), r.candidates.size()) << r.name;
        for (std::size_t k = 0; k < r.candidates.size(); ++k) {
            // both: two float32 evaluations of the request's logits, within its derived 2 D U M
            // (docs/tolerances.md)
            EXPECT_NEAR(single[k], r.scores[k], r.tolerance) << r.name << " candidate " << k;
            EXPECT_NEAR(batch[i][k], single[k], r.tolerance) << r.name << " candidate " << k;
            worst = std::max(worst, std::fabs(single[k] - r.scores[k]));
        }
    }
    RecordProperty("max_abs_diff", std::to_string(worst));
}

// Options::batch_rows = 1: every request of score_batch runs alone, through the same graph and
// shapes as score, so the scores are the same floats; 0 (no row limit) stays within tolerance.
TEST_P(Backends, BatchRows) {
    const atrank_test::GoldenSet g = atrank_test::load_golden(kMulti);
    atrank::Options one = options();
    one.batch_rows = 1;
    atrank::Options unlimited = options();
    unlimited.batch_rows = 0;
    const atrank::Model m1 = atrank::Model::load(kMulti, one);
    const atrank::Model m0 = atrank::Model::load(kMulti, unlimited);
    const auto alone = m1.score_batch(golden_requests(g));
    const auto together = m0.score_batch(golden_requests(g));
    ASSERT_EQ(alone.size(), g.requests.size());
    ASSERT_EQ(together.size(), g.requests.size());
    for (std::size_t i = 0; i < g.requests.size(); ++i) {
        const auto &r = g.requests[i];
        EXPECT_EQ(alone[i], m1.score(r.behaviors, r.candidates, r.request_time)) << r.name;
        ASSERT_EQ(together[i].size(), r.candidates.size()) << r.name;
        for (std::size_t k = 0; k < r.candidates.size(); ++k) {
            // two float32 evaluations of the request's logits, within its derived 2 D U M
            // (docs/tolerances.md)
            EXPECT_NEAR(together[i][k], r.scores[k], r.tolerance) << r.name << " candidate " << k;
        }
    }
}

// Options::tract_fusion: the layer-norm kernel alone fuses every fixture's layer norms on tract
// (on a CPU with the kernels' AVX2 and FMA) and no attention; NONE fuses nothing; ORT counts 0.
TEST_P(Backends, TractFusion) {
    atrank::Options ln = options();
    ln.tract_fusion = ATRANK_TRACT_FUSE_LAYER_NORM;
    atrank::Options none = options();
    none.tract_fusion = ATRANK_TRACT_FUSE_NONE;
    const atrank_stats s = atrank::Model::load(kMulti, ln).stats();
    const atrank_stats s0 = atrank::Model::load(kMulti, none).stats();
    EXPECT_EQ(s0.tract_fused_attention + s0.tract_fused_layer_norm, 0u);
    EXPECT_EQ(s.tract_fused_attention, 0u);
    const bool cpu = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (GetParam() == ATRANK_BACKEND_TRACT && cpu) {
        EXPECT_GE(s.tract_fused_layer_norm, 2u);
    } else if (GetParam() != ATRANK_BACKEND_TRACT) {
        EXPECT_EQ(s.tract_fused_layer_norm, 0u);
    }
}

TEST_P(Backends, CachedEqualsUncached) {
    const atrank_test::GoldenSet g = atrank_test::load_golden(kMulti);
    const atrank::Model m = atrank::Model::load(kMulti, options());
    for (int round = 0; round < 2; ++round) {  // the second round hits the cache
        for (const auto &r : g.requests) {
            if (r.candidates.empty()) continue;
            const auto plain = m.score(r.behaviors, r.candidates, r.request_time);
            const auto cached = m.score_cached("user-" + r.name, r.behaviors, r.candidates, r.request_time);
            ASSERT_EQ(plain.size(), cached.size());
            // the request's derived 2 D U M (docs/tolerances.md)
            for (std::size_t k = 0; k < plain.size(); ++k) EXPECT_NEAR(plain[k], cached[k], r.tolerance) << r.name;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Cpp, Backends, ::testing::Values(ATRANK_BACKEND_ORT, ATRANK_BACKEND_TRACT),
                         [](const ::testing::TestParamInfo<atrank_backend> &info) {
                             return std::string(atrank_test::backend_name(info.param));
                         });

TEST(Options, ServingAndOutOfRangeOptions) {
    const atrank::Model m = atrank::Model::load(kSingle, tract());
    EXPECT_EQ(m.serving(), static_cast<atrank_serving>(ATRANK_SERVING_TRACT));
    EXPECT_EQ(m.max_candidates(), atrank_test::spec_max_candidates(kSingle));
    EXPECT_TRUE(throws_code([] { atrank::Model().max_candidates(); }, ATRANK_ERROR_NULL_ARGUMENT));
    atrank::Options bad = tract();
    bad.intra_threads = 0;
    EXPECT_TRUE(throws_code([&] { atrank::Model::load(kSingle, bad); }, ATRANK_ERROR_INVALID_ARGUMENT));
    bad = tract();
    bad.sessions = 0;
    EXPECT_TRUE(throws_code([&] { atrank::Model::load(kSingle, bad); }, ATRANK_ERROR_INVALID_ARGUMENT));
    bad = tract();
    bad.gpu_policy = 7;
    EXPECT_TRUE(throws_code([&] { atrank::Model::load(kSingle, bad); }, ATRANK_ERROR_INVALID_ARGUMENT));
    bad = tract();
    bad.gpu_policy = ATRANK_GPU_STRICT;  // tract has no GPU path
    EXPECT_TRUE(throws_code([&] { atrank::Model::load(kSingle, bad); }, ATRANK_ERROR_BACKEND_UNAVAILABLE));
    EXPECT_TRUE(throws_code([&] { atrank::Model::load("/nonexistent/atrank", tract()); }, ATRANK_ERROR_IO));
}

// verify_hashes: both values load; any other is refused by the setter; one flipped byte in a
// small file (always hashed) is refused with the file's name under both.
TEST(Options, VerifyHashes) {
    for (const atrank_verify_hashes v : {ATRANK_VERIFY_HASHES_SMALL, ATRANK_VERIFY_HASHES_ALL}) {
        atrank::Options o = tract();
        o.verify_hashes = v;
        EXPECT_EQ(atrank::Model::load(kSingle, o).serving(), static_cast<atrank_serving>(ATRANK_SERVING_TRACT));
    }
    atrank::Options bad = tract();
    bad.verify_hashes = 2;
    EXPECT_TRUE(throws_code([&] { atrank::Model::load(kSingle, bad); }, ATRANK_ERROR_INVALID_ARGUMENT));

    namespace fs = std::filesystem;
    const char *tmp = std::getenv("TMPDIR");
    std::string made = (fs::path(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") / "atrank-cpp-verify-XXXXXX").string();
    ASSERT_NE(mkdtemp(made.data()), nullptr);
    const fs::path dir = made;
    fs::copy(kSingle, dir, fs::copy_options::recursive);
    const fs::path tables = dir / "tables.bin";
    std::string bytes;
    {
        std::ifstream in(tables, std::ios::binary);
        bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    ASSERT_FALSE(bytes.empty());
    bytes.back() = static_cast<char>(bytes.back() ^ 0x40);
    {
        std::ofstream out(tables, std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    for (const atrank_verify_hashes v : {ATRANK_VERIFY_HASHES_SMALL, ATRANK_VERIFY_HASHES_ALL}) {
        atrank::Options o = tract();
        o.verify_hashes = v;
        try {
            atrank::Model::load(dir.string(), o);
            ADD_FAILURE() << "a flipped byte in tables.bin loaded (verify_hashes " << v << ")";
        } catch (const atrank::Error &e) {
            EXPECT_EQ(e.code(), static_cast<atrank_code>(ATRANK_ERROR_INVALID_PACKAGE)) << e.what();
            EXPECT_NE(std::string(e.what()).find("tables.bin"), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("SHA-256"), std::string::npos) << e.what();
        }
    }
    fs::remove_all(dir);
}

TEST(Options, PermissiveGpuServesOnTheCpuHere) {
    if (!atrank_test::ort_available()) GTEST_SKIP() << "ATRANK_ORT_LIB is unset";
    atrank::Options o;
    o.gpu_policy = ATRANK_GPU_PERMISSIVE;
    const atrank::Model m = atrank::Model::load(kSingle, o);
    // This build's machines have no usable CUDA provider; on a GPU machine this would be ORT_CUDA.
    const atrank_serving s = m.serving();
    EXPECT_TRUE(s == ATRANK_SERVING_ORT_CPU || s == ATRANK_SERVING_ORT_CUDA) << s;
}

TEST(Batch, ErrorsNameTheRequest) {
    const atrank::Model m = atrank::Model::load(kMulti, tract());
    std::vector<atrank::Request> reqs(3, atrank::Request{{}, {"i1", "i2"}, 1300086400});
    reqs[1].history.push_back(atrank::Behavior{"i3", std::nullopt, std::nullopt, 1300000000, "no-such-group", {}});
    try {
        m.score_batch(reqs);
        FAIL() << "an unknown group was accepted";
    } catch (const atrank::Error &e) {
        EXPECT_EQ(e.code(), ATRANK_ERROR_INVALID_ARGUMENT);
        EXPECT_NE(std::string(e.what()).find("requests[1]"), std::string::npos) << e.what();
    }
    reqs[1].history.clear();
    reqs[2].candidates[1] = std::string("i\0x", 3);  // a NUL byte, caught by the binding
    try {
        m.score_batch(reqs);
        FAIL() << "a NUL byte was accepted";
    } catch (const atrank::Error &e) {
        EXPECT_EQ(e.code(), ATRANK_ERROR_INVALID_ARGUMENT);
        EXPECT_NE(std::string(e.what()).find("requests[2].candidates[1]"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(throws_code([&] { m.score_batch({}); }, ATRANK_ERROR_NULL_ARGUMENT));
    reqs[2].candidates = {"i1"};
    const auto ok = m.score_batch(reqs);
    ASSERT_EQ(ok.size(), 3u);
    EXPECT_EQ(ok[2].size(), 1u);
}

// Four threads score through a Handle while the main thread reloads it, some reloads failing:
// no call fails, every failed reload leaves a model serving, and the generation counts only
// the successful ones.
TEST(Handle, ReloadUnderLoadDropsNothing) {
    atrank::Model first = atrank::Model::load(kSingle, tract());
    atrank::Handle h(first);
    EXPECT_EQ(h.generation(), 1u);
    const std::vector<atrank::Behavior> hist{{"i3", std::nullopt, std::string("click"), 1300000000, {}, {}}};
    const std::vector<std::string> cands{"i1", "i2", "no-such-item"};
    const auto want = first.score(hist, cands, 1300086400);
    // Not a golden request: the package's bound_any_request, 2 D U M_max (docs/tolerances.md).
    const double tol = atrank_test::load_golden(kSingle).any_request_tolerance();
    std::atomic<bool> stop{false};
    std::atomic<int> calls{0}, failures{0}, mismatches{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            while (!stop.load()) {
                try {
                    const auto got = h.score(hist, cands, 1300086400);
                    for (std::size_t k = 0; k < got.size(); ++k)
                        if (!(std::fabs(got[k] - want[k]) <= tol)) mismatches++;
                } catch (const atrank::Error &) {
                    failures++;
                }
                calls++;
            }
        });
    }
    uint64_t expected = 1;
    for (int r = 0; r < 6; ++r) {
        if (r % 2 == 0) {
            EXPECT_EQ(h.reload(kSingle, tract()), ++expected);
        } else {
            EXPECT_TRUE(throws_code([&] { h.reload("/nonexistent/atrank", tract()); }, ATRANK_ERROR_IO));
        }
    }
    while (calls.load() < 50) std::this_thread::yield();
    stop = true;
    for (auto &t : threads) t.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(mismatches.load(), 0);
    EXPECT_EQ(h.generation(), expected);
    const atrank::Model now = h.current();
    EXPECT_EQ(now.backend(), static_cast<atrank_backend>(ATRANK_BACKEND_TRACT));
    const auto [snap, generation] = h.snapshot();
    EXPECT_EQ(generation, expected);
    EXPECT_EQ(snap.score(hist, cands, 1300086400).size(), cands.size());
}

// Options::exclude_seen: off by default; true scores a candidate from the user's own history
// -infinity and leaves the other candidates' scores unchanged.
TEST(Options, ExcludeSeen) {
    const auto g = atrank_test::load_golden(kSingle);
    const atrank_test::GoldenRequest *r = nullptr;
    for (const auto &q : g.requests) {
        if (!q.behaviors.empty()) {
            r = &q;
            break;
        }
    }
    ASSERT_NE(r, nullptr);
    std::string fresh;
    for (const auto &c : r->candidates) {
        bool seen = false;
        for (const auto &b : r->behaviors) seen = seen || b.item == c;
        if (!seen) {
            fresh = c;
            break;
        }
    }
    ASSERT_FALSE(fresh.empty());
    const std::vector<std::string> cands{r->behaviors[0].item, fresh};
    const auto plain = atrank::Model::load(kSingle, tract()).score(r->behaviors, cands, r->request_time);
    ASSERT_TRUE(std::isfinite(plain[0]));
    atrank::Options on = tract();
    on.exclude_seen = true;
    const auto got = atrank::Model::load(kSingle, on).score(r->behaviors, cands, r->request_time);
    EXPECT_TRUE(std::isinf(got[0]) && got[0] < 0) << got[0];
    EXPECT_EQ(got[1], plain[1]);
    atrank::Options off = tract();
    off.exclude_seen = false;
    EXPECT_EQ(atrank::Model::load(kSingle, off).score(r->behaviors, cands, r->request_time), plain);
}

TEST(Handle, EmptyModelIsRefused) {
    const atrank::Model empty;
    EXPECT_TRUE(throws_code([&] { atrank::Handle h(empty); }, ATRANK_ERROR_NULL_ARGUMENT));
}

}  // namespace
