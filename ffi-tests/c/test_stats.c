/*
 * atrank_model_stats, atrank_latency_bounds and atrank_model_info: the counters agree with the
 * calls this test makes, and the info agrees with the package as read independently here
 * (spec.json through cJSON, the vocabulary atv files' headers, `sha256sum` of the graph file).
 *
 * - N successful scores: score.calls == N, the latency histogram counts N, no failure.
 * - Failing calls count under their code (too many candidates: INVALID_ARGUMENT, wrong
 *   scores_out_len: BUFFER_SIZE, unknown group: INVALID_ARGUMENT), not in the histogram.
 * - Each entry point counts on its own (score_batch once per batch, score_cached, handle_score
 *   on its current model); 4 threads scoring at once lose no count.
 * - tract runs (symbolic + shape-specialised) equal the graph runs; ORT sessions are idle.
 * - The split fixture's encoding cache: a miss, then a hit, one entry.
 * - Argument errors: NULL model / stats_out, a too-small stats_out_size; out-params untouched.
 * - ABI evolution: a caller built against the first version of atrank_stats (which ended at
 *   ort_sessions) gets that many bytes and no more; a size between two fields gets whole fields.
 * - tract fusion (atrank_model_builder_set_tract_fusion): each flag fuses its kernels, counted
 *   in tract_fused_attention / tract_fused_layer_norm, and the golden scores stay within
 *   tolerance; ATRANK_TRACT_FUSE_NONE and ORT count 0; an unknown bit is refused.
 *
 * Usage: test_stats [package_dir]   (default: $ATRANK_PACKAGE). Runs on tract, and on ORT too
 * when $ATRANK_ORT_LIB is set.
 */
#define _XOPEN_SOURCE 700

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static const char *MULTI = "tests/fixtures/tiny-multigroup";
#define THREADS 4
#define PER_THREAD 25

static const atrank_model *load(const char *dir, atrank_backend backend) {
    const atrank_model *m = NULL;
    atrank_error *err = atrank_model_load(dir, backend, &m);
    if (err != NULL) {
        test_fail("load %s on %s: %s", dir, test_backend_name(backend), atrank_error_message(err));
        atrank_error_free(err);
        return NULL;
    }
    return m;
}

static int get_stats(const atrank_model *m, atrank_stats *s) {
    memset(s, 0xAB, sizeof *s);
    return expect_ok("atrank_model_stats", atrank_model_stats(m, s, sizeof *s));
}

static uint64_t sum(const uint64_t *v, size_t n) {
    uint64_t t = 0;
    for (size_t i = 0; i < n; i++) t += v[i];
    return t;
}

static void expect_u64(const char *what, uint64_t got, uint64_t want) {
    if (got != want) {
        test_fail("%s: %llu, expected %llu", what, (unsigned long long)got, (unsigned long long)want);
    }
}

static atrank_error *score(const atrank_model *m, const golden_request *r, float *out) {
    return atrank_model_score(m, r->behaviors, r->behaviors_len, r->candidates, r->candidates_len,
                              r->request_time, out, r->candidates_len);
}

typedef struct worker {
    const atrank_model *model;
    const golden_request *request;
    int failures;
} worker;

static void *work(void *arg) {
    worker *w = arg;
    float out[256];
    for (int i = 0; i < PER_THREAD; i++) {
        atrank_error *err = score(w->model, w->request, out);
        if (err != NULL) {
            w->failures++;
            atrank_error_free(err);
        }
    }
    return NULL;
}

/* 1 if <dir>/spec.json names split encoder/scorer graphs (graph.encoder), else 0. */
static int spec_has_split(const char *dir) {
    char *path = test_join_path(dir, "spec.json");
    cJSON *spec = path != NULL ? test_read_json(path) : NULL;
    free(path);
    if (spec == NULL) test_fail("cannot read %s/spec.json", dir);
    const cJSON *graph = cJSON_GetObjectItemCaseSensitive(spec, "graph");
    int split = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(graph, "encoder"));
    cJSON_Delete(spec);
    return split;
}

