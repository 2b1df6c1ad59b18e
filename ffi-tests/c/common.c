#define _XOPEN_SOURCE 700

#include "common.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int test_failures = 0;

void test_fail(const char *fmt, ...) {
    va_list ap;
    fflush(stdout); /* keep stdout's "ok" lines and stderr's failures in order */
    va_start(ap, fmt);
    fputs("FAIL: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    test_failures++;
}

const char *test_package_dir(int argc, char **argv) {
    if (argc > 1 && argv[1][0] != '\0') {
        return argv[1];
    }
    const char *env = getenv("ATRANK_PACKAGE");
    if (env != NULL && env[0] != '\0') {
        return env;
    }
    return NULL;
}

const char *test_code_name(atrank_code code) {
    switch (code) {
    case ATRANK_OK: return "ATRANK_OK";
    case ATRANK_ERROR_NULL_ARGUMENT: return "ATRANK_ERROR_NULL_ARGUMENT";
    case ATRANK_ERROR_INVALID_ARGUMENT: return "ATRANK_ERROR_INVALID_ARGUMENT";
    case ATRANK_ERROR_INVALID_UTF8: return "ATRANK_ERROR_INVALID_UTF8";
    case ATRANK_ERROR_IO: return "ATRANK_ERROR_IO";
    case ATRANK_ERROR_INVALID_PACKAGE: return "ATRANK_ERROR_INVALID_PACKAGE";
    case ATRANK_ERROR_BACKEND_UNAVAILABLE: return "ATRANK_ERROR_BACKEND_UNAVAILABLE";
    case ATRANK_ERROR_BACKEND: return "ATRANK_ERROR_BACKEND";
    case ATRANK_ERROR_PANIC: return "ATRANK_ERROR_PANIC";
    case ATRANK_ERROR_BUFFER_SIZE: return "ATRANK_ERROR_BUFFER_SIZE";
    default: return "(unknown code)";
    }
}

const char *test_backend_name(atrank_backend backend) {
    switch (backend) {
    case ATRANK_BACKEND_ORT: return "ort";
    case ATRANK_BACKEND_TRACT: return "tract";
    default: return "(unknown backend)";
    }
}

char *test_read_file(const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    while (buf != NULL) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (len < cap) {
            break;
        }
        cap *= 2;
        char *bigger = realloc(buf, cap + 1);
        if (bigger == NULL) {
            free(buf);
        }
        buf = bigger;
    }
    int read_error = ferror(f);
    fclose(f);
    if (buf == NULL) {
        fprintf(stderr, "out of memory reading %s\n", path);
        return NULL;
    }
    if (read_error) {
        fprintf(stderr, "cannot read %s\n", path);
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    if (len_out != NULL) {
        *len_out = len;
    }
    return buf;
}

cJSON *test_read_json(const char *path) {
    char *text = test_read_file(path, NULL);
    if (text == NULL) {
        return NULL;
    }
    cJSON *json = cJSON_Parse(text);
    if (json == NULL) {
        const char *at = cJSON_GetErrorPtr();
        fprintf(stderr, "%s is not valid JSON (near: %.40s)\n", path, at != NULL ? at : "?");
    }
    free(text);
    return json;
}

char *test_join_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + 1 + strlen(name) + 1;
    char *p = malloc(n);
    if (p != NULL) {
        snprintf(p, n, "%s/%s", dir, name);
    }
    return p;
}

/* An integral JSON number that fits an int64 exactly (JSON numbers are doubles in cJSON, exact
 * up to 2^53, which covers any unix time). */
