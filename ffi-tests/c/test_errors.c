/*
 * Error paths of the C ABI: every bad input returns the documented code with a non-empty
 * message that names the argument, leaves out-parameters untouched, and never crashes.
 *
 * Usage: test_errors [package_dir]   (default: $ATRANK_PACKAGE)
 * Checks that need no package always run; the rest are skipped (exit 77 if nothing failed)
 * when there is no package. Scoring errors run on tract, and on ORT too when $ATRANK_ORT_LIB
 * is set. Broken package copies are made in fresh mkdtemp directories (copies of the real
 * package's files with the one file under test replaced) and removed afterwards.
 */
#define _XOPEN_SOURCE 700

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atrank.h"
#include "common.h"

/* A value no correct call writes, to check that out-parameters stay untouched on error. */
#define SENTINEL_SCORE (-12345.5f)
static const atrank_model *const SENTINEL_MODEL = (const atrank_model *)&test_failures;

/* ---------- temporary package copies ---------- */

/* Makes a temporary copy of `package_dir` in which `replace` (a top-level file name) gets
 * `contents`. Returns the new directory (caller frees it and removes it with remove_dir), or
 * NULL with a failure reported. */
static char *make_package_copy(const char *package_dir, const char *replace, const void *contents, size_t len) {
    char *dst = test_copy_package(package_dir);
    if (dst != NULL && test_write_file(dst, replace, contents, len) != 0) {
        test_remove_tree(dst);
        free(dst);
        return NULL;
    }
    return dst;
}

static void remove_dir(const char *dir) { test_remove_tree(dir); }

/* Loads a package that must fail with `want` (or `want2`, if not ATRANK_OK). */
static void expect_load_fails(const char *what, const char *dir, atrank_backend backend, atrank_code want,
                              atrank_code want2, const char *needle) {
    const atrank_model *model = SENTINEL_MODEL;
    atrank_error *err = atrank_model_load(dir, backend, &model);
    if (err != NULL && want2 != ATRANK_OK && atrank_error_code(err) == want2) {
        want = want2;
    }
    expect_error(what, err, want, needle);
    if (model != SENTINEL_MODEL) {
        test_fail("%s: *model_out was written although the load failed", what);
        if (err == NULL) {
            atrank_model_free(model);
        }
    }
}

/* ---------- checks that need no package ---------- */

static void check_without_package(void) {
    if (atrank_error_code(NULL) != ATRANK_OK) {
        test_fail("atrank_error_code(NULL) is %u, expected ATRANK_OK", (unsigned)atrank_error_code(NULL));
    }
    const char *msg = atrank_error_message(NULL);
    if (msg == NULL || msg[0] != '\0') {
        test_fail("atrank_error_message(NULL) should be an empty string, got %s", msg == NULL ? "NULL" : msg);
    }
    atrank_error_free(NULL);
    atrank_model_free(NULL);
    printf("ok   %-48s\n", "NULL error/model accessors and frees are no-ops");

    const atrank_model *model = SENTINEL_MODEL;
    expect_error("load: NULL package_dir", atrank_model_load(NULL, ATRANK_BACKEND_TRACT, &model),
                 ATRANK_ERROR_NULL_ARGUMENT, "package_dir");
    if (model != SENTINEL_MODEL) {
        test_fail("load: NULL package_dir: *model_out was written");
    }
    expect_error("load: NULL model_out", atrank_model_load("/nonexistent", ATRANK_BACKEND_TRACT, NULL),
                 ATRANK_ERROR_NULL_ARGUMENT, "model_out");
    const char *missing = "/nonexistent/atrank-no-such-package";
    expect_load_fails("load: nonexistent directory", missing, ATRANK_BACKEND_TRACT, ATRANK_ERROR_IO, ATRANK_OK,
                      missing);
    expect_error("load: invalid UTF-8 package_dir",
                 atrank_model_load("/tmp/\xff\xfe", ATRANK_BACKEND_TRACT, &model), ATRANK_ERROR_INVALID_UTF8,
                 "package_dir");

    atrank_backend backend = 42;
    expect_error("backend: NULL model", atrank_model_backend(NULL, &backend), ATRANK_ERROR_NULL_ARGUMENT,
                 "model");
    if (backend != 42) {
        test_fail("backend: NULL model: *backend_out was written");
    }

    const char *cands[1] = {"1"};
    float scores[1] = {SENTINEL_SCORE};
    expect_error("score: NULL model", atrank_model_score(NULL, NULL, 0, cands, 1, 0, scores, 1),
                 ATRANK_ERROR_NULL_ARGUMENT, "model");
    if (scores[0] != SENTINEL_SCORE) {
        test_fail("score: NULL model: scores_out was written");
    }
}

