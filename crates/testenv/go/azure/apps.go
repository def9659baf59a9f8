package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/appcontainers/armappcontainers/v3"
)

type app struct {
	ID, Sub, RG, Name string
	Body              map[string]any // as the client sent it, merged; read-only properties are added on output
	ProvState         string
	Revisions         []*revision
	Op                *operation
	Created           time.Time
	// verificationID is the app's customDomainVerificationId.
	verificationID string
}

type revision struct {
	Name        string
	Template    map[string]any
	Created     time.Time
	LastActive  time.Time
	Active      bool
	ProvState   string // Provisioning, Provisioned, Failed, Deprovisioning, Deprovisioned
	ReadyAt     time.Time
	Health      string // "", healthy, unhealthy, crashing (set by the control API)
	CrashSince  time.Time
	ProvError   string
	Replicas    []string
	ReplicaSeed time.Time
}

var (
	appPath      = regexp.MustCompile(`(?i)^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.App/containerApps/([^/]+)(/.*)?$`)
	jobPath      = regexp.MustCompile(`(?i)^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.App/jobs/([^/]+)(/.*)?$`)
	opPath       = regexp.MustCompile(`(?i)^/subscriptions/([^/]+)/providers/Microsoft\.App/locations/([^/]+)/(containerapp|containerappsjob)Operation(Statuses|Results)/([^/]+)$`)
	revisionPath = regexp.MustCompile(`(?i)^/revisions(?:/([^/]+)(?:/(activate|deactivate|restart|replicas)(?:/([^/]+))?)?)?$`)
	jobSubPath   = regexp.MustCompile(`(?i)^/(start|executions)(?:/([^/]+)(?:/(stop))?)?$`)
	labelFormat  = regexp.MustCompile(`^[a-z][a-z0-9-]*[a-z0-9]$|^[a-z]$`)
	suffixFormat = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
)

func resourceID(sub, rg, kind, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.App/%s/%s", sub, rg, kind, name)
}

func (s *server) routeARM(w http.ResponseWriter, r *http.Request, body []byte) {
	p := r.URL.Path
	if m := opPath.FindStringSubmatch(p); m != nil && r.Method == http.MethodGet {
		if strings.EqualFold(m[4], "Statuses") {
			s.operationStatus(w, m[1], strings.ToLower(m[3]), m[5])
		} else {
			s.operationResult(w, m[1], strings.ToLower(m[3]), m[5])
		}
		return
	}
	if m := appPath.FindStringSubmatch(p); m != nil {
		id := resourceID(m[1], m[2], "containerApps", m[3])
		if m[4] == "" {
			switch r.Method {
			case http.MethodGet:
				s.getApp(w, id)
			case http.MethodPut:
				s.putApp(w, r, id, m[1], m[2], m[3], body, false)
			case http.MethodPatch:
				s.putApp(w, r, id, m[1], m[2], m[3], body, true)
			case http.MethodDelete:
				s.deleteApp(w, r, id)
			default:
				writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "method not allowed", "")
			}
			return
		}
		if rm := revisionPath.FindStringSubmatch(m[4]); rm != nil {
			s.revisionRequest(w, r, id, rm[1], strings.ToLower(rm[2]), rm[3])
			return
		}
	}
	if m := jobPath.FindStringSubmatch(p); m != nil {
		id := resourceID(m[1], m[2], "jobs", m[3])
		if m[4] == "" {
			switch r.Method {
			case http.MethodGet:
				s.getJob(w, id)
			case http.MethodPut:
				s.putJob(w, r, id, m[1], m[2], m[3], body, false)
			case http.MethodPatch:
				s.putJob(w, r, id, m[1], m[2], m[3], body, true)
			case http.MethodDelete:
				s.deleteJob(w, r, id)
			default:
				writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "method not allowed", "")
			}
			return
		}
		if jm := jobSubPath.FindStringSubmatch(m[4]); jm != nil {
			s.jobRequest(w, r, id, strings.ToLower(jm[1]), jm[2], jm[3] != "", body)
			return
		}
	}
	writeError(w, http.StatusNotFound, "InvalidResourceType", "The resource type could not be found in the namespace 'Microsoft.App' for api version '"+r.URL.Query().Get("api-version")+"'.", "")
}

