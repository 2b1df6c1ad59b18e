/*
 * atrank_model_score_batch: many users in one call.
 *
 * - Every golden request of a package, scored as one batch, matches the trainer's scores (the
 *   independent reference in golden.json) and equals atrank_model_score on each request alone;
 *   run on the package ($ATRANK_PACKAGE or argv[1]) and on the multigroup fixture
 *   (groups and caller features), on tract and, when ATRANK_ORT_LIB is set, on ORT; with the
 *   default rows per graph run, with atrank_model_builder_set_batch_rows(1) (every request in
 *   a run of its own: then bit-identical to atrank_model_score) and with 0 (no row limit).
 * - Bad input: NULL model / requests / scores_out, requests_len 0 and above
 *   ATRANK_MAX_BATCH_REQUESTS, a scores_out_len that disagrees with the candidate total, and an
 *   invalid request in the middle (its index named in the message); on every error scores_out
 *   is left untouched.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static const char *MULTI = "tests/fixtures/tiny-multigroup";
static const float SENTINEL = -12345.0f;

/* rows: DEFAULT_ROWS loads with atrank_model_load; any other value through a builder with
 * atrank_model_builder_set_batch_rows(rows). */
#define DEFAULT_ROWS TEST_DEFAULT_ROWS

static const atrank_model *load_rows(const char *dir, atrank_backend backend, size_t rows) {
    if (rows != DEFAULT_ROWS) return test_build(dir, backend, rows, TEST_DEFAULT_FUSION);
    const atrank_model *m = NULL;
    atrank_error *err = atrank_model_load(dir, backend, &m);
    if (err != NULL) {
        test_fail("load %s on %s: %s", dir, test_backend_name(backend), atrank_error_message(err));
        atrank_error_free(err);
        return NULL;
    }
    return m;
}

static const atrank_model *load(const char *dir, atrank_backend backend) {
    return load_rows(dir, backend, DEFAULT_ROWS);
}

/* The golden set as batch requests; returns the candidate total. */
static size_t to_requests(const golden_set *g, atrank_request *reqs) {
    size_t total = 0;
    for (size_t i = 0; i < g->requests_len; i++) {
        const golden_request *r = &g->requests[i];
        reqs[i] = (atrank_request){.behaviors = r->behaviors,
                                   .behaviors_len = r->behaviors_len,
                                   .candidates = r->candidates,
                                   .candidates_len = r->candidates_len,
                                   .request_time = r->request_time};
        total += r->candidates_len;
    }
    return total;
}

static void test_golden_batch(const char *dir, atrank_backend backend, size_t rows) {
    golden_set g;
    if (golden_load(dir, &g) != 0) {
        test_fail("cannot load the golden requests of %s", dir);
        return;
    }
    const atrank_model *m = load_rows(dir, backend, rows);
    atrank_request *reqs = calloc(g.requests_len, sizeof *reqs);
    size_t total = reqs != NULL ? to_requests(&g, reqs) : 0;
    float *out = calloc(total > 0 ? total : 1, sizeof *out);
    if (m == NULL || reqs == NULL || out == NULL) {
        if (m != NULL) test_fail("out of memory");
        goto done;
    }
    if (!expect_ok("score_batch(golden)", atrank_model_score_batch(m, reqs, g.requests_len, out, total))) goto done;
    double worst = 0.0, worst_single = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < g.requests_len; i++) {
        const golden_request *r = &g.requests[i];
        float single[256];
        if (r->candidates_len > 256) {
            test_fail("%s has more than 256 candidates", r->name);
            goto done;
        }
        if (!expect_ok(r->name, atrank_model_score(m, r->behaviors, r->behaviors_len, r->candidates,
                                                   r->candidates_len, r->request_time, single, r->candidates_len)))
            continue;
        for (size_t k = 0; k < r->candidates_len; k++, at++) {
            double d = fabs((double)out[at] - r->scores[k]);
            double s = fabs((double)out[at] - (double)single[k]);
            /* both: two float32 evaluations of the request's logits, within its derived
             * 2 D U M (docs/tolerances.md) */
            if (!(d <= r->tolerance))
                test_fail("%s %s %s candidate %zu: batch %g vs trainer %g", dir, test_backend_name(backend), r->name,
                          k, (double)out[at], r->scores[k]);
            if (!(s <= r->tolerance))
                test_fail("%s %s %s candidate %zu: batch %g vs single %g", dir, test_backend_name(backend), r->name,
                          k, (double)out[at], (double)single[k]);
            /* one row per run: each request runs alone, through the same graph and shapes as
             * atrank_model_score, so the float operations are the same ones */
            if (rows == 1 && out[at] != single[k])
                test_fail("%s %s %s candidate %zu: batch rows 1 gave %.9g, alone %.9g (not identical)", dir,
                          test_backend_name(backend), r->name, k, (double)out[at], (double)single[k]);
            if (d > worst) worst = d;
            if (s > worst_single) worst_single = s;
        }
    }
    char rows_text[32];
    if (rows == DEFAULT_ROWS)
        snprintf(rows_text, sizeof rows_text, "default");
    else
        snprintf(rows_text, sizeof rows_text, "%zu", rows);
    printf("batch of %zu on %s (%s, batch rows %s): %zu scores, max |diff| vs trainer %.3g (tolerances up to "
           "%g), vs single %.3g\n",
           g.requests_len, dir, test_backend_name(backend), rows_text, total, worst, g.tolerance, worst_single);