/* ---------- scoring errors on a loaded model ---------- */

/* Scores into a sentinel-filled buffer of `out_len` floats (NULL if out_len is (size_t)-1) and
 * expects `want`; the buffer must stay untouched. */
static void expect_score_fails(const char *backend_name, const char *what, const atrank_model *model,
                               const atrank_behavior *behaviors, size_t behaviors_len, const char *const *cands,
                               size_t cands_len, size_t out_len, atrank_code want, const char *needle) {
    char label[256];
    snprintf(label, sizeof label, "%s score: %s", backend_name, what);
    size_t n = out_len == (size_t)-1 ? 0 : out_len;
    float *scores = NULL;
    if (out_len != (size_t)-1) {
        scores = malloc((n + 1) * sizeof *scores);
        if (scores == NULL) {
            test_fail("%s: out of memory", label);
            return;
        }
        for (size_t i = 0; i < n + 1; i++) {
            scores[i] = SENTINEL_SCORE;
        }
    }
    expect_error(label, atrank_model_score(model, behaviors, behaviors_len, cands, cands_len, 881250949, scores, n),
                 want, needle);
    for (size_t i = 0; scores != NULL && i < n + 1; i++) {
        if (scores[i] != SENTINEL_SCORE) {
            test_fail("%s: scores_out[%zu] was written (%g) although the call failed", label, i, (double)scores[i]);
            break;
        }
    }
    free(scores);
}

/* Three item ids the model knows (from a golden request), so scores are not all "unknown". */
static const char *known_ids[3] = {"1", "2", "no-such-item"};

static void pick_known_ids(const golden_set *golden) {
    for (size_t r = 0; r < golden->requests_len; r++) {
        if (golden->requests[r].candidates_len >= 2) {
            known_ids[0] = golden->requests[r].candidates[0];
            known_ids[1] = golden->requests[r].candidates[1];
            return;
        }
    }
    printf("note: no golden request with 2 candidates; scoring checks use made-up ids\n");
}

