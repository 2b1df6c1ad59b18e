// Golden parity through the C++ binding: every request of the package's golden.json is scored
// on each backend and compared with the trainer's scores within the golden tolerance
// ($ATRANK_TOLERANCE overrides it). ORT is skipped when $ATRANK_ORT_LIB is unset.
#include <cmath>
#include <cstdio>
#include <cstddef>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "atrank.hpp"
#include "golden.hpp"

namespace {

using atrank_test::backend_name;

class Golden : public ::testing::TestWithParam<atrank_backend> {};

TEST_P(Golden, MatchesTrainerScores) {
    ATRANK_REQUIRE_PACKAGE(dir);
    const atrank_backend backend = GetParam();
    if (backend == ATRANK_BACKEND_ORT && !atrank_test::ort_available()) {
        GTEST_SKIP() << "ort backend: ATRANK_ORT_LIB is unset (point it at libonnxruntime.so to test ORT)";
    }
    atrank_test::GoldenSet golden;
    ASSERT_NO_THROW(golden = atrank_test::load_golden(dir)) << "cannot read the golden requests of " << dir;

    atrank::Model model;
    try {
        model = atrank::Model::load(dir, backend);
    } catch (const atrank::Error &e) {
        FAIL() << "loading " << dir << " on " << backend_name(backend) << ": " << atrank_test::code_name(e.code())
               << ": " << e.what();
    }
    ASSERT_TRUE(model);
    EXPECT_EQ(model.backend(), backend);

    double max_diff = 0.0;
    std::size_t compared = 0;
    std::size_t bad = 0;
    for (std::size_t r = 0; r < golden.requests.size(); ++r) {
        const atrank_test::GoldenRequest &req = golden.requests[r];
        std::vector<float> scores;
        try {
            scores = model.score(req.behaviors, req.candidates, req.request_time);
        } catch (const atrank::Error &e) {
            ADD_FAILURE() << "request " << r << " (" << req.name << "): " << atrank_test::code_name(e.code()) << ": "
                          << e.what();
            continue;
        }
        ASSERT_EQ(scores.size(), req.candidates.size()) << "request " << r << " (" << req.name << ")";
        for (std::size_t c = 0; c < scores.size(); ++c) {
            const double diff = std::fabs(static_cast<double>(scores[c]) - req.scores[c]);
            ++compared;
            if (!std::isfinite(scores[c]) || !(diff <= req.tolerance)) {
                // Report the first few mismatches in full; the count says the rest.
                if (++bad <= 10) {
                    ADD_FAILURE() << "request " << r << " (" << req.name << ") candidate " << c << " (\""
                                  << req.candidates[c] << "\"): got " << scores[c] << ", golden " << req.scores[c]
                                  << ", |diff| " << diff << " > tolerance " << req.tolerance;
                }
            }
            if (diff > max_diff || std::isnan(diff)) {
                max_diff = diff;
            }
        }
    }
    EXPECT_EQ(bad, 0U) << bad << " scores out of tolerance (first 10 shown)";
    EXPECT_GT(compared, 0U);
    std::printf("%s: %zu requests, %zu scores, max |diff| %.3g (tolerances up to %.3g)\n", backend_name(backend),
                golden.requests.size(), compared, max_diff, golden.tolerance);
}

INSTANTIATE_TEST_SUITE_P(Backends, Golden, ::testing::Values(ATRANK_BACKEND_ORT, ATRANK_BACKEND_TRACT),
                         [](const ::testing::TestParamInfo<atrank_backend> &info) {
                             return std::string(backend_name(info.param));
                         });

}  // namespace
