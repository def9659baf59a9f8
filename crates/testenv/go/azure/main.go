// Command azure-standin is a local stand-in of Azure Resource Manager for Azure Container Apps
// (Microsoft.App/containerApps, revisions, replicas, jobs and job executions), with the Microsoft
// Entra ID token endpoints and an App Service style managed identity endpoint, for Tidegate's
// tests. Request bodies are decoded into the models of Microsoft's generated Go SDK
// (armappcontainers/v3) and unknown fields are rejected. It listens on loopback only and never
// contacts another address. See docs/azure-standin.md.
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "ARM, token and control API listener (HTTPS)")
	ingressListen := flag.String("ingress-listen", "127.0.0.1:0", "ingress listener (HTTPS, routed by Host)")
	certFile := flag.String("cert", "", "PEM server certificate (both listeners)")
	keyFile := flag.String("key", "", "PEM server key")
	readyFile := flag.String("ready-file", "", "write a JSON line with the bound addresses here once listening")
	domain := flag.String("domain", "standin.azurecontainerapps.test", "the managed environment's default domain")
	tenant := flag.String("tenant", "72f988bf-0000-4000-8000-000000000001", "the tenant ID tokens are issued for")
	lroDelay := flag.Duration("lro-delay", time.Second, "how long a long-running operation stays InProgress")
	provDelay := flag.Duration("provisioning-delay", time.Second, "how long a new revision stays Provisioning")
	execDelay := flag.Duration("execution-delay", time.Second, "how long a job execution stays Running")
	pageSize := flag.Int("page-size", 2, "items per page of list operations")
	vaultListen := flag.String("vault-listen", "127.0.0.1:0", "Key Vault data-plane listener (HTTPS, vaults by Host {name}.vault.azure.net)")
	vaultProxyListen := flag.String("vault-proxy-listen", "127.0.0.1:0", "HTTP CONNECT proxy that tunnels {name}.vault.azure.net:443 to the Key Vault listener")
	tokenKey := flag.String("token-key", "", "HMAC key of the access tokens it issues (random when empty), so that other loopback test servers can check them")
	flag.Parse()

	for _, addr := range []string{*listen, *ingressListen, *vaultListen, *vaultProxyListen} {
		host, _, err := net.SplitHostPort(addr)
		if err != nil || !isLoopback(host) {
			log.Fatalf("%s: listen on a loopback address only", addr)
		}
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatalf("loading the server certificate: %v", err)
	}
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	armLn, err := tls.Listen("tcp", *listen, tlsConfig)
	if err != nil {
		log.Fatalf("listen %s: %v", *listen, err)
	}
	ingressLn, err := tls.Listen("tcp", *ingressListen, tlsConfig)
	if err != nil {
		log.Fatalf("listen %s: %v", *ingressListen, err)
	}
	vaultLn, err := tls.Listen("tcp", *vaultListen, tlsConfig)
	if err != nil {
		log.Fatalf("listen %s: %v", *vaultListen, err)
	}
	vaultProxyLn, err := net.Listen("tcp", *vaultProxyListen)
	if err != nil {
		log.Fatalf("listen %s: %v", *vaultProxyListen, err)
	}
	s := newServer(*domain, *tenant)
	s.armURL = "https://" + armLn.Addr().String()
	if *tokenKey != "" {
		s.signKey = []byte(*tokenKey)
	}
	s.lroDelay, s.provDelay, s.execDelay, s.pageSize = *lroDelay, *provDelay, *execDelay, *pageSize
	if s.pageSize < 1 {
		s.pageSize = 1
	}

	errs := make(chan error, 4)
	go func() {
		errs <- (&http.Server{Handler: http.HandlerFunc(s.serveVault), ReadHeaderTimeout: 10 * time.Second}).Serve(vaultLn)
	}()
	go func() {
		errs <- (&http.Server{Handler: s.serveVaultProxy(vaultLn.Addr().String()), ReadHeaderTimeout: 10 * time.Second}).Serve(vaultProxyLn)
	}()
	go func() {
		errs <- (&http.Server{Handler: http.HandlerFunc(s.serveARM), ReadHeaderTimeout: 10 * time.Second}).Serve(armLn)
	}()
	go func() {
		errs <- (&http.Server{Handler: http.HandlerFunc(s.serveIngress), ReadHeaderTimeout: 10 * time.Second}).Serve(ingressLn)
	}()
	ready := map[string]string{
		"arm":        armLn.Addr().String(),
		"ingress":    ingressLn.Addr().String(),
		"vault":      vaultLn.Addr().String(),
		"vaultProxy": vaultProxyLn.Addr().String(),
		"domain":     *domain,
		"tenant":     *tenant,
	}
	line, _ := json.Marshal(ready)
	log.Printf("listening: %s", line)
	if *readyFile != "" {
		tmp := *readyFile + ".tmp"
		if err := os.WriteFile(tmp, append(line, '\n'), 0o600); err != nil {
			log.Fatalf("writing %s: %v", tmp, err)
		}
		if err := os.Rename(tmp, *readyFile); err != nil {
			log.Fatalf("writing %s: %v", *readyFile, err)
		}
	}
	log.Fatal(<-errs)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// fail is for programming errors only.
func fail(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
