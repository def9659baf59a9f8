package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// API versions accepted on ARM requests: the one armappcontainers/v3 v3.1.0 sends
// ("Generated from API version 2025-01-01") and the one of the official REST examples.
var apiVersions = map[string]bool{"2025-01-01": true, "2025-07-01": true}

// Audiences an ARM token may carry (the public cloud's, with and without the slash); the
// stand-in's own URL is accepted too (a custom cloud.Configuration).
var publicAudiences = []string{"https://management.azure.com", "https://management.core.windows.net"}

type server struct {
	mu        sync.Mutex
	domain    string
	tenant    string
	armURL    string
	signKey   []byte
	lroDelay  time.Duration
	provDelay time.Duration
	execDelay time.Duration
	pageSize  int

	kv         *keyVault       // Key Vault data plane (keyvault.go), created on first use
	apps       map[string]*app // by lower-case resource ID
	jobs       map[string]*job
	ops        map[string]*operation
	clients    map[string]*client // by client ID
	managed    *managedIdentity
	throttles  []*throttle
	health     []healthRule
	requestLog []loggedRequest
	acrData    *acrState   // Azure Container Registry Tasks (acr.go)
	graph      *graphState // Azure Resource Graph (resourcegraph.go)
}

type client struct {
	ClientID  string      `json:"clientId"`
	Secret    string      `json:"secret,omitempty"`
	Federated []federated `json:"federated,omitempty"`
}

type federated struct {
	Issuer   string `json:"issuer"`
	Subject  string `json:"subject"`
	Audience string `json:"audience"`
}

type managedIdentity struct {
	Header   string `json:"header"`
	ClientID string `json:"clientId"`
}

type throttle struct {
	Method     string `json:"method"`
	PathPrefix string `json:"pathPrefix"`
	Count      int    `json:"count"`
	RetryAfter int    `json:"retryAfterSeconds"`
}

type healthRule struct {
	Image    string // substring of a container image (e.g. a digest), or ""
	Revision string // revision name, or ""
	Health   string // healthy, unhealthy, crashing
}

type loggedRequest struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Query  string `json:"query"`
	Status int    `json:"status"`
	Body   string `json:"body"`
	Time   string `json:"time"`
}

// operation is one long-running operation.
type operation struct {
	ID         string
	Kind       string // "containerapp" or "containerappsjob"
	Location   string
	Sub        string
	Start      time.Time
	DoneAt     time.Time
	Resource   string // lower-case resource ID it acts on
	APIVersion string
	Failed     *armError
	// finish runs once, under the lock, when DoneAt has passed; it may set Failed.
	finish   func(op *operation)
	finished bool
	// result is the body of the Location URL once done (nil: 204 No Content).
	result func() any
}

type armError struct {
	Code    string     `json:"code"`
	Message string     `json:"message"`
	Target  string     `json:"target,omitempty"`
	Details []armError `json:"details,omitempty"`
}

func newServer(domain, tenant string) *server {
	return &server{
		domain:  domain,
		tenant:  tenant,
		signKey: []byte(randomHex(32)),
		apps:    map[string]*app{},
		jobs:    map[string]*job{},
		ops:     map[string]*operation{},
		clients: map[string]*client{},
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		fail("random: %v", err)
	}
	return hex.EncodeToString(b)
}

func newUUID() string {
	h := randomHex(16)
	return h[0:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:32]
}

