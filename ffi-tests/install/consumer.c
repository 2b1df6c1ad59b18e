/*
 * A consumer of an *installed* atrank (scripts/install.sh): built by ffi-tests/install/run.sh
 * with pkg-config (shared and static) and with CMake (find_package(atrank)).
 *
 *   consumer PACKAGE_DIR
 *
 * Checks the library's version against the installed header, loads PACKAGE_DIR on tract,
 * scores one request (empty history, the first two items of PACKAGE_DIR/vocab/item.txt) and
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

/* Reads the first two non-empty lines of PACKAGE_DIR/vocab/item.txt into a and b. */
static int read_two_items(const char *package_dir, char *a, char *b, size_t cap) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s/vocab/item.txt", package_dir) >= (int)sizeof path) return 1;
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "consumer: cannot open %s\n", path);
    return 1;
  }
  char *out[2] = {a, b};
  int n = 0;
  char line[1024];
  while (n < 2 && fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '\0') continue;
    if (strlen(line) >= cap) break;
    strcpy(out[n++], line);
  }
  fclose(f);
  if (n < 2) {
    fprintf(stderr, "consumer: %s holds fewer than two items\n", path);
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
