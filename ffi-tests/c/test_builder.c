/*
 * The builder (options), atrank_model_serving, and behaviors of several groups with
 * caller-supplied features, through the C ABI.
 *
 * - Builder: defaults, each setter's bad values (named in the message), NULL handling,
 *   build consuming the builder on success and on error.
 * - GPU policy on a machine without a usable CUDA provider: strict fails with
 *   ATRANK_ERROR_BACKEND_UNAVAILABLE, permissive serves on the CPU (ATRANK_SERVING_ORT_CPU).
 * - verify_hashes: both values load; a flipped byte in a small file is refused under both.
 * - The multigroup fixture's golden requests (groups, features) scored from C on tract (and ORT
 *   when ATRANK_ORT_LIB is set) match the trainer within the golden tolerance.
 *
 * Run from the repository root (CTest does): reads tests/fixtures/tiny-multigroup.
 */
#include <math.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static const char *MULTI = "tests/fixtures/tiny-multigroup";
static const char *SINGLE = "tests/fixtures/tiny";

/* Consumes `err`: checks its code, and that the message contains `needle` (if any). */
static void expect(const char *what, atrank_error *err, atrank_code want, const char *needle) {
    atrank_code got = atrank_error_code(err);
    const char *msg = atrank_error_message(err);
    if (got != want) {
        test_fail("%s: got %s (%s), want %s", what, test_code_name(got), msg, test_code_name(want));
    } else if (needle != NULL && strstr(msg, needle) == NULL) {
        test_fail("%s: message \"%s\" does not mention \"%s\"", what, msg, needle);
    }
    atrank_error_free(err);
}

static const atrank_model *build(const char *dir, atrank_backend backend, atrank_gpu_policy gpu) {
    atrank_model_builder *b = NULL;
    expect("builder_new", atrank_model_builder_new(dir, &b), ATRANK_OK, NULL);
    if (b == NULL) return NULL;
    expect("set_backend", atrank_model_builder_set_backend(b, backend), ATRANK_OK, NULL);
    expect("set_gpu_policy", atrank_model_builder_set_gpu_policy(b, gpu), ATRANK_OK, NULL);
    expect("set_intra_threads", atrank_model_builder_set_intra_threads(b, 2), ATRANK_OK, NULL);
    expect("set_cache_capacity", atrank_model_builder_set_cache_capacity(b, 16), ATRANK_OK, NULL);
    expect("set_sessions", atrank_model_builder_set_sessions(b, 3), ATRANK_OK, NULL);
    const atrank_model *m = NULL;
    atrank_error *err = atrank_model_builder_build(b, &m);
    if (err != NULL) {
        test_fail("build %s on %s: %s", dir, test_backend_name(backend), atrank_error_message(err));
        atrank_error_free(err);
        return NULL;
    }
    return m;
}

