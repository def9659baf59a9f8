package main

// Azure Container Registry Tasks (Microsoft.ContainerRegistry): registries (read-only, seeded by
// the control API), tasks, scheduleRun, runs (get, list with $filter and $top, listLogSasUrl,
// cancel). Request bodies are decoded into armcontainerregistry v1.2.0's models with unknown
// keys rejected (decodeModel). What a run does is decided by the test through the control API:
// each run takes the next outcome queued for its task (or for one-off runs), and goes Queued ->
// Running -> that outcome's status. See docs/azure-standin.md.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerregistry/armcontainerregistry"
)

// acrAPIVersions: the examples' (and Tidegate's) version, and the ones armcontainerregistry
// v1.2.0 sends for tasks and runs ("Generated from API version 2019-06-01-preview") and for
// registries (2023-07-01).
var acrAPIVersions = map[string]bool{"2025-03-01-preview": true, "2019-06-01-preview": true, "2023-07-01": true}

var registryPath = regexp.MustCompile(`(?i)^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.ContainerRegistry/registries/([^/]+)(/.*)?$`)

type acrState struct {
	registries map[string]*acrRegistry // by lower-case resource ID
	logs       map[string]*acrRun      // by the signature of its log link
	seq        int
}

type acrRegistry struct {
	ID, Sub, RG, Name, Location, LoginServer string
	Created                                  time.Time
	Tasks                                    map[string]*acrTask // by lower-case name
	Runs                                     []*acrRun
	Next                                     map[string][]runOutcome // by lower-case task name; "" for one-off runs
}

type acrTask struct {
	Name    string
	Body    map[string]any
	Created time.Time
}

// runOutcome is what the test says a run does.
type runOutcome struct {
	Status          string     `json:"status"`
	OutputImages    []acrImage `json:"outputImages"`
	Log             string     `json:"log"`
	RunErrorMessage string     `json:"runErrorMessage"`
	QueuedMillis    *int       `json:"queuedMillis"`
	RunningMillis   *int       `json:"runningMillis"`
}

type acrImage struct {
	Registry   string `json:"registry"`
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	Digest     string `json:"digest,omitempty"`
}

type acrRun struct {
	ID, Task, RunType string
	Platform          map[string]any
	Created           time.Time
	StartAt, EndAt    time.Time
	Status            string
	Outcome           runOutcome
	Ended             bool
	LogToken          string
	Seeded            map[string]any // properties of a run seeded by the control API
}

func (s *server) acr() *acrState {
	if s.acrData == nil {
		s.acrData = &acrState{registries: map[string]*acrRegistry{}, logs: map[string]*acrRun{}}
	}
	return s.acrData
}

func isACRPath(p string) bool {
	return registryPath.MatchString(p)
}