static int json_int64(const cJSON *item, int64_t *out) {
    if (!cJSON_IsNumber(item)) {
        return -1;
    }
    double v = item->valuedouble;
    if (!(v >= -9007199254740992.0 && v <= 9007199254740992.0) || v != floor(v)) {
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

static int parse_request(const cJSON *req, size_t index, golden_request *out) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(req, "name");
    const cJSON *time = cJSON_GetObjectItemCaseSensitive(req, "request_time");
    const cJSON *behaviors = cJSON_GetObjectItemCaseSensitive(req, "behaviors");
    const cJSON *candidates = cJSON_GetObjectItemCaseSensitive(req, "candidates");
    const cJSON *scores = cJSON_GetObjectItemCaseSensitive(req, "scores");
    memset(out, 0, sizeof *out);
    out->name = cJSON_IsString(name) ? name->valuestring : "(unnamed)";
    if (json_int64(time, &out->request_time) != 0) {
        fprintf(stderr, "golden requests[%zu] (%s): request_time is not an integer\n", index, out->name);
        return -1;
    }
    if (!cJSON_IsArray(behaviors) || !cJSON_IsArray(candidates) || !cJSON_IsArray(scores)) {
        fprintf(stderr, "golden requests[%zu] (%s): behaviors, candidates and scores must be arrays\n",
                index, out->name);
        return -1;
    }
    int nb = cJSON_GetArraySize(behaviors), nc = cJSON_GetArraySize(candidates);
    if (cJSON_GetArraySize(scores) != nc) {
        fprintf(stderr, "golden requests[%zu] (%s): %d candidates but %d scores\n", index, out->name, nc,
                cJSON_GetArraySize(scores));
        return -1;
    }
    out->behaviors_len = (size_t)nb;
    out->candidates_len = (size_t)nc;
    if (nb > 0) {
        out->behaviors = calloc((size_t)nb, sizeof *out->behaviors);
    }
    out->candidates = calloc(nc > 0 ? (size_t)nc : 1, sizeof *out->candidates);
    out->scores = calloc(nc > 0 ? (size_t)nc : 1, sizeof *out->scores);
    if ((nb > 0 && out->behaviors == NULL) || out->candidates == NULL || out->scores == NULL) {
        fprintf(stderr, "out of memory\n");
        return -1;
    }
    size_t i = 0;
    const cJSON *b;
    cJSON_ArrayForEach(b, behaviors) {
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(b, "item");
        if (item == NULL) item = cJSON_GetObjectItemCaseSensitive(b, "id"); /* goldens of format 2 and 3 */
        const cJSON *group = cJSON_GetObjectItemCaseSensitive(b, "group");
        const cJSON *features = cJSON_GetObjectItemCaseSensitive(b, "features");
        const cJSON *category = cJSON_GetObjectItemCaseSensitive(b, "category");
        const cJSON *action = cJSON_GetObjectItemCaseSensitive(b, "action");
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(b, "timestamp");
        if (!cJSON_IsString(item) || json_int64(ts, &out->behaviors[i].timestamp) != 0 ||
            !(category == NULL || cJSON_IsNull(category) || cJSON_IsString(category)) ||
            !(action == NULL || cJSON_IsNull(action) || cJSON_IsString(action))) {
            fprintf(stderr,
                    "golden requests[%zu] (%s) behaviors[%zu]: need a string item, an integer timestamp, "
                    "and a string or null category and action\n",
                    index, out->name, i);
            return -1;
        }
        out->behaviors[i].item = item->valuestring;
        out->behaviors[i].category = cJSON_IsString(category) ? category->valuestring : NULL;
        out->behaviors[i].action = cJSON_IsString(action) ? action->valuestring : NULL;
        out->behaviors[i].group = cJSON_IsString(group) ? group->valuestring : NULL;
        if (cJSON_IsObject(features) && cJSON_GetArraySize(features) > 0) {
            size_t nf = (size_t)cJSON_GetArraySize(features), k = 0;
            atrank_feature *f = calloc(nf, sizeof *f);
            if (f == NULL) {
                fprintf(stderr, "out of memory\n");
                return -1;
            }
            out->behaviors[i].features = f;
            const cJSON *v;
            cJSON_ArrayForEach(v, features) {
                if (!cJSON_IsString(v)) {
                    fprintf(stderr, "golden requests[%zu] (%s) behaviors[%zu]: feature %s is not a string\n", index,
                            out->name, i, v->string);
                    return -1;
                }
                f[k].name = v->string;
                f[k].value = v->valuestring;
                out->behaviors[i].features_len = ++k;
            }
        }
        i++;
    }
    i = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, candidates) {
        if (!cJSON_IsString(c)) {
            fprintf(stderr, "golden requests[%zu] (%s) candidates[%zu] is not a string\n", index, out->name, i);
            return -1;
        }
        out->candidates[i++] = c->valuestring;
    }
    i = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, scores) {
        if (!cJSON_IsNumber(s)) {
            fprintf(stderr, "golden requests[%zu] (%s) scores[%zu] is not a number\n", index, out->name, i);
            return -1;
        }
        out->scores[i++] = s->valuedouble;
    }
    return 0;
}

