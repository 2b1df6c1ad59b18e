// Command loadtest drives a rerank-server on loopback: -c clients post /rerank requests built
// from a package's golden.json (checking the scores against the trainer's), at most -n
// requests and at most -duration, optionally reloading the model -reloads times during the
// run. It prints throughput and p50/p99 latency and exits 1 if any request or reload failed.
// With -check-metrics (default) it also scrapes GET /metrics before and after the run and
// fails unless the library's counters agree with the requests it sent, then sends one request
// the library refuses and checks that it is counted under its error code.
//
//	loadtest -url http://127.0.0.1:8080 -package tests/fixtures/tiny -n 2000 -duration 20s -c 4 -reloads 2
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/atrank/atrank/examples/go/internal/loadgen"
)

func main() {
	url := flag.String("url", "", "rerank server base URL, e.g. http://127.0.0.1:8080 (required)")
	pkg := flag.String("package", "", "model package whose golden.json supplies the requests and expected scores (required)")
	n := flag.Int("n", 2000, "at most this many requests")
	duration := flag.Duration("duration", 20*time.Second, "at most this long")
	c := flag.Int("c", 4, "concurrent clients")
	reloads := flag.Int("reloads", 0, "POST /admin/reload this many times, spread over the run")
	userEvery := flag.Int("user-every", 2, "every k-th request names its user (the cached path); 0: never")
	check := flag.Bool("check", true, "compare scores with the golden file's (within each request's tolerance)")
	tol := flag.Float64("tolerance", 0, "override the golden file's per-request tolerances (0: the file's)")
	checkMetrics := flag.Bool("check-metrics", true, "check the server's /metrics against the requests sent")
	flag.Parse()
	if *url == "" || *pkg == "" {
		flag.Usage()
		os.Exit(2)
	}
	pool, _, err := loadgen.FromPackage(*pkg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(2)
	}
	if !*check {
		for i := range pool {
			pool[i].Expected = nil
		}
	}
	var before loadgen.Metrics
	if *checkMetrics {
		if before, err = loadgen.Scrape(*url); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
	}
	rep, err := loadgen.Run(context.Background(), loadgen.Config{BaseURL: *url, Pool: pool, Tolerance: *tol,
		N: *n, Duration: *duration, Concurrency: *c, Reloads: *reloads, UserEvery: *userEvery})
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(2)
	}
	fmt.Printf("loadtest: %d clients, %d distinct requests: %s\n", *c, len(pool), rep)
	bad := false
	if rep.Failed > 0 {
		fmt.Fprintf(os.Stderr, "loadtest: %d of %d requests failed; first: %s\n", rep.Failed, rep.Requests, rep.FirstError)
		bad = true
	}
	if rep.ReloadsFailed > 0 {
		fmt.Fprintf(os.Stderr, "loadtest: %d of %d reloads failed: %s\n", rep.ReloadsFailed, rep.Reloads, rep.ReloadErrors)
		bad = true
	}
	if rep.Requests == 0 {
		fmt.Fprintln(os.Stderr, "loadtest: no request completed")
		bad = true
	}
	if *checkMetrics {
		after, err := loadgen.Scrape(*url)
		if err == nil {
			err = loadgen.CheckMetrics(before, after, rep)
		}
		if err == nil {
			err = loadgen.CheckFailureCounted(*url, &pool[0])
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			bad = true
		} else {
			fmt.Printf("loadtest: /metrics agrees: %d score + %d score_cached calls, %d reloads, a refused request counted under ATRANK_ERROR_INVALID_ARGUMENT\n",
				rep.Requests-rep.UserRequests, rep.UserRequests, rep.Reloads-rep.ReloadsFailed)
		}
	}
	if bad {
		os.Exit(1)
	}
}
