// Command testserver is the real node's test workload: a static HTTP server.
//
// Mode (first argument, else $TESTSERVER_MODE, else "serve"):
//
//	serve  answer GET /healthz with 200 "ok" and GET / with 200 and the pod's name, until SIGTERM
//	crash  serve the same way, then exit with status 3 after $TESTSERVER_CRASH_AFTER (default 1s)
//
// It listens on $TESTSERVER_ADDR (default ":8080").
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	mode := os.Getenv("TESTSERVER_MODE")
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	if mode == "" {
		mode = "serve"
	}
	if mode != "serve" && mode != "crash" {
		log.Fatalf("unknown mode %q (serve, crash)", mode)
	}
	addr := os.Getenv("TESTSERVER_ADDR")
	if addr == "" {
		addr = ":8080"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		host, _ := os.Hostname()
		fmt.Fprintf(w, "tidegate testserver on %s\n", host)
	})
	server := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := server.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			log.Fatalf("listen on %s: %v", addr, err)
		}
	}()
	log.Printf("testserver (%s) listening on %s", mode, addr)

	if mode == "crash" {
		after := time.Second
		if v := os.Getenv("TESTSERVER_CRASH_AFTER"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				log.Fatalf("TESTSERVER_CRASH_AFTER: %v", err)
			}
			after = d
		}
		time.Sleep(after)
		log.Printf("crashing on purpose after %s", after)
		os.Exit(3)
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	<-signals
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = server.Shutdown(ctx)
}