static void test_builder_errors(void) {
    atrank_model_builder *b = NULL;
    expect("builder_new(NULL dir)", atrank_model_builder_new(NULL, &b), ATRANK_ERROR_NULL_ARGUMENT, "package_dir");
    expect("builder_new(NULL out)", atrank_model_builder_new(SINGLE, NULL), ATRANK_ERROR_NULL_ARGUMENT, "builder_out");
    expect("set_backend(NULL)", atrank_model_builder_set_backend(NULL, ATRANK_BACKEND_TRACT), ATRANK_ERROR_NULL_ARGUMENT,
           "builder");
    expect("builder_new", atrank_model_builder_new(SINGLE, &b), ATRANK_OK, NULL);
    expect("set_backend(9)", atrank_model_builder_set_backend(b, 9), ATRANK_ERROR_INVALID_ARGUMENT, "backend 9");
    expect("set_gpu_policy(5)", atrank_model_builder_set_gpu_policy(b, 5), ATRANK_ERROR_INVALID_ARGUMENT, "policy 5");
    expect("set_intra_threads(0)", atrank_model_builder_set_intra_threads(b, 0), ATRANK_ERROR_INVALID_ARGUMENT, "threads");
    expect("set_intra_threads(100000)", atrank_model_builder_set_intra_threads(b, 100000), ATRANK_ERROR_INVALID_ARGUMENT,
           "1..=1024");
    expect("set_ort_library(NULL)", atrank_model_builder_set_ort_library(b, NULL), ATRANK_ERROR_NULL_ARGUMENT, "path");
    expect("set_verify_hashes(NULL builder)", atrank_model_builder_set_verify_hashes(NULL, ATRANK_VERIFY_HASHES_ALL),
           ATRANK_ERROR_NULL_ARGUMENT, "builder");
    expect("set_verify_hashes(2)", atrank_model_builder_set_verify_hashes(b, 2), ATRANK_ERROR_INVALID_ARGUMENT,
           "verify 2 is not an atrank_verify_hashes");
    expect("set_verify_hashes(UINT32_MAX)", atrank_model_builder_set_verify_hashes(b, UINT32_MAX),
           ATRANK_ERROR_INVALID_ARGUMENT, "verify 4294967295");
    expect("set_verify_hashes(SMALL = 0)", atrank_model_builder_set_verify_hashes(b, 0), ATRANK_OK, NULL);
    expect("set_verify_hashes(ALL = 1)", atrank_model_builder_set_verify_hashes(b, 1), ATRANK_OK, NULL);
    expect("set_exclude_seen(NULL builder)", atrank_model_builder_set_exclude_seen(NULL, 1), ATRANK_ERROR_NULL_ARGUMENT,
           "builder");
    expect("set_exclude_seen(2)", atrank_model_builder_set_exclude_seen(b, 2), ATRANK_ERROR_INVALID_ARGUMENT,
           "exclude is 2");
    expect("set_exclude_seen(UINT32_MAX)", atrank_model_builder_set_exclude_seen(b, UINT32_MAX),
           ATRANK_ERROR_INVALID_ARGUMENT, "exclude is 4294967295");
    expect("set_exclude_seen(1)", atrank_model_builder_set_exclude_seen(b, 1), ATRANK_OK, NULL);
    expect("set_exclude_seen(0)", atrank_model_builder_set_exclude_seen(b, 0), ATRANK_OK, NULL);
    expect("set_batch_rows(NULL builder)", atrank_model_builder_set_batch_rows(NULL, 8), ATRANK_ERROR_NULL_ARGUMENT,
           "builder");
    expect("set_batch_rows(SIZE_MAX)", atrank_model_builder_set_batch_rows(b, SIZE_MAX), ATRANK_OK, NULL);
    expect("set_batch_rows(0)", atrank_model_builder_set_batch_rows(b, 0), ATRANK_OK, NULL);
    expect("build(NULL out)", atrank_model_builder_build(b, NULL), ATRANK_ERROR_NULL_ARGUMENT, "model_out");
    /* build consumed b even though it failed: no free here. A missing package also consumes. */
    expect("builder_new", atrank_model_builder_new("/nonexistent/atrank", &b), ATRANK_OK, NULL);
    const atrank_model *m = NULL;
    expect("build(missing dir)", atrank_model_builder_build(b, &m), ATRANK_ERROR_IO, "/nonexistent/atrank");
    if (m != NULL) test_fail("model_out written on error");
    expect("build(NULL builder)", atrank_model_builder_build(NULL, &m), ATRANK_ERROR_NULL_ARGUMENT, "builder");
    atrank_model_builder_free(NULL);
    /* A builder that is never built is freed. */
    expect("builder_new", atrank_model_builder_new(SINGLE, &b), ATRANK_OK, NULL);
    atrank_model_builder_free(b);
    atrank_serving s = 99;
    expect("serving(NULL model)", atrank_model_serving(NULL, &s), ATRANK_ERROR_NULL_ARGUMENT, "model");
    if (s != 99) test_fail("serving_out written on error");
}

