/*
 * score_golden: scores a model package's golden requests through atrank's C API and reports
 * parity with the trainer's scores and per-request latency, for each backend.
 *
 *   score_golden [-r REPEATS] [-q] <package_dir>
 *
 * Backends: ORT when $ATRANK_ORT_LIB names the ONNX Runtime library (skipped otherwise), and
 * tract. Each request is scored once for parity, then REPEATS more times (default 20) for
 * latency, timed one call at a time with clock_gettime(CLOCK_MONOTONIC). Each request must be
 * within its own tolerance in golden.json (the derived 2 D U M; the top-level one, their maximum,
 * in older files); $ATRANK_TOLERANCE overrides them all. -q prints only the summary.
 *
 * Exit status: 0 when every backend run is within tolerance, 1 on any FAIL, 2 on bad usage or
 * an unreadable package.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "atrank.h"

typedef struct {
    const char *name;
    int64_t request_time;
    atrank_behavior *behaviors;
    size_t behaviors_len;
    const char **candidates;
    size_t candidates_len;
    double *expected;
    double tolerance; /* its derived 2 D U M (else the file's), or ATRANK_TOLERANCE */
} request;

typedef struct {
    cJSON *json; /* owns the strings the requests point to */
    double tolerance; /* top-level: the largest per-request one, or ATRANK_TOLERANCE */
    request *requests;
    size_t len;
} golden;

/* ---------- reading golden.json ---------- */

static cJSON *read_json(const char *dir, const char *name) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) {
        fprintf(stderr, "path too long: %s/%s\n", dir, name);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    for (size_t n; text != NULL && (n = fread(text + len, 1, cap - len - 1, f)) > 0;) {
        len += n;
        if (len + 1 == cap) {
            char *bigger = realloc(text, cap *= 2);
            if (bigger == NULL) {
                free(text);
            }
            text = bigger;
        }
    }
    fclose(f);
    if (text == NULL) {
        fprintf(stderr, "out of memory reading %s\n", path);
        return NULL;
    }
    text[len] = '\0';
    cJSON *json = cJSON_Parse(text);
    free(text);
    if (json == NULL) {
        fprintf(stderr, "%s is not valid JSON\n", path);
    }
    return json;
}

static int get_int64(const cJSON *item, int64_t *out) {
    if (!cJSON_IsNumber(item) || item->valuedouble != floor(item->valuedouble) || fabs(item->valuedouble) > 9e15) {
        return -1;
    }
    *out = (int64_t)item->valuedouble;
    return 0;
}

static const char *opt_string(const cJSON *item) { return cJSON_IsString(item) ? item->valuestring : NULL; }

