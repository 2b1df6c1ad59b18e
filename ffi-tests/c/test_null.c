/*
 * Every C entry point, with NULL in each pointer argument in turn: the documented result
 * (ATRANK_ERROR_NULL_ARGUMENT naming the argument, or the documented NULL behaviour of the
 * getters and `_free` functions), out-parameters untouched, and the same calls with every
 * pointer valid succeeding, so that each refusal is caused by the NULL alone. Also zero lengths
 * with NULL arrays, where they are valid (behaviors) and where not (candidates, features with a
 * length).
 *
 * A package is needed for the live handles: tests/fixtures/tiny (tract), run from the
 * repository root (CTest does).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common.h"

static const char *PKG = "tests/fixtures/tiny";

int main(void) {
    /* The getters and frees on NULL. */
    if (atrank_error_code(NULL) != ATRANK_OK) test_fail("atrank_error_code(NULL) is not ATRANK_OK");
    const char *msg = atrank_error_message(NULL);
    if (msg == NULL || msg[0] != '\0') test_fail("atrank_error_message(NULL) is not an empty string");
    atrank_error_free(NULL);
    atrank_model_free(NULL);
    atrank_model_builder_free(NULL);
    atrank_handle_free(NULL);
    if (atrank_version() == NULL || atrank_abi_version() != ATRANK_ABI_VERSION) test_fail("version functions");

    /* Builder. */
    atrank_model_builder *b = (atrank_model_builder *)(uintptr_t)0x1, *b0 = b;
    expect_error("builder_new(NULL package_dir)", atrank_model_builder_new(NULL, &b), ATRANK_ERROR_NULL_ARGUMENT,
                 "package_dir");
    if (b != b0) test_fail("builder_new wrote builder_out on error");
    expect_error("builder_new(NULL builder_out)", atrank_model_builder_new(PKG, NULL), ATRANK_ERROR_NULL_ARGUMENT,
                 "builder_out");
    expect_error("set_backend(NULL)", atrank_model_builder_set_backend(NULL, ATRANK_BACKEND_TRACT),
                 ATRANK_ERROR_NULL_ARGUMENT, "builder");
    expect_error("set_intra_threads(NULL)", atrank_model_builder_set_intra_threads(NULL, 1),
                 ATRANK_ERROR_NULL_ARGUMENT, "builder");
    expect_error("set_gpu_policy(NULL)", atrank_model_builder_set_gpu_policy(NULL, ATRANK_GPU_OFF),
                 ATRANK_ERROR_NULL_ARGUMENT, "builder");
    expect_error("set_ort_library(NULL builder)", atrank_model_builder_set_ort_library(NULL, "x"),
                 ATRANK_ERROR_NULL_ARGUMENT, "builder");
    expect_error("set_sessions(NULL)", atrank_model_builder_set_sessions(NULL, 2), ATRANK_ERROR_NULL_ARGUMENT,
                 "builder");
    expect_error("set_cache_capacity(NULL)", atrank_model_builder_set_cache_capacity(NULL, 1),
                 ATRANK_ERROR_NULL_ARGUMENT, "builder");
    const atrank_model *m = (const atrank_model *)(uintptr_t)0x1, *m0 = m;
    expect_error("build(NULL builder)", atrank_model_builder_build(NULL, &m), ATRANK_ERROR_NULL_ARGUMENT, "builder");
    if (m != m0) test_fail("build wrote model_out on error");

    /* The same calls with every pointer valid succeed. */
    b = NULL;
    if (!expect_ok("builder_new", atrank_model_builder_new(PKG, &b))) return 1;
    expect_ok("set_backend", atrank_model_builder_set_backend(b, ATRANK_BACKEND_TRACT));
    expect_ok("set_intra_threads", atrank_model_builder_set_intra_threads(b, 1));
    expect_ok("set_gpu_policy", atrank_model_builder_set_gpu_policy(b, ATRANK_GPU_OFF));
    expect_ok("set_cache_capacity", atrank_model_builder_set_cache_capacity(b, 4));
    expect_ok("set_sessions", atrank_model_builder_set_sessions(b, 2));
    expect_error("set_sessions(0)", atrank_model_builder_set_sessions(b, 0), ATRANK_ERROR_INVALID_ARGUMENT, "sessions");
    expect_error("set_sessions(65)", atrank_model_builder_set_sessions(b, 65), ATRANK_ERROR_INVALID_ARGUMENT, "1..=64");
    expect_error("set_ort_library(NULL path)", atrank_model_builder_set_ort_library(b, NULL),
                 ATRANK_ERROR_NULL_ARGUMENT, "path");
    m = NULL;
    if (!expect_ok("build", atrank_model_builder_build(b, &m))) return 1;

    /* Model getters. */
    expect_error("load(NULL dir)", atrank_model_load(NULL, ATRANK_BACKEND_TRACT, &m0), ATRANK_ERROR_NULL_ARGUMENT,
                 "package_dir");
    expect_error("load(NULL model_out)", atrank_model_load(PKG, ATRANK_BACKEND_TRACT, NULL),
                 ATRANK_ERROR_NULL_ARGUMENT, "model_out");
    atrank_backend backend = 77;
    atrank_serving serving = 77;
    expect_error("backend(NULL model)", atrank_model_backend(NULL, &backend), ATRANK_ERROR_NULL_ARGUMENT, "model");
    expect_error("backend(NULL out)", atrank_model_backend(m, NULL), ATRANK_ERROR_NULL_ARGUMENT, "backend_out");
    expect_error("serving(NULL model)", atrank_model_serving(NULL, &serving), ATRANK_ERROR_NULL_ARGUMENT, "model");
    expect_error("serving(NULL out)", atrank_model_serving(m, NULL), ATRANK_ERROR_NULL_ARGUMENT, "serving_out");
    size_t max_cands = 77;
    expect_error("max_candidates(NULL model)", atrank_model_max_candidates(NULL, &max_cands),
                 ATRANK_ERROR_NULL_ARGUMENT, "model");
    expect_error("max_candidates(NULL out)", atrank_model_max_candidates(m, NULL), ATRANK_ERROR_NULL_ARGUMENT,
                 "max_out");
    if (backend != 77 || serving != 77 || max_cands != 77) test_fail("a getter wrote its out-parameter on error");
    /* limits.max_candidates as spec.json says, read independently. */
    expect_ok("max_candidates", atrank_model_max_candidates(m, &max_cands));
    if (max_cands != test_spec_max_candidates(PKG))
        test_fail("max_candidates %zu, spec.json says %zu", max_cands, test_spec_max_candidates(PKG));
    expect_ok("backend", atrank_model_backend(m, &backend));
    expect_ok("serving", atrank_model_serving(m, &serving));
    if (backend != ATRANK_BACKEND_TRACT || serving != ATRANK_SERVING_TRACT) test_fail("backend %u serving %u", backend, serving);

    /* Scoring: NULL in each pointer, and zero lengths. */
    atrank_feature feat = {"category", NULL};
    atrank_behavior hist[1] = {{.item = "i3", .timestamp = 1300000000}};
    atrank_behavior with_null_feature[1] = {{.item = "i3", .timestamp = 1300000000, .features = &feat, .features_len = 1}};
    atrank_behavior features_null_with_len[1] = {{.item = "i3", .timestamp = 1300000000, .features = NULL, .features_len = 2}};
    const char *cands[2] = {"i1", "i2"};
    const int64_t t = 1300086400;
    float out[2] = {-7.0f, -7.0f};
    expect_error("score(NULL model)", atrank_model_score(NULL, hist, 1, cands, 2, t, out, 2), ATRANK_ERROR_NULL_ARGUMENT,
                 "model");
    expect_error("score(NULL behaviors, len 1)", atrank_model_score(m, NULL, 1, cands, 2, t, out, 2),
                 ATRANK_ERROR_NULL_ARGUMENT, "behaviors");
    expect_error("score(NULL candidates, len 2)", atrank_model_score(m, hist, 1, NULL, 2, t, out, 2),
                 ATRANK_ERROR_NULL_ARGUMENT, "candidates");
    expect_error("score(NULL candidates, len 0)", atrank_model_score(m, hist, 1, NULL, 0, t, out, 0),
                 ATRANK_ERROR_INVALID_ARGUMENT, "candidates");
    expect_error("score(NULL scores_out)", atrank_model_score(m, hist, 1, cands, 2, t, NULL, 2),
                 ATRANK_ERROR_NULL_ARGUMENT, "scores_out");
    expect_error("score(NULL feature value)", atrank_model_score(m, with_null_feature, 1, cands, 2, t, out, 2),
                 ATRANK_ERROR_NULL_ARGUMENT, "behaviors[0].features[0].value");
    expect_error("score(NULL features, len 2)", atrank_model_score(m, features_null_with_len, 1, cands, 2, t, out, 2),
                 ATRANK_ERROR_NULL_ARGUMENT, "behaviors[0].features");
    /* Not NULL, but caught the same way: a feature name the group does not have (a typo would
     * otherwise be ignored silently). */
    atrank_feature typo = {"categroy", "c1"};
    atrank_behavior with_typo[1] = {{.item = "i3", .timestamp = 1300000000, .features = &typo, .features_len = 1}};
    expect_error("score(unknown feature name)", atrank_model_score(m, with_typo, 1, cands, 2, t, out, 2),
                 ATRANK_ERROR_INVALID_ARGUMENT, "\"categroy\" is not a feature");
    expect_error("score_cached(NULL model)", atrank_model_score_cached(NULL, "u", hist, 1, cands, 2, t, out, 2),
                 ATRANK_ERROR_NULL_ARGUMENT, "model");
    expect_error("score_cached(NULL key)", atrank_model_score_cached(m, NULL, hist, 1, cands, 2, t, out, 2),
                 ATRANK_ERROR_NULL_ARGUMENT, "user_key");
    if (out[0] != -7.0f || out[1] != -7.0f) test_fail("scores_out was written on error");
    expect_ok("score(empty history: NULL, 0)", atrank_model_score(m, NULL, 0, cands, 2, t, out, 2));
    expect_ok("score_cached", atrank_model_score_cached(m, "u", hist, 1, cands, 2, t, out, 2));

    /* Handle. */
    atrank_handle *h = (atrank_handle *)(uintptr_t)0x1, *h0 = h;
    expect_error("handle_new(NULL model)", atrank_handle_new(NULL, &h), ATRANK_ERROR_NULL_ARGUMENT, "model");
    expect_error("handle_new(NULL out)", atrank_handle_new(m, NULL), ATRANK_ERROR_NULL_ARGUMENT, "handle_out");
    if (h != h0) test_fail("handle_new wrote handle_out on error");
    h = NULL;
    if (expect_ok("handle_new", atrank_handle_new(m, &h))) {
        uint64_t gen = 77;
        const atrank_model *cur = m0;
        expect_error("handle_generation(NULL handle)", atrank_handle_generation(NULL, &gen), ATRANK_ERROR_NULL_ARGUMENT,
                     "handle");
        expect_error("handle_generation(NULL out)", atrank_handle_generation(h, NULL), ATRANK_ERROR_NULL_ARGUMENT,
                     "generation_out");
        expect_error("handle_current(NULL handle)", atrank_handle_current(NULL, &cur), ATRANK_ERROR_NULL_ARGUMENT,
                     "handle");
        expect_error("handle_current(NULL out)", atrank_handle_current(h, NULL), ATRANK_ERROR_NULL_ARGUMENT,
                     "model_out");
        expect_error("handle_score(NULL handle)", atrank_handle_score(NULL, hist, 1, cands, 2, t, out, 2),
                     ATRANK_ERROR_NULL_ARGUMENT, "handle");
        expect_error("handle_score(NULL scores_out)", atrank_handle_score(h, hist, 1, cands, 2, t, NULL, 2),
                     ATRANK_ERROR_NULL_ARGUMENT, "scores_out");
        expect_error("handle_snapshot(NULL handle)", atrank_handle_snapshot(NULL, &cur, &gen),
                     ATRANK_ERROR_NULL_ARGUMENT, "handle");
        expect_error("handle_snapshot(NULL model_out)", atrank_handle_snapshot(h, NULL, &gen),
                     ATRANK_ERROR_NULL_ARGUMENT, "model_out");
        expect_error("handle_snapshot(NULL generation_out)", atrank_handle_snapshot(h, &cur, NULL),
                     ATRANK_ERROR_NULL_ARGUMENT, "generation_out");
        if (gen != 77 || cur != m0) test_fail("a handle getter wrote its out-parameter on error");
        expect_error("handle_reload(NULL builder)", atrank_handle_reload(h, NULL, &gen), ATRANK_ERROR_NULL_ARGUMENT,
                     "builder");
        atrank_model_builder *nb = NULL;
        if (expect_ok("builder_new", atrank_model_builder_new(PKG, &nb))) {
            /* A NULL handle still consumes the builder (no leak under ASan/valgrind). */
            atrank_model_builder_set_backend(nb, ATRANK_BACKEND_TRACT);
            expect_error("handle_reload(NULL handle)", atrank_handle_reload(NULL, nb, &gen), ATRANK_ERROR_NULL_ARGUMENT,
                         "handle");
        }
        nb = NULL;
        if (expect_ok("builder_new", atrank_model_builder_new(PKG, &nb))) {
            expect_ok("set_backend", atrank_model_builder_set_backend(nb, ATRANK_BACKEND_TRACT));
            expect_ok("handle_reload(NULL generation_out is allowed)", atrank_handle_reload(h, nb, NULL));
        }
        expect_ok("handle_generation", atrank_handle_generation(h, &gen));
        if (gen != 2) test_fail("generation %llu, want 2", (unsigned long long)gen);
        if (expect_ok("handle_current", atrank_handle_current(h, &cur))) atrank_model_free(cur);
        gen = 0;
        if (expect_ok("handle_snapshot", atrank_handle_snapshot(h, &cur, &gen))) {
            if (gen != 2) test_fail("snapshot generation %llu, want 2", (unsigned long long)gen);
            expect_ok("score on the snapshot", atrank_model_score(cur, hist, 1, cands, 2, t, out, 2));
            atrank_model_free(cur);
        }
        expect_ok("handle_score", atrank_handle_score(h, hist, 1, cands, 2, t, out, 2));
        atrank_handle_free(h);
    }

    /* Batch. */
    atrank_request req = {.behaviors = hist, .behaviors_len = 1, .candidates = cands, .candidates_len = 2, .request_time = t};
    expect_error("score_batch(NULL model)", atrank_model_score_batch(NULL, &req, 1, out, 2), ATRANK_ERROR_NULL_ARGUMENT,
                 "model");
    expect_error("score_batch(NULL requests)", atrank_model_score_batch(m, NULL, 1, out, 2), ATRANK_ERROR_NULL_ARGUMENT,
                 "requests");
    expect_error("score_batch(NULL scores_out)", atrank_model_score_batch(m, &req, 1, NULL, 2),
                 ATRANK_ERROR_NULL_ARGUMENT, "scores_out");
    expect_ok("score_batch", atrank_model_score_batch(m, &req, 1, out, 2));

    atrank_model_free(m);
    if (test_failures > 0) {
        fprintf(stderr, "%d check(s) failed\n", test_failures);
        return 1;
    }
    printf("test_null: all checks passed\n");
    return 0;
}