static void check_scoring(const char *package_dir, atrank_backend backend, size_t max_candidates) {
    const char *name = test_backend_name(backend);
    const atrank_model *model = NULL;
    if (!expect_ok(name, atrank_model_load(package_dir, backend, &model))) {
        test_fail("%s: cannot load %s; scoring checks not run", name, package_dir);
        return;
    }
    expect_error("backend: NULL backend_out", atrank_model_backend(model, NULL), ATRANK_ERROR_NULL_ARGUMENT,
                 "backend_out");

    const char *id0 = known_ids[0], *id1 = known_ids[1];
    const atrank_behavior good[2] = {
        {.item = id0, .category = NULL, .action = "like", .timestamp = 881250000},
        {.item = id1, .category = "no-such-category", .action = NULL, .timestamp = 881250900},
    };
    const atrank_behavior null_item[2] = {
        {.item = id0, .category = NULL, .action = "like", .timestamp = 881250000},
        {.item = NULL, .category = NULL, .action = "like", .timestamp = 881250900},
    };
    const atrank_behavior bad_category[2] = {
        {.item = id0, .category = "\xff\xfe", .action = "like", .timestamp = 881250000},
        {.item = id1, .category = NULL, .action = "like", .timestamp = 881250900},
    };
    const atrank_behavior bad_action[2] = {
        {.item = id0, .category = NULL, .action = "like", .timestamp = 881250000},
        {.item = id1, .category = NULL, .action = "\xc3\x28", .timestamp = 881250900},
    };
    const char *cands[3] = {id0, id1, "no-such-item"};
    const char *bad_utf8[3] = {id0, "\xff\xfe", id1};
    const char *null_cand[3] = {id0, NULL, id1};

    expect_score_fails(name, "behaviors NULL with behaviors_len 2", model, NULL, 2, cands, 3, 3,
                       ATRANK_ERROR_NULL_ARGUMENT, "behaviors");
    expect_score_fails(name, "behaviors[1].item NULL", model, null_item, 2, cands, 3, 3, ATRANK_ERROR_NULL_ARGUMENT,
                       "behaviors[1].item");
    expect_score_fails(name, "behaviors[0].category invalid UTF-8", model, bad_category, 2, cands, 3, 3,
                       ATRANK_ERROR_INVALID_UTF8, "behaviors[0].category");
    expect_score_fails(name, "behaviors[1].action invalid UTF-8", model, bad_action, 2, cands, 3, 3,
                       ATRANK_ERROR_INVALID_UTF8, "behaviors[1].action");
    expect_score_fails(name, "candidates NULL with candidates_len 3", model, good, 2, NULL, 3, 3,
                       ATRANK_ERROR_NULL_ARGUMENT, "candidates");
    expect_score_fails(name, "candidates[1] NULL", model, good, 2, null_cand, 3, 3, ATRANK_ERROR_NULL_ARGUMENT,
                       "candidates[1]");
    expect_score_fails(name, "candidates[1] invalid UTF-8", model, good, 2, bad_utf8, 3, 3,
                       ATRANK_ERROR_INVALID_UTF8, "candidates[1]");
    expect_score_fails(name, "candidates_len 0", model, good, 2, cands, 0, 0, ATRANK_ERROR_INVALID_ARGUMENT,
                       "candidates");
    expect_score_fails(name, "scores_out NULL", model, good, 2, cands, 3, (size_t)-1, ATRANK_ERROR_NULL_ARGUMENT,
                       "scores_out");
    expect_score_fails(name, "scores_out_len 4 != candidates_len 3", model, good, 2, cands, 3, 4,
                       ATRANK_ERROR_BUFFER_SIZE, "scores_out_len");
    expect_score_fails(name, "scores_out_len 2 != candidates_len 3", model, good, 2, cands, 3, 2,
                       ATRANK_ERROR_BUFFER_SIZE, "scores_out_len");

    /* max_candidates + 1 fails, max_candidates succeeds. */
    if (max_candidates > 0) {
        const char **many = malloc((max_candidates + 1) * sizeof *many);
        float *out = malloc((max_candidates + 1) * sizeof *out);
        if (many == NULL || out == NULL) {
            test_fail("out of memory for %zu candidates", max_candidates + 1);
        } else {
            for (size_t i = 0; i < max_candidates + 1; i++) {
                many[i] = cands[i % 3];
            }
            char what[128];
            snprintf(what, sizeof what, "%zu candidates (limit %zu)", max_candidates + 1, max_candidates);
            expect_score_fails(name, what, model, good, 2, many, max_candidates + 1, max_candidates + 1,
                               ATRANK_ERROR_INVALID_ARGUMENT, "candidates");
            for (size_t i = 0; i < max_candidates; i++) {
                out[i] = NAN;
            }
            if (expect_ok("score at max_candidates",
                          atrank_model_score(model, good, 2, many, max_candidates, 881250949, out, max_candidates))) {
                for (size_t i = 0; i < max_candidates; i++) {
                    if (!isfinite((double)out[i])) {
                        test_fail("%s score: %zu candidates: score %zu is not finite (%g)", name, max_candidates,
                                  i, (double)out[i]);
                        break;
                    }
                }
                /* The same candidate id scores the same wherever it sits in the list. */
                for (size_t i = 3; i < max_candidates; i++) {
                    if (out[i] != out[i % 3]) {
                        test_fail("%s score: candidate \"%s\" scored %.9g at position %zu but %.9g at %zu", name,
                                  many[i], (double)out[i], i, (double)out[i % 3], i % 3);
                        break;
                    }
                }
                printf("ok   %s score: %zu candidates (the limit) succeeds\n", name, max_candidates);
            }
        }
        free(many);
        free(out);
    }

    /* Timestamps are plain int64 unix seconds: any value is valid (there is no NaN in int64;
     * negative means before 1970). The extremes must behave like ordinary values in the same time
     * bucket: INT64_MIN like an age of 20000 days (past the last bucket boundary, 4096 days, of
     * the packages tested here), INT64_MAX like one second after the request (the "future" bucket). */
    {
        const int64_t t = 881250949;
        const atrank_behavior extreme[2] = {{.item = id0, .timestamp = INT64_MIN}, {.item = id1, .timestamp = INT64_MAX}};
        const atrank_behavior ordinary[2] = {{.item = id0, .timestamp = t - (int64_t)20000 * 86400},
                                             {.item = id1, .timestamp = t + 1}};
        float a[3] = {NAN, NAN, NAN}, b[3] = {-1, -1, -1};
        int ok = expect_ok("score with INT64_MIN / INT64_MAX timestamps",
                           atrank_model_score(model, extreme, 2, cands, 3, t, a, 3));
        ok &= expect_ok("score with the same buckets", atrank_model_score(model, ordinary, 2, cands, 3, t, b, 3));
        for (size_t i = 0; ok && i < 3; i++) {
            if (!isfinite((double)a[i]) || a[i] != b[i])
                test_fail("%s extreme timestamps: score %zu is %g, want %g (same buckets)", name, i, (double)a[i],
                          (double)b[i]);
        }
        const atrank_behavior negative[2] = {{.item = id0, .timestamp = -100000}, {.item = id1, .timestamp = -1}};
        ok = expect_ok("score with negative timestamps and request time",
                       atrank_model_score(model, negative, 2, cands, 3, -5, a, 3));
        for (size_t i = 0; ok && i < 3; i++)
            if (!isfinite((double)a[i])) test_fail("%s negative timestamps: score %zu not finite", name, i);
        if (ok) printf("ok   %s score: INT64_MIN/INT64_MAX and negative timestamps\n", name);
    }

    /* An empty history is valid: behaviors NULL with length 0. */
    float scores[3] = {NAN, NAN, NAN};
    if (expect_ok("score with an empty history", atrank_model_score(model, NULL, 0, cands, 3, 881250949, scores, 3))) {
        for (size_t i = 0; i < 3; i++) {
            if (!isfinite((double)scores[i])) {
                test_fail("%s score: empty history: score %zu is not finite (%g)", name, i, (double)scores[i]);
            }
        }
        printf("ok   %s score: empty history gives finite scores %.6g %.6g %.6g\n", name, (double)scores[0],
               (double)scores[1], (double)scores[2]);
    }
    atrank_model_free(model);
}

