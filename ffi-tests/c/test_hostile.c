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

/* Like `refused`, and the message also names the package file `file`. */
static void refused_file(const char *what, atrank_error *err, atrank_code want, const char *file, const char *needle,
                         const float *out, size_t n) {
    if (err != NULL && file != NULL) {
        const char *msg = atrank_error_message(err);
        if (msg == NULL || strstr(msg, file) == NULL) {
            test_fail("%s: message does not name %s: %s", what, file, msg != NULL ? msg : "(NULL)");
        }
    }
    refused(what, err, want, needle, out, n);
}

/* The first backend to try: ORT when its library is set, else tract (the loops below run
 * every backend from it to ATRANK_BACKEND_TRACT). */
static atrank_backend first_backend(int with_ort) { return with_ort ? ATRANK_BACKEND_ORT : ATRANK_BACKEND_TRACT; }

/* Loading `dir` fails on every backend with INVALID_PACKAGE naming `file` and `needle`. */
static void load_refused(const char *what, const char *dir, int with_ort, const char *file, const char *needle) {
    for (atrank_backend b = first_backend(with_ort); b <= ATRANK_BACKEND_TRACT; b++) {
        const atrank_model *m = NULL;
        char label[200];
        snprintf(label, sizeof label, "%s (%s)", what, test_backend_name(b));
        refused_file(label, atrank_model_load(dir, b, &m), ATRANK_ERROR_INVALID_PACKAGE, file, needle, NULL, 0);
        if (m != NULL) test_fail("%s: model_out written", label);
    }
}

/* `dir` loads on every backend and scores one request with finite scores. */
static void loads_and_scores(const char *what, const char *dir, int with_ort) {
    for (atrank_backend b = first_backend(with_ort); b <= ATRANK_BACKEND_TRACT; b++) {
        const atrank_model *m = load(dir, b);
        if (m == NULL) {
            test_fail("%s (%s): does not load", what, test_backend_name(b));
            continue;
        }
        atrank_behavior h[1] = {{.item = "i1", .action = "like", .timestamp = 1300000000}};
        const char *c[2] = {"i2", "i3"};
        float out[2] = {NAN, NAN};
        if (expect_ok(what, atrank_model_score(m, h, 1, c, 2, 1300000100, out, 2)) && isfinite(out[0]) &&
            isfinite(out[1])) {
            printf("ok   %s (%s): loads and scores\n", what, test_backend_name(b));
        } else {
            test_fail("%s (%s): scores %g %g", what, test_backend_name(b), (double)out[0], (double)out[1]);
        }
        atrank_model_free(m);
    }
}