static int parse_request(const cJSON *json, request *r) {
    const cJSON *behaviors = cJSON_GetObjectItemCaseSensitive(json, "behaviors");
    const cJSON *candidates = cJSON_GetObjectItemCaseSensitive(json, "candidates");
    const cJSON *scores = cJSON_GetObjectItemCaseSensitive(json, "scores");
    r->name = opt_string(cJSON_GetObjectItemCaseSensitive(json, "name"));
    if (r->name == NULL) {
        r->name = "(unnamed)";
    }
    if (get_int64(cJSON_GetObjectItemCaseSensitive(json, "request_time"), &r->request_time) != 0 ||
        !cJSON_IsArray(behaviors) || !cJSON_IsArray(candidates) || !cJSON_IsArray(scores) ||
        cJSON_GetArraySize(candidates) != cJSON_GetArraySize(scores) || cJSON_GetArraySize(candidates) == 0) {
        fprintf(stderr, "golden request %s: needs an integer request_time and equally long, non-empty "
                        "candidates and scores arrays\n", r->name);
        return -1;
    }
    r->behaviors_len = (size_t)cJSON_GetArraySize(behaviors);
    r->candidates_len = (size_t)cJSON_GetArraySize(candidates);
    r->behaviors = r->behaviors_len > 0 ? calloc(r->behaviors_len, sizeof *r->behaviors) : NULL;
    r->candidates = calloc(r->candidates_len, sizeof *r->candidates);
    r->expected = calloc(r->candidates_len, sizeof *r->expected);
    if ((r->behaviors_len > 0 && r->behaviors == NULL) || r->candidates == NULL || r->expected == NULL) {
        fprintf(stderr, "out of memory\n");
        return -1;
    }
    size_t i = 0;
    const cJSON *b;
    cJSON_ArrayForEach(b, behaviors) {
        atrank_behavior *out = &r->behaviors[i++];
        /* Format 2 and 3 goldens: "id", "group" and "features"; older ones: "item", "category". */
        out->item = opt_string(cJSON_GetObjectItemCaseSensitive(b, "id"));
        if (out->item == NULL) out->item = opt_string(cJSON_GetObjectItemCaseSensitive(b, "item"));
        out->group = opt_string(cJSON_GetObjectItemCaseSensitive(b, "group")); /* null: the target group */
        out->category = opt_string(cJSON_GetObjectItemCaseSensitive(b, "category")); /* null: catalog's */
        out->action = opt_string(cJSON_GetObjectItemCaseSensitive(b, "action"));
        if (out->item == NULL || get_int64(cJSON_GetObjectItemCaseSensitive(b, "timestamp"), &out->timestamp) != 0) {
            fprintf(stderr, "golden request %s: behaviors[%zu] needs a string id and an integer timestamp\n",
                    r->name, i - 1);
            return -1;
        }
        const cJSON *features = cJSON_GetObjectItemCaseSensitive(b, "features");
        int nf = cJSON_IsObject(features) ? cJSON_GetArraySize(features) : 0;
        if (nf > 0) {
            atrank_feature *f = calloc((size_t)nf, sizeof *f);
            if (f == NULL) {
                fprintf(stderr, "out of memory\n");
                return -1;
            }
            out->features = f;
            const cJSON *v;
            cJSON_ArrayForEach(v, features) {
                if (!cJSON_IsString(v)) {
                    fprintf(stderr, "golden request %s: behaviors[%zu].features.%s is not a string\n", r->name,
                            i - 1, v->string);
                    return -1;
                }
                f[out->features_len].name = v->string;
                f[out->features_len].value = v->valuestring;
                out->features_len++;
            }
        }
    }
    i = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, candidates) {
        if ((r->candidates[i++] = opt_string(c)) == NULL) {
            fprintf(stderr, "golden request %s: candidates[%zu] is not a string\n", r->name, i - 1);
            return -1;
        }
    }
    i = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, scores) {
        if (!cJSON_IsNumber(s)) {
            fprintf(stderr, "golden request %s: scores[%zu] is not a number\n", r->name, i);
            return -1;
        }
        r->expected[i++] = s->valuedouble;
    }
    return 0;
}

static void golden_free(golden *g) {
    for (size_t i = 0; i < g->len; i++) {
        for (size_t j = 0; g->requests[i].behaviors != NULL && j < g->requests[i].behaviors_len; j++)
            free((void *)g->requests[i].behaviors[j].features);
        free(g->requests[i].behaviors);
        free((void *)g->requests[i].candidates);
        free(g->requests[i].expected);
    }
    free(g->requests);
    cJSON_Delete(g->json);
}

static int golden_load(const char *dir, golden *g, const char **tolerance_source) {
    memset(g, 0, sizeof *g);
    cJSON *spec = read_json(dir, "spec.json");
    if (spec == NULL) {
        return -1;
    }
    const char *file = opt_string(cJSON_GetObjectItemCaseSensitive(spec, "golden"));
    g->json = read_json(dir, file != NULL ? file : "golden.json");
    cJSON_Delete(spec);
    if (g->json == NULL) {
        return -1;
    }
    const cJSON *tolerance = cJSON_GetObjectItemCaseSensitive(g->json, "tolerance");
    const cJSON *requests = cJSON_GetObjectItemCaseSensitive(g->json, "requests");
    if (!cJSON_IsNumber(tolerance) || !cJSON_IsArray(requests) || cJSON_GetArraySize(requests) == 0) {
        fprintf(stderr, "%s: the golden file needs a numeric tolerance and a non-empty requests array\n", dir);
        return -1;
    }
    g->tolerance = tolerance->valuedouble;
    *tolerance_source = "golden file";
    const char *env = getenv("ATRANK_TOLERANCE");
    if (env != NULL && env[0] != '\0') {
        char *end;
        g->tolerance = strtod(env, &end);
        if (end == env || *end != '\0' || !(g->tolerance >= 0)) {
            fprintf(stderr, "ATRANK_TOLERANCE=%s is not a non-negative number\n", env);
            return -1;
        }
        *tolerance_source = "ATRANK_TOLERANCE";
    }
    g->requests = calloc((size_t)cJSON_GetArraySize(requests), sizeof *g->requests);
    if (g->requests == NULL) {
        return -1;
    }
    int override = env != NULL && env[0] != '\0';
    const cJSON *r;
    cJSON_ArrayForEach(r, requests) {
        request *out = &g->requests[g->len++];
        if (parse_request(r, out) != 0) {
            return -1;
        }
        /* Each request's derived tolerance, 2 D U M (docs/tolerances.md); files of older
         * exporters have only the top-level one. */
        const cJSON *own = cJSON_GetObjectItemCaseSensitive(r, "tolerance");
        out->tolerance = !override && cJSON_IsNumber(own) ? own->valuedouble : g->tolerance;
    }
    return 0;
}