/* ---------- broken package copies ---------- */

static void check_broken_packages(const char *package_dir, int with_ort) {
    char *spec_path = test_join_path(package_dir, "spec.json");
    cJSON *spec = spec_path != NULL ? test_read_json(spec_path) : NULL;
    if (spec == NULL) {
        test_fail("cannot read %s/spec.json (reason above)", package_dir);
        free(spec_path);
        return;
    }

    /* an unsupported spec_version (this runtime reads 1 and 2) */
    cJSON *version = cJSON_GetObjectItemCaseSensitive(spec, "spec_version");
    if (!cJSON_IsNumber(version)) {
        test_fail("%s has no numeric spec_version", spec_path);
    } else {
        cJSON_SetNumberValue(version, 99);
        char *text = cJSON_Print(spec);
        char *dir = text != NULL ? make_package_copy(package_dir, "spec.json", text, strlen(text)) : NULL;
        if (dir != NULL) {
            expect_load_fails("load: spec_version 99", dir, ATRANK_BACKEND_TRACT, ATRANK_ERROR_INVALID_PACKAGE,
                              ATRANK_OK, "spec_version");
            remove_dir(dir);
            free(dir);
        }
        cJSON_free(text);
    }

    /* A truncated and a garbage graph file, on each backend. */
    const cJSON *graph = cJSON_GetObjectItemCaseSensitive(spec, "graph");
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(graph, "file");
    if (!cJSON_IsString(file) || strchr(file->valuestring, '/') != NULL) {
        printf("SKIP: broken graph checks: graph.file in %s is not a top-level file name\n", spec_path);
        cJSON_Delete(spec);
        free(spec_path);
        return;
    }
    free(spec_path);
    char *model_path = test_join_path(package_dir, file->valuestring);
    size_t model_len = 0;
    char *model_bytes = model_path != NULL ? test_read_file(model_path, &model_len) : NULL;
    free(model_path);
    if (model_bytes == NULL) {
        test_fail("cannot read the graph %s of %s (reason above)", file->valuestring, package_dir);
        cJSON_Delete(spec);
        return;
    }
    static const char garbage[] = "this is not an ONNX model\n";
    struct {
        const char *what;
        const void *bytes;
        size_t len;
    } cases[2] = {
        {"truncated", model_bytes, model_len / 2},
        {"garbage", garbage, sizeof garbage - 1},
    };
    for (size_t c = 0; c < 2; c++) {
        char *dir = make_package_copy(package_dir, file->valuestring, cases[c].bytes, cases[c].len);
        if (dir == NULL) {
            continue;
        }
        for (atrank_backend b = with_ort ? ATRANK_BACKEND_ORT : ATRANK_BACKEND_TRACT; b <= ATRANK_BACKEND_TRACT;
             b++) {
            char what[128];
            snprintf(what, sizeof what, "load on %s: %s %s", test_backend_name(b), cases[c].what, file->valuestring);
            expect_load_fails(what, dir, b, ATRANK_ERROR_INVALID_PACKAGE, ATRANK_ERROR_BACKEND, NULL);
        }
        remove_dir(dir);
        free(dir);
    }
    free(model_bytes);
    cJSON_Delete(spec);
}

