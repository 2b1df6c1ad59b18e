/*
 * A consumer of an *installed* atrank (scripts/install.sh): built by ffi-tests/install/run.sh
 * with pkg-config (shared and static) and with CMake (find_package(atrank)).
 *
 *   consumer PACKAGE_DIR [tract|ort [REQUEST_TIME CANDIDATE...]]
 *
 * Checks the library's version against the installed header, loads PACKAGE_DIR on the backend
 * (default tract; ort opens ONNX Runtime from the library's default places, no variable needed
 * after `install.sh --with-ort`) and scores one request with an empty history: the CANDIDATEs at
 * REQUEST_TIME, or the first two item ids of PACKAGE_DIR/vocab/item_id.atv. Prints one line
 * `score <index> <value>` per candidate, for run.sh to compare with golden.json; fails on a
 * score that is not finite. Exit 0 on success, 1 on any failure, 2 on bad arguments.
 */
#include <atrank.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail_error(const char *what, atrank_error *err) {
  fprintf(stderr, "consumer: %s failed: code %u: %s\n", what, (unsigned)atrank_error_code(err),
          atrank_error_message(err));
  atrank_error_free(err);
  return 1;
}

static unsigned long long le64(const unsigned char *p) {
  unsigned long long v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

/* Reads the first two keys of PACKAGE_DIR/vocab/item_id.atv (the item id vocabulary of a
 * format-3 package: magic "ATRVOC01", n, key_bytes, reserved, offsets[n + 1], then the keys;
 * little-endian, docs/package-format-v3.md) into a and b. */
static int read_two_items(const char *package_dir, char *a, char *b, size_t cap) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s/vocab/item_id.atv", package_dir) >= (int)sizeof path) return 1;
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "consumer: cannot open %s\n", path);
    return 1;
  }
  unsigned char head[56]; /* header (32) + offsets[0..2] (24) */
  size_t got = fread(head, 1, sizeof head, f);
  if (got != sizeof head || memcmp(head, "ATRVOC01", 8) != 0 || le64(head + 8) < 2) {
    fclose(f);
    fprintf(stderr, "consumer: %s is not an atv file of at least two keys\n", path);
    return 1;
  }
  unsigned long long n = le64(head + 8), o1 = le64(head + 40), o2 = le64(head + 48);
  char *out[2] = {a, b};
  unsigned long long lo[2] = {le64(head + 32), o1}, hi[2] = {o1, o2};
  int ok = 1;
  for (int k = 0; k < 2 && ok; k++) {
    size_t len = (size_t)(hi[k] - lo[k]);
    ok = lo[k] < hi[k] && len < cap && fseek(f, (long)(32 + 8 * (n + 1) + lo[k]), SEEK_SET) == 0 &&
         fread(out[k], 1, len, f) == len;
    if (ok) out[k][len] = '\0';
  }
  fclose(f);
  if (!ok) {
    fprintf(stderr, "consumer: cannot read the first two keys of %s\n", path);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc == 4 || (argc > 2 && strcmp(argv[2], "tract") != 0 && strcmp(argv[2], "ort") != 0)) {
    fprintf(stderr, "usage: %s PACKAGE_DIR [tract|ort [REQUEST_TIME CANDIDATE...]]\n", argv[0]);
    return 2;
  }
  const char *package_dir = argv[1];
  const int ort = argc > 2 && strcmp(argv[2], "ort") == 0;
  const atrank_backend wanted = ort ? ATRANK_BACKEND_ORT : ATRANK_BACKEND_TRACT;
  const char *backend_name = ort ? "ort" : "tract";

  char header_version[32];
  snprintf(header_version, sizeof header_version, "%d.%d.%d", ATRANK_VERSION_MAJOR,
           ATRANK_VERSION_MINOR, ATRANK_VERSION_PATCH);
  const char *lib_version = atrank_version();
  if (!lib_version || strcmp(lib_version, header_version) != 0) {
    fprintf(stderr, "consumer: atrank_version() = %s, header says %s\n",
            lib_version ? lib_version : "(null)", header_version);
    return 1;
  }
  if (atrank_abi_version() != ATRANK_ABI_VERSION) {
    fprintf(stderr, "consumer: atrank_abi_version() = %u, header says %u\n",
            (unsigned)atrank_abi_version(), (unsigned)ATRANK_ABI_VERSION);
    return 1;
  }

  char item_a[256], item_b[256];
  const char *two[2] = {item_a, item_b};
  const char *const *candidates = two;
  size_t n = 2;
  long long request_time = 1700000000;
  if (argc > 4) {
    char *end = NULL;
    request_time = strtoll(argv[3], &end, 10);
    if (!end || *end != '\0') {
      fprintf(stderr, "consumer: REQUEST_TIME %s is not an integer\n", argv[3]);
      return 2;
    }
    candidates = (const char *const *)(argv + 4);
    n = (size_t)(argc - 4);
  } else if (read_two_items(package_dir, item_a, item_b, sizeof item_a)) {
    return 1;
  }

  const atrank_model *model = NULL;
  atrank_error *err = atrank_model_load(package_dir, wanted, &model);
  if (err) return fail_error(ort ? "atrank_model_load (ort)" : "atrank_model_load (tract)", err);

  atrank_backend backend = 99;
  err = atrank_model_backend(model, &backend);
  if (err) {
    atrank_model_free(model);
    return fail_error("atrank_model_backend", err);
  }
  if (backend != wanted) {
    fprintf(stderr, "consumer: backend is %u, expected %u (%s)\n", (unsigned)backend, (unsigned)wanted,
            backend_name);
    atrank_model_free(model);
    return 1;
  }

  float *scores = calloc(n, sizeof *scores);
  if (!scores) {
    atrank_model_free(model);
    return 1;
  }
  for (size_t i = 0; i < n; i++) scores[i] = NAN;
  err = atrank_model_score(model, NULL, 0, candidates, n, (int64_t)request_time, scores, n);
  atrank_model_free(model);
  if (err) {
    free(scores);
    return fail_error("atrank_model_score", err);
  }
  int rc = 0;
  printf("atrank %s (ABI %u), %s\n", lib_version, (unsigned)atrank_abi_version(), backend_name);
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(scores[i])) {
      fprintf(stderr, "consumer: score of %s is not finite (%f)\n", candidates[i], (double)scores[i]);
      rc = 1;
    }
    printf("score %zu %.9g\n", i, (double)scores[i]);
  }
  free(scores);
  return rc;
}