/* 2 and 3. Package files that are devices, FIFOs, or symlinks out of the package. */
static void package_files(int with_ort) {
    char *dir = test_copy_package(TINY);
    if (dir == NULL) return;
    const char *rel = "vocab/item_id.atv";
    char *vocab = test_join_path(dir, rel);
    struct {
        const char *what;
        const char *target; /* symlink target, or NULL for a FIFO */
        const char *needle;
    } cases[] = {
        {"vocab/item_id.atv -> /dev/zero", "/dev/zero", NULL},
        {"vocab/item_id.atv -> /etc/passwd (outside the package)", "/etc/passwd", "outside the package"},
        {"vocab/item_id.atv is a FIFO", NULL, "not a regular file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unlink(vocab);
        int made = cases[i].target != NULL ? symlink(cases[i].target, vocab) : mkfifo(vocab, 0600);
        if (made != 0) {
            test_fail("%s: cannot make it: %s", cases[i].what, strerror(errno));
            continue;
        }
        load_refused(cases[i].what, dir, with_ort, rel, cases[i].needle);
    }
    /* A symlink that stays inside the package is fine: the file is the same, hash and all. */
    unlink(vocab);
    char *orig = test_join_path(TINY, rel);
    size_t len = 0;
    char *bytes = orig != NULL ? test_read_file(orig, &len) : NULL;
    if (bytes != NULL && test_write_file(dir, "items-real.atv", bytes, len) == 0 &&
        symlink("../items-real.atv", vocab) == 0) {
        const atrank_model *m = load(dir, ATRANK_BACKEND_TRACT);
        if (m != NULL) printf("ok   a symlink inside the package loads\n");
        atrank_model_free(m);
    } else {
        test_fail("cannot set up the in-package symlink case");
    }
    unlink(vocab);
    if (bytes != NULL) test_write_file(dir, rel, bytes, len);
    free(bytes);
    free(orig);
    free(vocab);
    /* Another file's bytes (right name, wrong content): the manifest refuses it, by size when
     * the size differs, else by SHA-256. */
    const char *column = "catalog/item.category.u32";
    char *col_path = test_join_path(TINY, column);
    bytes = col_path != NULL ? test_read_file(col_path, &len) : NULL;
    free(col_path);
    if (bytes != NULL && len >= 4 && test_write_file(dir, column, bytes, len - 2) == 0) {
        load_refused("catalog column 2 bytes short (size differs from the manifest)", dir, 0, column, "manifest");
        bytes[0] ^= 1; /* same size, one value changed */
        if (test_write_file(dir, column, bytes, len) == 0)
            load_refused("catalog column with one value changed (SHA-256 differs)", dir, with_ort, column, "SHA-256");
    } else {
        test_fail("cannot set up the replaced catalog column");
    }
    free(bytes);
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

/* The manifest check the tests below rely on: resealing an untouched file reproduces the
 * exporter's SHA-256 and size (so test_sha256_hex and test_reseal agree with the writer). */
static void reseal_is_faithful(void) {
    char *dir = test_copy_package(TINY);
    if (dir == NULL) return;
    char *spec_path = test_join_path(dir, "spec.json");
    cJSON *before = spec_path != NULL ? test_read_json(spec_path) : NULL;
    int ok = before != NULL && test_reseal(dir, "tables.bin") == 0 && test_reseal(dir, "vocab/item_id.atv") == 0;
    cJSON *after = ok ? test_read_json(spec_path) : NULL;
    const char *rels[2] = {"tables.bin", "vocab/item_id.atv"};
    for (int i = 0; after != NULL && i < 2; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(before, "files"), rels[i]);
        const cJSON *y = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(after, "files"), rels[i]);
        const char *hx = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "sha256"));
        const char *hy = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(y, "sha256"));
        double bx = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(x, "bytes"));
        double by = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(y, "bytes"));
        if (hx == NULL || hy == NULL || strcmp(hx, hy) != 0 || bx != by) {
            test_fail("reseal of an untouched %s changed its manifest entry (%s %g -> %s %g)", rels[i],
                      hx ? hx : "?", bx, hy ? hy : "?", by);
            ok = 0;
        }
    }
    if (after == NULL) test_fail("cannot reseal the tiny package copy");
    else if (ok) printf("ok   resealing untouched files reproduces the exporter's manifest\n");
    cJSON_Delete(before);
    cJSON_Delete(after);
    free(spec_path);
    test_remove_tree(dir);
    free(dir);
}