// notFound is ARM's 404. For a top-level resource the message names it as ARM does
// ("Microsoft.App/containerApps/web" under resource group "rg").
func notFound(w http.ResponseWriter, kind, id string) {
	parts := strings.Split(id, "/")
	resource, rg := id, ""
	if len(parts) == 9 {
		resource, rg = "Microsoft.App/"+parts[7]+"/"+parts[8], parts[4]
	}
	msg := fmt.Sprintf("The Resource '%s' under resource group '%s' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix", resource, rg)
	if rg == "" {
		msg = fmt.Sprintf("The %s '%s' was not found.", kind, id)
	}
	writeError(w, http.StatusNotFound, "ResourceNotFound", msg, "")
}

func (s *server) getApp(w http.ResponseWriter, id string) {
	a := s.apps[strings.ToLower(id)]
	if a == nil {
		notFound(w, "containerApps", id)
		return
	}
	writeJSON(w, http.StatusOK, s.appView(a))
}

// appView is the app as GET returns it.
func (s *server) appView(a *app) map[string]any {
	out := deepCopy(a.Body).(map[string]any)
	out["id"] = a.ID
	out["name"] = a.Name
	out["type"] = "Microsoft.App/containerApps"
	s.identityView(out, a.ID)
	out["systemData"] = map[string]any{
		"createdBy": "tidegate-standin", "createdByType": "Application", "createdAt": timestamp(a.Created),
		"lastModifiedBy": "tidegate-standin", "lastModifiedByType": "Application", "lastModifiedAt": timestamp(a.Created),
	}
	props := obj(out, "properties", true)
	props["provisioningState"] = a.ProvState
	props["runningStatus"] = "Running"
	if env := str(props, "managedEnvironmentId"); env != "" {
		props["environmentId"] = env
	} else if env := str(props, "environmentId"); env != "" {
		props["managedEnvironmentId"] = env
	}
	props["outboundIpAddresses"] = []any{"127.0.0.1"}
	props["eventStreamEndpoint"] = fmt.Sprintf("https://%s/subscriptions/%s/resourceGroups/%s/containerApps/%s/eventstream", s.domain, a.Sub, a.RG, a.Name)
	props["customDomainVerificationId"] = a.verificationID
	if latest := a.latest(); latest != nil {
		props["latestRevisionName"] = latest.Name
		props["latestRevisionFqdn"] = latest.Name + "." + s.domain
	}
	if ready := a.latestReady(); ready != nil {
		props["latestReadyRevisionName"] = ready.Name
	}
	cfg := obj(props, "configuration", true)
	if _, ok := cfg["activeRevisionsMode"]; !ok {
		cfg["activeRevisionsMode"] = "Single"
	}
	if ingress := obj(cfg, "ingress", false); ingress != nil {
		ingress["fqdn"] = a.Name + "." + s.domain
		if _, ok := ingress["traffic"]; !ok {
			ingress["traffic"] = []any{map[string]any{"weight": 100, "latestRevision": true}}
		}
	}
	// Secret values are write-only.
	if secrets, ok := cfg["secrets"].([]any); ok {
		for _, sec := range secrets {
			if m, ok := sec.(map[string]any); ok {
				delete(m, "value")
			}
		}
	}
	return out
}

func (a *app) latest() *revision {
	if len(a.Revisions) == 0 {
		return nil
	}
	return a.Revisions[len(a.Revisions)-1]
}

func (a *app) latestReady() *revision {
	for i := len(a.Revisions) - 1; i >= 0; i-- {
		if a.Revisions[i].ProvState == "Provisioned" {
			return a.Revisions[i]
		}
	}
	return nil
}

func (a *app) revision(name string) *revision {
	for _, r := range a.Revisions {
		if strings.EqualFold(r.Name, name) {
			return r
		}
	}
	return nil
}

func (a *app) multiple() bool {
	cfg := obj(obj(a.Body, "properties", false), "configuration", false)
	return strings.EqualFold(str(cfg, "activeRevisionsMode"), "Multiple")
}