static void test_gpu_policy(void) {
    const char *lib = getenv("ATRANK_ORT_LIB");
    /* tract has no GPU: strict fails, permissive serves on tract. */
    atrank_model_builder *b = NULL;
    const atrank_model *m = NULL;
    expect("builder_new", atrank_model_builder_new(SINGLE, &b), ATRANK_OK, NULL);
    atrank_error_free(atrank_model_builder_set_backend(b, ATRANK_BACKEND_TRACT));
    atrank_error_free(atrank_model_builder_set_gpu_policy(b, ATRANK_GPU_STRICT));
    expect("tract strict GPU", atrank_model_builder_build(b, &m), ATRANK_ERROR_BACKEND_UNAVAILABLE, "strict");
    if (lib == NULL || *lib == '\0') {
        fprintf(stderr, "skip: ORT GPU-policy checks (ATRANK_ORT_LIB is not set)\n");
        return;
    }
    expect("builder_new", atrank_model_builder_new(SINGLE, &b), ATRANK_OK, NULL);
    atrank_error_free(atrank_model_builder_set_ort_library(b, lib));
    atrank_error_free(atrank_model_builder_set_gpu_policy(b, ATRANK_GPU_STRICT));
    expect("ort strict GPU without CUDA", atrank_model_builder_build(b, &m), ATRANK_ERROR_BACKEND_UNAVAILABLE, "CUDA");
    m = build(SINGLE, ATRANK_BACKEND_ORT, ATRANK_GPU_PERMISSIVE);
    if (m != NULL) {
        atrank_serving s = 99;
        expect("serving", atrank_model_serving(m, &s), ATRANK_OK, NULL);
        if (s != ATRANK_SERVING_ORT_CPU) test_fail("permissive GPU: serving %u, want ATRANK_SERVING_ORT_CPU", s);
        atrank_model_free(m);
    }
}

/* atrank_model_builder_set_verify_hashes: both values load the package; a file of at most
 * 64 MiB is hashed whatever the setting, so one flipped byte in tables.bin or in a vocabulary is
 * refused under both. (A file over 64 MiB, hashed only under ALL, is not built here.) */
static void test_verify_hashes(void) {
    const atrank_verify_hashes settings[2] = {ATRANK_VERIFY_HASHES_SMALL, ATRANK_VERIFY_HASHES_ALL};
    const char *files[2] = {"tables.bin", "vocab/item_id.atv"};
    for (int s = 0; s < 2; s++) {
        char what[160];
        atrank_model_builder *b = NULL;
        const atrank_model *m = NULL;
        expect("builder_new", atrank_model_builder_new(SINGLE, &b), ATRANK_OK, NULL);
        if (b == NULL) return;
        expect("set_backend", atrank_model_builder_set_backend(b, ATRANK_BACKEND_TRACT), ATRANK_OK, NULL);
        expect("set_verify_hashes", atrank_model_builder_set_verify_hashes(b, settings[s]), ATRANK_OK, NULL);
        snprintf(what, sizeof what, "build the tiny package with verify_hashes %u", (unsigned)settings[s]);
        expect(what, atrank_model_builder_build(b, &m), ATRANK_OK, NULL);
        if (m == NULL) test_fail("%s: no model", what);
        atrank_model_free(m);
        for (int f = 0; f < 2; f++) {
            char *src = test_join_path(SINGLE, files[f]);
            size_t len = 0;
            char *bytes = src != NULL ? test_read_file(src, &len) : NULL;
            free(src);
            char *dir = test_copy_package(SINGLE);
            if (bytes == NULL || len < 64 || dir == NULL) {
                test_fail("cannot copy the tiny package and read its %s", files[f]);
            } else {
                bytes[len - 1] ^= 0x40; /* the last byte: a key byte or tensor data, not a header */
                if (test_write_file(dir, files[f], bytes, len) == 0) {
                    m = NULL;
                    expect("builder_new", atrank_model_builder_new(dir, &b), ATRANK_OK, NULL);
                    expect("set_verify_hashes", atrank_model_builder_set_verify_hashes(b, settings[s]), ATRANK_OK,
                           NULL);
                    expect("set_backend", atrank_model_builder_set_backend(b, ATRANK_BACKEND_TRACT), ATRANK_OK, NULL);
                    snprintf(what, sizeof what, "one flipped byte in %s, verify_hashes %u", files[f],
                             (unsigned)settings[s]);
                    atrank_error *err = atrank_model_builder_build(b, &m);
                    const char *msg = err != NULL ? atrank_error_message(err) : NULL;
                    if (msg != NULL && strstr(msg, files[f]) == NULL)
                        test_fail("%s: message does not name %s: %s", what, files[f], msg);
                    expect(what, err, ATRANK_ERROR_INVALID_PACKAGE, "SHA-256");
                    if (m != NULL) test_fail("%s: model_out written", what);
                    else printf("ok   %s: refused\n", what);
                }
            }
            if (dir != NULL) test_remove_tree(dir);
            free(dir);
            free(bytes);
        }
    }
}

