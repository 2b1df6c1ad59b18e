/*
 * Hostile input through the C ABI: every case returns its documented error code, fast, with no
 * crash, hang or allocation sized by a lying argument. Each case below is one finding of the
 * attack on the C ABI (issue 10), with lengths at, just over and far over each limit.
 *
 * Usage: test_hostile   (run from the repository root; uses tests/fixtures/tiny and
 * tests/fixtures/tiny-multigroup, on tract, and on ORT for package loading when
 * $ATRANK_ORT_LIB is set). alarm() turns a hang into a failure.
 */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atrank.h"
#include "common.h"

static const char *TINY = "tests/fixtures/tiny";
static const char *MULTI = "tests/fixtures/tiny-multigroup";
#define SENTINEL (-777.25f)

static const atrank_model *load(const char *dir, atrank_backend backend) {
    const atrank_model *m = NULL;
    if (!expect_ok(dir, atrank_model_load(dir, backend, &m))) {
        return NULL;
    }
    return m;
}

/* Expects `err` with code `want` and message containing `needle`, and `out[0..n)` untouched. */
static void refused(const char *what, atrank_error *err, atrank_code want, const char *needle, const float *out,
                    size_t n) {
    expect_error(what, err, want, needle); /* prints "ok ..." on success */
    for (size_t i = 0; i < n; i++) {
        if (out[i] != SENTINEL) {
            test_fail("%s: scores_out[%zu] was written although the call failed", what, i);
            return;
        }
    }
}

static void fill(float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = SENTINEL;
}

/* 1. Cache capacity: absurd values are refused at the setter; the cap itself builds at once
 *    (nothing is preallocated for it). */
static void cache_capacity(void) {
    atrank_model_builder *b = NULL;
    if (!expect_ok("builder_new", atrank_model_builder_new(MULTI, &b))) return;
    expect_error("cache capacity 2^40", atrank_model_builder_set_cache_capacity(b, (size_t)1 << 40),
                 ATRANK_ERROR_INVALID_ARGUMENT, "entries");
    expect_error("cache capacity SIZE_MAX", atrank_model_builder_set_cache_capacity(b, SIZE_MAX),
                 ATRANK_ERROR_INVALID_ARGUMENT, "entries");
    expect_error("cache capacity cap + 1", atrank_model_builder_set_cache_capacity(b, ATRANK_MAX_CACHE_ENTRIES + 1),
                 ATRANK_ERROR_INVALID_ARGUMENT, "entries");
    expect_ok("cache capacity at the cap", atrank_model_builder_set_cache_capacity(b, ATRANK_MAX_CACHE_ENTRIES));
    expect_ok("set backend tract", atrank_model_builder_set_backend(b, ATRANK_BACKEND_TRACT));
    expect_ok("cache bytes 1 MiB", atrank_model_builder_set_cache_bytes(b, 1 << 20));
    const atrank_model *m = NULL;
    if (expect_ok("build with the largest cache capacity", atrank_model_builder_build(b, &m))) {
        atrank_behavior h[1] = {{.item = "i1", .action = "click", .timestamp = 1300000000}};
        const char *c[2] = {"i2", "i3"};
        float out[2];
        char key[64];
        int ok = 1;
        for (int u = 0; u < 200 && ok; u++) {
            snprintf(key, sizeof key, "user-%d", u);
            ok = expect_ok("score_cached", atrank_model_score_cached(m, key, h, 1, c, 2, 1300000100, out, 2));
        }
        if (ok) printf("ok   cache at the capacity cap: built and served 200 users\n");
        atrank_model_free(m);
    }
    printf("ok   cache capacity 2^40, SIZE_MAX, cap+1 refused at the setter\n");
}