func (a *app) trafficEntries() []map[string]any {
	ingress := obj(obj(obj(a.Body, "properties", false), "configuration", false), "ingress", false)
	list, _ := ingress["traffic"].([]any)
	var out []map[string]any
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// weights is where traffic goes now: revision name → percent. In Single mode everything goes to
// the latest ready revision; in Multiple mode `latestRevision: true` entries follow the latest
// ready revision and named entries keep their revision.
func (a *app) weights() map[string]float64 {
	out := map[string]float64{}
	ready := a.latestReady()
	if !a.multiple() {
		if ready != nil {
			out[ready.Name] = 100
		}
		return out
	}
	entries := a.trafficEntries()
	if len(entries) == 0 && ready != nil {
		out[ready.Name] = 100
	}
	for _, e := range entries {
		w, _ := num(e, "weight")
		name := str(e, "revisionName")
		if latest, _ := e["latestRevision"].(bool); latest {
			if ready == nil {
				continue
			}
			name = ready.Name
		}
		if rev := a.revision(name); rev != nil {
			out[rev.Name] += w
		}
	}
	return out
}

// labelled is the revision a traffic label points at.
func (a *app) labelled(label string) *revision {
	for _, e := range a.trafficEntries() {
		if !strings.EqualFold(str(e, "label"), label) {
			continue
		}
		if latest, _ := e["latestRevision"].(bool); latest {
			return a.latestReady()
		}
		return a.revision(str(e, "revisionName"))
	}
	return nil
}

func (s *server) putApp(w http.ResponseWriter, r *http.Request, id, sub, rg, name string, body []byte, patch bool) {
	var model armappcontainers.ContainerApp
	raw, aerr := decodeModel(body, &model, r.URL.Query().Get("api-version"), "ContainerApp")
	if aerr != nil {
		writeArmError(w, http.StatusBadRequest, aerr)
		return
	}
	key := strings.ToLower(id)
	existing := s.apps[key]
	if patch && existing == nil {
		notFound(w, "containerApps", id)
		return
	}
	if existing != nil && existing.Op != nil && !existing.Op.finished {
		writeError(w, http.StatusConflict, "ContainerAppOperationInProgress", fmt.Sprintf(
			"Cannot modify a container app '%s' because there is a pending operation in progress. Please try again later.", name), "")
		return
	}
	var next map[string]any
	if patch {
		next = mergePatch(deepCopy(existing.Body), raw).(map[string]any)
	} else {
		next, _ = raw.(map[string]any)
		if next == nil {
			writeError(w, http.StatusBadRequest, "InvalidRequestContent", "The request content must be a JSON object.", "")
			return
		}
	}
	for _, k := range []string{"id", "name", "type", "systemData"} {
		delete(next, k)
	}
	if str(next, "location") == "" {
		writeError(w, http.StatusBadRequest, "LocationRequired", "The location property is required for this definition.", "location")
		return
	}
	props := obj(next, "properties", true)
	for _, k := range []string{"provisioningState", "runningStatus", "latestRevisionName", "latestReadyRevisionName",
		"latestRevisionFqdn", "outboundIpAddresses", "eventStreamEndpoint", "customDomainVerificationId", "deploymentErrors"} {
		delete(props, k)
	}
	if str(props, "managedEnvironmentId") == "" && str(props, "environmentId") == "" {
		writeError(w, http.StatusBadRequest, "ManagedEnvironmentIdRequired", "properties.managedEnvironmentId is required.", "properties.managedEnvironmentId")
		return
	}
	if ingress := obj(obj(props, "configuration", false), "ingress", false); ingress != nil {
		delete(ingress, "fqdn")
	}
	normalize(props)
	template := obj(props, "template", false)
	if template == nil {
		writeError(w, http.StatusBadRequest, "InvalidRequestContent", "properties.template is required.", "properties.template")
		return
	}
	if containers, _ := template["containers"].([]any); len(containers) == 0 {
		writeError(w, http.StatusBadRequest, "ContainerAppInvalidTemplate", "properties.template.containers must hold at least one container.", "properties.template.containers")
		return
	}

	if existing != nil {
		keepSecretValues(existing.Body, next)
	}
	a := existing
	created := false
	if a == nil {
		a = &app{ID: id, Sub: sub, RG: rg, Name: name, Created: now(), verificationID: strings.ToUpper(randomHex(32))}
		created = true
	}
	var newRev *revision
	var oldTemplate map[string]any
	if latest := a.latest(); latest != nil {
		oldTemplate = latest.Template
	}
	if oldTemplate == nil || !jsonEqual(oldTemplate, template) {
		suffix := str(template, "revisionSuffix")
		if suffix == "" {
			suffix = randomSuffix()
		} else if !suffixFormat.MatchString(suffix) || len(name)+2+len(suffix) > 64 {
			writeError(w, http.StatusBadRequest, "ContainerAppInvalidRevisionSuffix", fmt.Sprintf(
				"Invalid revision suffix '%s': a suffix consists of lower case alphanumeric characters or '-', starts and ends with an alphanumeric character, and the revision name is at most 64 characters.", suffix), "properties.template.revisionSuffix")
			return
		}
		revName := name + "--" + suffix
		if a.revision(revName) != nil {
			writeError(w, http.StatusBadRequest, "ContainerAppRevisionAlreadyExists", fmt.Sprintf(
				"A revision with name '%s' already exists; use a different revisionSuffix.", revName), "properties.template.revisionSuffix")
			return
		}
		newRev = &revision{Name: revName, Template: deepCopy(template).(map[string]any), Created: now(), Active: true,
			ProvState: "Provisioning", ReadyAt: now().Add(s.provDelay)}
		newRev.LastActive = newRev.Created
	}
	if aerr := s.validateTraffic(a, next, newRev); aerr != nil {
		writeArmError(w, http.StatusBadRequest, aerr)
		return
	}
	a.Body = next
	if newRev != nil {
		s.applyHealthRules(newRev)
		a.Revisions = append(a.Revisions, newRev)
	}
	a.ProvState = "InProgress"
	s.apps[key] = a
	op := &operation{Kind: "containerapp", Location: normLocation(str(next, "location")), Sub: sub, Resource: key,
		APIVersion: r.URL.Query().Get("api-version")}
	if newRev != nil && newRev.ReadyAt.After(now().Add(s.lroDelay)) {
		op.DoneAt = newRev.ReadyAt
	}
	op.finish = func(op *operation) {
		a.ProvState = "Succeeded"
		if newRev != nil && newRev.ProvState == "Failed" {
			a.ProvState = "Failed"
			op.Failed = &armError{Code: "ContainerAppOperationError", Message: fmt.Sprintf(
				"Failed to provision revision for container app '%s'. Error details: %s", a.Name, newRev.ProvError)}
		}
	}
	op.result = func() any { return s.appView(a) }
	a.Op = op
	s.startOperation(w, op)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	} else if patch {
		status = http.StatusAccepted
	}
	if patch {
		// PATCH answers 202 with the operation headers and no body, as in ContainerApps_Patch.json.
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, s.appView(a))
}

