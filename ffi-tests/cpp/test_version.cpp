// The header's version macros must equal the loaded library's (README "API conventions").
#include <string>

#include <gtest/gtest.h>

#include "atrank.hpp"

TEST(Version, MatchesHeaderMacros) {
    const std::string want = std::to_string(ATRANK_VERSION_MAJOR) + "." + std::to_string(ATRANK_VERSION_MINOR) + "." +
                             std::to_string(ATRANK_VERSION_PATCH);
    EXPECT_EQ(atrank::version(), want) << "atrank_version() of the loaded library differs from atrank.h";
}

TEST(Version, AbiMatchesHeader) {
    EXPECT_EQ(atrank::abi_version(), static_cast<uint32_t>(ATRANK_ABI_VERSION))
        << "atrank_abi_version() of the loaded library differs from ATRANK_ABI_VERSION in atrank.h";
}
