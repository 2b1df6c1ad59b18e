/*
 * Shared helpers for the atrank C tests: locating the model package, reading spec.json and
 * golden.json (cJSON), and reporting failures that say why.
 *
 * Exit codes of every test program: 0 = pass, 1 = a check failed, 77 = skipped (a package or
 * a library the test needs is missing; CTest's SKIP_RETURN_CODE).
 */
#ifndef ATRANK_TEST_COMMON_H
#define ATRANK_TEST_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "atrank.h"

#define TEST_EXIT_SKIP 77

/* Number of failed checks so far (test_fail increments it). */
extern int test_failures;

/* Prints "FAIL: <message>" to stderr and counts the failure. */
void test_fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* The package directory: argv[1] if given, else $ATRANK_PACKAGE, else NULL. */
const char *test_package_dir(int argc, char **argv);

/* The human name of a code ("ATRANK_ERROR_IO"), for messages. */
const char *test_code_name(atrank_code code);

/* The human name of a backend ("ort", "tract"). */
const char *test_backend_name(atrank_backend backend);

/* Reads a whole file into a NUL-terminated heap buffer (caller frees); NULL with a message on
 * stderr if it cannot. `len_out` may be NULL. */
char *test_read_file(const char *path, size_t *len_out);

/* "<dir>/<name>" in a new heap buffer (caller frees); NULL if out of memory. */
char *test_join_path(const char *dir, const char *name);

/* Parses a JSON file; NULL with a message on stderr if it cannot. Free with cJSON_Delete. */
cJSON *test_read_json(const char *path);

/* One golden request. Strings point into the owning golden_set's JSON tree. */
typedef struct golden_request {
    const char *name;
    int64_t request_time;
    atrank_behavior *behaviors; /* NULL when behaviors_len == 0 */
    size_t behaviors_len;
    const char **candidates;
    size_t candidates_len;
    double *scores; /* the trainer's scores, one per candidate */
    /* The bound on any two float32 evaluations of this request's logits (runtime vs trainer,
     * batch vs single, cached vs plain): its derived 2 D U M from golden.json
     * (docs/tolerances.md), else the file's top-level tolerance; $ATRANK_TOLERANCE when set. */
    double tolerance;
} golden_request;

typedef struct golden_set {
    double tolerance; /* top-level (the largest per-request one), or $ATRANK_TOLERANCE when set */
    /* golden.json's bound_any_request (2 D U M_max, for requests that are not golden ones), or
     * $ATRANK_TOLERANCE when set; a negative value when the file has none. */
    double bound_any_request;
    golden_request *requests;
    size_t requests_len;
    cJSON *json; /* owns the strings */
} golden_set;

/* Loads <package_dir>/<spec.golden or "golden.json">. Returns 0 on success; on failure prints
 * why and returns -1. Free with golden_free. */
int golden_load(const char *package_dir, golden_set *out);
void golden_free(golden_set *set);

/* The tolerance for two float32 evaluations of the same logits of a request that is not a
 * golden one: golden.json's bound_any_request (or $ATRANK_TOLERANCE). Reports a failure and
 * returns -1 when there is none. */
double test_bound_any_request(const char *package_dir);

/* limits.max_candidates from <package_dir>/spec.json, or 0 (with a message) if unreadable. */
size_t test_spec_max_candidates(const char *package_dir);

/* Checks that `err` is an error with code `want` whose message is non-empty and contains
 * `needle` (unless NULL); reports a failure naming `what` otherwise. Frees `err`. Returns 1 if
 * the check passed. */
int expect_error(const char *what, atrank_error *err, atrank_code want, const char *needle);

/* Checks that `err` is NULL (success); otherwise reports code and message. Frees `err`. */
int expect_ok(const char *what, atrank_error *err);

/* Loads `dir` on `backend` through atrank_model_builder, setting the rows per batch run to
 * `batch_rows` and the tract fusion to `fusion` unless they are TEST_DEFAULT_ROWS /
 * TEST_DEFAULT_FUSION (the library's defaults). Returns the model, or NULL with a failure
 * reported. */
#define TEST_DEFAULT_ROWS SIZE_MAX
#define TEST_DEFAULT_FUSION UINT32_MAX
const atrank_model *test_build(const char *dir, atrank_backend backend, size_t batch_rows, atrank_tract_fusion fusion);

/* Copies the package directory `src` (regular files, and directories of regular files) into a
 * fresh mkdtemp directory under $TMPDIR or /tmp. Returns the new directory (caller frees it and
 * removes it with test_remove_tree), or NULL with a failure reported. Copies, not symlinks:
 * atrank refuses package files that resolve outside the package directory. */
char *test_copy_package(const char *src);

/* Writes `len` bytes to `<dir>/<name>`, replacing the file (or symlink) there. 0 on success;
 * -1 with a failure reported. */
int test_write_file(const char *dir, const char *name, const void *bytes, size_t len);

/* Removes a directory tree made by test_copy_package (symlinks are removed, not followed). */
void test_remove_tree(const char *dir);

/* SHA-256 of `len` bytes as 64 lower-case hex digits plus NUL (FIPS 180-4, implemented here,
 * independently of the library under test). */
void test_sha256_hex(const void *bytes, size_t len, char hex[65]);

/* Rewrites <dir>/spec.json so that its manifest entry files[rel] holds the size and SHA-256 of
 * <dir>/<rel> as the file is now: a damaged file that the manifest vouches for, so a test
 * reaches the checks behind the size and hash checks. 0 on success; -1 with a failure
 * reported. */
int test_reseal(const char *dir, const char *rel);

/* The key of index k of a format-3 atv file's bytes (see docs/package-format-v3.md), copied
 * into a new NUL-terminated heap buffer (caller frees); NULL with a failure reported when the
 * bytes are not an atv file or k is out of range. */
char *test_atv_key(const char *bytes, size_t len, uint64_t k);

/* The key count n of the atv file at `path` (its header), after checking the magic and that
 * the file's size is 32 + 8 (n + 1) + key_bytes; (uint64_t)-1 with a failure reported
 * otherwise. */
uint64_t test_atv_count(const char *path);

#endif /* ATRANK_TEST_COMMON_H */
