// A C++ consumer of an *installed* atrank (atrank.hpp), built outside the repository by
// ffi-tests/install/run.sh with nothing but the steps in docs/embedding/cpp.md:
//
//   c++ -std=c++17 consumer.cpp $(pkg-config --cflags --libs atrank) -o consumer
//   consumer PACKAGE_DIR tract|ort REQUEST_TIME CANDIDATE...
//
// Scores one request with an empty history and prints `score <index> <value>` per candidate.
// Options{} is the C++ default (ONNX Runtime), opened with no variable set after
// `install.sh --with-ort`.
#include <atrank.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char **argv) {
    if (argc < 5 || (std::string(argv[2]) != "tract" && std::string(argv[2]) != "ort")) {
        std::fprintf(stderr, "usage: %s PACKAGE_DIR tract|ort REQUEST_TIME CANDIDATE...\n", argv[0]);
        return 2;
    }
    try {
        atrank::Options options;  // backend: ATRANK_BACKEND_ORT unless told otherwise
        if (std::string(argv[2]) == "tract") options.backend = ATRANK_BACKEND_TRACT;
        const atrank::Model model = atrank::Model::load(argv[1], options);
        const std::vector<std::string> candidates(argv + 4, argv + argc);
        const std::vector<float> scores = model.score({}, candidates, std::atoll(argv[3]));
        std::printf("atrank %s (C++), %s\n", atrank_version(), argv[2]);
        int rc = 0;
        for (std::size_t i = 0; i < scores.size(); i++) {
            if (!std::isfinite(scores[i])) rc = 1;
            std::printf("score %zu %.9g\n", i, static_cast<double>(scores[i]));
        }
        return rc;
    } catch (const atrank::Error &e) {
        std::fprintf(stderr, "consumer: %s\n", e.what());
        return 1;
    }
}
