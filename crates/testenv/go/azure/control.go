package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/appcontainers/armappcontainers/v3"
)

// serveControl is the test-only control API under /_standin/ (no authentication).
func (s *server) serveControl(w http.ResponseWriter, r *http.Request, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tick()
	path := strings.TrimPrefix(r.URL.Path, "/_standin/")
	bad := func(format string, args ...any) {
		writeError(w, http.StatusBadRequest, "BadControlRequest", fmt.Sprintf(format, args...), "")
	}
	decode := func(v any) bool {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			bad("%s: %v", path, err)
			return false
		}
		return true
	}
	switch {
	case strings.HasPrefix(path, "keyvault/"):
		s.serveVaultControl(w, r, path, body)
	case strings.HasPrefix(path, "acr/"):
		s.serveACRControl(w, r, path, decode)
	case strings.HasPrefix(path, "resourcegraph/"):
		s.serveGraphControl(w, r, path, decode)
	case path == "requests" && r.Method == http.MethodGet:
		out := s.requestLog
		if out == nil {
			out = []loggedRequest{}
		}
		writeJSON(w, http.StatusOK, out)
	case path == "requests" && r.Method == http.MethodDelete:
		s.requestLog = nil
		w.WriteHeader(http.StatusNoContent)
	case path == "apps" && r.Method == http.MethodPost:
		var req struct {
			ID        string          `json:"id"`
			App       json.RawMessage `json:"app"`
			Revisions []seedRevision  `json:"revisions"`
		}
		if !decode(&req) {
			return
		}
		if aerr := s.seedApp(req.ID, req.App, req.Revisions); aerr != nil {
			writeArmError(w, http.StatusBadRequest, aerr)
			return
		}
		writeJSON(w, http.StatusOK, s.appView(s.apps[strings.ToLower(req.ID)]))
	case path == "jobs" && r.Method == http.MethodPost:
		var req struct {
			ID         string          `json:"id"`
			Job        json.RawMessage `json:"job"`
			Executions []seedExecution `json:"executions"`
		}
		if !decode(&req) {
			return
		}
		if aerr := s.seedJob(req.ID, req.Job, req.Executions); aerr != nil {
			writeArmError(w, http.StatusBadRequest, aerr)
			return
		}
		writeJSON(w, http.StatusOK, s.jobView(s.jobs[strings.ToLower(req.ID)]))
	case path == "clients" && r.Method == http.MethodPost:
		var c client
		if !decode(&c) {
			return
		}
		if c.ClientID == "" {
			bad("clientId is required")
			return
		}
		existing := s.clients[c.ClientID]
		if existing == nil {
			existing = &client{ClientID: c.ClientID}
			s.clients[c.ClientID] = existing
		}
		if c.Secret != "" {
			existing.Secret = c.Secret
		}
		existing.Federated = append(existing.Federated, c.Federated...)
		writeJSON(w, http.StatusOK, existing)
	case path == "managed-identity" && r.Method == http.MethodPost:
		var mi managedIdentity
		if !decode(&mi) {
			return
		}
		s.managed = &mi
		writeJSON(w, http.StatusOK, mi)
	case path == "health" && r.Method == http.MethodPost:
		var req struct {
			AppID    string `json:"appId"`
			Revision string `json:"revision"`
			Image    string `json:"image"`
			Health   string `json:"health"`
		}
		if !decode(&req) {
			return
		}
		if req.Health != "healthy" && req.Health != "unhealthy" && req.Health != "crashing" {
			bad("health must be healthy, unhealthy or crashing")
			return
		}
		if (req.Revision == "") == (req.Image == "") {
			bad("name either a revision or an image")
			return
		}
		rule := healthRule{Image: req.Image, Revision: req.Revision, Health: req.Health}
		s.health = append(s.health, rule)
		changed := []string{}
		for _, a := range s.apps {
			if req.AppID != "" && !strings.EqualFold(a.ID, req.AppID) {
				continue
			}
			for _, rev := range a.Revisions {
				before, since := rev.Health, rev.CrashSince
				rev.Health = ""
				s.applyHealthRules(rev)
				if before == "crashing" && rev.Health == "crashing" {
					rev.CrashSince = since
				}
				if rev.Health == "" {
					rev.Health = before
				} else {
					changed = append(changed, rev.Name)
				}
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"revisions": changed})
	case path == "fail-next-execution" && r.Method == http.MethodPost:
		var req struct {
			JobID string `json:"jobId"`
			Count int    `json:"count"`
		}
		if !decode(&req) {
			return
		}
		j := s.jobs[strings.ToLower(req.JobID)]
		if j == nil {
			bad("no job %s", req.JobID)
			return
		}
		if req.Count <= 0 {
			req.Count = 1
		}
		j.FailNext += req.Count
		writeJSON(w, http.StatusOK, map[string]any{"failNext": j.FailNext})
	case path == "throttle" && r.Method == http.MethodPost:
		var t throttle
		if !decode(&t) {
			return
		}
		if t.Count <= 0 {
			bad("count must be positive")
			return
		}
		s.throttles = append(s.throttles, &t)
		writeJSON(w, http.StatusOK, t)
	case path == "delays" && r.Method == http.MethodPost:
		var req struct {
			LROMillis          *int `json:"lroMillis"`
			ProvisioningMillis *int `json:"provisioningMillis"`
			ExecutionMillis    *int `json:"executionMillis"`
			PageSize           *int `json:"pageSize"`
		}
		if !decode(&req) {
			return
		}
		if req.LROMillis != nil {
			s.lroDelay = time.Duration(*req.LROMillis) * time.Millisecond
		}
		if req.ProvisioningMillis != nil {
			s.provDelay = time.Duration(*req.ProvisioningMillis) * time.Millisecond
		}
		if req.ExecutionMillis != nil {
			s.execDelay = time.Duration(*req.ExecutionMillis) * time.Millisecond
		}
		if req.PageSize != nil && *req.PageSize > 0 {
			s.pageSize = *req.PageSize
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"lroMillis": s.lroDelay.Milliseconds(), "provisioningMillis": s.provDelay.Milliseconds(),
			"executionMillis": s.execDelay.Milliseconds(), "pageSize": s.pageSize,
		})
	default:
		writeError(w, http.StatusNotFound, "NotFound", "no control endpoint "+r.Method+" "+r.URL.Path, "")
	}
}

