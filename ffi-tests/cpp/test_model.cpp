// Model ownership (move-only RAII) and concurrent scoring of one Model.
#include <cstddef>
#include <exception>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "atrank.hpp"
#include "golden.hpp"

namespace {

using atrank_test::throws_code;

TEST(Model, DefaultIsEmpty) {
    atrank::Model model;
    EXPECT_FALSE(model);
    EXPECT_EQ(model.get(), nullptr);
    EXPECT_TRUE(throws_code([&] { (void)model.backend(); }, ATRANK_ERROR_NULL_ARGUMENT));
    EXPECT_TRUE(throws_code([&] { (void)model.score({}, {"i23"}, 0); }, ATRANK_ERROR_NULL_ARGUMENT));
}

TEST(Model, MoveConstructLeavesSourceEmpty) {
    ATRANK_REQUIRE_PACKAGE(dir);
    atrank::Model a = atrank::Model::load(dir, ATRANK_BACKEND_TRACT);
    ASSERT_TRUE(a);
    const atrank_model *handle = a.get();
    atrank::Model b(std::move(a));
    EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): the moved-from state is what is tested
    EXPECT_EQ(a.get(), nullptr);
    EXPECT_EQ(b.get(), handle);
    EXPECT_EQ(b.backend(), static_cast<atrank_backend>(ATRANK_BACKEND_TRACT));
    EXPECT_EQ(b.score({}, {"i23", "i88"}, 1028327127).size(), 2U);
    // The moved-from Model reports errors instead of using a stale handle.
    EXPECT_TRUE(throws_code([&] { (void)a.backend(); }, ATRANK_ERROR_NULL_ARGUMENT));
    EXPECT_TRUE(throws_code([&] { (void)a.score({}, {"i23"}, 0); }, ATRANK_ERROR_NULL_ARGUMENT));
    // `a` and `b` destruct here: only `b` frees (ASan/valgrind would see a double free).
}

TEST(Model, MoveAssignFreesTheOldHandle) {
    ATRANK_REQUIRE_PACKAGE(dir);
    atrank::Model a = atrank::Model::load(dir, ATRANK_BACKEND_TRACT);
    atrank::Model b = atrank::Model::load(dir, ATRANK_BACKEND_TRACT);
    const atrank_model *handle = a.get();
    b = std::move(a);  // b's old model is freed (LeakSanitizer checks it under ATRANK_SANITIZE)
    EXPECT_EQ(b.get(), handle);
    EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move)
    auto &self = b;
    b = std::move(self);  // self-move keeps the handle
    EXPECT_EQ(b.get(), handle);
    a = std::move(b);  // into a moved-from Model
    EXPECT_EQ(a.get(), handle);
    EXPECT_FALSE(b);  // NOLINT(bugprone-use-after-move)
}

TEST(Model, ReleaseHandsOwnershipToTheCaller) {
    ATRANK_REQUIRE_PACKAGE(dir);
    atrank::Model a = atrank::Model::load(dir, ATRANK_BACKEND_TRACT);
    const atrank_model *handle = a.release();
    EXPECT_FALSE(a);
    ASSERT_NE(handle, nullptr);
    atrank::Model b(handle);  // and back again, so it is freed once
    EXPECT_EQ(b.get(), handle);
}

// 8 threads score every golden request on one shared const Model, several times over, and
// must reproduce the sequential results exactly.
class Concurrent : public ::testing::TestWithParam<atrank_backend> {};

TEST_P(Concurrent, EightThreadsMatchSequential) {
    ATRANK_REQUIRE_PACKAGE(dir);
    const atrank_backend backend = GetParam();
    if (backend == ATRANK_BACKEND_ORT && !atrank_test::ort_available()) {
        GTEST_SKIP() << "ort backend: ATRANK_ORT_LIB is unset (point it at libonnxruntime.so to test ORT)";
    }
    const atrank_test::GoldenSet golden = atrank_test::load_golden(dir);
    const atrank::Model model = atrank::Model::load(dir, backend);

    std::vector<std::vector<float>> sequential;
    for (const auto &req : golden.requests) {
        sequential.push_back(model.score(req.behaviors, req.candidates, req.request_time));
    }

    constexpr std::size_t kThreads = 8;
    constexpr std::size_t kRounds = 4;
    std::vector<std::string> problems(kThreads);  // one slot per thread: no shared writes
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            try {
                for (std::size_t round = 0; round < kRounds; ++round) {
                    // Each thread starts at a different request, so different requests overlap.
                    for (std::size_t k = 0; k < golden.requests.size(); ++k) {
                        const std::size_t r = (k + t) % golden.requests.size();
                        const auto &req = golden.requests[r];
                        if (model.score(req.behaviors, req.candidates, req.request_time) != sequential[r]) {
                            problems[t] = "request " + std::to_string(r) + " (" + req.name + ") round " +
                                          std::to_string(round) + ": scores differ from the sequential run";
                            return;
                        }
                    }
                }
            } catch (const atrank::Error &e) {
                problems[t] = std::string(atrank_test::code_name(e.code())) + ": " + e.what();
            } catch (const std::exception &e) {
                problems[t] = e.what();
            }
        });
    }
    for (auto &thread : threads) {
        thread.join();
    }
    for (std::size_t t = 0; t < kThreads; ++t) {
        EXPECT_EQ(problems[t], "") << "thread " << t;
    }
}

INSTANTIATE_TEST_SUITE_P(Backends, Concurrent, ::testing::Values(ATRANK_BACKEND_ORT, ATRANK_BACKEND_TRACT),
                         [](const ::testing::TestParamInfo<atrank_backend> &info) {
                             return std::string(atrank_test::backend_name(info.param));
                         });

}  // namespace