func (s *server) routeACR(w http.ResponseWriter, r *http.Request, body []byte) {
	v := r.URL.Query().Get("api-version")
	if v == "" {
		writeError(w, http.StatusBadRequest, "MissingApiVersionParameter",
			"The api-version query parameter (?api-version=) is required for all requests.", "")
		return
	}
	if !acrAPIVersions[v] {
		writeError(w, http.StatusBadRequest, "InvalidApiVersionParameter", fmt.Sprintf(
			"The api-version '%s' is invalid. The supported versions are '2019-06-01-preview,2023-07-01,2025-03-01-preview'.", v), "")
		return
	}
	m := registryPath.FindStringSubmatch(r.URL.Path)
	id := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ContainerRegistry/registries/%s", m[1], m[2], m[3])
	reg := s.acr().registries[strings.ToLower(id)]
	if reg == nil {
		writeError(w, http.StatusNotFound, "ResourceNotFound", fmt.Sprintf(
			"The Resource 'Microsoft.ContainerRegistry/registries/%s' under resource group '%s' was not found.", m[3], m[2]), "")
		return
	}
	sub := strings.Split(strings.Trim(m[4], "/"), "/")
	if m[4] == "" || m[4] == "/" {
		sub = nil
	}
	method := r.Method
	switch {
	case len(sub) == 0 && method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.registryView(reg))
	case len(sub) == 1 && strings.EqualFold(sub[0], "scheduleRun") && method == http.MethodPost:
		s.scheduleRun(w, r, reg, body)
	case len(sub) == 1 && strings.EqualFold(sub[0], "runs") && method == http.MethodGet:
		s.listRuns(w, r, reg)
	case len(sub) >= 2 && strings.EqualFold(sub[0], "runs"):
		run := reg.run(sub[1])
		if run == nil {
			writeError(w, http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("The run '%s' was not found in registry '%s'.", sub[1], reg.Name), "")
			return
		}
		switch {
		case len(sub) == 2 && method == http.MethodGet:
			writeJSON(w, http.StatusOK, s.runView(reg, run))
		case len(sub) == 3 && strings.EqualFold(sub[2], "listLogSasUrl") && method == http.MethodPost:
			if run.LogToken == "" {
				run.LogToken = randomHex(16)
			}
			s.acr().logs[run.LogToken] = run
			link := fmt.Sprintf("%s/_standin/acr/logs/%s.log?se=%s&sp=r&sig=%s", s.armURL, run.ID,
				url.QueryEscape(now().Add(time.Hour).Format(time.RFC3339)), run.LogToken)
			writeJSON(w, http.StatusOK, map[string]any{"logLink": link})
		case len(sub) == 3 && strings.EqualFold(sub[2], "cancel") && method == http.MethodPost:
			if !run.Ended {
				run.Ended, run.Status, run.EndAt = true, "Canceled", now()
			}
			w.WriteHeader(http.StatusOK)
		default:
			writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "method not allowed", "")
		}
	case len(sub) == 2 && strings.EqualFold(sub[0], "tasks"):
		switch method {
		case http.MethodGet:
			t := reg.Tasks[strings.ToLower(sub[1])]
			if t == nil {
				writeError(w, http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("The task '%s' was not found in registry '%s'.", sub[1], reg.Name), "")
				return
			}
			writeJSON(w, http.StatusOK, s.taskView(reg, t))
		case http.MethodPut:
			s.putTask(w, r, reg, sub[1], body)
		default:
			writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "method not allowed", "")
		}
	default:
		writeError(w, http.StatusNotFound, "InvalidResourceType", "The resource type could not be found in the namespace 'Microsoft.ContainerRegistry' for api version '"+v+"'.", "")
	}
}

func (reg *acrRegistry) run(id string) *acrRun {
	for _, run := range reg.Runs {
		if strings.EqualFold(run.ID, id) {
			return run
		}
	}
	return nil
}

func (s *server) registryView(reg *acrRegistry) map[string]any {
	return map[string]any{
		"id": reg.ID, "name": reg.Name, "type": "Microsoft.ContainerRegistry/registries", "location": reg.Location,
		"sku": map[string]any{"name": "Premium", "tier": "Premium"},
		"properties": map[string]any{
			"loginServer": reg.LoginServer, "creationDate": timestamp(reg.Created), "provisioningState": "Succeeded",
			"adminUserEnabled": false,
		},
	}
}

// putTask creates or replaces a task (Tasks_Create): the body is checked against the Task model;
// secrets (source control tokens, secret arguments and values, the trigger endpoint) are not
// returned.
func (s *server) putTask(w http.ResponseWriter, r *http.Request, reg *acrRegistry, name string, body []byte) {
	var model armcontainerregistry.Task
	raw, aerr := decodeModel(body, &model, r.URL.Query().Get("api-version"), "Task")
	if aerr != nil {
		writeArmError(w, http.StatusBadRequest, aerr)
		return
	}
	m, _ := raw.(map[string]any)
	if m == nil || str(m, "location") == "" {
		writeError(w, http.StatusBadRequest, "LocationRequired", "The location property is required for this definition.", "location")
		return
	}
	props := obj(m, "properties", false)
	if props == nil || obj(props, "step", false) == nil || str(obj(props, "step", false), "type") == "" {
		writeError(w, http.StatusBadRequest, "InvalidRequestContent", "properties.step with a type is required.", "properties.step")
		return
	}
	if len(name) < 5 || len(name) > 50 {
		writeError(w, http.StatusBadRequest, "InvalidTaskName", "A task name is 5 to 50 characters: letters, digits, '-' and '_'.", "taskName")
		return
	}
	for _, k := range []string{"id", "name", "type", "systemData"} {
		delete(m, k)
	}
	key := strings.ToLower(name)
	existing := reg.Tasks[key]
	t := &acrTask{Name: name, Body: m, Created: now()}
	if existing != nil {
		t.Created = existing.Created
	}
	reg.Tasks[key] = t
	status := http.StatusOK
	if existing == nil {
		status = http.StatusCreated
	}
	writeJSON(w, status, s.taskView(reg, t))
}

