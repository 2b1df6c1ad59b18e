/*
 * A consumer of an *installed* atrank (scripts/install.sh): built by ffi-tests/install/run.sh
 * with pkg-config (shared and static) and with CMake (find_package(atrank)).
 *
 *   consumer PACKAGE_DIR
 *
 * Checks the library's version against the installed header, loads PACKAGE_DIR on tract,
 * scores one request (empty history, the first two item ids of PACKAGE_DIR/vocab/item_id.atv) and
 * checks that the two scores are finite. Exit 0 on success, 1 on any failure.
 */
#include <atrank.h>

#include <math.h>
#include <stdio.h>
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
  if (argc != 2) {
    fprintf(stderr, "usage: %s PACKAGE_DIR\n", argv[0]);
    return 2;
  }
  const char *package_dir = argv[1];

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
  if (read_two_items(package_dir, item_a, item_b, sizeof item_a)) return 1;

  const atrank_model *model = NULL;
  atrank_error *err = atrank_model_load(package_dir, ATRANK_BACKEND_TRACT, &model);
  if (err) return fail_error("atrank_model_load (tract)", err);

  atrank_backend backend = 99;
  err = atrank_model_backend(model, &backend);
  if (err) {
    atrank_model_free(model);
    return fail_error("atrank_model_backend", err);
  }
  if (backend != ATRANK_BACKEND_TRACT) {
    fprintf(stderr, "consumer: backend is %u, expected ATRANK_BACKEND_TRACT\n", (unsigned)backend);
    atrank_model_free(model);
    return 1;
  }

  const char *candidates[2] = {item_a, item_b};
  float scores[2] = {NAN, NAN};
  err = atrank_model_score(model, NULL, 0, candidates, 2, 1700000000, scores, 2);
  atrank_model_free(model);
  if (err) return fail_error("atrank_model_score", err);
  for (int i = 0; i < 2; i++) {
    if (!isfinite(scores[i])) {
      fprintf(stderr, "consumer: score of %s is not finite (%f)\n", candidates[i], (double)scores[i]);
      return 1;
    }
  }
  printf("atrank %s (ABI %u), tract: %s=%.6f %s=%.6f\n", lib_version, (unsigned)atrank_abi_version(),
         item_a, (double)scores[0], item_b, (double)scores[1]);
  return 0;
}