/* Counters after real calls, on one package and backend. */
static void test_counts(const char *dir, atrank_backend backend) {
    golden_set g;
    if (golden_load(dir, &g) != 0) {
        test_fail("cannot load the golden requests of %s", dir);
        return;
    }
    const atrank_model *m = load(dir, backend);
    if (m == NULL) {
        golden_free(&g);
        return;
    }
    const golden_request *r = &g.requests[0];
    float *out = calloc(r->candidates_len + 1, sizeof *out);
    atrank_stats s;
    if (out == NULL) {
        test_fail("out of memory");
        goto done;
    }
    if (get_stats(m, &s)) {
        expect_u64("size", s.size, sizeof s);
        expect_u64("fresh model: score.calls", s.score.calls, 0);
        expect_u64("fresh model: histogram", sum(s.score.latency_counts, ATRANK_LATENCY_BUCKETS), 0);
    }

    /* N successful scores, over every golden request. */
    const size_t n = 3 * g.requests_len;
    for (size_t i = 0; i < n; i++) {
        const golden_request *ri = &g.requests[i % g.requests_len];
        float *o = calloc(ri->candidates_len, sizeof *o);
        if (o == NULL || !expect_ok("score", score(m, ri, o))) {
            free(o);
            goto done;
        }
        free(o);
    }
    if (get_stats(m, &s)) {
        expect_u64("score.calls after N scores", s.score.calls, n);
        expect_u64("histogram count after N scores", sum(s.score.latency_counts, ATRANK_LATENCY_BUCKETS), n);
        expect_u64("failures after N scores", sum(s.score.failures, ATRANK_STATS_CODES), 0);
        if (s.score.latency_sum_ns == 0) test_fail("latency_sum_ns is 0 after %zu scores", n);
        expect_u64("score_batch.calls", s.score_batch.calls, 0);
        expect_u64("score_cached.calls", s.score_cached.calls, 0);
    }

    /* Failures, each under its code. */
    size_t max = test_spec_max_candidates(dir);
    const char **many = calloc(max + 1, sizeof *many);
    float *many_out = calloc(max + 1, sizeof *many_out);
    if (many == NULL || many_out == NULL) {
        test_fail("out of memory");
        free(many);
        free(many_out);
        goto done;
    }
    for (size_t i = 0; i <= max; i++) many[i] = r->candidates[0];
    expect_error("too many candidates",
                 atrank_model_score(m, r->behaviors, r->behaviors_len, many, max + 1, r->request_time,
                                    many_out, max + 1),
                 ATRANK_ERROR_INVALID_ARGUMENT, NULL);
    free(many);
    free(many_out);
    expect_error("wrong scores_out_len",
                 atrank_model_score(m, r->behaviors, r->behaviors_len, r->candidates, r->candidates_len,
                                    r->request_time, out, r->candidates_len + 1),
                 ATRANK_ERROR_BUFFER_SIZE, NULL);
    atrank_behavior bad = {.item = "x", .timestamp = r->request_time, .group = "no-such-group"};
    expect_error("unknown group",
                 atrank_model_score(m, &bad, 1, r->candidates, r->candidates_len, r->request_time, out,
                                    r->candidates_len),
                 ATRANK_ERROR_INVALID_ARGUMENT, NULL);
    if (get_stats(m, &s)) {
        expect_u64("score.calls with 3 failures", s.score.calls, n + 3);
        expect_u64("failures[INVALID_ARGUMENT]", s.score.failures[ATRANK_ERROR_INVALID_ARGUMENT], 2);
        expect_u64("failures[BUFFER_SIZE]", s.score.failures[ATRANK_ERROR_BUFFER_SIZE], 1);
        expect_u64("failures total", sum(s.score.failures, ATRANK_STATS_CODES), 3);
        expect_u64("histogram count (successes only)", sum(s.score.latency_counts, ATRANK_LATENCY_BUCKETS), n);
    }

    /* The other entry points count separately. */
    atrank_request reqs[2];
    for (int i = 0; i < 2; i++) {
        reqs[i] = (atrank_request){.behaviors = r->behaviors,
                                   .behaviors_len = r->behaviors_len,
                                   .candidates = r->candidates,
                                   .candidates_len = r->candidates_len,
                                   .request_time = r->request_time};
    }
    float *batch_out = calloc(2 * r->candidates_len, sizeof *batch_out);
    if (batch_out == NULL) {
        test_fail("out of memory");
        goto done;
    }
    expect_ok("score_batch", atrank_model_score_batch(m, reqs, 2, batch_out, 2 * r->candidates_len));
    free(batch_out);
    expect_ok("score_cached (miss)",
              atrank_model_score_cached(m, "user-1", r->behaviors, r->behaviors_len, r->candidates,
                                        r->candidates_len, r->request_time, out, r->candidates_len));
    expect_ok("score_cached (hit)",
              atrank_model_score_cached(m, "user-1", r->behaviors, r->behaviors_len, r->candidates,
                                        r->candidates_len, r->request_time, out, r->candidates_len));
    atrank_handle *h = NULL;
    if (expect_ok("handle_new", atrank_handle_new(m, &h))) {
        expect_ok("handle_score", atrank_handle_score(h, r->behaviors, r->behaviors_len, r->candidates,
                                                      r->candidates_len, r->request_time, out,
                                                      r->candidates_len));
        expect_error("handle_score with a NULL candidate array",
                     atrank_handle_score(h, r->behaviors, r->behaviors_len, NULL, r->candidates_len,
                                         r->request_time, out, r->candidates_len),
                     ATRANK_ERROR_NULL_ARGUMENT, NULL);
        atrank_handle_free(h);
    }
    if (get_stats(m, &s)) {
        expect_u64("score_batch.calls (one batch of 2)", s.score_batch.calls, 1);
        expect_u64("score_batch histogram", sum(s.score_batch.latency_counts, ATRANK_LATENCY_BUCKETS), 1);
        expect_u64("score_cached.calls", s.score_cached.calls, 2);
        expect_u64("score.calls (+ handle_score twice)", s.score.calls, n + 5);
        expect_u64("failures[NULL_ARGUMENT] (handle_score)", s.score.failures[ATRANK_ERROR_NULL_ARGUMENT], 1);
        /* Split encoder/scorer graphs (graph.encoder in spec.json: every format-3 package). */
        int split = spec_has_split(dir);
        expect_u64("cache_misses", s.cache_misses, split ? 1 : 0);
        expect_u64("cache_hits", s.cache_hits, split ? 1 : 0);
        expect_u64("cache_entries", s.cache_entries, split ? 1 : 0);
        if (split && s.cache_capacity == 0) test_fail("split package: cache_capacity is 0");
        /* Graph runs: every successful score/batch/handle call runs one graph; score_cached runs
         * the full graph (no split) or the encoder once and the scorer twice (split). */
        uint64_t runs = n + 1 + 1 + (split ? 3 : 2);
        if (backend == ATRANK_BACKEND_TRACT) {
            expect_u64("tract runs (symbolic + concrete)", s.tract_symbolic_runs + s.tract_concrete_runs, runs);
            if (s.tract_plans_built == 0) test_fail("tract built no shape-specialised plan");
            if (s.tract_plans > s.tract_plans_built) test_fail("more tract plans held than built");
            expect_u64("ort_sessions on tract", s.ort_sessions, 0);
        } else {
            expect_u64("tract runs on ORT", s.tract_symbolic_runs + s.tract_concrete_runs, 0);
            expect_u64("ort_sessions (one per graph)", s.ort_sessions, split ? 3 : 1);
            expect_u64("ort_sessions_busy when idle", s.ort_sessions_busy, 0);
        }
    }

    /* Concurrent calls lose no count. */
    atrank_stats before;
    if (r->candidates_len > 256) {
        test_fail("golden request 0 has %zu candidates; the threads' buffers hold 256", r->candidates_len);
    } else if (get_stats(m, &before)) {
        pthread_t t[THREADS];
        worker w[THREADS];
        int started = 0;
        for (int i = 0; i < THREADS; i++) {
            w[i] = (worker){.model = m, .request = r, .failures = 0};
            if (pthread_create(&t[i], NULL, work, &w[i]) != 0) {
                test_fail("pthread_create");
                break;
            }
            started++;
        }
        int failed = 0;
        for (int i = 0; i < started; i++) {
            pthread_join(t[i], NULL);
            failed += w[i].failures;
        }
        if (failed != 0) test_fail("%d concurrent scores failed", failed);
        if (get_stats(m, &s)) {
            expect_u64("score.calls after threads", s.score.calls - before.score.calls,
                       (uint64_t)started * PER_THREAD);
            expect_u64("histogram after threads",
                       sum(s.score.latency_counts, ATRANK_LATENCY_BUCKETS) -
                           sum(before.score.latency_counts, ATRANK_LATENCY_BUCKETS),
                       (uint64_t)started * PER_THREAD);
        }
    }
done:
    free(out);
    atrank_model_free(m);
    golden_free(&g);
}