int main(int argc, char **argv) {
    check_without_package();

    const char *package_dir = test_package_dir(argc, argv);
    if (package_dir == NULL) {
        printf("SKIP: checks that need a model package (pass its directory as argv[1] or set ATRANK_PACKAGE)\n");
        if (test_failures > 0) {
            fprintf(stderr, "test_errors: %d check(s) failed\n", test_failures);
            return 1;
        }
        return TEST_EXIT_SKIP;
    }
    const char *ort_lib = getenv("ATRANK_ORT_LIB");
    int with_ort = ort_lib != NULL && ort_lib[0] != '\0';
    if (!with_ort) {
        printf("SKIP: ort backend checks: ATRANK_ORT_LIB is unset\n");
    }

    expect_load_fails("load: unknown backend 7", package_dir, 7, ATRANK_ERROR_INVALID_ARGUMENT, ATRANK_OK,
                      "backend");
    golden_set golden;
    int have_golden = golden_load(package_dir, &golden) == 0;
    if (have_golden) {
        pick_known_ids(&golden);
    } else {
        printf("note: cannot read the golden requests (reason above); scoring checks use made-up ids\n");
    }
    size_t max_candidates = test_spec_max_candidates(package_dir);
    if (max_candidates == 0) {
        test_fail("cannot read limits.max_candidates of %s (reason above)", package_dir);
    }
    if (with_ort) {
        check_scoring(package_dir, ATRANK_BACKEND_ORT, max_candidates);
    }
    check_scoring(package_dir, ATRANK_BACKEND_TRACT, max_candidates);
    check_broken_packages(package_dir, with_ort);
    if (have_golden) {
        golden_free(&golden);
    }

    if (test_failures > 0) {
        fprintf(stderr, "test_errors: %d check(s) failed\n", test_failures);
        return 1;
    }
    printf("test_errors: PASS\n");
    return 0;
}