// validateTraffic checks the ingress traffic of body (the app's next state).
func (s *server) validateTraffic(a *app, body map[string]any, newRev *revision) *armError {
	ingress := obj(obj(obj(body, "properties", false), "configuration", false), "ingress", false)
	list, _ := ingress["traffic"].([]any)
	if len(list) == 0 {
		return nil
	}
	total := 0.0
	labels := map[string]bool{}
	for i, e := range list {
		m, _ := e.(map[string]any)
		target := fmt.Sprintf("properties.configuration.ingress.traffic[%d]", i)
		weight, _ := num(m, "weight")
		if weight < 0 || weight > 100 {
			return &armError{Code: "ContainerAppInvalidTrafficWeight", Message: "Traffic weight must be between 0 and 100.", Target: target}
		}
		total += weight
		name := str(m, "revisionName")
		latest, _ := m["latestRevision"].(bool)
		if latest == (name != "") {
			return &armError{Code: "ContainerAppInvalidTrafficConfiguration", Message: "Each traffic entry must set either revisionName or latestRevision: true, not both.", Target: target}
		}
		if name != "" {
			rev := a.revision(name)
			if rev == nil && (newRev == nil || !strings.EqualFold(newRev.Name, name)) {
				return &armError{Code: "ContainerAppRevisionNotFound", Message: fmt.Sprintf("Revision '%s' does not exist for container app '%s'.", name, a.Name), Target: target}
			}
			if rev != nil && !rev.Active && weight > 0 {
				return &armError{Code: "ContainerAppRevisionNotActive", Message: fmt.Sprintf("Cannot assign traffic to revision '%s' because it is not active.", name), Target: target}
			}
		}
		if label := str(m, "label"); label != "" {
			if !labelFormat.MatchString(label) || len(label) > 64 {
				return &armError{Code: "ContainerAppInvalidTrafficLabel", Message: fmt.Sprintf("Invalid label '%s': a label consists of lower case alphanumeric characters or '-', starts with a letter and ends with an alphanumeric character.", label), Target: target}
			}
			if labels[label] {
				return &armError{Code: "ContainerAppDuplicateTrafficLabel", Message: fmt.Sprintf("Label '%s' is used more than once.", label), Target: target}
			}
			labels[label] = true
		}
	}
	if total != 100 {
		return &armError{Code: "ContainerAppInvalidTrafficWeight", Message: fmt.Sprintf("The sum of traffic weights must be 100, it is %g.", total), Target: "properties.configuration.ingress.traffic"}
	}
	return nil
}