/* The vocabulary file of table `name`, per spec.json (format 3: tables.<name>.vocab). */
static const char *vocab_path(const cJSON *spec, const char *name) {
    const cJSON *table = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(spec, "tables"), name);
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(table, "vocab"));
}

static void expect_str(const char *what, const char *got, const char *want) {
    if (got == NULL || want == NULL || strcmp(got, want) != 0) {
        test_fail("%s: \"%s\", expected \"%s\"", what, got ? got : "(NULL)", want ? want : "(NULL)");
    }
}

/* The first 64 characters `sha256sum` prints for `path`, or "" if it cannot run. */
static void sha256sum(const char *path, char hex[65]) {
    hex[0] = '\0';
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
    FILE *p = popen(cmd, "r");
    if (p == NULL) return;
    if (fread(hex, 1, 64, p) == 64) {
        hex[64] = '\0';
    } else {
        hex[0] = '\0';
    }
    pclose(p);
}

static void test_info(const char *dir, atrank_backend backend) {
    char *spec_path = test_join_path(dir, "spec.json");
    cJSON *spec = spec_path != NULL ? test_read_json(spec_path) : NULL;
    free(spec_path);
    const atrank_model *m = load(dir, backend);
    atrank_info *info = NULL;
    if (spec == NULL || m == NULL || !expect_ok("atrank_model_info", atrank_model_info(m, &info))) {
        if (spec == NULL) test_fail("cannot read %s/spec.json", dir);
        cJSON_Delete(spec);
        atrank_model_free(m);
        return;
    }
    /* The info outlives the model. */
    atrank_model_free(m);

    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(spec, "name"));
    expect_str("name", atrank_info_name(info), name != NULL ? name : "");
    const char *created_by = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(spec, "created_by"));
    expect_str("created_by", atrank_info_created_by(info), created_by != NULL ? created_by : "");
    /* input_mapping: the spec's object as JSON, or "" when the package has none. */
    const cJSON *mapping = cJSON_GetObjectItemCaseSensitive(spec, "input_mapping");
    const char *mapping_json = atrank_info_input_mapping(info);
    if (mapping == NULL || cJSON_IsNull(mapping)) {
        expect_str("input_mapping (none)", mapping_json, "");
    } else {
        cJSON *got = mapping_json != NULL ? cJSON_Parse(mapping_json) : NULL;
        if (got == NULL || !cJSON_Compare(got, mapping, 1)) {
            test_fail("%s: atrank_info_input_mapping is not spec.json's input_mapping: %s", dir,
                      mapping_json != NULL ? mapping_json : "(null)");
        }
        cJSON_Delete(got);
    }
    expect_u64("spec_version", atrank_info_spec_version(info),
               (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(spec, "spec_version")));
    const cJSON *limits = cJSON_GetObjectItemCaseSensitive(spec, "limits");
    expect_u64("max_candidates", atrank_info_max_candidates(info),
               (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(limits, "max_candidates")));
    expect_u64("max_behaviors", atrank_info_max_behaviors(info),
               (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(limits, "max_behaviors")));
    expect_str("serving", atrank_info_serving(info), backend == ATRANK_BACKEND_TRACT ? "tract" : "ort-cpu");

    const cJSON *graph = cJSON_GetObjectItemCaseSensitive(spec, "graph");
    char *graph_path = test_join_path(dir, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(graph, "file")));
    char hex[65];
    sha256sum(graph_path, hex);
    free(graph_path);
    if (hex[0] == '\0') {
        fprintf(stderr, "note: sha256sum unavailable; graph_sha256 checked for shape only\n");
        const char *got = atrank_info_graph_sha256(info);
        if (got == NULL || strlen(got) != 64 || strspn(got, "0123456789abcdef") != 64) {
            test_fail("graph_sha256 \"%s\" is not 64 lower-case hex digits", got ? got : "(NULL)");
        }
    } else {
        expect_str("graph_sha256", atrank_info_graph_sha256(info), hex);
    }

    /* Every table of the spec, with its vocabulary's key count: n in the atv file's header
     * (read here), which must also be the spec's `size`. */
    size_t tables = atrank_info_table_count(info);
    const cJSON *spec_tables = cJSON_GetObjectItemCaseSensitive(spec, "tables");
    expect_u64("table count", tables, (uint64_t)cJSON_GetArraySize(spec_tables));
    for (size_t i = 0; i < tables; i++) {
        const char *t = atrank_info_table_name(info, i);
        const char *rel = t != NULL ? vocab_path(spec, t) : NULL;
        if (rel == NULL) {
            test_fail("table %zu (\"%s\") is not in spec.json's tables", i, t ? t : "(NULL)");
            continue;
        }
        char *path = test_join_path(dir, rel);
        uint64_t keys = path != NULL ? test_atv_count(path) : (uint64_t)-1;
        free(path);
        char what[256];
        snprintf(what, sizeof what, "vocab size of table %s (%s header)", t, rel);
        expect_u64(what, atrank_info_table_vocab_size(info, i), keys);
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(spec_tables, t), "size");
        snprintf(what, sizeof what, "spec size of table %s vs its atv header", t);
        expect_u64(what, (uint64_t)cJSON_GetNumberValue(size), keys);
    }
    if (atrank_info_table_name(info, tables) != NULL) test_fail("table_name past the end is not NULL");
    expect_u64("table_vocab_size past the end", atrank_info_table_vocab_size(info, tables), 0);

    /* Every group with its max_history, in the spec's order. */
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(spec, "groups");
    expect_u64("group count", atrank_info_group_count(info), (uint64_t)cJSON_GetArraySize(groups));
    for (size_t i = 0; i < atrank_info_group_count(info); i++) {
        const cJSON *gj = cJSON_GetArrayItem(groups, (int)i);
        expect_str("group name", atrank_info_group_name(info, i),
                   cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(gj, "name")));
        expect_u64("group max_history", atrank_info_group_max_history(info, i),
                   (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(gj, "max_history")));
    }
    atrank_info_free(info);
    cJSON_Delete(spec);
}