int golden_load(const char *package_dir, golden_set *out) {
    memset(out, 0, sizeof *out);
    char *spec_path = test_join_path(package_dir, "spec.json");
    cJSON *spec = spec_path != NULL ? test_read_json(spec_path) : NULL;
    free(spec_path);
    if (spec == NULL) {
        return -1;
    }
    const cJSON *golden_name = cJSON_GetObjectItemCaseSensitive(spec, "golden");
    char *path = test_join_path(package_dir, cJSON_IsString(golden_name) ? golden_name->valuestring : "golden.json");
    cJSON_Delete(spec);
    if (path == NULL) {
        return -1;
    }
    out->json = test_read_json(path);
    if (out->json == NULL) {
        free(path);
        return -1;
    }
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(out->json, "format");
    const cJSON *tolerance = cJSON_GetObjectItemCaseSensitive(out->json, "tolerance");
    const cJSON *requests = cJSON_GetObjectItemCaseSensitive(out->json, "requests");
    if (!cJSON_IsString(format) || strcmp(format->valuestring, "atrank-golden") != 0 ||
        !cJSON_IsNumber(tolerance) || !cJSON_IsArray(requests)) {
        fprintf(stderr, "%s: need format \"atrank-golden\", a numeric tolerance and a requests array\n", path);
        free(path);
        golden_free(out);
        return -1;
    }
    out->tolerance = tolerance->valuedouble;
    const cJSON *bound = cJSON_GetObjectItemCaseSensitive(out->json, "bound_any_request");
    out->bound_any_request = cJSON_IsNumber(bound) ? bound->valuedouble : -1.0;
    int override = 0;
    const char *env = getenv("ATRANK_TOLERANCE");
    if (env != NULL && env[0] != '\0') {
        char *end = NULL;
        double t = strtod(env, &end);
        if (end == env || *end != '\0' || !(t >= 0.0) || !isfinite(t)) {
            fprintf(stderr, "ATRANK_TOLERANCE=%s is not a non-negative number\n", env);
            free(path);
            golden_free(out);
            return -1;
        }
        out->tolerance = t;
        out->bound_any_request = t;
        override = 1;
    }
    int n = cJSON_GetArraySize(requests);
    out->requests = calloc(n > 0 ? (size_t)n : 1, sizeof *out->requests);
    if (out->requests == NULL) {
        free(path);
        golden_free(out);
        return -1;
    }
    const cJSON *req;
    cJSON_ArrayForEach(req, requests) {
        /* Count first, so golden_free releases a partially parsed request too. */
        size_t i = out->requests_len++;
        if (parse_request(req, i, &out->requests[i]) != 0) {
            fprintf(stderr, "in %s\n", path);
            free(path);
            golden_free(out);
            return -1;
        }
        const cJSON *own = cJSON_GetObjectItemCaseSensitive(req, "tolerance");
        out->requests[i].tolerance = !override && cJSON_IsNumber(own) ? own->valuedouble : out->tolerance;
    }
    free(path);
    if (out->requests_len == 0) {
        fprintf(stderr, "golden file of %s has no requests\n", package_dir);
        golden_free(out);
        return -1;
    }
    return 0;
}