/* ---------- scoring and timing ---------- */

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of n sorted values. */
static double percentile(const double *sorted, size_t n, double p) {
    size_t rank = (size_t)ceil(p / 100.0 * (double)n);
    return sorted[rank > 0 ? rank - 1 : 0];
}

static void print_error(const char *what, atrank_error *err) {
    printf("  %s failed: code %u: %s\n", what, (unsigned)atrank_error_code(err), atrank_error_message(err));
    atrank_error_free(err);
}

/* Runs one backend; returns 1 if it passed. Prints per-request rows unless quiet, and appends
 * one summary line to `summary`. */
static int run_backend(const char *dir, atrank_backend backend, const char *name, const golden *g, int repeats,
                       int quiet, char *summary, size_t summary_size) {
    size_t total_candidates = 0;
    int w = 7; /* width of the request-name column: the longest name, at most 40 */
    for (size_t i = 0; i < g->len; i++) {
        total_candidates += g->requests[i].candidates_len;
        size_t len = strlen(g->requests[i].name);
        w = len > (size_t)w ? (len < 40 ? (int)len : 40) : w;
    }
    const atrank_model *model = NULL;
    double t0 = now_us();
    atrank_error *err = atrank_model_load(dir, backend, &model);
    double load_ms = (now_us() - t0) / 1e3;
    if (err != NULL) {
        printf("\nbackend %s\n", name);
        print_error("atrank_model_load", err);
        snprintf(summary, summary_size, "%-8s %8zu %11zu %11s %10.3g  %-6s  (cannot load the package)\n", name,
                 g->len, total_candidates, "-", g->tolerance, "FAIL");
        return 0;
    }
    if (!quiet) {
        printf("\nbackend %s (package loaded in %.1f ms)\n", name, load_ms);
        printf("  %4s  %-*s %9s %10s %11s %10s %10s\n", "#", w, "request", "behaviors", "candidates", "max|diff|",
               "median_us", "p90_us");
    }
    double max_diff = 0.0;
    int ok = 1;
    double *times = malloc((size_t)repeats * sizeof *times);
    double *all_times = malloc(g->len * (size_t)repeats * sizeof *all_times);
    size_t n_all = 0;
    for (size_t i = 0; i < g->len && times != NULL && all_times != NULL; i++) {
        const request *r = &g->requests[i];
        float *scores = malloc(r->candidates_len * sizeof *scores);
        if (scores == NULL) {
            ok = 0;
            break;
        }
        err = atrank_model_score(model, r->behaviors, r->behaviors_len, r->candidates, r->candidates_len,
                                 r->request_time, scores, r->candidates_len);
        if (err != NULL) {
            printf("  %4zu  %-*.*s ", i, w, w, r->name);
            print_error("atrank_model_score", err);
            free(scores);
            ok = 0;
            continue;
        }
        double req_diff = 0.0;
        for (size_t c = 0; c < r->candidates_len; c++) {
            double d = fabs((double)scores[c] - r->expected[c]);
            if (!(d <= req_diff)) { /* also catches NaN */
                req_diff = d;
            }
        }
        if (!(req_diff <= r->tolerance)) {
            ok = 0;
        }
        if (!(req_diff <= max_diff)) {
            max_diff = req_diff;
        }
        for (int k = 0; k < repeats; k++) {
            double start = now_us();
            err = atrank_model_score(model, r->behaviors, r->behaviors_len, r->candidates, r->candidates_len,
                                     r->request_time, scores, r->candidates_len);
            times[k] = now_us() - start;
            if (err != NULL) {
                print_error("atrank_model_score (timed)", err);
                ok = 0;
                break;
            }
            all_times[n_all++] = times[k];
        }
        free(scores);
        qsort(times, (size_t)repeats, sizeof *times, cmp_double);
        if (!quiet) {
            printf("  %4zu  %-*.*s %9zu %10zu %11.3g %10.1f %10.1f%s\n", i, w, w, r->name, r->behaviors_len,
                   r->candidates_len, req_diff, percentile(times, (size_t)repeats, 50),
                   percentile(times, (size_t)repeats, 90), req_diff <= r->tolerance ? "" : "  <-- out of tolerance");
        }
    }
    if (times == NULL || all_times == NULL) {
        printf("  out of memory\n");
        ok = 0;
    }
    double median = 0, p90 = 0;
    if (n_all > 0) {
        qsort(all_times, n_all, sizeof *all_times, cmp_double);
        median = percentile(all_times, n_all, 50);
        p90 = percentile(all_times, n_all, 90);
    }
    snprintf(summary, summary_size, "%-8s %8zu %11zu %11.3g %10.3g  %-6s %10.1f %10.1f\n", name, g->len,
             total_candidates, max_diff, g->tolerance, ok ? "PASS" : "FAIL", median, p90);
    free(times);
    free(all_times);
    atrank_model_free(model);
    return ok;
}

