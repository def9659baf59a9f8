// Command testserver is the real node's test workload: a static HTTP server.
//
// Mode (first argument, else $TESTSERVER_MODE, else "serve"):
//
//	serve  answer GET /healthz with 200 "ok" and GET / with 200 and the pod's name, until SIGTERM
//	crash  serve the same way, then exit with status 3 after $TESTSERVER_CRASH_AFTER (default 1s)
//	get URL   do not serve: GET URL (name resolution and all, as any client in the Pod would;
//	          https trusts the Pod's service-account CA), print what it got (to the termination
//	          log /dev/termination-log too, when there is one), and exit 0 for a 200, 1 otherwise
//
// It listens on $TESTSERVER_ADDR (default ":8080").
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
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
	if mode == "get" {
		if len(os.Args) != 3 {
			log.Fatalf("usage: testserver get URL")
		}
		os.Exit(get(os.Args[2]))
	}
	if mode != "serve" && mode != "crash" {
		log.Fatalf("unknown mode %q (serve, crash, get URL)", mode)
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

// serviceAccountCA is the cluster CA kubelet mounts into Pods with a service-account token.
const serviceAccountCA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"

// get GETs url once and returns the exit status: 0 for a 200, 1 otherwise.
func get(url string) int {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if pem, err := os.ReadFile(serviceAccountCA); err == nil {
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		transport.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: transport}
	resp, err := client.Get(url)
	if err != nil {
		report(fmt.Sprintf("GET %s: %v", url, err))
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	report(fmt.Sprintf("GET %s -> %d %s", url, resp.StatusCode, strings.TrimSpace(string(body))))
	if resp.StatusCode == http.StatusOK {
		return 0
	}
	return 1
}

// report prints line, and writes it to the container's termination log when kubelet mounted one.
func report(line string) {
	fmt.Println(line)
	_ = os.WriteFile("/dev/termination-log", []byte(line+"\n"), 0o644)
}