void golden_free(golden_set *set) {
    for (size_t i = 0; i < set->requests_len; i++) {
        for (size_t j = 0; set->requests[i].behaviors != NULL && j < set->requests[i].behaviors_len; j++)
            free((void *)set->requests[i].behaviors[j].features);
        free(set->requests[i].behaviors);
        free((void *)set->requests[i].candidates);
        free(set->requests[i].scores);
    }
    free(set->requests);
    cJSON_Delete(set->json);
    memset(set, 0, sizeof *set);
}

double test_bound_any_request(const char *package_dir) {
    golden_set g;
    if (golden_load(package_dir, &g) != 0) {
        test_fail("cannot read the golden file of %s", package_dir);
        return -1.0;
    }
    double bound = g.bound_any_request;
    golden_free(&g);
    if (bound < 0) test_fail("%s: golden.json has no bound_any_request (re-export the package)", package_dir);
    return bound;
}

size_t test_spec_max_candidates(const char *package_dir) {
    char *path = test_join_path(package_dir, "spec.json");
    cJSON *spec = path != NULL ? test_read_json(path) : NULL;
    size_t result = 0;
    if (spec != NULL) {
        const cJSON *limits = cJSON_GetObjectItemCaseSensitive(spec, "limits");
        const cJSON *max = cJSON_GetObjectItemCaseSensitive(limits, "max_candidates");
        int64_t v = 0;
        if (json_int64(max, &v) == 0 && v > 0) {
            result = (size_t)v;
        } else {
            fprintf(stderr, "%s: limits.max_candidates is not a positive integer\n", path);
        }
        cJSON_Delete(spec);
    }
    free(path);
    return result;
}

int expect_error(const char *what, atrank_error *err, atrank_code want, const char *needle) {
    if (err == NULL) {
        test_fail("%s: expected %s, but the call succeeded", what, test_code_name(want));
        return 0;
    }
    atrank_code got = atrank_error_code(err);
    const char *msg = atrank_error_message(err);
    int ok = 1;
    if (got != want) {
        test_fail("%s: expected %s, got %s (%u): %s", what, test_code_name(want), test_code_name(got),
                  (unsigned)got, msg != NULL ? msg : "(NULL message)");
        ok = 0;
    } else if (msg == NULL || msg[0] == '\0') {
        test_fail("%s: %s with an empty message", what, test_code_name(got));
        ok = 0;
    } else if (needle != NULL && strstr(msg, needle) == NULL) {
        test_fail("%s: message does not name \"%s\": %s", what, needle, msg);
        ok = 0;
    } else {
        printf("ok   %-48s %s: %s\n", what, test_code_name(got), msg);
    }
    atrank_error_free(err);
    return ok;
}

int expect_ok(const char *what, atrank_error *err) {
    if (err == NULL) {
        return 1;
    }
    atrank_code code = atrank_error_code(err);
    test_fail("%s: %s (%u): %s", what, test_code_name(code), (unsigned)code, atrank_error_message(err));
    atrank_error_free(err);
    return 0;
}

const atrank_model *test_build(const char *dir, atrank_backend backend, size_t batch_rows, atrank_tract_fusion fusion) {
    atrank_model_builder *b = NULL;
    const atrank_model *m = NULL;
    atrank_error *err = atrank_model_builder_new(dir, &b);
    if (err == NULL) err = atrank_model_builder_set_backend(b, backend);
    if (err == NULL && batch_rows != TEST_DEFAULT_ROWS) err = atrank_model_builder_set_batch_rows(b, batch_rows);
    if (err == NULL && fusion != TEST_DEFAULT_FUSION) err = atrank_model_builder_set_tract_fusion(b, fusion);
    if (err == NULL) {
        err = atrank_model_builder_build(b, &m); /* consumes b */
    } else {
        atrank_model_builder_free(b);
    }
    if (err != NULL) {
        test_fail("load %s on %s (batch rows %zu, fusion %u): %s", dir, test_backend_name(backend), batch_rows,
                  (unsigned)fusion, atrank_error_message(err));
        atrank_error_free(err);
        return NULL;
    }
    return m;
}