/* 9. External data (tables.bin): truncated, and a symlink leaving the package. */
static void external_data(int with_ort) {
    const char *rel = "tables.bin";
    char *orig = test_join_path(TINY, rel);
    size_t len = 0;
    char *bytes = orig != NULL ? test_read_file(orig, &len) : NULL;
    free(orig);
    if (bytes == NULL || len < 2) {
        test_fail("cannot read the tiny package's tables.bin");
        free(bytes);
        return;
    }
    /* Truncated, the manifest untouched: its size refuses it. */
    char *dir = test_copy_package(TINY);
    if (dir != NULL && test_write_file(dir, rel, bytes, len / 2) == 0) {
        load_refused("tables.bin truncated to half", dir, with_ort, rel, "manifest");
        /* Truncated and the manifest vouching for it: every tensor's range is checked against
         * the file before a backend sees it. */
        if (test_reseal(dir, rel) == 0)
            load_refused("tables.bin truncated to half, manifest resealed", dir, with_ort, rel, "tables.bin");
        if (test_write_file(dir, rel, bytes, 0) == 0 && test_reseal(dir, rel) == 0)
            load_refused("tables.bin empty, manifest resealed", dir, with_ort, rel, "tables.bin");
    }
    if (dir != NULL) test_remove_tree(dir);
    free(dir);

    /* Symlinks: to /etc/passwd, to an exact copy outside the package (same bytes, same hash:
     * only the location refuses it), and to a copy inside the package (fine). */
    dir = test_copy_package(TINY);
    char *outside = test_copy_package(TINY); /* a second directory: holds the outside copy */
    char *path = dir != NULL ? test_join_path(dir, rel) : NULL;
    char *outside_file = outside != NULL ? test_join_path(outside, "tables-copy.bin") : NULL;
    if (path != NULL && outside_file != NULL && test_write_file(outside, "tables-copy.bin", bytes, len) == 0) {
        unlink(path);
        if (symlink("/etc/passwd", path) == 0)
            load_refused("tables.bin -> /etc/passwd", dir, with_ort, rel, "outside the package");
        else
            test_fail("symlink tables.bin -> /etc/passwd: %s", strerror(errno));
        unlink(path);
        if (symlink(outside_file, path) == 0)
            load_refused("tables.bin -> an identical file outside the package", dir, with_ort, rel,
                         "outside the package");
        else
            test_fail("symlink tables.bin -> %s: %s", outside_file, strerror(errno));
        unlink(path);
        if (test_write_file(dir, "tables-real.bin", bytes, len) == 0 && symlink("tables-real.bin", path) == 0)
            loads_and_scores("tables.bin -> a file inside the package", dir, with_ort);
        else
            test_fail("cannot set up the in-package tables.bin symlink");
    } else {
        test_fail("cannot set up the tables.bin symlink cases");
    }
    free(path);
    free(outside_file);
    if (outside != NULL) test_remove_tree(outside);
    free(outside);
    if (dir != NULL) test_remove_tree(dir);
    free(dir);
    free(bytes);
}

/* Writes little-endian `v` at `p`. */
static void put_le64(char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (char)(v >> (8 * i));
}

/* 10. A vocabulary that does not match its spec, the manifest vouching for it (resealed), so
 *     the atv checks themselves refuse it: bad magic, one key fewer than the spec's size, a
 *     header whose n and key_bytes do not make the file's size, a nonzero reserved field. */
static void vocab_mismatch(int with_ort) {
    const char *rel = "vocab/item_id.atv";
    char *orig = test_join_path(TINY, rel);
    size_t len = 0;
    char *bytes = orig != NULL ? test_read_file(orig, &len) : NULL;
    free(orig);
    if (bytes == NULL || len < 48 || memcmp(bytes, "ATRVOC01", 8) != 0) {
        test_fail("cannot read %s of the tiny package as an atv file", rel);
        free(bytes);
        return;
    }
    uint64_t n = 0, key_bytes = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | (unsigned char)bytes[8 + i];
    for (int i = 7; i >= 0; i--) key_bytes = key_bytes << 8 | (unsigned char)bytes[16 + i];
    if (n < 2 || 32 + 8 * (n + 1) + key_bytes != len) {
        test_fail("%s: unexpected header (n %llu, key_bytes %llu, %zu bytes)", rel, (unsigned long long)n,
                  (unsigned long long)key_bytes, len);
        free(bytes);
        return;
    }
    /* One key fewer: header n - 1, offsets[0..n-1], the first n - 1 keys. A valid atv file. */
    uint64_t last = 0; /* offsets[n - 1] */
    for (int i = 7; i >= 0; i--) last = last << 8 | (unsigned char)bytes[32 + 8 * (n - 1) + (uint64_t)i];
    size_t short_len = (size_t)(32 + 8 * n + last);
    char *fewer = malloc(short_len);
    char *damaged = malloc(len + 1);
    if (fewer == NULL || damaged == NULL) {
        test_fail("out of memory");
        free(fewer);
        free(damaged);
        free(bytes);
        return;
    }
    memcpy(fewer, bytes, 32 + 8 * n);
    put_le64(fewer + 8, n - 1);
    put_le64(fewer + 16, last);
    memcpy(fewer + 32 + 8 * n, bytes + 32 + 8 * (n + 1), (size_t)last);

    char expect_n[128];
    snprintf(expect_n, sizeof expect_n, "holds %llu keys, but the spec says %llu", (unsigned long long)(n - 1),
             (unsigned long long)n);
    struct {
        const char *what;
        const char *data;
        size_t len;
        const char *needle;
    } cases[4] = {
        {"vocab/item_id.atv with a bad magic (resealed)", damaged, len, "magic"},
        {"vocab/item_id.atv with one key fewer than the spec's size (resealed)", fewer, short_len, expect_n},
        {"vocab/item_id.atv one byte longer than its header says (resealed)", damaged, len + 1, "header"},
        {"vocab/item_id.atv with a nonzero reserved field (resealed)", damaged, len, "reserved"},
    };
    for (int c = 0; c < 4; c++) {
        memcpy(damaged, bytes, len);
        damaged[len] = 'x';
        if (c == 0) memcpy(damaged, "ATRVOC99", 8);
        if (c == 3) damaged[24] = 1;
        char *dir = test_copy_package(TINY);
        if (dir != NULL && test_write_file(dir, rel, cases[c].data, cases[c].len) == 0 && test_reseal(dir, rel) == 0)
            load_refused(cases[c].what, dir, with_ort, rel, cases[c].needle);
        if (dir != NULL) test_remove_tree(dir);
        free(dir);
    }
    /* The same one-key-short file without resealing: the manifest refuses it first. */
    char *dir = test_copy_package(TINY);
    if (dir != NULL && test_write_file(dir, rel, fewer, short_len) == 0)
        load_refused("vocab/item_id.atv with one key fewer (manifest untouched)", dir, 0, rel, "manifest");
    if (dir != NULL) test_remove_tree(dir);
    free(dir);
    free(fewer);
    free(damaged);
    free(bytes);
}