type seedRevision struct {
	Name     string   `json:"name"`
	Active   *bool    `json:"active"`
	Replicas []string `json:"replicas"`
	Health   string   `json:"health"`
	// Template overrides the app's template for this revision.
	Template map[string]any `json:"template"`
}

type seedExecution struct {
	Name   string `json:"name"`
	Status string `json:"status"`
}

func parseID(id, kind string) (sub, rg, name string, ok bool) {
	re := appPath
	if kind == "jobs" {
		re = jobPath
	}
	m := re.FindStringSubmatch(id)
	if m == nil || m[4] != "" {
		return "", "", "", false
	}
	return m[1], m[2], m[3], true
}

// seedApp stores an app as provisioned, with its revisions (one from its template by default).
func (s *server) seedApp(id string, body []byte, revs []seedRevision) *armError {
	sub, rg, name, ok := parseID(id, "containerApps")
	if !ok {
		return badRequest("BadControlRequest", "id must be a container app resource ID, not %q", id)
	}
	var model armappcontainers.ContainerApp
	raw, aerr := decodeModel(body, &model, specVersion, "ContainerApp")
	if aerr != nil {
		return aerr
	}
	m, _ := raw.(map[string]any)
	if m == nil {
		return badRequest("BadControlRequest", "app must be an object")
	}
	for _, k := range []string{"id", "name", "type", "systemData"} {
		delete(m, k)
	}
	if str(m, "location") == "" {
		m["location"] = "East US"
	}
	props := obj(m, "properties", true)
	for _, k := range []string{"provisioningState", "runningStatus", "latestRevisionName", "latestReadyRevisionName",
		"latestRevisionFqdn", "outboundIpAddresses", "eventStreamEndpoint", "customDomainVerificationId", "deploymentErrors"} {
		delete(props, k)
	}
	if ingress := obj(obj(props, "configuration", false), "ingress", false); ingress != nil {
		delete(ingress, "fqdn")
	}
	if str(props, "managedEnvironmentId") == "" && str(props, "environmentId") == "" {
		// Every real app lives in an environment; a seed without one gets the stand-in's.
		props["managedEnvironmentId"] = defaultEnvironment(sub, rg)
	}
	normalize(props)
	template := obj(props, "template", true)
	a := &app{ID: resourceID(sub, rg, "containerApps", name), Sub: sub, RG: rg, Name: name, Body: m, ProvState: "Succeeded",
		Created: now(), verificationID: strings.ToUpper(randomHex(32))}
	if len(revs) == 0 {
		suffix := str(template, "revisionSuffix")
		if suffix == "" {
			suffix = randomSuffix()
		}
		revs = []seedRevision{{Name: name + "--" + suffix}}
	}
	for i, sr := range revs {
		t := template
		if sr.Template != nil {
			t = sr.Template
		}
		rev := &revision{Name: sr.Name, Template: deepCopy(t).(map[string]any), Created: now().Add(time.Duration(i-len(revs)) * time.Second),
			Active: sr.Active == nil || *sr.Active, ProvState: "Provisioned", Health: sr.Health}
		rev.LastActive = rev.Created
		if rev.Name == "" {
			rev.Name = name + "--" + randomSuffix()
		}
		if rev.Health == "crashing" {
			rev.CrashSince = now()
		}
		if rev.Health == "" {
			s.applyHealthRules(rev)
		}
		rev.Replicas = sr.Replicas
		if len(rev.Replicas) == 0 {
			rev.Replicas = s.replicaNames(rev)
		}
		a.Revisions = append(a.Revisions, rev)
	}
	s.apps[strings.ToLower(a.ID)] = a
	return nil
}