func (s *server) taskView(reg *acrRegistry, t *acrTask) map[string]any {
	out := deepCopy(t.Body).(map[string]any)
	out["id"] = reg.ID + "/tasks/" + t.Name
	out["name"] = t.Name
	out["type"] = "Microsoft.ContainerRegistry/registries/tasks"
	if identity := obj(out, "identity", false); identity != nil && strings.Contains(str(identity, "type"), "SystemAssigned") {
		identity["principalId"] = stableUUID("principal:" + strings.ToLower(out["id"].(string)))
		identity["tenantId"] = s.tenant
	}
	props := obj(out, "properties", true)
	props["provisioningState"] = "Succeeded"
	props["creationDate"] = timestamp(t.Created)
	if _, ok := props["status"]; !ok {
		props["status"] = "Enabled"
	}
	if step := obj(props, "step", false); step != nil {
		for _, k := range []string{"arguments", "values"} {
			step[k] = withoutSecrets(step[k])
		}
	}
	if trigger := obj(props, "trigger", false); trigger != nil {
		if base := obj(trigger, "baseImageTrigger", false); base != nil {
			base["updateTriggerEndpoint"] = nil
			if _, ok := base["status"]; !ok {
				base["status"] = "Enabled"
			}
		}
		for _, list := range []string{"sourceTriggers", "timerTriggers"} {
			items, _ := trigger[list].([]any)
			for _, item := range items {
				if m, ok := item.(map[string]any); ok {
					if _, ok := m["status"]; !ok {
						m["status"] = "Enabled"
					}
					if repo := obj(m, "sourceRepository", false); repo != nil {
						delete(repo, "sourceControlAuthProperties")
					}
				}
			}
		}
	}
	return out
}

// withoutSecrets drops the entries marked isSecret from a list of arguments or values.
func withoutSecrets(v any) any {
	items, ok := v.([]any)
	if !ok {
		return v
	}
	out := []any{}
	for _, item := range items {
		if m, ok := item.(map[string]any); ok && m["isSecret"] == true {
			continue
		}
		out = append(out, item)
	}
	return out
}

