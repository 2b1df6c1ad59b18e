/*
 * Golden parity through the C ABI: every request of the package's golden.json is scored on
 * each backend and compared with the trainer's scores within the golden tolerance
 * ($ATRANK_TOLERANCE overrides it).
 *
 * Usage: test_golden [package_dir]   (default: $ATRANK_PACKAGE)
 * The ORT backend is skipped, with a message, when $ATRANK_ORT_LIB is unset. Exit 77 (skip)
 * when there is no package.
 */
#define _XOPEN_SOURCE 700

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "atrank.h"
#include "common.h"

/* Scores every golden request on `backend`; returns the number of backends actually run (0/1). */
static int run_backend(const char *package_dir, atrank_backend backend, const golden_set *golden) {
    const char *name = test_backend_name(backend);
    const atrank_model *model = NULL;
    if (!expect_ok(name, atrank_model_load(package_dir, backend, &model))) {
        test_fail("%s: cannot load %s", name, package_dir);
        return 0;
    }
    if (model == NULL) {
        test_fail("%s: atrank_model_load succeeded but wrote a NULL model", name);
        return 0;
    }
    atrank_backend served = 99;
    if (expect_ok("atrank_model_backend", atrank_model_backend(model, &served)) && served != backend) {
        test_fail("%s: atrank_model_backend says %u (%s), expected %u", name, (unsigned)served,
                  test_backend_name(served), (unsigned)backend);
    }

    double max_diff = 0.0;
    size_t compared = 0, bad = 0;
    for (size_t r = 0; r < golden->requests_len; r++) {
        const golden_request *req = &golden->requests[r];
        float *scores = malloc(req->candidates_len * sizeof *scores);
        if (scores == NULL) {
            test_fail("out of memory");
            break;
        }
        atrank_error *err = atrank_model_score(model, req->behaviors, req->behaviors_len, req->candidates,
                                               req->candidates_len, req->request_time, scores,
                                               req->candidates_len);
        if (err != NULL) {
            test_fail("%s: request %zu (%s): %s: %s", name, r, req->name, test_code_name(atrank_error_code(err)),
                      atrank_error_message(err));
            atrank_error_free(err);
            free(scores);
            continue;
        }
        for (size_t c = 0; c < req->candidates_len; c++) {
            double diff = fabs((double)scores[c] - req->scores[c]);
            compared++;
            if (!isfinite((double)scores[c]) || !(diff <= req->tolerance)) {
                bad++;
                /* Report the first few mismatches in full; the count says the rest. */
                if (bad <= 10) {
                    test_fail("%s: request %zu (%s) candidate %zu (\"%s\"): got %.9g, golden %.9g, |diff| %.3g > "
                              "tolerance %.3g",
                              name, r, req->name, c, req->candidates[c], (double)scores[c], req->scores[c], diff,
                              req->tolerance);
                }
            }
            if (diff > max_diff || isnan(diff)) {
                max_diff = diff;
            }
        }
        free(scores);
    }
    atrank_model_free(model);
    printf("%-6s %zu requests, %zu scores, max |diff| %.3g (per-request tolerances up to %.3g): %s\n", name, golden->requests_len,
           compared, max_diff, golden->tolerance, bad == 0 && compared > 0 ? "PASS" : "FAIL");
    if (bad > 10) {
        test_fail("%s: %zu scores out of tolerance in all (first 10 shown)", name, bad);
    }
    return 1;
}

int main(int argc, char **argv) {
    const char *package_dir = test_package_dir(argc, argv);
    if (package_dir == NULL) {
        printf("SKIP: no model package (pass its directory as argv[1] or set ATRANK_PACKAGE)\n");
        return TEST_EXIT_SKIP;
    }
    golden_set golden;
    if (golden_load(package_dir, &golden) != 0) {
        fprintf(stderr, "FAIL: cannot read the golden requests of %s (reason above)\n", package_dir);
        return 1;
    }
    printf("package %s: %zu golden requests, per-request tolerances up to %.3g\n", package_dir, golden.requests_len,
           golden.tolerance);

    int ran = 0;
    const char *ort_lib = getenv("ATRANK_ORT_LIB");
    if (ort_lib == NULL || ort_lib[0] == '\0') {
        printf("SKIP: ort backend: ATRANK_ORT_LIB is unset (point it at libonnxruntime.so to test ORT)\n");
    } else {
        ran += run_backend(package_dir, ATRANK_BACKEND_ORT, &golden);
    }
    ran += run_backend(package_dir, ATRANK_BACKEND_TRACT, &golden);
    golden_free(&golden);

    if (test_failures > 0) {
        fprintf(stderr, "test_golden: %d check(s) failed\n", test_failures);
        return 1;
    }
    if (ran == 0) {
        return TEST_EXIT_SKIP;
    }
    printf("test_golden: PASS\n");
    return 0;
}