/* 2 and 3. Package files that are devices, FIFOs, or symlinks out of the package. */
static void package_files(int with_ort) {
    char *dir = test_copy_package(TINY);
    if (dir == NULL) return;
    char *vocab = test_join_path(dir, "vocab/item.txt");
    char *catalog = test_join_path(dir, "catalog.tsv");
    struct {
        const char *what;
        const char *target; /* symlink target, or NULL for a FIFO */
        const char *needle;
    } cases[] = {
        {"vocab/item.txt -> /dev/zero", "/dev/zero", "vocab/item.txt"},
        {"vocab/item.txt -> /etc/passwd (outside the package)", "/etc/passwd", "outside the package"},
        {"vocab/item.txt is a FIFO", NULL, "not a regular file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unlink(vocab);
        int made = cases[i].target != NULL ? symlink(cases[i].target, vocab) : mkfifo(vocab, 0600);
        if (made != 0) {
            test_fail("%s: cannot make it: %s", cases[i].what, strerror(errno));
            continue;
        }
        for (atrank_backend b = with_ort ? ATRANK_BACKEND_ORT : ATRANK_BACKEND_TRACT; b <= ATRANK_BACKEND_TRACT; b++) {
            const atrank_model *m = NULL;
            char what[160];
            snprintf(what, sizeof what, "%s (%s)", cases[i].what, test_backend_name(b));
            refused(what, atrank_model_load(dir, b, &m), ATRANK_ERROR_INVALID_PACKAGE, cases[i].needle, NULL, 0);
            if (m != NULL) test_fail("%s: model_out written", what);
        }
    }
    /* A symlink that stays inside the package is fine: the file is the same, hash and all. */
    unlink(vocab);
    char *orig = test_join_path(TINY, "vocab/item.txt");
    size_t len = 0;
    char *bytes = orig != NULL ? test_read_file(orig, &len) : NULL;
    if (bytes != NULL && test_write_file(dir, "items-real.txt", bytes, len) == 0 &&
        symlink("../items-real.txt", vocab) == 0) {
        const atrank_model *m = load(dir, ATRANK_BACKEND_TRACT);
        if (m != NULL) printf("ok   a symlink inside the package loads\n");
        atrank_model_free(m);
    } else {
        test_fail("cannot set up the in-package symlink case");
    }
    /* Another file's bytes (right name, wrong content): the manifest's hash refuses it. */
    if (bytes != NULL && test_write_file(dir, "catalog.tsv", "i0\tc0\n", 6) == 0) {
        unlink(vocab);
        test_write_file(dir, "vocab/item.txt", bytes, len);
        const atrank_model *m = NULL;
        refused("catalog.tsv replaced (size differs from the manifest)", atrank_model_load(dir, ATRANK_BACKEND_TRACT, &m),
                ATRANK_ERROR_INVALID_PACKAGE, "catalog.tsv", NULL, 0);
    }
    free(bytes);
    free(orig);
    free(vocab);
    free(catalog);
    test_remove_tree(dir);
    free(dir);

    /* Another package's graph: same file name, other bytes. */
    dir = test_copy_package(TINY);
    char *other = test_join_path(MULTI, "model.onnx");
    bytes = other != NULL ? test_read_file(other, &len) : NULL;
    if (dir != NULL && bytes != NULL && test_write_file(dir, "model.onnx", bytes, len) == 0) {
        const atrank_model *m = NULL;
        refused("another package's model.onnx", atrank_model_load(dir, ATRANK_BACKEND_TRACT, &m),
                ATRANK_ERROR_INVALID_PACKAGE, "model.onnx", NULL, 0);
    }
    free(bytes);
    free(other);
    if (dir != NULL) test_remove_tree(dir);
    free(dir);

    /* The empty path is not the current directory. */
    const atrank_model *m = NULL;
    refused("atrank_model_load(\"\")", atrank_model_load("", ATRANK_BACKEND_TRACT, &m), ATRANK_ERROR_INVALID_ARGUMENT,
            "empty", NULL, 0);
}

/* 4. Lengths that lie: checked against the model's limits before anything they size. */
static void lengths(const atrank_model *m) {
    atrank_behavior one[1] = {{.item = "i1", .action = "like", .timestamp = 1300000000}};
    const char *c[2] = {"i2", "i3"};
    float out[2];
    size_t huge[] = {(size_t)1 << 36, (size_t)PTRDIFF_MAX / 56, 100001};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        char what[96];
        snprintf(what, sizeof what, "behaviors_len %zu with a 1-element array", huge[i]);
        fill(out, 2);
        refused(what, atrank_model_score(m, one, huge[i], c, 2, 1300000100, out, 2), ATRANK_ERROR_INVALID_ARGUMENT,
                "behaviors_len", out, 2);
        snprintf(what, sizeof what, "candidates_len %zu with a 2-element array", huge[i]);
        refused(what, atrank_model_score(m, one, 1, c, huge[i], 1300000100, out, 2), ATRANK_ERROR_INVALID_ARGUMENT,
                "candidates_len", out, 2);
    }
    /* At the limit: 100,000 real behaviors are accepted. */
    size_t max_b = 100000;
    atrank_behavior *many = calloc(max_b, sizeof *many);
    if (many != NULL) {
        for (size_t i = 0; i < max_b; i++) {
            many[i].item = "i1";
            many[i].timestamp = 1300000000 + (int64_t)i;
        }
        expect_ok("behaviors_len at the limit (100000)", atrank_model_score(m, many, max_b, c, 2, 1400000000, out, 2));
        printf("ok   behaviors_len at the limit scores\n");
        free(many);
    }
    /* features_len. */
    atrank_feature f[ATRANK_MAX_FEATURES + 1];
    for (size_t i = 0; i <= ATRANK_MAX_FEATURES; i++) f[i] = (atrank_feature){.name = "category", .value = "c1"};
    atrank_behavior withf[1] = {
        {.item = "i1", .timestamp = 1300000000, .features = f, .features_len = ATRANK_MAX_FEATURES + 1}};
    fill(out, 2);
    refused("features_len ATRANK_MAX_FEATURES + 1", atrank_model_score(m, withf, 1, c, 2, 1300000100, out, 2),
            ATRANK_ERROR_INVALID_ARGUMENT, "features_len", out, 2);
    withf[0].features_len = (size_t)1 << 40;
    refused("features_len 2^40", atrank_model_score(m, withf, 1, c, 2, 1300000100, out, 2),
            ATRANK_ERROR_INVALID_ARGUMENT, "features_len", out, 2);
    withf[0].features_len = ATRANK_MAX_FEATURES;
    expect_ok("features_len at ATRANK_MAX_FEATURES", atrank_model_score(m, withf, 1, c, 2, 1300000100, out, 2));
    /* Strings: at most ATRANK_MAX_STRING_BYTES before the NUL. */
    char *s = malloc(ATRANK_MAX_STRING_BYTES + 2);
    if (s != NULL) {
        memset(s, 'x', ATRANK_MAX_STRING_BYTES);
        s[ATRANK_MAX_STRING_BYTES] = '\0';
        const char *lc[1] = {s};
        float o1[1];
        expect_ok("a candidate id of ATRANK_MAX_STRING_BYTES bytes", atrank_model_score(m, one, 1, lc, 1, 1300000100, o1, 1));
        s[ATRANK_MAX_STRING_BYTES] = 'x';
        s[ATRANK_MAX_STRING_BYTES + 1] = '\0';
        fill(o1, 1);
        refused("a candidate id one byte too long", atrank_model_score(m, one, 1, lc, 1, 1300000100, o1, 1),
                ATRANK_ERROR_INVALID_ARGUMENT, "candidates[0]", o1, 1);
        fill(o1, 1);
        refused("a user key one byte too long", atrank_model_score_cached(m, s, one, 1, lc, 1, 1300000100, o1, 1),
                ATRANK_ERROR_INVALID_ARGUMENT, "user_key", o1, 1);
        free(s);
    }
}

