// atrank.hpp must compile on its own (it includes everything it uses) and be idempotent:
// include it twice, first, with nothing before it (wasmtime tests/CMakeLists.txt style).
#include "atrank.hpp"
#include "atrank.hpp"

#include <type_traits>

static_assert(!std::is_copy_constructible_v<atrank::Model>, "Model is move-only");
static_assert(!std::is_copy_assignable_v<atrank::Model>, "Model is move-only");
static_assert(std::is_nothrow_move_constructible_v<atrank::Model>, "Model moves without throwing");
static_assert(std::is_nothrow_move_assignable_v<atrank::Model>, "Model moves without throwing");
static_assert(std::is_base_of_v<std::runtime_error, atrank::Error>, "Error is a std::runtime_error");
static_assert(ATRANK_VERSION_NUMBER ==
                  ATRANK_VERSION_MAJOR * 10000 + ATRANK_VERSION_MINOR * 100 + ATRANK_VERSION_PATCH,
              "ATRANK_VERSION_NUMBER is MAJOR*10000 + MINOR*100 + PATCH");
