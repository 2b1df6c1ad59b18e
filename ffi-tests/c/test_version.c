/*
 * The header's version macros agree with each other (at compile time) and with the library
 * that is actually loaded (at run time). Needs no model package.
 */
#include <stdio.h>
#include <string.h>

#include "atrank.h"
/* The header must survive a second inclusion (include guard). */
#include "atrank.h"

_Static_assert(ATRANK_VERSION_MINOR >= 0 && ATRANK_VERSION_MINOR < 100, "MINOR must fit in two decimal digits");
_Static_assert(ATRANK_VERSION_PATCH >= 0 && ATRANK_VERSION_PATCH < 100, "PATCH must fit in two decimal digits");
_Static_assert(ATRANK_VERSION_NUMBER ==
                   ATRANK_VERSION_MAJOR * 10000 + ATRANK_VERSION_MINOR * 100 + ATRANK_VERSION_PATCH,
               "ATRANK_VERSION_NUMBER must be MAJOR*10000 + MINOR*100 + PATCH");
_Static_assert(ATRANK_VERSION_NUMBER / 10000 == ATRANK_VERSION_MAJOR, "VERSION_NUMBER's MAJOR digits");
_Static_assert(ATRANK_VERSION_NUMBER / 100 % 100 == ATRANK_VERSION_MINOR, "VERSION_NUMBER's MINOR digits");
_Static_assert(ATRANK_VERSION_NUMBER % 100 == ATRANK_VERSION_PATCH, "VERSION_NUMBER's PATCH digits");
_Static_assert(ATRANK_ABI_VERSION >= 1, "ABI version starts at 1");
_Static_assert(ATRANK_BACKEND_ORT != ATRANK_BACKEND_TRACT, "backend values are distinct");

int main(void) {
    int failures = 0;
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", ATRANK_VERSION_MAJOR, ATRANK_VERSION_MINOR, ATRANK_VERSION_PATCH);
    const char *got = atrank_version();
    if (got == NULL) {
        fprintf(stderr, "FAIL: atrank_version() returned NULL\n");
        failures++;
    } else if (strcmp(got, want) != 0) {
        fprintf(stderr, "FAIL: the library is version \"%s\" but atrank.h says \"%s\" (stale header or library?)\n",
                got, want);
        failures++;
    } else if (atrank_version() != got) {
        fprintf(stderr, "FAIL: atrank_version() should return the same static string every time\n");
        failures++;
    }
    if (atrank_abi_version() != ATRANK_ABI_VERSION) {
        fprintf(stderr, "FAIL: the library's ABI version is %u but atrank.h says %u\n", (unsigned)atrank_abi_version(),
                (unsigned)ATRANK_ABI_VERSION);
        failures++;
    }
    if (failures > 0) {
        return 1;
    }
    printf("test_version: PASS (header and library are %s = %d, ABI %u)\n", want, ATRANK_VERSION_NUMBER,
           (unsigned)ATRANK_ABI_VERSION);
    return 0;
}
