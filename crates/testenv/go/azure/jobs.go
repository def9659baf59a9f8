package main

import (
	"bytes"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/appcontainers/armappcontainers/v3"
)

type job struct {
	ID, Sub, RG, Name string
	Body              map[string]any
	ProvState         string
	Op                *operation
	Created           time.Time
	Executions        []*execution
	FailNext          int
}

type execution struct {
	Name     string
	Template map[string]any
	Start    time.Time
	EndAt    time.Time
	Status   string // Running, Processing, Stopped, Degraded, Failed, Unknown, Succeeded
	Fail     bool
	Ended    bool
}

func (s *server) getJob(w http.ResponseWriter, id string) {
	j := s.jobs[strings.ToLower(id)]
	if j == nil {
		notFound(w, "jobs", id)
		return
	}
	writeJSON(w, http.StatusOK, s.jobView(j))
}

func (s *server) jobView(j *job) map[string]any {
	out := deepCopy(j.Body).(map[string]any)
	out["id"] = j.ID
	out["name"] = j.Name
	out["type"] = "Microsoft.App/jobs"
	s.identityView(out, j.ID)
	props := obj(out, "properties", true)
	props["provisioningState"] = j.ProvState
	if env := str(props, "environmentId"); env == "" {
		if env = str(props, "managedEnvironmentId"); env != "" {
			props["environmentId"] = env
		}
	}
	props["outboundIpAddresses"] = []any{"127.0.0.1"}
	props["eventStreamEndpoint"] = fmt.Sprintf("https://%s/subscriptions/%s/resourceGroups/%s/jobs/%s/eventstream", s.domain, j.Sub, j.RG, j.Name)
	if secrets, ok := obj(props, "configuration", false)["secrets"].([]any); ok {
		for _, sec := range secrets {
			if m, ok := sec.(map[string]any); ok {
				delete(m, "value")
			}
		}
	}
	return out
}

