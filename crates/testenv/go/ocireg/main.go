// Command ocireg is a small OCI registry for Tidegate's tests.
//
// It is go-containerregistry's pkg/registry (manifests in memory, blobs on disk with -blobs)
// behind a thin wrapper that gives it the OCI 1.1 referrers API as the distribution spec
// describes it. pkg/registry has a referrers endpoint of its own, but it reports the config
// media type as artifactType even when the manifest has an artifactType field (so Notary
// Project signatures would show up as application/vnd.oci.empty.v1+json), ignores the
// artifactType filter, answers 404 for an unknown repository, and never sends OCI-Subject.
// The wrapper therefore indexes every manifest that has a subject as it is pushed and serves
//
//	GET /v2/<name>/referrers/<digest>[?artifactType=<type>]
//
// itself; everything else goes to pkg/registry unchanged.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/registry"
)

// descriptor is an OCI content descriptor as it appears in a referrers index.
type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// manifestFields are the parts of an image manifest or index the referrers API needs.
type manifestFields struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType"`
	Config       *descriptor       `json:"config"`
	Subject      *descriptor       `json:"subject"`
	Annotations  map[string]string `json:"annotations"`
}

var digestRE = regexp.MustCompile(`^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$`)

// referrers wraps pkg/registry and keeps, per repository and subject digest, the descriptors
// of the manifests that name that subject.
type referrers struct {
	next  http.Handler
	log   *log.Logger
	mu    sync.Mutex
	index map[string]map[string]descriptor // "<repo>@<subject digest>" -> manifest digest -> descriptor
}

// route splits /v2/<name>/<kind>/<ref> into its parts; ok is false for any other path.
func route(path string) (repo, kind, ref string, ok bool) {
	parts := strings.Split(strings.TrimPrefix(path, "/v2/"), "/")
	if !strings.HasPrefix(path, "/v2/") || len(parts) < 3 {
		return "", "", "", false
	}
	n := len(parts)
	return strings.Join(parts[:n-2], "/"), parts[n-2], parts[n-1], true
}

func (r *referrers) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	repo, kind, ref, ok := route(req.URL.Path)
	switch {
	case ok && kind == "referrers" && (req.Method == http.MethodGet || req.Method == http.MethodHead):
		r.serveReferrers(w, req, repo, ref)
	case ok && kind == "manifests" && req.Method == http.MethodPut:
		r.putManifest(w, req, repo)
	case ok && kind == "manifests" && req.Method == http.MethodDelete && digestRE.MatchString(ref):
		// Forget the manifest once pkg/registry has deleted it (202 Accepted).
		r.next.ServeHTTP(&hook{ResponseWriter: w, before: func(status int) {
			if status == http.StatusAccepted {
				r.forget(repo, ref)
			}
		}}, req)
	default:
		r.next.ServeHTTP(w, req)
	}
}

// putManifest passes the push on and, when it succeeds and the manifest has a subject, indexes
// it and answers with the OCI-Subject header, which tells clients the registry handles
// referrers itself (so they need no referrers tag).
func (r *referrers) putManifest(w http.ResponseWriter, req *http.Request, repo string) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	var m manifestFields
	if json.Unmarshal(body, &m) != nil || m.Subject == nil {
		r.next.ServeHTTP(w, req)
		return
	}
	r.next.ServeHTTP(&hook{ResponseWriter: w, before: func(status int) {
		if status != http.StatusCreated {
			return
		}
		mediaType := m.MediaType
		if mediaType == "" {
			mediaType = req.Header.Get("Content-Type")
		}
		artifactType := m.ArtifactType
		if artifactType == "" && m.Config != nil {
			artifactType = m.Config.MediaType
		}
		d := descriptor{
			MediaType:    mediaType,
			Digest:       w.Header().Get("Docker-Content-Digest"),
			Size:         int64(len(body)),
			ArtifactType: artifactType,
			Annotations:  m.Annotations,
		}
		key := repo + "@" + m.Subject.Digest
		r.mu.Lock()
		if r.index[key] == nil {
			r.index[key] = map[string]descriptor{}
		}
		r.index[key][d.Digest] = d
		r.mu.Unlock()
		w.Header().Set("OCI-Subject", m.Subject.Digest)
	}}, req)
}

func (r *referrers) forget(repo, digest string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, set := range r.index {
		if strings.HasPrefix(key, repo+"@") {
			delete(set, digest)
		}
	}
}

// serveReferrers answers with an image index of the manifests whose subject is digest,
// filtered by the artifactType query parameter when there is one. An unknown repository or
// subject gives an empty index, never 404, as the specification requires.
func (r *referrers) serveReferrers(w http.ResponseWriter, req *http.Request, repo, digest string) {
	if !digestRE.MatchString(digest) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"errors":[{"code":"DIGEST_INVALID","message":"referrers need a digest"}]}`)
		return
	}
	filter := req.URL.Query().Get("artifactType")
	found := []descriptor{}
	r.mu.Lock()
	for _, d := range r.index[repo+"@"+digest] {
		if filter == "" || d.ArtifactType == filter {
			found = append(found, d)
		}
	}
	r.mu.Unlock()
	r.log.Printf("%s %s (%d referrers)", req.Method, req.URL, len(found))
	sort.Slice(found, func(i, j int) bool { return found[i].Digest < found[j].Digest })
	body, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     found,
	})
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodGet {
		w.Write(body)
	}
}

// hook calls before just before the status line is written, while headers can still change.
type hook struct {
	http.ResponseWriter
	before  func(status int)
	written bool
}

func (h *hook) WriteHeader(status int) {
	if !h.written {
		h.written = true
		h.before(status)
	}
	h.ResponseWriter.WriteHeader(status)
}

func (h *hook) Write(b []byte) (int, error) {
	if !h.written {
		h.WriteHeader(http.StatusOK)
	}
	return h.ResponseWriter.Write(b)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:5000", "address to listen on (host:port; port 0 picks one)")
	blobs := flag.String("blobs", "", "directory to keep blobs in (default: memory)")
	quiet := flag.Bool("quiet", false, "do not log every request")
	flag.Parse()

	logger := log.New(os.Stderr, "", log.LstdFlags)
	if *quiet {
		logger.SetOutput(io.Discard)
	}
	opts := []registry.Option{registry.Logger(logger)}
	if *blobs != "" {
		if err := os.MkdirAll(*blobs, 0o755); err != nil {
			log.Fatal(err)
		}
		opts = append(opts, registry.WithBlobHandler(registry.NewDiskBlobHandler(*blobs)))
	}
	handler := &referrers{next: registry.New(opts...), log: logger, index: map[string]map[string]descriptor{}}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("ocireg listening on %s", ln.Addr())
	log.Fatal(http.Serve(ln, handler))
}