static int usage(const char *argv0) {
    fprintf(stderr, "usage: %s [-r REPEATS] [-q] <package_dir>\n", argv0);
    return 2;
}

int main(int argc, char **argv) {
    int repeats = 20, quiet = 0;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) {
            repeats = atoi(argv[++i]);
            if (repeats < 1 || repeats > 100000) {
                return usage(argv[0]);
            }
        } else if (strcmp(argv[i], "-q") == 0) {
            quiet = 1;
        } else if (argv[i][0] == '-' || dir != NULL) {
            return usage(argv[0]);
        } else {
            dir = argv[i];
        }
    }
    if (dir == NULL) {
        return usage(argv[0]);
    }
    /* The header this program was compiled with must describe the library it runs with. */
    if (atrank_abi_version() != ATRANK_ABI_VERSION) {
        fprintf(stderr, "libatrank ABI %u does not match atrank.h's %u\n", (unsigned)atrank_abi_version(),
                (unsigned)ATRANK_ABI_VERSION);
        return 2;
    }

    golden g;
    const char *tolerance_source = "";
    if (golden_load(dir, &g, &tolerance_source) != 0) {
        fprintf(stderr, "cannot read the golden requests of %s\n", dir);
        golden_free(&g);
        return 2;
    }
    size_t total_candidates = 0;
    for (size_t i = 0; i < g.len; i++) {
        total_candidates += g.requests[i].candidates_len;
    }
    printf("atrank %s (C ABI %u), package %s\n", atrank_version(), (unsigned)atrank_abi_version(), dir);
    printf("golden: %zu requests, %zu candidates, tolerances up to %.3g (%s); latency over %d timed calls per request\n",
           g.len, total_candidates, g.tolerance, tolerance_source, repeats);

    char summaries[2][256] = {"", ""};
    int failed = 0;
    const char *ort_lib = getenv("ATRANK_ORT_LIB");
    if (ort_lib != NULL && ort_lib[0] != '\0') {
        failed |= !run_backend(dir, ATRANK_BACKEND_ORT, "ort", &g, repeats, quiet, summaries[0], sizeof summaries[0]);
    } else {
        snprintf(summaries[0], sizeof summaries[0], "%-8s skipped: ATRANK_ORT_LIB is unset\n", "ort");
    }
    failed |= !run_backend(dir, ATRANK_BACKEND_TRACT, "tract", &g, repeats, quiet, summaries[1], sizeof summaries[1]);

    printf("\nsummary (latency: median and p90 of all timed calls, microseconds per request)\n");
    printf("%-8s %8s %11s %11s %10s  %-6s %10s %10s\n", "backend", "requests", "candidates", "max|diff|",
           "tolerance", "result", "median_us", "p90_us");
    printf("%s%s", summaries[0], summaries[1]);
    printf("\n%s\n", failed ? "FAIL" : "PASS");
    golden_free(&g);
    return failed ? 1 : 0;
}