func (s *server) seedJob(id string, body []byte, execs []seedExecution) *armError {
	sub, rg, name, ok := parseID(id, "jobs")
	if !ok {
		return badRequest("BadControlRequest", "id must be a job resource ID, not %q", id)
	}
	var model armappcontainers.Job
	raw, aerr := decodeModel(body, &model, specVersion, "Job")
	if aerr != nil {
		return aerr
	}
	m, _ := raw.(map[string]any)
	if m == nil {
		return badRequest("BadControlRequest", "job must be an object")
	}
	for _, k := range []string{"id", "name", "type", "systemData"} {
		delete(m, k)
	}
	if str(m, "location") == "" {
		m["location"] = "East US"
	}
	props := obj(m, "properties", true)
	for _, k := range []string{"provisioningState", "outboundIpAddresses", "eventStreamEndpoint"} {
		delete(props, k)
	}
	if str(props, "environmentId") == "" {
		props["environmentId"] = defaultEnvironment(sub, rg)
	}
	normalize(props)
	j := &job{ID: resourceID(sub, rg, "jobs", name), Sub: sub, RG: rg, Name: name, Body: m, ProvState: "Succeeded", Created: now()}
	for i, se := range execs {
		status := se.Status
		if status == "" {
			status = "Succeeded"
		}
		start := now().Add(time.Duration(i-len(execs)) * time.Minute)
		e := &execution{Name: se.Name, Template: executionTemplate(obj(props, "template", false)), Start: start,
			EndAt: start.Add(30 * time.Second), Status: status, Ended: status != "Running"}
		if status == "Running" {
			e.EndAt = now().Add(s.execDelay)
		}
		j.Executions = append(j.Executions, e)
	}
	s.jobs[strings.ToLower(j.ID)] = j
	return nil
}

// defaultEnvironment is the managed environment seeded resources without one are put in.
func defaultEnvironment(sub, rg string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.App/managedEnvironments/standin", sub, rg)
}