// scheduleRun queues a run (Registries_ScheduleRun). The body's type picks the model.
func (s *server) scheduleRun(w http.ResponseWriter, r *http.Request, reg *acrRegistry, body []byte) {
	var probe struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(body, &probe)
	v := r.URL.Query().Get("api-version")
	var raw any
	var aerr *armError
	run := &acrRun{Created: now(), Status: "Queued", Platform: map[string]any{"os": "Linux", "architecture": "amd64"}}
	switch probe.Type {
	case "TaskRunRequest":
		var model armcontainerregistry.TaskRunRequest
		raw, aerr = decodeModel(body, &model, v, "TaskRunRequest")
		if aerr == nil {
			taskID := str(raw.(map[string]any), "taskId")
			// taskId is "the resource ID of task" (REST spec); the example sends the bare name.
			name := taskID
			if i := strings.LastIndex(taskID, "/"); i >= 0 {
				if !strings.EqualFold(taskID[:i], reg.ID+"/tasks") {
					aerr = badRequest("InvalidTaskId", "taskId %q is not a task of registry %s", taskID, reg.Name)
					break
				}
				name = taskID[i+1:]
			}
			t := reg.Tasks[strings.ToLower(name)]
			if t == nil {
				writeError(w, http.StatusNotFound, "TaskNotFound", fmt.Sprintf("The task '%s' was not found in registry '%s'.", name, reg.Name), "taskId")
				return
			}
			run.Task, run.RunType = t.Name, "AutoRun"
			if p := obj(obj(t.Body, "properties", false), "platform", false); p != nil {
				run.Platform = deepCopy(p).(map[string]any)
			}
		}
	case "EncodedTaskRunRequest":
		var model armcontainerregistry.EncodedTaskRunRequest
		raw, aerr = decodeModel(body, &model, v, "EncodedTaskRunRequest")
		if aerr == nil {
			m := raw.(map[string]any)
			if str(m, "encodedTaskContent") == "" {
				aerr = badRequest("InvalidRequestContent", "encodedTaskContent is required.")
			}
			if secs, ok := num(m, "timeout"); ok && (secs < 300 || secs > 28800) {
				aerr = badRequest("InvalidRequestContent", "timeout must be between 300 and 28800 seconds.")
			}
			run.RunType = "QuickRun"
		}
	case "FileTaskRunRequest":
		var model armcontainerregistry.FileTaskRunRequest
		raw, aerr = decodeModel(body, &model, v, "FileTaskRunRequest")
		run.RunType = "QuickRun"
	case "DockerBuildRequest":
		var model armcontainerregistry.DockerBuildRequest
		raw, aerr = decodeModel(body, &model, v, "DockerBuildRequest")
		run.RunType = "QuickBuild"
	default:
		aerr = badRequest("InvalidRequestContent", "type must be TaskRunRequest, EncodedTaskRunRequest, FileTaskRunRequest or DockerBuildRequest, not %q", probe.Type)
	}
	if aerr != nil {
		writeArmError(w, http.StatusBadRequest, aerr)
		return
	}
	if p := obj(raw.(map[string]any), "platform", false); p != nil && run.Task == "" {
		run.Platform = deepCopy(p).(map[string]any)
	}
	s.acr().seq++
	run.ID = fmt.Sprintf("ca%d", s.acr().seq)
	key := strings.ToLower(run.Task)
	if queue := reg.Next[key]; len(queue) > 0 {
		run.Outcome, reg.Next[key] = queue[0], queue[1:]
	} else {
		run.Outcome = runOutcome{Status: "Succeeded", Log: "the stand-in was told nothing about this run: it succeeds without output images\n"}
	}
	queued, running := 200*time.Millisecond, s.execDelay
	if run.Outcome.QueuedMillis != nil {
		queued = time.Duration(*run.Outcome.QueuedMillis) * time.Millisecond
	}
	if run.Outcome.RunningMillis != nil {
		running = time.Duration(*run.Outcome.RunningMillis) * time.Millisecond
	}
	run.StartAt = run.Created.Add(queued)
	run.EndAt = run.StartAt.Add(running)
	reg.Runs = append(reg.Runs, run)
	writeJSON(w, http.StatusOK, s.runView(reg, run))
}

// tickACR moves runs forward: Queued -> Running -> the outcome's status.
func (s *server) tickACR(t time.Time) {
	if s.acrData == nil {
		return
	}
	for _, reg := range s.acrData.registries {
		for _, run := range reg.Runs {
			if run.Ended || run.Seeded != nil {
				continue
			}
			switch {
			case !t.Before(run.EndAt):
				run.Ended, run.Status = true, run.Outcome.Status
			case !t.Before(run.StartAt):
				run.Status = "Running"
			}
		}
	}
}

func (run *acrRun) logText() string {
	if run.Outcome.Log != "" {
		return run.Outcome.Log
	}
	return fmt.Sprintf("run %s: %s\n", run.ID, run.Status)
}

// manifests is what $filter's OutputImageManifests sees: "repository:tag" and
// "repository@digest" of each output image, comma-separated (guessed).
func (run *acrRun) manifests() string {
	var parts []string
	for _, o := range run.outputs() {
		if o.Tag != "" {
			parts = append(parts, o.Repository+":"+o.Tag)
		}
		if o.Digest != "" {
			parts = append(parts, o.Repository+"@"+o.Digest)
		}
	}
	return strings.Join(parts, ",")
}

func (run *acrRun) outputs() []acrImage {
	if run.Status == "Succeeded" {
		return run.Outcome.OutputImages
	}
	return nil
}