static void test_arguments(const char *dir) {
    uint64_t bounds[ATRANK_LATENCY_BUCKETS];
    if (expect_ok("latency_bounds", atrank_latency_bounds(bounds, ATRANK_LATENCY_BUCKETS))) {
        expect_u64("first bound (50 us)", bounds[0], 50000);
        expect_u64("last finite bound (1 s)", bounds[ATRANK_LATENCY_BUCKETS - 2], 1000000000);
        expect_u64("last bound (+Inf)", bounds[ATRANK_LATENCY_BUCKETS - 1], UINT64_MAX);
        for (size_t i = 1; i < ATRANK_LATENCY_BUCKETS; i++) {
            if (bounds[i] <= bounds[i - 1]) test_fail("bounds not increasing at %zu", i);
        }
    }
    uint64_t untouched[ATRANK_LATENCY_BUCKETS + 1] = {7};
    expect_error("latency_bounds too long", atrank_latency_bounds(untouched, ATRANK_LATENCY_BUCKETS + 1),
                 ATRANK_ERROR_BUFFER_SIZE, "bounds_out_len");
    expect_u64("bounds untouched on error", untouched[0], 7);
    expect_error("latency_bounds NULL", atrank_latency_bounds(NULL, ATRANK_LATENCY_BUCKETS),
                 ATRANK_ERROR_NULL_ARGUMENT, "bounds_out");

    atrank_stats s;
    memset(&s, 0x5A, sizeof s);
    expect_error("stats NULL model", atrank_model_stats(NULL, &s, sizeof s), ATRANK_ERROR_NULL_ARGUMENT, "model");
    atrank_info *info = (atrank_info *)&s;
    expect_error("info NULL model", atrank_model_info(NULL, &info), ATRANK_ERROR_NULL_ARGUMENT, "model");
    if (info != (atrank_info *)&s) test_fail("info_out written on error");
    if (atrank_info_name(NULL) != NULL || atrank_info_input_mapping(NULL) != NULL || atrank_info_spec_version(NULL) != 0 ||
        atrank_info_table_count(NULL) != 0) {
        test_fail("info accessors on NULL do not return NULL / 0");
    }
    atrank_info_free(NULL);

    const atrank_model *m = load(dir, ATRANK_BACKEND_TRACT);
    if (m == NULL) return;
    expect_error("stats NULL out", atrank_model_stats(m, NULL, sizeof s), ATRANK_ERROR_NULL_ARGUMENT, "stats_out");
    const size_t v1 = offsetof(atrank_stats, tract_fused_attention);
    expect_error("stats size too small", atrank_model_stats(m, &s, v1 - 1), ATRANK_ERROR_BUFFER_SIZE,
                 "stats_out_size");
    expect_u64("stats untouched on error", s.size, 0x5A5A5A5A5A5A5A5AULL);
    /* A caller compiled against the first version of the struct. */
    if (expect_ok("stats into a first-version struct", atrank_model_stats(m, &s, v1))) {
        expect_u64("size written for a first-version struct", s.size, v1);
        expect_u64("tract_fused_attention not written", s.tract_fused_attention, 0x5A5A5A5A5A5A5A5AULL);
        expect_u64("tract_fused_layer_norm not written", s.tract_fused_layer_norm, 0x5A5A5A5A5A5A5A5AULL);
    }
    memset(&s, 0x5A, sizeof s);
    if (expect_ok("stats into a size between two fields", atrank_model_stats(m, &s, v1 + 12))) {
        expect_u64("size rounded down to whole fields", s.size, v1 + 8);
        expect_u64("the field that does not fit is not written", s.tract_fused_layer_norm, 0x5A5A5A5A5A5A5A5AULL);
    }
    /* A caller compiled against a larger (newer) struct: the library fills its own size. */
    unsigned char bigger[sizeof(atrank_stats) + 64];
    memset(bigger, 0xEE, sizeof bigger);
    if (expect_ok("stats into a larger struct", atrank_model_stats(m, (atrank_stats *)(void *)bigger, sizeof bigger))) {
        atrank_stats got;
        memcpy(&got, bigger, sizeof got);
        expect_u64("size written for a larger struct", got.size, sizeof(atrank_stats));
        if (bigger[sizeof(atrank_stats)] != 0xEE) test_fail("wrote past sizeof(atrank_stats)");
    }
    atrank_model_free(m);
}