func (s *server) deleteApp(w http.ResponseWriter, r *http.Request, id string) {
	key := strings.ToLower(id)
	a := s.apps[key]
	if a == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if a.Op != nil && !a.Op.finished {
		writeError(w, http.StatusConflict, "ContainerAppOperationInProgress", fmt.Sprintf(
			"Cannot delete container app '%s' because there is a pending operation in progress.", a.Name), "")
		return
	}
	a.ProvState = "Deleting"
	op := &operation{Kind: "containerapp", Location: normLocation(str(a.Body, "location")), Sub: a.Sub, Resource: key,
		APIVersion: r.URL.Query().Get("api-version")}
	op.finish = func(*operation) { delete(s.apps, key) }
	a.Op = op
	s.startOperation(w, op)
	w.WriteHeader(http.StatusAccepted)
}

// tickApp provisions revisions whose time has come.
func (s *server) tickApp(a *app, t time.Time) {
	for _, rev := range a.Revisions {
		if rev.ProvState != "Provisioning" || t.Before(rev.ReadyAt) {
			continue
		}
		if rev.Health == "unhealthy" || rev.Health == "crashing" {
			rev.ProvState = "Failed"
			rev.ProvError = "The TargetPort 80 does not match the listening port, or the container exited; the revision's replicas did not become ready (stand-in: marked " + rev.Health + ")."
			continue
		}
		rev.ProvState = "Provisioned"
		rev.Replicas = s.replicaNames(rev)
		if !a.multiple() {
			for _, other := range a.Revisions {
				if other != rev && other.Active {
					other.Active = false
					other.LastActive = t
					other.Replicas = nil
				}
			}
		}
	}
}

func (s *server) replicaNames(rev *revision) []string {
	n := 1
	if min, ok := num(obj(rev.Template, "scale", false), "minReplicas"); ok && min > 1 {
		n = int(min)
	}
	hash := randomHex(5)[:9]
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%s-%s", rev.Name, hash, randomSuffix()[:5])
	}
	return out
}

func (s *server) applyHealthRules(rev *revision) {
	for _, rule := range s.health {
		if rule.Revision != "" && strings.EqualFold(rule.Revision, rev.Name) {
			rev.setHealth(rule.Health)
		}
		if rule.Image != "" {
			for _, c := range containers(rev.Template) {
				if strings.Contains(str(c, "image"), rule.Image) {
					rev.setHealth(rule.Health)
				}
			}
		}
	}
}

func (rev *revision) setHealth(h string) {
	if h == "crashing" && rev.Health != "crashing" {
		rev.CrashSince = now()
	}
	rev.Health = h
}

