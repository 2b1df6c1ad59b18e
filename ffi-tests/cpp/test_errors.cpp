// Every error of the C API becomes an atrank::Error carrying the C code and message.
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "atrank.hpp"
#include "golden.hpp"

namespace {

using atrank_test::throws_code;

const std::vector<atrank::Behavior> kHistory = {
    {"i11", std::nullopt, std::string("like"), 1003551103},
    {"i79", std::string("some-category"), std::nullopt, 1003551104},
};
constexpr int64_t kRequestTime = 1028327127;

TEST(Errors, MissingDirectoryIsIo) {
    EXPECT_TRUE(throws_code([] { atrank::Model::load("/nonexistent/atrank-package", ATRANK_BACKEND_TRACT); },
                            ATRANK_ERROR_IO));
}

TEST(Errors, ErrorIsARuntimeErrorWithTheMessage) {
    try {
        atrank::Model::load("/nonexistent/atrank-package", ATRANK_BACKEND_TRACT);
        FAIL() << "loading a missing directory succeeded";
    } catch (const std::runtime_error &e) {
        const auto *error = dynamic_cast<const atrank::Error *>(&e);
        ASSERT_NE(error, nullptr) << "not an atrank::Error: " << e.what();
        EXPECT_EQ(error->code(), ATRANK_ERROR_IO);
        EXPECT_NE(std::string(e.what()), "");
    }
}

TEST(Errors, NulByteInDirectoryIsInvalidArgument) {
    EXPECT_TRUE(throws_code([] { atrank::Model::load(std::string("/tmp\0x", 6), ATRANK_BACKEND_TRACT); },
                            ATRANK_ERROR_INVALID_ARGUMENT));
}

TEST(Errors, UnknownBackendIsInvalidArgument) {
    ATRANK_REQUIRE_PACKAGE(dir);
    EXPECT_TRUE(throws_code([&] { atrank::Model::load(dir, 42); }, ATRANK_ERROR_INVALID_ARGUMENT));
}

class ScoreErrors : public ::testing::Test {
protected:
    void SetUp() override {
        ATRANK_REQUIRE_PACKAGE(dir);
        dir_ = dir;
        model_ = atrank::Model::load(dir, ATRANK_BACKEND_TRACT);
    }
    std::string dir_;
    atrank::Model model_;
};

TEST_F(ScoreErrors, EmptyCandidatesIsInvalidArgument) {
    EXPECT_TRUE(throws_code([&] { model_.score(kHistory, {}, kRequestTime); }, ATRANK_ERROR_INVALID_ARGUMENT));
    EXPECT_TRUE(throws_code([&] { model_.score({}, {}, kRequestTime); }, ATRANK_ERROR_INVALID_ARGUMENT));
}

TEST_F(ScoreErrors, TooManyCandidatesIsInvalidArgument) {
    const std::size_t max = atrank_test::spec_max_candidates(dir_);
    const std::vector<std::string> many(max + 1, "i23");
    EXPECT_TRUE(throws_code([&] { model_.score(kHistory, many, kRequestTime); }, ATRANK_ERROR_INVALID_ARGUMENT));
}

TEST_F(ScoreErrors, InvalidUtf8IsInvalidUtf8) {
    EXPECT_TRUE(throws_code([&] { model_.score(kHistory, {"i23", "\xff\xfe"}, kRequestTime); },
                            ATRANK_ERROR_INVALID_UTF8));
    std::vector<atrank::Behavior> history = kHistory;
    history[1].action = std::string("\xc3");
    EXPECT_TRUE(throws_code([&] { model_.score(history, {"i23"}, kRequestTime); }, ATRANK_ERROR_INVALID_UTF8));
}

TEST_F(ScoreErrors, NulByteIsInvalidArgumentNamingTheField) {
    std::vector<atrank::Behavior> history = kHistory;
    history[1].category = std::string("a\0b", 3);
    try {
        model_.score(history, {"i23"}, kRequestTime);
        FAIL() << "a category with a NUL byte was accepted";
    } catch (const atrank::Error &e) {
        EXPECT_EQ(e.code(), ATRANK_ERROR_INVALID_ARGUMENT);
        EXPECT_NE(std::string(e.what()).find("history[1].category"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(throws_code([&] { model_.score(kHistory, {"i23", std::string("x\0", 2)}, kRequestTime); },
                            ATRANK_ERROR_INVALID_ARGUMENT));
}

TEST_F(ScoreErrors, ValidRequestScoresAfterErrors) {
    // The model is still usable after failed calls, and optional fields map to NULL correctly.
    std::vector<float> scores;
    ASSERT_NO_THROW(scores = model_.score(kHistory, {"i23", "no-such-item"}, kRequestTime));
    EXPECT_EQ(scores.size(), 2U);
    ASSERT_NO_THROW(scores = model_.score({}, {"i23"}, kRequestTime)) << "an empty history is valid";
    EXPECT_EQ(scores.size(), 1U);
}

}  // namespace