/* ---------- temporary package copies ---------- */

static int copy_file(const char *from, const char *to) {
    size_t len = 0;
    char *bytes = test_read_file(from, &len);
    if (bytes == NULL) {
        return -1;
    }
    FILE *f = fopen(to, "wb");
    int ok = f != NULL && fwrite(bytes, 1, len, f) == len;
    if (f != NULL && fclose(f) != 0) {
        ok = 0;
    }
    free(bytes);
    if (!ok) {
        test_fail("cannot write %s: %s", to, strerror(errno));
        return -1;
    }
    return 0;
}

/* Copies the entries of directory `from` into the existing directory `to`, recursing `depth`
 * more levels into subdirectories. */
static int copy_dir(const char *from, const char *to, int depth) {
    DIR *d = opendir(from);
    if (d == NULL) {
        test_fail("opendir(%s): %s", from, strerror(errno));
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        char *a = test_join_path(from, e->d_name), *b = test_join_path(to, e->d_name);
        struct stat st;
        if (a == NULL || b == NULL || stat(a, &st) != 0) {
            test_fail("stat(%s): %s", a != NULL ? a : "(out of memory)", strerror(errno));
            rc = -1;
        } else if (S_ISDIR(st.st_mode) && depth > 0) {
            if (mkdir(b, 0700) != 0) {
                test_fail("mkdir(%s): %s", b, strerror(errno));
                rc = -1;
            } else {
                rc = copy_dir(a, b, depth - 1);
            }
        } else if (S_ISREG(st.st_mode)) {
            rc = copy_file(a, b);
        }
        free(a);
        free(b);
    }
    closedir(d);
    return rc;
}

char *test_copy_package(const char *src) {
    const char *tmp = getenv("TMPDIR");
    char *dst = test_join_path(tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp", "atrank-test-XXXXXX");
    if (dst == NULL || mkdtemp(dst) == NULL) {
        test_fail("mkdtemp(%s): %s", dst != NULL ? dst : "(out of memory)", strerror(errno));
        free(dst);
        return NULL;
    }
    if (copy_dir(src, dst, 2) != 0) {
        test_remove_tree(dst);
        free(dst);
        return NULL;
    }
    return dst;
}

int test_write_file(const char *dir, const char *name, const void *bytes, size_t len) {
    char *path = test_join_path(dir, name);
    if (path == NULL) {
        test_fail("out of memory");
        return -1;
    }
    (void)unlink(path);
    FILE *f = fopen(path, "wb");
    int ok = f != NULL && fwrite(bytes, 1, len, f) == len;
    if (f != NULL && fclose(f) != 0) {
        ok = 0;
    }
    if (!ok) {
        test_fail("cannot write %s: %s", path, strerror(errno));
    }
    free(path);
    return ok ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0) {
        fprintf(stderr, "warning: cannot remove %s: %s\n", path, strerror(errno));
    }
    return 0;
}

void test_remove_tree(const char *dir) {
    if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        fprintf(stderr, "warning: cannot walk %s: %s\n", dir, strerror(errno));
    }
}