func containers(template map[string]any) []map[string]any {
	list, _ := template["containers"].([]any)
	var out []map[string]any
	for _, c := range list {
		if m, ok := c.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// healthState, runningState and whether the revision serves traffic.
func (rev *revision) state() (health, running string, serving bool) {
	switch {
	case rev.ProvState == "Provisioning":
		return "None", "Processing", false
	case rev.ProvState == "Failed":
		return "Unhealthy", "Failed", false
	case !rev.Active:
		return "None", "Stopped", false
	case rev.Health == "unhealthy", rev.Health == "crashing":
		return "Unhealthy", "Degraded", false
	}
	return "Healthy", "Running", true
}

func (s *server) revisionView(a *app, rev *revision) map[string]any {
	health, running, _ := rev.state()
	props := map[string]any{
		"createdTime":       timestamp(rev.Created),
		"lastActiveTime":    timestamp(rev.LastActive),
		"fqdn":              rev.Name + "." + s.domain,
		"template":          deepCopy(rev.Template),
		"active":            rev.Active,
		"replicas":          len(rev.activeReplicas()),
		"trafficWeight":     int(a.weights()[rev.Name]),
		"healthState":       health,
		"provisioningState": rev.ProvState,
		"runningState":      running,
	}
	if rev.ProvError != "" {
		props["provisioningError"] = rev.ProvError
	}
	return map[string]any{
		"id":         a.ID + "/revisions/" + rev.Name,
		"name":       rev.Name,
		"type":       "Microsoft.App/containerApps/revisions",
		"properties": props,
	}
}

func (rev *revision) activeReplicas() []string {
	if !rev.Active || rev.ProvState != "Provisioned" {
		return nil
	}
	return rev.Replicas
}

func (s *server) replicaView(a *app, rev *revision, name string) map[string]any {
	restarts := 0
	ready, started, state := true, true, "Running"
	if rev.Health == "crashing" {
		restarts = 1 + int(now().Sub(rev.CrashSince)/time.Second)
		ready, started, state = false, false, "Waiting"
	} else if rev.Health == "unhealthy" {
		ready = false
	}
	var cs []any
	for _, c := range containers(rev.Template) {
		cs = append(cs, map[string]any{
			"name":                str(c, "name"),
			"containerId":         "containerd://" + randomHexFrom(name+str(c, "name")),
			"ready":               ready,
			"started":             started,
			"restartCount":        restarts,
			"runningState":        state,
			"runningStateDetails": "",
			"logStreamEndpoint":   fmt.Sprintf("%s/subscriptions/%s/resourceGroups/%s/containerApps/%s/revisions/%s/replicas/%s/containers/%s/logstream", s.armURL, a.Sub, a.RG, a.Name, rev.Name, name, str(c, "name")),
			"execEndpoint":        fmt.Sprintf("%s/subscriptions/%s/resourceGroups/%s/containerApps/%s/revisions/%s/replicas/%s/containers/%s/exec", s.armURL, a.Sub, a.RG, a.Name, rev.Name, name, str(c, "name")),
		})
	}
	replicaState := "Running"
	if !ready {
		replicaState = "NotRunning"
	}
	return map[string]any{
		"id":   a.ID + "/revisions/" + rev.Name + "/replicas/" + name,
		"name": name,
		"type": "Microsoft.App/containerApps/revisions/replicas",
		"properties": map[string]any{
			"createdTime":         timestamp(rev.Created),
			"runningState":        replicaState,
			"runningStateDetails": "",
			"containers":          cs,
			"initContainers":      []any{},
		},
	}
}

// randomHexFrom is a stable 64-hex-digit ID derived from seed.
func randomHexFrom(seed string) string {
	r := rand.New(rand.NewPCG(uint64(len(seed)), fnv(seed)))
	b := make([]byte, 32)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return fmt.Sprintf("%x", b)
}

func fnv(s string) uint64 {
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 0x100000001b3
	}
	return h
}

func (s *server) revisionRequest(w http.ResponseWriter, r *http.Request, appID, revName, action, replica string) {
	a := s.apps[strings.ToLower(appID)]
	if a == nil {
		notFound(w, "containerApps", appID)
		return
	}
	if revName == "" {
		if r.Method != http.MethodGet {
			writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "method not allowed", "")
			return
		}
		revs := append([]*revision{}, a.Revisions...)
		sort.SliceStable(revs, func(i, j int) bool { return revs[i].Created.After(revs[j].Created) })
		var items []any
		for _, rev := range revs {
			items = append(items, s.revisionView(a, rev))
		}
		writeJSON(w, http.StatusOK, s.page(r, items))
		return
	}
	rev := a.revision(revName)
	if rev == nil {
		notFound(w, "revisions", appID+"/revisions/"+revName)
		return
	}
	switch action {
	case "":
		if r.Method != http.MethodGet {
			writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "method not allowed", "")
			return
		}
		writeJSON(w, http.StatusOK, s.revisionView(a, rev))
	case "replicas":
		if r.Method != http.MethodGet {
			writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "method not allowed", "")
			return
		}
		if replica == "" {
			items := []any{}
			for _, name := range rev.activeReplicas() {
				items = append(items, s.replicaView(a, rev, name))
			}
			writeJSON(w, http.StatusOK, map[string]any{"value": items})
			return
		}
		for _, name := range rev.activeReplicas() {
			if strings.EqualFold(name, replica) {
				writeJSON(w, http.StatusOK, s.replicaView(a, rev, name))
				return
			}
		}
		notFound(w, "replicas", appID+"/revisions/"+revName+"/replicas/"+replica)
	default:
		if r.Method != http.MethodPost {
			writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "method not allowed", "")
			return
		}
		s.revisionAction(w, a, rev, action)
	}
}