/* Each fusion flag on a package: the stats count what it fused, and every golden request
 * still scores within its tolerance (docs/tolerances.md: the kernels' rounding is far inside
 * the derived bound). A flag that is off fuses nothing. A flag that is on must fuse on a CPU
 * with AVX2 and FMA (the kernels' own), except the attention of the committed fixtures
 * (require_attention 0): their graphs predate the exporter's serving form (the mask is an Add
 * over the scores) and run on tract's nodes (tests/tract_fused.rs). */
static void test_fusion(const char *dir, atrank_backend backend, int require_attention) {
    golden_set g;
    if (golden_load(dir, &g) != 0) {
        test_fail("cannot load the golden requests of %s", dir);
        return;
    }
    const atrank_tract_fusion flags[4] = {ATRANK_TRACT_FUSE_NONE, ATRANK_TRACT_FUSE_ATTENTION,
                                          ATRANK_TRACT_FUSE_LAYER_NORM,
                                          ATRANK_TRACT_FUSE_ATTENTION | ATRANK_TRACT_FUSE_LAYER_NORM};
    for (size_t f = 0; f < 4; f++) {
        const atrank_model *m = test_build(dir, backend, TEST_DEFAULT_ROWS, flags[f]);
        if (m == NULL) continue;
        atrank_stats s;
        if (get_stats(m, &s)) {
            int cpu = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
            int tract = backend == ATRANK_BACKEND_TRACT;
            int att = tract && (flags[f] & ATRANK_TRACT_FUSE_ATTENTION);
            int ln = tract && (flags[f] & ATRANK_TRACT_FUSE_LAYER_NORM);
            if ((!att && s.tract_fused_attention != 0) ||
                (att && cpu && require_attention && s.tract_fused_attention == 0))
                test_fail("%s %s fusion %u: tract_fused_attention %llu", dir, test_backend_name(backend), flags[f],
                          (unsigned long long)s.tract_fused_attention);
            if ((!ln && s.tract_fused_layer_norm != 0) || (ln && cpu && s.tract_fused_layer_norm == 0))
                test_fail("%s %s fusion %u: tract_fused_layer_norm %llu", dir, test_backend_name(backend), flags[f],
                          (unsigned long long)s.tract_fused_layer_norm);
            printf("%s %s fusion %u: %llu attention, %llu layer norms fused\n", dir, test_backend_name(backend),
                   flags[f], (unsigned long long)s.tract_fused_attention, (unsigned long long)s.tract_fused_layer_norm);
        }
        for (size_t i = 0; i < g.requests_len; i++) {
            const golden_request *r = &g.requests[i];
            float *out = calloc(r->candidates_len, sizeof *out);
            if (out == NULL) break;
            if (expect_ok(r->name, score(m, r, out))) {
                for (size_t k = 0; k < r->candidates_len; k++) {
                    if (!(fabs((double)out[k] - r->scores[k]) <= r->tolerance))
                        test_fail("%s %s fusion %u %s candidate %zu: %g vs trainer %g", dir,
                                  test_backend_name(backend), flags[f], r->name, k, (double)out[k], r->scores[k]);
                }
            }
            free(out);
        }
        atrank_model_free(m);
    }
    atrank_model_builder *b = NULL;
    if (expect_ok("builder_new", atrank_model_builder_new(dir, &b))) {
        expect_error("set_tract_fusion(4)", atrank_model_builder_set_tract_fusion(b, 4), ATRANK_ERROR_INVALID_ARGUMENT,
                     "fusion is 4");
        expect_error("set_tract_fusion(UINT32_MAX)", atrank_model_builder_set_tract_fusion(b, UINT32_MAX),
                     ATRANK_ERROR_INVALID_ARGUMENT, "fusion is 4294967295");
        atrank_model_builder_free(b);
    }
    expect_error("set_tract_fusion(NULL builder)", atrank_model_builder_set_tract_fusion(NULL, 1),
                 ATRANK_ERROR_NULL_ARGUMENT, "builder");
    golden_free(&g);
}