/* Scores every golden request of the multigroup fixture with groups and features set. */
static void test_multigroup_golden(atrank_backend backend) {
    const atrank_model *m = build(MULTI, backend, ATRANK_GPU_OFF);
    if (m == NULL) return;
    char *path = test_join_path(MULTI, "golden.json");
    cJSON *golden = path ? test_read_json(path) : NULL;
    free(path);
    if (golden == NULL) {
        test_fail("cannot read %s/golden.json", MULTI);
        atrank_model_free(m);
        return;
    }
    /* Each request's derived tolerance 2 D U M (docs/tolerances.md), else the top-level one. */
    double top = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(golden, "tolerance"));
    double tol = top, worst = 0.0;
    size_t n_req = 0;
    const cJSON *req;
    cJSON_ArrayForEach(req, cJSON_GetObjectItemCaseSensitive(golden, "requests")) {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "name"));
        const cJSON *behs = cJSON_GetObjectItemCaseSensitive(req, "behaviors");
        const cJSON *cands = cJSON_GetObjectItemCaseSensitive(req, "candidates");
        const cJSON *scores = cJSON_GetObjectItemCaseSensitive(req, "scores");
        const cJSON *own = cJSON_GetObjectItemCaseSensitive(req, "tolerance");
        tol = cJSON_IsNumber(own) ? own->valuedouble : top;
        size_t nb = (size_t)cJSON_GetArraySize(behs), nc = (size_t)cJSON_GetArraySize(cands);
        atrank_behavior *b = calloc(nb > 0 ? nb : 1, sizeof *b);
        atrank_feature *feats = calloc(nb * 4 + 1, sizeof *feats);
        const char **c = calloc(nc > 0 ? nc : 1, sizeof *c);
        float *out = calloc(nc > 0 ? nc : 1, sizeof *out);
        size_t i = 0, used = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, behs) {
            b[i].group = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "group"));
            b[i].item = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "id"));
            b[i].action = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "action"));
            b[i].timestamp = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(x, "timestamp"));
            const cJSON *f;
            b[i].features = &feats[used];
            cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(x, "features")) {
                if (used < nb * 4) {
                    feats[used].name = f->string;
                    feats[used].value = cJSON_GetStringValue(f);
                    used++;
                    b[i].features_len++;
                }
            }
            i++;
        }
        i = 0;
        cJSON_ArrayForEach(x, cands) c[i++] = cJSON_GetStringValue(x);
        int64_t t = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(req, "request_time"));
        atrank_error *err = atrank_model_score(m, nb > 0 ? b : NULL, nb, c, nc, t, out, nc);
        if (err != NULL) {
            test_fail("%s %s: %s", test_backend_name(backend), name, atrank_error_message(err));
            atrank_error_free(err);
        } else {
            for (size_t k = 0; k < nc; k++) {
                double want = cJSON_GetNumberValue(cJSON_GetArrayItem(scores, (int)k));
                double d = fabs((double)out[k] - want);
                if (!(d <= tol)) test_fail("%s %s candidate %zu: %g vs trainer %g", test_backend_name(backend), name, k,
                                           (double)out[k], want);
                if (d > worst) worst = d;
            }
        }
        n_req++;
        free(b);
        free(feats);
        free(c);
        free(out);
    }
    printf("%s on %s from C (groups + features): %zu requests, max |diff| %.3g (tolerances up to %g)\n",
           test_backend_name(backend), MULTI, n_req, worst, top);
    cJSON_Delete(golden);
    atrank_model_free(m);
}

/* The first golden request of the single-group fixture, scored through a handle. */
static const char *CANDS[3] = {"i1", "i2", "no-such-item"};

typedef struct worker {
    const atrank_handle *handle;
    int calls;
    int failures;
} worker;

static void *score_loop(void *arg) {
    worker *w = arg;
    atrank_behavior hist[2] = {{.item = "i1", .action = "like", .timestamp = 1000000000},
                               {.item = "i7", .timestamp = 1000003600}};
    for (int k = 0; k < 200; k++) {
        float out[3];
        atrank_error *err = atrank_handle_score(w->handle, hist, 2, CANDS, 3, 1000086400, out, 3);
        w->calls++;
        if (err != NULL || !isfinite(out[0])) w->failures++;
        atrank_error_free(err);
    }
    return NULL;
}

static atrank_model_builder *builder_for(const char *dir) {
    atrank_model_builder *b = NULL;
    atrank_error_free(atrank_model_builder_new(dir, &b));
    atrank_error_free(atrank_model_builder_set_backend(b, ATRANK_BACKEND_TRACT));
    return b;
}