func (s *server) runView(reg *acrRegistry, run *acrRun) map[string]any {
	id := reg.ID + "/runs/" + run.ID
	if run.Seeded != nil {
		props := deepCopy(run.Seeded).(map[string]any)
		props["runId"] = run.ID
		return map[string]any{"id": id, "name": run.ID, "type": "Microsoft.ContainerRegistry/registries/runs", "properties": props}
	}
	props := map[string]any{
		"runId": run.ID, "status": run.Status, "runType": run.RunType, "createTime": timestamp(run.Created),
		"lastUpdatedTime": timestamp(now()), "provisioningState": "Succeeded", "isArchiveEnabled": false,
		"platform": run.Platform, "agentConfiguration": map[string]any{"cpu": 2},
	}
	if run.Task != "" {
		props["task"] = run.Task
	}
	if run.Status != "Queued" {
		props["startTime"] = timestamp(run.StartAt)
	}
	if run.Ended {
		props["finishTime"] = timestamp(run.EndAt)
		outputs := []any{}
		for _, o := range run.outputs() {
			outputs = append(outputs, o)
		}
		props["outputImages"] = outputs
		if run.Status != "Succeeded" && run.Outcome.RunErrorMessage != "" {
			props["runErrorMessage"] = run.Outcome.RunErrorMessage
		}
	}
	return map[string]any{"id": id, "name": run.ID, "type": "Microsoft.ContainerRegistry/registries/runs", "properties": props}
}

var filterClause = regexp.MustCompile(`^(?i:(TaskName|Status|RunId|RunType)\s+eq\s+'([^']*)'|contains\(\s*OutputImageManifests\s*,\s*'([^']*)'\s*\))$`)

// listRuns answers Runs_List, newest first: $filter clauses joined by "and" (field eq 'value'
// for TaskName, Status, RunId and RunType; contains(OutputImageManifests, 'text')), $top.
func (s *server) listRuns(w http.ResponseWriter, r *http.Request, reg *acrRegistry) {
	q := r.URL.Query()
	var clauses [][]string
	if f := strings.TrimSpace(q.Get("$filter")); f != "" {
		for _, part := range regexp.MustCompile(`(?i)\s+and\s+`).Split(f, -1) {
			m := filterClause.FindStringSubmatch(strings.TrimSpace(part))
			if m == nil {
				writeError(w, http.StatusBadRequest, "InvalidFilter", fmt.Sprintf("The filter clause %q is not supported.", part), "$filter")
				return
			}
			clauses = append(clauses, m[1:])
		}
	}
	runs := append([]*acrRun{}, reg.Runs...)
	sort.SliceStable(runs, func(a, b int) bool { return runs[a].Created.After(runs[b].Created) })
	var items []any
	for _, run := range runs {
		if !matchesFilter(run, clauses) {
			continue
		}
		items = append(items, s.runView(reg, run))
	}
	if top := q.Get("$top"); top != "" {
		n, err := strconv.Atoi(top)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "InvalidTop", "$top must be a positive number.", "$top")
			return
		}
		if n < len(items) {
			items = items[:n]
		}
		writeJSON(w, http.StatusOK, map[string]any{"value": append([]any{}, items...)})
		return
	}
	writeJSON(w, http.StatusOK, s.page(r, items))
}

func matchesFilter(run *acrRun, clauses [][]string) bool {
	for _, c := range clauses {
		field, value, contains := strings.ToLower(c[0]), c[1], c[2]
		var got string
		switch field {
		case "taskname":
			got = run.Task
		case "status":
			got = run.Status
		case "runid":
			got = run.ID
		case "runtype":
			got = run.RunType
		case "":
			if !strings.Contains(run.manifests(), contains) {
				return false
			}
			continue
		}
		if run.Seeded != nil {
			got = str(run.Seeded, map[string]string{"taskname": "task", "status": "status", "runid": "runId", "runtype": "runType"}[field])
			if field == "runid" {
				got = run.ID
			}
		}
		if !strings.EqualFold(got, value) {
			return false
		}
	}
	return true
}

