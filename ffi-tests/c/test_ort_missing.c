/*
 * A missing ONNX Runtime library, from C: loading on ORT fails with
 * ATRANK_ERROR_BACKEND_UNAVAILABLE and a message naming the path, both through the environment
 * ($ATRANK_ORT_LIB, set here before the first ORT load) and through the builder; `*model_out`
 * stays untouched; nothing crashes; the tract backend still loads and scores afterwards; and a
 * failed load is not remembered: the real library ($ATRANK_ORT_LIB as given to the test) then
 * loads through the builder in the same process.
 *
 * It runs in its own process because ONNX Runtime is opened once per process.
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static const char *PKG = "tests/fixtures/tiny";
#define MISSING "/nonexistent/atrank-test/libonnxruntime.so.1.31.1"

int main(void) {
    /* The real library (if the caller has one), for the retry at the end. */
    const char *env = getenv("ATRANK_ORT_LIB");
    char *real = env != NULL && *env != '\0' ? strdup(env) : NULL;
    if (setenv("ATRANK_ORT_LIB", MISSING, 1) != 0) {
        perror("setenv");
        return 1;
    }
    const atrank_model *sentinel = (const atrank_model *)(uintptr_t)0x1;
    const atrank_model *m = sentinel;
    expect_error("load on ORT with $ATRANK_ORT_LIB missing", atrank_model_load(PKG, ATRANK_BACKEND_ORT, &m),
                 ATRANK_ERROR_BACKEND_UNAVAILABLE, MISSING);
    if (m != sentinel) test_fail("model_out was written although the load failed");

    atrank_model_builder *b = NULL;
    if (expect_ok("builder_new", atrank_model_builder_new(PKG, &b))) {
        expect_ok("set_backend", atrank_model_builder_set_backend(b, ATRANK_BACKEND_ORT));
        expect_ok("set_ort_library", atrank_model_builder_set_ort_library(b, MISSING ".other"));
        expect_error("builder build with a missing ORT library", atrank_model_builder_build(b, &m),
                     ATRANK_ERROR_BACKEND_UNAVAILABLE, MISSING ".other");
        if (m != sentinel) test_fail("model_out was written although the build failed");
    }

    /* tract needs no other library: it still serves. */
    if (expect_ok("load on tract after the ORT failures", atrank_model_load(PKG, ATRANK_BACKEND_TRACT, &m))) {
        const char *cands[2] = {"i1", "i2"};
        atrank_behavior hist[1] = {{.item = "i3", .timestamp = 1300000000}};
        float out[2];
        expect_ok("score on tract", atrank_model_score(m, hist, 1, cands, 2, 1300086400, out, 2));
        atrank_model_free(m);
    }
    /* A failed load is not remembered: with the real library the same process loads ORT. */
    if (real != NULL && expect_ok("builder_new", atrank_model_builder_new(PKG, &b))) {
        expect_ok("set_backend", atrank_model_builder_set_backend(b, ATRANK_BACKEND_ORT));
        expect_ok("set_ort_library", atrank_model_builder_set_ort_library(b, real));
        if (expect_ok("ORT load with the real library after the failures", atrank_model_builder_build(b, &m))) {
            atrank_backend backend = 99;
            expect_ok("backend", atrank_model_backend(m, &backend));
            if (backend != ATRANK_BACKEND_ORT) test_fail("backend is %u, want ATRANK_BACKEND_ORT", backend);
            atrank_model_free(m);
        }
    } else if (real == NULL) {
        printf("ATRANK_ORT_LIB is not set: the retry with a real library is not tested\n");
    }
    free(real);
    if (test_failures > 0) {
        fprintf(stderr, "%d check(s) failed\n", test_failures);
        return 1;
    }
    printf("test_ort_missing: all checks passed\n");
    return 0;
}