/* ---------- SHA-256 (FIPS 180-4) ---------- */

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t ror32(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(uint32_t h[8], const unsigned char *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25)) + ((e & f) ^ (~e & g)) + sha256_k[i] + w[i];
        uint32_t t2 = (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

void test_sha256_hex(const void *bytes, size_t len, char hex[65]) {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    const unsigned char *p = bytes;
    size_t full = len / 64 * 64;
    for (size_t i = 0; i < full; i += 64) sha256_block(h, p + i);
    unsigned char tail[128] = {0};
    size_t rest = len - full;
    if (rest > 0) memcpy(tail, p + full, rest);
    tail[rest] = 0x80;
    size_t tail_len = rest + 1 + 8 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) tail[tail_len - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t i = 0; i < tail_len; i += 64) sha256_block(h, tail + i);
    for (int i = 0; i < 8; i++) snprintf(hex + 8 * i, 9, "%08x", (unsigned)h[i]);
}

int test_reseal(const char *dir, const char *rel) {
    char *path = test_join_path(dir, rel), *spec_path = test_join_path(dir, "spec.json");
    size_t len = 0;
    char *bytes = path != NULL ? test_read_file(path, &len) : NULL;
    cJSON *spec = spec_path != NULL ? test_read_json(spec_path) : NULL;
    cJSON *entry = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(spec, "files"), rel);
    int rc = -1;
    if (bytes == NULL || spec == NULL || !cJSON_IsObject(entry)) {
        test_fail("reseal %s in %s: cannot read the file, the spec or its manifest entry", rel, dir);
    } else {
        char hex[65];
        test_sha256_hex(bytes, len, hex);
        cJSON_ReplaceItemInObjectCaseSensitive(entry, "sha256", cJSON_CreateString(hex));
        cJSON_ReplaceItemInObjectCaseSensitive(entry, "bytes", cJSON_CreateNumber((double)len));
        char *text = cJSON_Print(spec);
        rc = text != NULL ? test_write_file(dir, "spec.json", text, strlen(text)) : -1;
        cJSON_free(text);
    }
    cJSON_Delete(spec);
    free(bytes);
    free(path);
    free(spec_path);
    return rc;
}

static uint64_t le64(const char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | (unsigned char)p[i];
    return v;
}

/* Checks the header of an atv file's bytes; 0 and n and key_bytes on success. */
static int atv_header(const char *bytes, size_t len, uint64_t *n, uint64_t *key_bytes) {
    if (len < 40 || memcmp(bytes, "ATRVOC01", 8) != 0) return -1;
    *n = le64(bytes + 8);
    *key_bytes = le64(bytes + 16);
    if (*n > (len - 32) / 8 - 1) return -1;
    uint64_t want = 32 + 8 * (*n + 1);
    if (*key_bytes > len || want + *key_bytes != len) return -1;
    return 0;
}

char *test_atv_key(const char *bytes, size_t len, uint64_t k) {
    uint64_t n = 0, key_bytes = 0;
    if (atv_header(bytes, len, &n, &key_bytes) != 0 || k >= n) {
        test_fail("not an atv file of more than %llu keys", (unsigned long long)k);
        return NULL;
    }
    uint64_t lo = le64(bytes + 32 + 8 * k), hi = le64(bytes + 32 + 8 * (k + 1));
    if (lo > hi || hi > key_bytes) {
        test_fail("atv key %llu: offsets %llu..%llu out of range", (unsigned long long)k, (unsigned long long)lo,
                  (unsigned long long)hi);
        return NULL;
    }
    char *key = malloc((size_t)(hi - lo) + 1);
    if (key == NULL) {
        test_fail("out of memory");
        return NULL;
    }
    memcpy(key, bytes + 32 + 8 * (n + 1) + lo, (size_t)(hi - lo));
    key[hi - lo] = '\0';
    return key;
}

uint64_t test_atv_count(const char *path) {
    size_t len = 0;
    char *bytes = test_read_file(path, &len);
    uint64_t n = 0, key_bytes = 0;
    int ok = bytes != NULL && atv_header(bytes, len, &n, &key_bytes) == 0;
    free(bytes);
    if (!ok) {
        test_fail("%s is not an atv file (magic ATRVOC01, size 32 + 8 (n + 1) + key_bytes)", path);
        return (uint64_t)-1;
    }
    return n;
}
