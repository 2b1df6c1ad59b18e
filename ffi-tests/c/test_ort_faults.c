/*
 * Broken ONNX Runtime libraries, from C: each is refused with ATRANK_ERROR_BACKEND_UNAVAILABLE
 * and a message that says what is wrong, without a crash or a hang, and none of them stops the
 * process from loading the real library afterwards (ONNX Runtime is opened once per process,
 * so this runs in its own process, and the real library comes last).
 *
 * Usage: test_ort_faults <fake-null-version.so> <fake-null-api.so>
 * The real library is $ATRANK_ORT_LIB; without it the truncated-copy case and the final load
 * are skipped (and said so).
 */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

static const char *PKG = "tests/fixtures/tiny";

static void expect_refused(const char *what, const char *lib, const char *needle) {
    atrank_model_builder *b = NULL;
    if (!expect_ok("builder_new", atrank_model_builder_new(PKG, &b))) return;
    expect_ok("set_backend", atrank_model_builder_set_backend(b, ATRANK_BACKEND_ORT));
    expect_ok("set_ort_library", atrank_model_builder_set_ort_library(b, lib));
    const atrank_model *m = NULL;
    expect_error(what, atrank_model_builder_build(b, &m), ATRANK_ERROR_BACKEND_UNAVAILABLE, needle);
    if (m != NULL) test_fail("%s: model_out written", what);
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "FAIL: test_ort_faults hung (alarm)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(1);
}

int main(int argc, char **argv) {
    signal(SIGALRM, on_alarm);
    alarm(300);
    if (argc < 3) {
        fprintf(stderr, "usage: test_ort_faults <fake-null-version.so> <fake-null-api.so>\n");
        return 1;
    }
    const char *env = getenv("ATRANK_ORT_LIB");
    char *real = env != NULL && *env != '\0' ? strdup(env) : NULL;
    unsetenv("ATRANK_ORT_LIB");
    const char *tmp = getenv("TMPDIR");
    char *dir = test_join_path(tmp != NULL && *tmp != '\0' ? tmp : "/tmp", "atrank-ort-XXXXXX");
    if (dir == NULL || mkdtemp(dir) == NULL) {
        test_fail("mkdtemp: %s", strerror(errno));
        return 1;
    }

    /* Not an ELF file at all. */
    test_write_file(dir, "text.so", "not a library\n", 14);
    char *text = test_join_path(dir, "text.so");
    expect_refused("a text file as the library", text, "not an ELF file");

    /* A FIFO: refused before anything opens it (opening it would block). */
    char *fifo = test_join_path(dir, "fifo.so");
    if (mkfifo(fifo, 0600) != 0) {
        test_fail("mkfifo: %s", strerror(errno));
    } else {
        expect_refused("a FIFO as the library", fifo, "not a regular file");
    }

    /* A truncated copy of the real library: its ELF headers describe more than the file. */
    char *cut = test_join_path(dir, "truncated.so");
    if (real != NULL) {
        size_t len = 0;
        char *bytes = test_read_file(real, &len);
        if (bytes != NULL && test_write_file(dir, "truncated.so", bytes, len / 3) == 0) {
            expect_refused("a truncated copy of libonnxruntime", cut, "truncated");
        }
        free(bytes);
    } else {
        printf("SKIP: truncated-library case: ATRANK_ORT_LIB is unset\n");
    }

    /* Libraries that load but are broken inside. */
    expect_refused("GetVersionString returns NULL", argv[1], "GetVersionString returned NULL");
    expect_refused("GetApi returns NULL", argv[2], "no API table");
    /* Asking again: still an error, never a crash. */
    expect_refused("GetApi returns NULL, again", argv[2], "no API table");

    /* After all that, the real library still loads and scores in this process. */
    if (real != NULL) {
        atrank_model_builder *b = NULL;
        const atrank_model *m = NULL;
        if (expect_ok("builder_new", atrank_model_builder_new(PKG, &b)) &&
            expect_ok("set_backend", atrank_model_builder_set_backend(b, ATRANK_BACKEND_ORT)) &&
            expect_ok("set_ort_library", atrank_model_builder_set_ort_library(b, real)) &&
            expect_ok("the real library after the broken ones", atrank_model_builder_build(b, &m))) {
            atrank_behavior h[1] = {{.item = "i1", .action = "like", .timestamp = 1300000000}};
            const char *c[2] = {"i2", "i3"};
            float out[2];
            if (expect_ok("score on the real library", atrank_model_score(m, h, 1, c, 2, 1300000100, out, 2))) {
                printf("ok   the real library loads and scores after every broken one\n");
            }
            atrank_model_free(m);
        }
    } else {
        printf("SKIP: final load of the real library: ATRANK_ORT_LIB is unset\n");
    }

    unlink(text);
    unlink(fifo);
    unlink(cut);
    rmdir(dir);
    free(text);
    free(fifo);
    free(cut);
    free(dir);
    free(real);
    if (test_failures > 0) {
        fprintf(stderr, "test_ort_faults: %d check(s) failed\n", test_failures);
        return 1;
    }
    printf("test_ort_faults: PASS\n");
    return 0;
}