// revisionAction activates, deactivates or restarts a revision. These are synchronous in the
// REST spec and the SDK (200, no body), not long-running.
func (s *server) revisionAction(w http.ResponseWriter, a *app, rev *revision, action string) {
	if a.Op != nil && !a.Op.finished {
		writeError(w, http.StatusConflict, "ContainerAppOperationInProgress", fmt.Sprintf(
			"Cannot modify a container app '%s' because there is a pending operation in progress. Please try again later.", a.Name), "")
		return
	}
	switch action {
	case "activate":
		if !rev.Active {
			rev.Active = true
			rev.LastActive = now()
			if rev.ProvState == "Provisioned" {
				rev.Replicas = s.replicaNames(rev)
			}
		}
	case "deactivate":
		if a.weights()[rev.Name] > 0 {
			writeError(w, http.StatusBadRequest, "ContainerAppRevisionHasTraffic", fmt.Sprintf(
				"Cannot deactivate revision '%s' because it receives traffic; move its traffic first.", rev.Name), "")
			return
		}
		if rev.Active {
			rev.Active = false
			rev.LastActive = now()
			rev.Replicas = nil
		}
	case "restart":
		if !rev.Active {
			writeError(w, http.StatusBadRequest, "ContainerAppRevisionNotActive", fmt.Sprintf("Cannot restart revision '%s' because it is not active.", rev.Name), "")
			return
		}
		if rev.ProvState == "Provisioned" {
			rev.Replicas = s.replicaNames(rev)
		}
		if rev.Health == "crashing" {
			rev.CrashSince = now()
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
}

// keepSecretValues gives a secret that is sent without a value (and without a Key Vault
// reference) the value stored under its name: GET never returns secret values, so a client that
// GETs and PUTs back the app would otherwise erase them.
func keepSecretValues(stored, next map[string]any) {
	values := map[string]any{}
	old, _ := obj(obj(stored, "properties", false), "configuration", false)["secrets"].([]any)
	for _, sec := range old {
		if m, ok := sec.(map[string]any); ok && m["value"] != nil {
			values[str(m, "name")] = m["value"]
		}
	}
	secrets, _ := obj(obj(next, "properties", false), "configuration", false)["secrets"].([]any)
	for _, sec := range secrets {
		m, ok := sec.(map[string]any)
		if !ok || m["value"] != nil || m["keyVaultUrl"] != nil {
			continue
		}
		if v, ok := values[str(m, "name")]; ok {
			m["value"] = v
		}
	}
}