/* 5. Batch amplification: one request with 10,000 candidates among 4,095 with one runs without
 *    padding the others (before: 41M padded positions, GBs of memory), and its scores equal the
 *    single-request scores up to float rounding. */
static void batch_amplification(const atrank_model *m) {
    size_t n = ATRANK_MAX_BATCH_REQUESTS, big = 10000;
    atrank_request *reqs = calloc(n, sizeof *reqs);
    const char **bigc = calloc(big, sizeof *bigc);
    float *out = calloc(n - 1 + big, sizeof *out);
    static const char *one_c[1] = {"i5"};
    static atrank_behavior hist[1] = {{.item = "i1", .action = "like", .timestamp = 1300000000}};
    if (reqs == NULL || bigc == NULL || out == NULL) {
        test_fail("out of memory");
    } else {
        static char ids[120][8];
        for (int i = 0; i < 120; i++) snprintf(ids[i], sizeof ids[i], "i%d", i);
        for (size_t i = 0; i < big; i++) bigc[i] = ids[i % 120];
        for (size_t i = 0; i < n; i++) {
            reqs[i] = (atrank_request){
                .behaviors = hist, .behaviors_len = 1, .candidates = one_c, .candidates_len = 1, .request_time = 1300000100};
        }
        reqs[7].candidates = bigc;
        reqs[7].candidates_len = big;
        if (expect_ok("batch of 4096 with one 10,000-candidate request",
                      atrank_model_score_batch(m, reqs, n, out, n - 1 + big))) {
            float alone[1];
            if (expect_ok("request 0 alone", atrank_model_score(m, hist, 1, one_c, 1, 1300000100, alone, 1))) {
                /* The same logits evaluated twice in float32 (another shape, another summation
                 * order): within the package's bound_any_request, 2 D U M_max
                 * (docs/tolerances.md). */
                double tol = test_bound_any_request(TINY);
                double d = fabs((double)out[0] - (double)alone[0]);
                if (!(d <= tol)) test_fail("batch vs alone differ by %g > %g", d, tol);
                else printf("ok   amplified batch scored (4096 requests, 14095 scores), matches alone (|d| = %g <= %g)\n", d, tol);
            }
        }
    }
    free(reqs);
    free(bigc);
    free(out);
}