func (s *server) putJob(w http.ResponseWriter, r *http.Request, id, sub, rg, name string, body []byte, patch bool) {
	var raw any
	var aerr *armError
	if patch {
		var model armappcontainers.JobPatchProperties
		raw, aerr = decodeModel(body, &model, r.URL.Query().Get("api-version"), "JobPatchProperties")
	} else {
		var model armappcontainers.Job
		raw, aerr = decodeModel(body, &model, r.URL.Query().Get("api-version"), "Job")
	}
	if aerr != nil {
		writeArmError(w, http.StatusBadRequest, aerr)
		return
	}
	key := strings.ToLower(id)
	existing := s.jobs[key]
	if patch && existing == nil {
		notFound(w, "jobs", id)
		return
	}
	if existing != nil && existing.Op != nil && !existing.Op.finished {
		writeError(w, http.StatusConflict, "ContainerAppOperationInProgress", fmt.Sprintf(
			"Cannot modify job '%s' because there is a pending operation in progress. Please try again later.", name), "")
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
	for _, k := range []string{"provisioningState", "outboundIpAddresses", "eventStreamEndpoint"} {
		delete(props, k)
	}
	if str(props, "environmentId") == "" {
		writeError(w, http.StatusBadRequest, "ManagedEnvironmentIdRequired", "properties.environmentId is required.", "properties.environmentId")
		return
	}
	normalize(props)
	cfg := obj(props, "configuration", false)
	if cfg == nil || str(cfg, "triggerType") == "" {
		writeError(w, http.StatusBadRequest, "InvalidRequestContent", "properties.configuration.triggerType is required.", "properties.configuration.triggerType")
		return
	}
	if _, ok := num(cfg, "replicaTimeout"); !ok {
		writeError(w, http.StatusBadRequest, "InvalidRequestContent", "properties.configuration.replicaTimeout is required.", "properties.configuration.replicaTimeout")
		return
	}
	if containers, _ := obj(props, "template", false)["containers"].([]any); len(containers) == 0 {
		writeError(w, http.StatusBadRequest, "ContainerAppInvalidTemplate", "properties.template.containers must hold at least one container.", "properties.template.containers")
		return
	}
	if existing != nil {
		keepSecretValues(existing.Body, next)
	}
	j := existing
	created := false
	if j == nil {
		j = &job{ID: id, Sub: sub, RG: rg, Name: name, Created: now()}
		created = true
	}
	j.Body = next
	j.ProvState = "InProgress"
	s.jobs[key] = j
	op := &operation{Kind: "containerappsjob", Location: normLocation(str(next, "location")), Sub: sub, Resource: key,
		APIVersion: r.URL.Query().Get("api-version")}
	op.finish = func(*operation) { j.ProvState = "Succeeded" }
	op.result = func() any { return s.jobView(j) }
	j.Op = op
	s.startOperation(w, op)
	switch {
	case patch:
		w.WriteHeader(http.StatusAccepted)
	case created:
		writeJSON(w, http.StatusCreated, s.jobView(j))
	default:
		writeJSON(w, http.StatusOK, s.jobView(j))
	}
}

func (s *server) deleteJob(w http.ResponseWriter, r *http.Request, id string) {
	key := strings.ToLower(id)
	j := s.jobs[key]
	if j == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if j.Op != nil && !j.Op.finished {
		writeError(w, http.StatusConflict, "ContainerAppOperationInProgress", fmt.Sprintf(
			"Cannot delete job '%s' because there is a pending operation in progress.", j.Name), "")
		return
	}
	j.ProvState = "Deleting"
	op := &operation{Kind: "containerappsjob", Location: normLocation(str(j.Body, "location")), Sub: j.Sub, Resource: key,
		APIVersion: r.URL.Query().Get("api-version")}
	op.finish = func(*operation) { delete(s.jobs, key) }
	j.Op = op
	s.startOperation(w, op)
	w.WriteHeader(http.StatusAccepted)
}

func (s *server) tickJob(j *job, t time.Time) {
	for _, e := range j.Executions {
		if e.Ended || e.Status != "Running" || t.Before(e.EndAt) {
			continue
		}
		e.Ended = true
		e.Status = "Succeeded"
		if e.Fail {
			e.Status = "Failed"
		}
	}
}

func (s *server) executionView(j *job, e *execution) map[string]any {
	props := map[string]any{
		"status":    e.Status,
		"startTime": timestamp(e.Start),
		"template":  deepCopy(e.Template),
	}
	if e.Ended {
		props["endTime"] = timestamp(e.EndAt)
	}
	return map[string]any{
		"id":         j.ID + "/executions/" + e.Name,
		"name":       e.Name,
		"type":       "Microsoft.App/jobs/executions",
		"properties": props,
	}
}

// executionTemplate is the job's template as an execution sees it: containers and init containers.
func executionTemplate(jobTemplate map[string]any) map[string]any {
	out := map[string]any{}
	for _, k := range []string{"containers", "initContainers"} {
		if v, ok := jobTemplate[k]; ok {
			out[k] = deepCopy(v)
		}
	}
	return out
}

func (s *server) jobRequest(w http.ResponseWriter, r *http.Request, jobID, sub, execName string, stop bool, body []byte) {
	j := s.jobs[strings.ToLower(jobID)]
	if j == nil {
		notFound(w, "jobs", jobID)
		return
	}
	switch {
	case sub == "start" && execName == "":
		if r.Method != http.MethodPost {
			writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "method not allowed", "")
			return
		}
		s.startJob(w, r, j, body)
	case sub == "executions" && execName == "":
		if r.Method != http.MethodGet {
			writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "method not allowed", "")
			return
		}
		execs := append([]*execution{}, j.Executions...)
		sort.SliceStable(execs, func(a, b int) bool { return execs[a].Start.After(execs[b].Start) })
		var items []any
		for _, e := range execs {
			items = append(items, s.executionView(j, e))
		}
		writeJSON(w, http.StatusOK, s.page(r, items))
	case sub == "executions":
		var e *execution
		for _, x := range j.Executions {
			if strings.EqualFold(x.Name, execName) {
				e = x
			}
		}
		if e == nil {
			notFound(w, "executions", jobID+"/executions/"+execName)
			return
		}
		if !stop {
			if r.Method != http.MethodGet {
				writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "method not allowed", "")
				return
			}
			writeJSON(w, http.StatusOK, s.executionView(j, e))
			return
		}
		if r.Method != http.MethodPost {
			writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "method not allowed", "")
			return
		}
		op := &operation{Kind: "containerappsjob", Location: normLocation(str(j.Body, "location")), Sub: j.Sub,
			APIVersion: r.URL.Query().Get("api-version")}
		op.finish = func(*operation) {
			if !e.Ended {
				e.Ended, e.Status, e.EndAt = true, "Stopped", now()
			}
		}
		s.startOperation(w, op)
		w.WriteHeader(http.StatusAccepted)
	default:
		notFound(w, "jobs", jobID)
	}
}

func (s *server) startJob(w http.ResponseWriter, r *http.Request, j *job, body []byte) {
	template := executionTemplate(obj(obj(j.Body, "properties", false), "template", false))
	if len(bytes.TrimSpace(body)) > 0 && !bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
		var model armappcontainers.JobExecutionTemplate
		raw, aerr := decodeModel(body, &model, r.URL.Query().Get("api-version"), "JobExecutionTemplate")
		if aerr != nil {
			writeArmError(w, http.StatusBadRequest, aerr)
			return
		}
		if m, ok := raw.(map[string]any); ok && len(m) > 0 {
			template = m
		}
	}
	e := &execution{Name: fmt.Sprintf("%s-%s", j.Name, randomSuffix()), Template: template, Start: now(),
		EndAt: now().Add(s.execDelay), Status: "Running"}
	if j.FailNext > 0 {
		j.FailNext--
		e.Fail = true
	}
	j.Executions = append(j.Executions, e)
	base := map[string]any{"id": j.ID + "/executions/" + e.Name, "name": e.Name}
	op := &operation{Kind: "containerappsjob", Location: normLocation(str(j.Body, "location")), Sub: j.Sub,
		APIVersion: r.URL.Query().Get("api-version")}
	op.result = func() any { return base }
	s.startOperation(w, op)
	writeJSON(w, http.StatusAccepted, base)
}