int main(int argc, char **argv) {
    const char *dir = test_package_dir(argc, argv);
    if (dir == NULL) {
        fprintf(stderr, "SKIP: no package (set ATRANK_PACKAGE or pass a directory)\n");
        return TEST_EXIT_SKIP;
    }
    int ort = getenv("ATRANK_ORT_LIB") != NULL && getenv("ATRANK_ORT_LIB")[0] != '\0';
    const char *dirs[] = {dir, MULTI};
    for (size_t d = 0; d < 2; d++) {
        test_counts(dirs[d], ATRANK_BACKEND_TRACT);
        test_info(dirs[d], ATRANK_BACKEND_TRACT);
        if (ort) {
            test_counts(dirs[d], ATRANK_BACKEND_ORT);
            test_info(dirs[d], ATRANK_BACKEND_ORT);
        }
    }
    if (!ort) fprintf(stderr, "note: ATRANK_ORT_LIB not set: ORT checks skipped\n");
    test_arguments(dir);
    /* The package under test is the one the test command exports now, unless a fixture was
     * passed (then, as for MULTI, its attention may predate the fused form). */
    int fresh = strstr(dir, "tests/fixtures/") == NULL;
    test_fusion(dir, ATRANK_BACKEND_TRACT, fresh);
    test_fusion(MULTI, ATRANK_BACKEND_TRACT, 0);
    if (ort) test_fusion(dir, ATRANK_BACKEND_ORT, fresh);
    if (test_failures != 0) {
        fprintf(stderr, "test_stats: %d check(s) failed\n", test_failures);
        return 1;
    }
    printf("test_stats: all checks passed\n");
    return 0;
}
