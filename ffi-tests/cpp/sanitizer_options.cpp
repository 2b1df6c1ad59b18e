// Built only with ATRANK_SANITIZE=ON: the sanitizers' default options, compiled into the test
// binary so that they also apply when it is run directly (not only through ctest). An
// ASAN_OPTIONS / UBSAN_OPTIONS in the environment still overrides them.
extern "C" {
__attribute__((used, visibility("default"))) const char *__asan_default_options() { return ATRANK_ASAN_OPTIONS_STR; }
__attribute__((used, visibility("default"))) const char *__ubsan_default_options() {
    return "print_stacktrace=1:halt_on_error=1";
}
}
