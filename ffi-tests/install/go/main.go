// A Go consumer of atrank, built outside the repository by ffi-tests/install/run.sh with
// nothing but the steps in docs/embedding/go.md (the module, pkg-config from the installed
// prefix):
//
//	go run . PACKAGE_DIR tract|ort REQUEST_TIME CANDIDATE...
//
// Scores one request with an empty history and prints `score <index> <value>` per candidate.
// With ort it takes the binding's default (ONNX Runtime), opened with no variable set after
// `install.sh --with-ort`.
package main

import (
	"fmt"
	"math"
	"os"
	"strconv"

	atrank "github.com/atrank/atrank/bindings/go"
)

func main() {
	if len(os.Args) < 5 || (os.Args[2] != "tract" && os.Args[2] != "ort") {
		fmt.Fprintf(os.Stderr, "usage: %s PACKAGE_DIR tract|ort REQUEST_TIME CANDIDATE...\n", os.Args[0])
		os.Exit(2)
	}
	requestTime, err := strconv.ParseInt(os.Args[3], 10, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "consumer: REQUEST_TIME: %v\n", err)
		os.Exit(2)
	}
	var opts []atrank.Option
	if os.Args[2] == "tract" {
		opts = append(opts, atrank.WithBackend(atrank.BackendTract))
	}
	model, err := atrank.Load(os.Args[1], opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "consumer: %v\n", err)
		os.Exit(1)
	}
	scores, err := model.Score(nil, os.Args[4:], requestTime)
	model.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "consumer: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("atrank (Go), %s\n", os.Args[2])
	rc := 0
	for i, s := range scores {
		if math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) {
			rc = 1
		}
		fmt.Printf("score %d %.9g\n", i, s)
	}
	os.Exit(rc)
}