done:
    free(out);
    free(reqs);
    atrank_model_free(m);
    golden_free(&g);
}

/* True when no element of out[0..n) was overwritten. */
static int untouched(const float *out, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (out[i] != SENTINEL) return 0;
    return 1;
}

static void expect_refused(const char *what, atrank_error *err, atrank_code want, const char *needle,
                           const float *out, size_t n) {
    expect_error(what, err, want, needle);
    if (!untouched(out, n)) test_fail("%s: scores_out was written although the call failed", what);
}

static void test_errors(const char *dir) {
    const atrank_model *m = load(dir, ATRANK_BACKEND_TRACT);
    if (m == NULL) return;
    atrank_behavior hist[2] = {{.item = "i1", .timestamp = 1300000000}, {.item = "i2", .timestamp = 1300000100}};
    atrank_behavior bad_hist[1] = {{.item = NULL, .timestamp = 1300000000}};
    const char *cands[2] = {"i1", "i2"};
    atrank_request reqs[3] = {
        {.behaviors = hist, .behaviors_len = 2, .candidates = cands, .candidates_len = 2, .request_time = 1300086400},
        {.behaviors = NULL, .behaviors_len = 0, .candidates = cands, .candidates_len = 1, .request_time = 1300086400},
        {.behaviors = hist, .behaviors_len = 1, .candidates = cands, .candidates_len = 2, .request_time = 1300086400},
    };
    float out[8];
    for (size_t i = 0; i < 8; i++) out[i] = SENTINEL;

    expect_refused("NULL model", atrank_model_score_batch(NULL, reqs, 3, out, 5), ATRANK_ERROR_NULL_ARGUMENT, "model",
                   out, 8);
    expect_refused("NULL requests", atrank_model_score_batch(m, NULL, 3, out, 5), ATRANK_ERROR_NULL_ARGUMENT,
                   "requests", out, 8);
    expect_refused("requests_len 0", atrank_model_score_batch(m, reqs, 0, out, 0), ATRANK_ERROR_INVALID_ARGUMENT,
                   "requests_len", out, 8);
    expect_refused("requests_len too large",
                   atrank_model_score_batch(m, reqs, ATRANK_MAX_BATCH_REQUESTS + 1, out, 5),
                   ATRANK_ERROR_INVALID_ARGUMENT, "requests_len", out, 8);
    expect_refused("NULL scores_out", atrank_model_score_batch(m, reqs, 3, NULL, 5), ATRANK_ERROR_NULL_ARGUMENT,
                   "scores_out", out, 8);
    expect_refused("scores_out_len 4 for 5", atrank_model_score_batch(m, reqs, 3, out, 4), ATRANK_ERROR_BUFFER_SIZE,
                   "scores_out_len", out, 8);
    expect_refused("scores_out_len 6 for 5", atrank_model_score_batch(m, reqs, 3, out, 6), ATRANK_ERROR_BUFFER_SIZE,
                   "scores_out_len", out, 8);

    /* An invalid request in the middle: the message names it; nothing is written. */
    atrank_request mid[3] = {reqs[0], reqs[1], reqs[2]};
    mid[1].behaviors = bad_hist;
    mid[1].behaviors_len = 1;
    expect_refused("NULL item in requests[1]", atrank_model_score_batch(m, mid, 3, out, 5), ATRANK_ERROR_NULL_ARGUMENT,
                   "requests[1].behaviors[0].item", out, 8);
    mid[1] = reqs[1];
    mid[2].candidates_len = 0;
    expect_refused("no candidates in requests[2]", atrank_model_score_batch(m, mid, 3, out, 3),
                   ATRANK_ERROR_INVALID_ARGUMENT, "requests[2]", out, 8);
    mid[2] = reqs[2];
    mid[0].behaviors = NULL; /* with behaviors_len 2 */
    expect_refused("NULL behaviors with a length", atrank_model_score_batch(m, mid, 3, out, 5),
                   ATRANK_ERROR_NULL_ARGUMENT, "requests[0].behaviors", out, 8);
    mid[0] = reqs[0];
    const char *bad_utf8 = "\xff\xfe";
    const char *bad_cands[2] = {"i1", bad_utf8};
    mid[2].candidates = bad_cands;
    expect_refused("invalid UTF-8 candidate", atrank_model_score_batch(m, mid, 3, out, 5), ATRANK_ERROR_INVALID_UTF8,
                   "requests[2].candidates[1]", out, 8);
    mid[2] = reqs[2];
    atrank_behavior grouped[1] = {{.item = "i1", .group = "no-such-group", .timestamp = 1300000000}};
    mid[0].behaviors = grouped;
    mid[0].behaviors_len = 1;
    expect_refused("unknown group", atrank_model_score_batch(m, mid, 3, out, 5), ATRANK_ERROR_INVALID_ARGUMENT,
                   "no-such-group", out, 8);

    /* A batch of one names its request too. */
    expect_refused("unknown group, batch of 1", atrank_model_score_batch(m, mid, 1, out, 2),
                   ATRANK_ERROR_INVALID_ARGUMENT, "requests[0]: behaviors[0].group", out, 8);

    /* The same three good requests succeed and fill exactly 5 floats. */
    if (expect_ok("good batch", atrank_model_score_batch(m, reqs, 3, out, 5))) {
        for (size_t i = 0; i < 5; i++)
            if (!isfinite(out[i])) test_fail("good batch: score %zu is not finite", i);
        if (out[5] != SENTINEL) test_fail("good batch wrote past scores_out_len");
    }
    atrank_model_free(m);
}

int main(int argc, char **argv) {
    const char *dir = test_package_dir(argc, argv);
    if (dir == NULL) {
        printf("SKIP: no model package (pass its directory as argv[1] or set ATRANK_PACKAGE)\n");
        return TEST_EXIT_SKIP;
    }
    const char *lib = getenv("ATRANK_ORT_LIB");
    int ort = lib != NULL && *lib != '\0';
    const size_t rows[3] = {DEFAULT_ROWS, 1, 0};
    for (size_t i = 0; i < 3; i++) {
        test_golden_batch(dir, ATRANK_BACKEND_TRACT, rows[i]);
        test_golden_batch(MULTI, ATRANK_BACKEND_TRACT, rows[i]);
        if (ort) {
            test_golden_batch(dir, ATRANK_BACKEND_ORT, rows[i]);
            test_golden_batch(MULTI, ATRANK_BACKEND_ORT, rows[i]);
        }
    }
    if (!ort) {
        printf("ATRANK_ORT_LIB is not set: the ORT backend is not tested\n");
    }
    test_errors("tests/fixtures/tiny");
    if (test_failures > 0) {
        fprintf(stderr, "%d check(s) failed\n", test_failures);
        return 1;
    }
    printf("test_batch: all checks passed\n");
    return 0;
}