/* 11. A catalog column value past its table's last row (the manifest vouching for it): the
 *     package loads, and every request that reads that row fails with INVALID_PACKAGE naming
 *     the column, its outputs untouched; requests that do not read it still score. */
static void catalog_out_of_range(int with_ort) {
    const char *column = "catalog/item.category.u32";
    char *keys_path = test_join_path(TINY, "catalog/item.atv");
    char *col_path = test_join_path(TINY, column);
    char *spec_path = test_join_path(TINY, "spec.json");
    size_t keys_len = 0, col_len = 0;
    char *keys = keys_path != NULL ? test_read_file(keys_path, &keys_len) : NULL;
    char *col = col_path != NULL ? test_read_file(col_path, &col_len) : NULL;
    cJSON *spec = spec_path != NULL ? test_read_json(spec_path) : NULL;
    free(keys_path);
    free(col_path);
    free(spec_path);
    /* The column's table rows, from the spec: size + 1 + hash_buckets. */
    const cJSON *table = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(spec, "tables"), "category");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(table, "size");
    const cJSON *buckets = cJSON_GetObjectItemCaseSensitive(table, "hash_buckets");
    char *key0 = keys != NULL ? test_atv_key(keys, keys_len, 0) : NULL;
    char *key1 = keys != NULL ? test_atv_key(keys, keys_len, 1) : NULL;
    if (key0 == NULL || key1 == NULL || col == NULL || col_len < 8 || !cJSON_IsNumber(size)) {
        test_fail("cannot read the tiny package's catalog (keys, %s, tables.category.size)", column);
    } else {
        uint32_t rows = (uint32_t)size->valuedouble + 1 + (cJSON_IsNumber(buckets) ? (uint32_t)buckets->valuedouble : 0);
        uint32_t bad_values[2] = {rows, UINT32_MAX};
        for (int v = 0; v < 2; v++) {
            for (int i = 0; i < 4; i++) col[i] = (char)(bad_values[v] >> (8 * i)); /* row 0 = key0 */
            char *dir = test_copy_package(TINY);
            if (dir == NULL || test_write_file(dir, column, col, col_len) != 0 || test_reseal(dir, column) != 0) {
                if (dir != NULL) test_remove_tree(dir);
                free(dir);
                continue;
            }
            for (atrank_backend b = first_backend(with_ort); b <= ATRANK_BACKEND_TRACT; b++) {
                const atrank_model *m = load(dir, b);
                if (m == NULL) {
                    test_fail("a package with an out-of-range catalog value does not load (%s)", test_backend_name(b));
                    continue;
                }
                char what[200];
                float out[2];
                const char *other_c[2] = {key1, key1};
                const char *with_key0[2] = {key1, key0};
                atrank_behavior reads_row0[1] = {{.item = key0, .action = "like", .timestamp = 1300000000}};
                atrank_behavior reads_row1[1] = {{.item = key1, .action = "like", .timestamp = 1300000000}};
                fill(out, 2);
                snprintf(what, sizeof what, "catalog value %u (table rows %u), behavior on its row (%s)",
                         (unsigned)bad_values[v], (unsigned)rows, test_backend_name(b));
                refused_file(what, atrank_model_score(m, reads_row0, 1, other_c, 2, 1300000100, out, 2),
                             ATRANK_ERROR_INVALID_PACKAGE, column, "past the table's last row", out, 2);
                fill(out, 2);
                snprintf(what, sizeof what, "catalog value %u, candidate on its row (%s)", (unsigned)bad_values[v],
                         test_backend_name(b));
                refused_file(what, atrank_model_score(m, reads_row1, 1, with_key0, 2, 1300000100, out, 2),
                             ATRANK_ERROR_INVALID_PACKAGE, column, "past the table's last row", out, 2);
                fill(out, 2);
                snprintf(what, sizeof what, "catalog value %u, batch with one request on its row (%s)",
                         (unsigned)bad_values[v], test_backend_name(b));
                atrank_request reqs[2] = {
                    {.behaviors = reads_row1, .behaviors_len = 1, .candidates = other_c, .candidates_len = 1,
                     .request_time = 1300000100},
                    {.behaviors = reads_row0, .behaviors_len = 1, .candidates = other_c, .candidates_len = 1,
                     .request_time = 1300000100}};
                refused_file(what, atrank_model_score_batch(m, reqs, 2, out, 2), ATRANK_ERROR_INVALID_PACKAGE, column,
                             "past the table's last row", out, 2);
                /* Rows that are intact still score. */
                out[0] = out[1] = NAN;
                snprintf(what, sizeof what, "catalog damaged in row 0 only: a request on other rows (%s)",
                         test_backend_name(b));
                if (expect_ok(what, atrank_model_score(m, reads_row1, 1, other_c, 2, 1300000100, out, 2)) &&
                    isfinite(out[0]) && isfinite(out[1]))
                    printf("ok   %s scores\n", what);
                else
                    test_fail("%s: scores %g %g", what, (double)out[0], (double)out[1]);
                atrank_model_free(m);
            }
            test_remove_tree(dir);
            free(dir);
        }
    }
    free(key0);
    free(key1);
    free(keys);
    free(col);
    cJSON_Delete(spec);
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
        const char *needle = NULL;
        if (variant == 0) {
            cJSON *actions = cJSON_GetObjectItemCaseSensitive(copy, "actions");
            for (int i = 0; i < 1000; i++) {
                char name[32];
                snprintf(name, sizeof name, "extra-action-%d", i);
                cJSON_AddItemToArray(actions, cJSON_CreateString(name));
            }
            /* the group's action input (format 3: "<group>_action") */
            needle = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(copy, "groups"), 0),
                                                 "inputs"),
                "action"));
        } else {
            cJSON *tb = cJSON_GetObjectItemCaseSensitive(copy, "time_buckets");
            cJSON *bounds = cJSON_GetObjectItemCaseSensitive(tb, "boundaries");
            for (int i = 0; i < 20; i++) cJSON_AddItemToArray(bounds, cJSON_CreateNumber(100000 + i));
            needle = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(copy, "groups"), 0),
                                                 "inputs"),
                "time_bucket"));
        }
        if (needle == NULL) test_fail("the tiny spec's groups[0].inputs lacks the action or time_bucket input");
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
    reseal_is_faithful();
    external_data(with_ort);
    vocab_mismatch(with_ort);
    catalog_out_of_range(with_ort);
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