// serveACRControl handles /_standin/acr/... (called with the lock held).
func (s *server) serveACRControl(w http.ResponseWriter, r *http.Request, path string, decode func(any) bool) {
	bad := func(format string, args ...any) {
		writeError(w, http.StatusBadRequest, "BadControlRequest", fmt.Sprintf(format, args...), "")
	}
	lookup := func(id string) *acrRegistry {
		reg := s.acr().registries[strings.ToLower(id)]
		if reg == nil {
			bad("no registry %s (seed it with POST /_standin/acr/registries)", id)
		}
		return reg
	}
	switch {
	case strings.HasPrefix(path, "acr/logs/") && r.Method == http.MethodGet:
		run, ok := s.acr().logs[r.URL.Query().Get("sig")]
		if !ok || strings.TrimPrefix(path, "acr/logs/") != run.ID+".log" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(run.logText()))
	case path == "acr/registries" && r.Method == http.MethodPost:
		var req struct {
			ID          string `json:"id"`
			LoginServer string `json:"loginServer"`
			Location    string `json:"location"`
		}
		if !decode(&req) {
			return
		}
		m := registryPath.FindStringSubmatch(req.ID)
		if m == nil || m[4] != "" {
			bad("id must be a container registry resource ID, not %q", req.ID)
			return
		}
		if req.LoginServer == "" {
			req.LoginServer = strings.ToLower(m[3]) + ".azurecr.io"
		}
		if req.Location == "" {
			req.Location = "eastus"
		}
		id := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ContainerRegistry/registries/%s", m[1], m[2], m[3])
		reg := &acrRegistry{ID: id, Sub: m[1], RG: m[2], Name: m[3], Location: req.Location, LoginServer: req.LoginServer,
			Created: now(), Tasks: map[string]*acrTask{}, Next: map[string][]runOutcome{}}
		s.acr().registries[strings.ToLower(id)] = reg
		writeJSON(w, http.StatusOK, s.registryView(reg))
	case path == "acr/tasks" && r.Method == http.MethodPost:
		var req struct {
			RegistryID string          `json:"registryId"`
			Name       string          `json:"name"`
			Task       json.RawMessage `json:"task"`
		}
		if !decode(&req) {
			return
		}
		reg := lookup(req.RegistryID)
		if reg == nil {
			return
		}
		body := map[string]any{"location": reg.Location, "properties": map[string]any{
			"platform": map[string]any{"os": "Linux", "architecture": "amd64"},
			"step":     map[string]any{"type": "EncodedTask", "encodedTaskContent": "c3RlcHM6IFtdCg=="},
		}}
		if len(req.Task) > 0 {
			var model armcontainerregistry.Task
			raw, aerr := decodeModel(req.Task, &model, "2025-03-01-preview", "Task")
			if aerr != nil {
				writeArmError(w, http.StatusBadRequest, aerr)
				return
			}
			body, _ = raw.(map[string]any)
		}
		t := &acrTask{Name: req.Name, Body: body, Created: now()}
		reg.Tasks[strings.ToLower(req.Name)] = t
		writeJSON(w, http.StatusOK, s.taskView(reg, t))
	case path == "acr/next-run" && r.Method == http.MethodPost:
		var req struct {
			RegistryID string `json:"registryId"`
			Task       string `json:"task"`
			runOutcome
		}
		if !decode(&req) {
			return
		}
		reg := lookup(req.RegistryID)
		if reg == nil {
			return
		}
		switch req.Status {
		case "Succeeded", "Failed", "Canceled", "Error", "Timeout":
		default:
			bad("status must be Succeeded, Failed, Canceled, Error or Timeout")
			return
		}
		key := strings.ToLower(req.Task)
		reg.Next[key] = append(reg.Next[key], req.runOutcome)
		writeJSON(w, http.StatusOK, map[string]any{"queued": len(reg.Next[key])})
	case path == "acr/runs" && r.Method == http.MethodPost:
		var req struct {
			RegistryID string          `json:"registryId"`
			RunID      string          `json:"runId"`
			Properties json.RawMessage `json:"properties"`
		}
		if !decode(&req) {
			return
		}
		reg := lookup(req.RegistryID)
		if reg == nil {
			return
		}
		var model armcontainerregistry.RunProperties
		raw, aerr := decodeModel(req.Properties, &model, "2025-03-01-preview", "RunProperties")
		if aerr != nil {
			writeArmError(w, http.StatusBadRequest, aerr)
			return
		}
		props, _ := raw.(map[string]any)
		run := &acrRun{ID: req.RunID, Task: str(props, "task"), Status: str(props, "status"), RunType: str(props, "runType"),
			Created: now(), Ended: true, Seeded: props}
		reg.Runs = append(reg.Runs, run)
		writeJSON(w, http.StatusOK, s.runView(reg, run))
	default:
		writeError(w, http.StatusNotFound, "NotFound", "no control endpoint "+r.Method+" "+r.URL.Path, "")
	}
}