// randomSuffix is a revision-suffix-like string: 7 lower-case letters and digits.
func randomSuffix() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 7)
	if _, err := rand.Read(b); err != nil {
		fail("random: %v", err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func now() time.Time { return time.Now().UTC() }

func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// recorder keeps the status for the request log.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// serveARM is the ARM listener: control API, token endpoints, then ARM.
func (s *server) serveARM(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	requestID := newUUID()
	correlation := r.Header.Get("x-ms-correlation-request-id")
	if correlation == "" {
		correlation = r.Header.Get("x-ms-client-request-id")
	}
	if correlation == "" {
		correlation = newUUID()
	}
	w.Header().Set("x-ms-request-id", requestID)
	w.Header().Set("x-ms-correlation-request-id", correlation)
	if id := r.Header.Get("x-ms-client-request-id"); id != "" {
		w.Header().Set("x-ms-client-request-id", id)
	}
	if strings.HasPrefix(r.URL.Path, "/_standin/") {
		s.serveControl(w, r, body)
		return
	}
	rec := &recorder{ResponseWriter: w}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tick()
	s.route(rec, r, body)
	s.requestLog = append(s.requestLog, loggedRequest{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Status: rec.status, Body: string(body),
		Time: now().Format(time.RFC3339Nano),
	})
}

func (s *server) route(w http.ResponseWriter, r *http.Request, body []byte) {
	if s.throttled(w, r) {
		return
	}
	p := r.URL.Path
	switch {
	case p == "/common/discovery/instance":
		s.instanceDiscovery(w, r)
		return
	case strings.HasSuffix(p, "/v2.0/.well-known/openid-configuration"):
		s.openIDConfiguration(w, r)
		return
	case strings.HasSuffix(p, "/oauth2/v2.0/token"):
		s.tokenEndpoint(w, r, body)
		return
	case p == "/msi/token":
		s.managedIdentityToken(w, r)
		return
	}
	if isGraphPath(p) {
		if s.authenticated(w, r) {
			s.resourceGraph(w, r, body)
		}
		return
	}
	if !strings.HasPrefix(strings.ToLower(p), "/subscriptions/") {
		writeError(w, http.StatusNotFound, "NotFound", "no such endpoint: "+p, "")
		return
	}
	if !s.authenticated(w, r) {
		return
	}
	if isACRPath(p) {
		s.routeACR(w, r, body)
		return
	}
	v := r.URL.Query().Get("api-version")
	if v == "" {
		writeError(w, http.StatusBadRequest, "MissingApiVersionParameter",
			"The api-version query parameter (?api-version=) is required for all requests.", "")
		return
	}
	if !apiVersions[v] {
		writeError(w, http.StatusBadRequest, "InvalidApiVersionParameter", fmt.Sprintf(
			"The api-version '%s' is invalid. The supported versions are '2025-01-01,2025-07-01'.", v), "")
		return
	}
	s.routeARM(w, r, body)
}

func (s *server) throttled(w http.ResponseWriter, r *http.Request) bool {
	for i, t := range s.throttles {
		if t.Count > 0 && (t.Method == "" || strings.EqualFold(t.Method, r.Method)) && strings.HasPrefix(r.URL.Path, t.PathPrefix) {
			t.Count--
			if t.Count == 0 {
				s.throttles = append(s.throttles[:i:i], s.throttles[i+1:]...)
			}
			w.Header().Set("Retry-After", strconv.Itoa(t.RetryAfter))
			writeError(w, http.StatusTooManyRequests, "TooManyRequests",
				fmt.Sprintf("Too many requests. Please retry after %d seconds.", t.RetryAfter), "")
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	if v != nil {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(v)
	}
}

func writeError(w http.ResponseWriter, status int, code, message, target string, details ...armError) {
	writeJSON(w, status, map[string]any{"error": armError{Code: code, Message: message, Target: target, Details: details}})
}

func writeArmError(w http.ResponseWriter, status int, e *armError) {
	writeJSON(w, status, map[string]any{"error": e})
}

// normLocation turns "East US" into "eastus".
func normLocation(l string) string {
	return strings.ToLower(strings.ReplaceAll(l, " ", ""))
}

// startOperation registers an operation and sets the LRO headers.
func (s *server) startOperation(w http.ResponseWriter, op *operation) {
	op.ID = newUUID()
	op.Start = now()
	if op.DoneAt.Before(op.Start.Add(s.lroDelay)) {
		op.DoneAt = op.Start.Add(s.lroDelay)
	}
	s.ops[op.ID] = op
	base := fmt.Sprintf("%s/subscriptions/%s/providers/Microsoft.App/locations/%s/", s.armURL, op.Sub, op.Location)
	if op.APIVersion == "" {
		op.APIVersion = "2025-01-01"
	}
	q := "?api-version=" + url.QueryEscape(op.APIVersion)
	w.Header().Set("Azure-AsyncOperation", base+op.Kind+"OperationStatuses/"+op.ID+q)
	w.Header().Set("Location", base+op.Kind+"OperationResults/"+op.ID+q)
	w.Header().Set("Retry-After", strconv.Itoa(int((s.lroDelay+time.Second-1)/time.Second)))
}

// tick moves time-driven state forward: operations, revisions, executions.
func (s *server) tick() {
	t := now()
	for _, a := range s.apps {
		s.tickApp(a, t)
	}
	for _, j := range s.jobs {
		s.tickJob(j, t)
	}
	s.tickACR(t)
	for _, op := range s.ops {
		if !op.finished && !t.Before(op.DoneAt) {
			op.finished = true
			if op.finish != nil {
				op.finish(op)
			}
		}
	}
}

func (s *server) operationStatus(w http.ResponseWriter, sub, kind, id string) {
	op := s.ops[id]
	if op == nil || op.Kind != kind || !strings.EqualFold(op.Sub, sub) {
		writeError(w, http.StatusNotFound, "OperationNotFound", "operation "+id+" not found", "")
		return
	}
	status := "InProgress"
	if op.finished {
		status = "Succeeded"
		if op.Failed != nil {
			status = "Failed"
		}
	}
	out := map[string]any{
		"id":        fmt.Sprintf("/subscriptions/%s/providers/Microsoft.App/locations/%s/%sOperationStatuses/%s", op.Sub, op.Location, kind, id),
		"name":      id,
		"status":    status,
		"startTime": op.Start.Format(time.RFC3339Nano),
	}
	if op.finished {
		out["endTime"] = op.DoneAt.Format(time.RFC3339Nano)
	} else {
		w.Header().Set("Retry-After", "1")
	}
	if op.Failed != nil && op.finished {
		out["error"] = op.Failed
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) operationResult(w http.ResponseWriter, sub, kind, id string) {
	op := s.ops[id]
	if op == nil || op.Kind != kind || !strings.EqualFold(op.Sub, sub) {
		writeError(w, http.StatusNotFound, "OperationNotFound", "operation "+id+" not found", "")
		return
	}
	if !op.finished {
		w.Header().Set("Location", s.armURL+"/subscriptions/"+op.Sub+"/providers/Microsoft.App/locations/"+op.Location+"/"+kind+"OperationResults/"+id+"?api-version="+op.APIVersion)
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if op.Failed != nil {
		writeArmError(w, http.StatusBadRequest, op.Failed)
		return
	}
	if op.result == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if v := op.result(); v != nil {
		writeJSON(w, http.StatusOK, v)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// page returns items [skip, skip+pageSize) and the next link.
func (s *server) page(r *http.Request, items []any) map[string]any {
	skip, _ := strconv.Atoi(r.URL.Query().Get("$skiptoken"))
	if skip < 0 || skip > len(items) {
		skip = len(items)
	}
	end := min(skip+s.pageSize, len(items))
	out := map[string]any{"value": append([]any{}, items[skip:end]...)}
	if end < len(items) {
		q := r.URL.Query()
		q.Set("$skiptoken", strconv.Itoa(end))
		out["nextLink"] = s.armURL + r.URL.Path + "?" + q.Encode()
	}
	return out
}

// deepCopy copies a JSON value.
func deepCopy(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		fail("copy: %v", err)
	}
	var out any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		fail("copy: %v", err)
	}
	return out
}

func decodeJSON(b []byte) (any, error) {
	var out any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return out, nil
}

// mergePatch applies an RFC 7386 JSON merge patch.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return deepCopy(patch)
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
}

// obj returns m[key] as an object, creating it when create is set.
func obj(m map[string]any, key string, create bool) map[string]any {
	if m == nil {
		return nil
	}
	if o, ok := m[key].(map[string]any); ok {
		return o
	}
	if create {
		o := map[string]any{}
		m[key] = o
		return o
	}
	return nil
}

func str(m map[string]any, key string) string {
	if m == nil {
		return ""
	}
	s, _ := m[key].(string)
	return s
}

func num(m map[string]any, key string) (float64, bool) {
	if m == nil {
		return 0, false
	}
	switch v := m[key].(type) {
	case json.Number:
		f, err := v.Float64()
		return f, err == nil
	case float64:
		return v, true
	case int:
		return float64(v), true
	}
	return 0, false
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}
