package main

import (
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strings"
)

// serveIngress answers for the environment's FQDNs: {app}.{domain} by traffic weight,
// {app}---{label}.{domain} as the labelled revision and {app}--{suffix}.{domain} as that revision.
func (s *server) serveIngress(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tick()
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	prefix, ok := strings.CutSuffix(host, "."+strings.ToLower(s.domain))
	if !ok || strings.Contains(prefix, ".") {
		ingressError(w, http.StatusNotFound, "unknown host "+host)
		return
	}
	var appName, label, revName string
	switch {
	case strings.Contains(prefix, "---"):
		appName, label, _ = strings.Cut(prefix, "---")
	case strings.Contains(prefix, "--"):
		appName, _, _ = strings.Cut(prefix, "--")
		revName = prefix
	default:
		appName = prefix
	}
	var a *app
	ids := make([]string, 0, len(s.apps))
	for id := range s.apps {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if strings.EqualFold(s.apps[id].Name, appName) && obj(obj(obj(s.apps[id].Body, "properties", false), "configuration", false), "ingress", false) != nil {
			a = s.apps[id]
			break
		}
	}
	if a == nil {
		ingressError(w, http.StatusNotFound, "no container app with ingress for "+host)
		return
	}
	var rev *revision
	switch {
	case label != "":
		rev = a.labelled(label)
	case revName != "":
		rev = a.revision(revName)
	default:
		rev = pick(a.weights())
		if rev != nil {
			rev = a.revision(rev.Name)
		}
	}
	if rev == nil {
		ingressError(w, http.StatusNotFound, "no revision for "+host)
		return
	}
	if _, _, serving := rev.state(); !serving {
		health, running, _ := rev.state()
		w.Header().Set("x-standin-revision", rev.Name)
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "revision not available", "revision": rev.Name,
			"healthState": health, "runningState": running, "provisioningState": rev.ProvState, "active": rev.Active})
		return
	}
	image := ""
	if cs := containers(rev.Template); len(cs) > 0 {
		image = str(cs[0], "image")
	}
	w.Header().Set("x-standin-revision", rev.Name)
	writeJSON(w, http.StatusOK, map[string]any{"app": a.Name, "revision": rev.Name, "image": image, "host": host,
		"path": r.URL.Path, "method": r.Method})
}

func pick(weights map[string]float64) *revision {
	names := make([]string, 0, len(weights))
	total := 0.0
	for n, w := range weights {
		if w > 0 {
			names = append(names, n)
			total += w
		}
	}
	if total == 0 {
		return nil
	}
	sort.Strings(names)
	x := rand.Float64() * total
	for _, n := range names {
		x -= weights[n]
		if x < 0 {
			return &revision{Name: n}
		}
	}
	return &revision{Name: names[len(names)-1]}
}

func ingressError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"error": msg})
}