/* 6. Spec and graph that do not belong together: refused at load, naming the input. */
static void spec_vs_graph(int with_ort) {
    char *spec_path = test_join_path(TINY, "spec.json");
    cJSON *spec = spec_path != NULL ? test_read_json(spec_path) : NULL;
    free(spec_path);
    if (spec == NULL) {
        test_fail("cannot read the tiny spec");
        return;
    }
    for (int variant = 0; variant < 2; variant++) {
        cJSON *copy = cJSON_Duplicate(spec, 1);
        const char *needle;
        if (variant == 0) {
            cJSON *actions = cJSON_GetObjectItemCaseSensitive(copy, "actions");
            for (int i = 0; i < 1000; i++) {
                char name[32];
                snprintf(name, sizeof name, "extra-action-%d", i);
                cJSON_AddItemToArray(actions, cJSON_CreateString(name));
            }
            needle = "hist_action";
        } else {
            cJSON *tb = cJSON_GetObjectItemCaseSensitive(copy, "time_buckets");
            cJSON *bounds = cJSON_GetObjectItemCaseSensitive(tb, "boundaries");
            for (int i = 0; i < 20; i++) cJSON_AddItemToArray(bounds, cJSON_CreateNumber(100000 + i));
            needle = "hist_time";
        }
        char *text = cJSON_Print(copy);
        char *dir = test_copy_package(TINY);
        if (text != NULL && dir != NULL && test_write_file(dir, "spec.json", text, strlen(text)) == 0) {
            for (atrank_backend b = with_ort ? ATRANK_BACKEND_ORT : ATRANK_BACKEND_TRACT; b <= ATRANK_BACKEND_TRACT;
                 b++) {
                char what[128];
                snprintf(what, sizeof what, "%s beyond the graph's table (%s)",
                         variant == 0 ? "1000 extra actions" : "20 extra time boundaries", test_backend_name(b));
                const atrank_model *m = NULL;
                refused(what, atrank_model_load(dir, b, &m), ATRANK_ERROR_INVALID_PACKAGE, needle, NULL, 0);
            }
        }
        if (dir != NULL) test_remove_tree(dir);
        free(dir);
        cJSON_free(text);
        cJSON_Delete(copy);
    }
    cJSON_Delete(spec);
}

/* 8. The handle is checked before the builder's model is loaded. */
static void reload_null_handle(void) {
    atrank_model_builder *b = NULL;
    /* A builder for a package that does not exist: had it been loaded first, the error would be
     * IO / INVALID_PACKAGE, not NULL_ARGUMENT. */
    if (!expect_ok("builder_new", atrank_model_builder_new("/nonexistent/atrank/package", &b))) return;
    uint64_t gen = 99;
    expect_error("handle_reload(NULL, builder)", atrank_handle_reload(NULL, b, &gen), ATRANK_ERROR_NULL_ARGUMENT,
                 "handle");
    if (gen != 99) test_fail("generation_out written on error");
    printf("ok   handle_reload(NULL, builder) refuses before loading\n");
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "FAIL: test_hostile hung (alarm)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(1);
}

int main(void) {
    signal(SIGALRM, on_alarm);
    alarm(600);
    const char *ort_lib = getenv("ATRANK_ORT_LIB");
    int with_ort = ort_lib != NULL && ort_lib[0] != '\0';
    cache_capacity();
    package_files(with_ort);
    const atrank_model *m = load(TINY, ATRANK_BACKEND_TRACT);
    if (m != NULL) {
        lengths(m);
        batch_amplification(m);
        atrank_model_free(m);
    }
    spec_vs_graph(with_ort);
    reload_null_handle();
    if (test_failures > 0) {
        fprintf(stderr, "test_hostile: %d check(s) failed\n", test_failures);
        return 1;
    }
    printf("test_hostile: PASS\n");
    return 0;
}
