// Command rerank-server serves an atrank model package over HTTP on a hot-swappable handle:
//
//	POST /rerank        {"user": "u1", "behaviors": [{"item": "i3", "action": "like", "timestamp": 1000000000}],
//	                     "candidates": ["i1", "i2"], "request_time": 1000086400}
//	                 -> {"scores": [0.12, -1.3], "generation": 1}
//	                    400 {"error": ..., "code": "ATRANK_ERROR_INVALID_ARGUMENT", "code_number": 2} for bad input
//	POST /admin/reload  reloads -package (also on SIGHUP); requests keep being served, and a
//	                    failed reload keeps the current model
//	GET  /healthz       {"status": "ok", "generation": n, "atrank": version}
//
// It prints "listening on http://ADDR" once bound (-addr 127.0.0.1:0 picks a free port) and
// shuts down gracefully on SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	atrank "github.com/atrank/atrank/bindings/go"
	"github.com/atrank/atrank/examples/go/internal/rerank"
)

func main() {
	pkg := flag.String("package", "", "model package directory (required)")
	backend := flag.String("backend", "tract", "ort or tract")
	addr := flag.String("addr", "127.0.0.1:8080", "listen address (port 0: any free port)")
	addrFile := flag.String("addr-file", "", "also write the bound address to this file")
	ortLib := flag.String("ort-lib", os.Getenv("ATRANK_ORT_LIB"), "ONNX Runtime library (ort backend)")
	threads := flag.Int("threads", 1, "ONNX Runtime intra-op threads per model")
	cache := flag.Int("cache", 1024, "cached user encodings (0: off)")
	sessions := flag.Int("sessions", 2, "ONNX Runtime sessions per model (concurrent ORT calls; tract ignores it)")
	flag.Parse()
	logger := log.New(os.Stderr, "rerank-server: ", log.LstdFlags)
	if *pkg == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := atrank.CheckVersion(); err != nil {
		logger.Fatal(err)
	}
	b, err := atrank.ParseBackend(*backend)
	if err != nil {
		logger.Fatal(err)
	}
	opts := []atrank.Option{atrank.WithBackend(b), atrank.WithIntraThreads(*threads),
		atrank.WithSessions(*sessions), atrank.WithCacheCapacity(*cache)}
	if b == atrank.BackendORT && *ortLib != "" {
		opts = append(opts, atrank.WithORTLibrary(*ortLib))
	}
	h, err := atrank.LoadHandle(*pkg, opts...)
	if err != nil {
		logger.Fatalf("cannot load %s: %v", *pkg, err)
	}
	defer h.Close()
	srv := &rerank.Server{Handle: h, Log: logger, Reload: func() (uint64, error) { return h.Reload(*pkg, opts...) }}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		logger.Fatal(err)
	}
	bound := ln.Addr().String()
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile+".tmp", []byte(bound+"\n"), 0o644); err != nil {
			logger.Fatal(err)
		}
		if err := os.Rename(*addrFile+".tmp", *addrFile); err != nil {
			logger.Fatal(err)
		}
	}
	fmt.Printf("listening on http://%s (atrank %s, %s, package %s)\n", bound, atrank.Version(), b, *pkg)
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for s := range sig {
			if s == syscall.SIGHUP {
				go srv.DoReload() // logs its outcome
				continue
			}
			logger.Printf("%v: shutting down", s)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = hs.Shutdown(ctx)
			cancel()
			return
		}
	}()
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Fatal(err)
	}
}