/* Hot swap from C: 4 threads score through one handle while the main thread reloads, with a
 * failing reload in between; no call may fail, and the generation counts successful swaps. */
static void test_handle(void) {
    const atrank_model *m = build(SINGLE, ATRANK_BACKEND_TRACT, ATRANK_GPU_OFF);
    if (m == NULL) return;
    atrank_handle *h = NULL;
    expect("handle_new(NULL model)", atrank_handle_new(NULL, &h), ATRANK_ERROR_NULL_ARGUMENT, "model");
    expect("handle_new", atrank_handle_new(m, &h), ATRANK_OK, NULL);
    atrank_model_free(m); /* the handle holds its own reference */
    if (h == NULL) return;
    worker w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){h, 0, 0};
        if (pthread_create(&t[i], NULL, score_loop, &w[i]) != 0) test_fail("pthread_create");
    }
    uint64_t gen = 0;
    for (int r = 0; r < 6; r++) {
        if (r % 2 == 0) {
            expect("reload(missing package)", atrank_handle_reload(h, builder_for("/nonexistent/atrank"), &gen),
                   ATRANK_ERROR_IO, "/nonexistent/atrank");
        } else {
            expect("reload", atrank_handle_reload(h, builder_for(SINGLE), &gen), ATRANK_OK, NULL);
        }
    }
    int calls = 0, failures = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        calls += w[i].calls;
        failures += w[i].failures;
    }
    expect("generation", atrank_handle_generation(h, &gen), ATRANK_OK, NULL);
    if (gen != 4) test_fail("generation %llu after 3 good reloads, want 4", (unsigned long long)gen);
    if (failures != 0) test_fail("%d of %d calls failed during reloads", failures, calls);
    const atrank_model *cur = NULL;
    expect("handle_current", atrank_handle_current(h, &cur), ATRANK_OK, NULL);
    atrank_model_free(cur);
    printf("handle: %d calls from 4 threads during 6 reloads (3 refused), %d failed\n", calls, failures);
    atrank_handle_free(h);
    atrank_handle_free(NULL);
}

/* score_cached equals score, on the package with split graphs, twice (second time cached). */
static void test_cached(void) {
    const atrank_model *m = build(MULTI, ATRANK_BACKEND_TRACT, ATRANK_GPU_OFF);
    if (m == NULL) return;
    atrank_behavior hist[3] = {{.item = "i3", .group = "item", .action = "click", .timestamp = 1300000000},
                               {.item = "q1_0", .group = "query", .action = "search", .timestamp = 1300000100},
                               {.item = "cp3_0", .group = "coupon", .action = "claim", .timestamp = 1300000200}};
    const char *cands[3] = {"i1", "i40", "i77"};
    float plain[3], cached[3];
    /* Not a golden request: the package's bound_any_request, 2 D U M_max (docs/tolerances.md). */
    double tol = test_bound_any_request(MULTI);
    expect("score", atrank_model_score(m, hist, 3, cands, 3, 1300086400, plain, 3), ATRANK_OK, NULL);
    for (int round = 0; round < 2; round++) {
        expect("score_cached", atrank_model_score_cached(m, "user-1", hist, 3, cands, 3, 1300086400, cached, 3),
               ATRANK_OK, NULL);
        for (int k = 0; k < 3; k++)
            if (!(fabs((double)plain[k] - (double)cached[k]) <= tol))
                test_fail("score_cached round %d candidate %d: %g vs %g", round, k, (double)cached[k], (double)plain[k]);
    }
    expect("score_cached(NULL key)", atrank_model_score_cached(m, NULL, hist, 3, cands, 3, 0, cached, 3),
           ATRANK_ERROR_NULL_ARGUMENT, "user_key");
    atrank_model_free(m);
}

int main(void) {
    test_handle();
    test_cached();
    test_builder_errors();
    test_verify_hashes();
    test_gpu_policy();
    test_multigroup_golden(ATRANK_BACKEND_TRACT);
    const char *lib = getenv("ATRANK_ORT_LIB");
    if (lib != NULL && *lib != '\0') test_multigroup_golden(ATRANK_BACKEND_ORT);
    if (test_failures > 0) {
        fprintf(stderr, "%d check(s) failed\n", test_failures);
        return 1;
    }
    printf("test_builder: all checks passed\n");
    return 0;
}
