package fidelity

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerregistry/armcontainerregistry"
)

// acrExamples is the directory of the official Container Registry Tasks examples:
// AZURE_STANDIN_ACR_EXAMPLES, else "containerregistry" beside the Container Apps examples
// (fixtures/azure/containerapps/examples -> fixtures/azure/containerregistry).
func (e *env) acrExamples(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("AZURE_STANDIN_ACR_EXAMPLES")
	if dir == "" {
		dir = filepath.Join(e.examples, "..", "..", "containerregistry")
	}
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		t.Fatalf("the Container Registry Tasks examples are missing: %s", dir)
	}
	return dir
}

func registryID(rg, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ContainerRegistry/registries/%s", subscription, rg, name)
}

// TestSDKACRTasks drives runs with armcontainerregistry v1.2.0 (api-versions 2019-06-01-preview
// and 2023-07-01): registry get, task create, ScheduleRun of a task run and of an encoded task
// run polled to the end, Runs Get, the List pager with $filter and $top, GetLogSasURL (whose
// link serves the log), Cancel, and an unknown key refused.
func TestSDKACRTasks(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	cred := e.credential(t)
	f, err := armcontainerregistry.NewClientFactory(subscription, cred, &arm.ClientOptions{ClientOptions: e.clientOptions()})
	if err != nil {
		t.Fatal(err)
	}
	rg, name := "builds", "fidelityacr"
	id := registryID(rg, name)
	e.control(t, "POST", "acr/registries", map[string]any{"id": id, "loginServer": "fidelityacr.azurecr.io"})

	reg, err := f.NewRegistriesClient().Get(ctx, rg, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if str(reg.Properties.LoginServer) != "fidelityacr.azurecr.io" {
		t.Fatalf("loginServer %v", reg.Properties.LoginServer)
	}

	tasks := f.NewTasksClient()
	encoded := base64.StdEncoding.EncodeToString([]byte("steps:\n- build: -t {{.Values.TIDEGATE_IMAGE_REPOSITORY}}:{{.Values.TIDEGATE_IMAGE_TAG}} .\n"))
	created, err := tasks.BeginCreate(ctx, rg, name, "rebuild", armcontainerregistry.Task{
		Location: to.Ptr("eastus"),
		Properties: &armcontainerregistry.TaskProperties{
			Platform: &armcontainerregistry.PlatformProperties{OS: to.Ptr(armcontainerregistry.OSLinux), Architecture: to.Ptr(armcontainerregistry.ArchitectureAmd64)},
			Step:     &armcontainerregistry.EncodedTaskStep{Type: to.Ptr(armcontainerregistry.StepTypeEncodedTask), EncodedTaskContent: to.Ptr(encoded)},
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := created.PollUntilDone(ctx, &runtimeFrequency); err != nil {
		t.Fatal(err)
	}

	digest := "sha256:" + strings.Repeat("ab", 32)
	e.control(t, "POST", "acr/next-run", map[string]any{
		"registryId": id, "task": "rebuild", "status": "Succeeded", "log": "built and pushed\n", "runningMillis": 300,
		"outputImages": []any{map[string]any{"registry": "fidelityacr.azurecr.io", "repository": "shop/web", "tag": "t1", "digest": digest}},
	})
	poller, err := f.NewRegistriesClient().BeginScheduleRun(ctx, rg, name, &armcontainerregistry.TaskRunRequest{
		Type:   to.Ptr("TaskRunRequest"),
		TaskID: to.Ptr(id + "/tasks/rebuild"),
		OverrideTaskStepProperties: &armcontainerregistry.OverrideTaskStepProperties{Values: []*armcontainerregistry.SetValue{
			{Name: to.Ptr("TIDEGATE_IMAGE_TAG"), Value: to.Ptr("t1"), IsSecret: to.Ptr(false)},
		}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	scheduled, err := poller.PollUntilDone(ctx, &runtimeFrequency)
	if err != nil {
		t.Fatal(err)
	}
	runID := str(scheduled.Properties.RunID)
	if runID == "" || str(scheduled.Name) != runID {
		t.Fatalf("scheduled run: %+v", scheduled.Properties)
	}
	if s := *scheduled.Properties.Status; s != armcontainerregistry.RunStatusQueued && s != armcontainerregistry.RunStatusRunning {
		t.Fatalf("a new run is %s", s)
	}
	runs := f.NewRunsClient()
	run := waitRun(t, runs, rg, name, runID)
	if *run.Properties.Status != armcontainerregistry.RunStatusSucceeded || str(run.Properties.Task) != "rebuild" {
		t.Fatalf("run: %s %v", *run.Properties.Status, run.Properties.Task)
	}
	if len(run.Properties.OutputImages) != 1 || str(run.Properties.OutputImages[0].Digest) != digest {
		t.Fatalf("outputImages %+v", run.Properties.OutputImages)
	}
	if run.Properties.StartTime == nil || run.Properties.FinishTime == nil || run.Properties.CreateTime == nil {
		t.Fatal("times missing")
	}

	logs, err := runs.GetLogSasURL(ctx, rg, name, runID, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.http.Get(str(logs.LogLink))
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(text) != "built and pushed\n" {
		t.Fatalf("log link answered %d %q", resp.StatusCode, text)
	}
	forged := strings.Replace(str(logs.LogLink), "sig=", "sig=00", 1)
	if resp, err := e.http.Get(forged); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a log link with another signature: %v %v", resp, err)
	}

	// A failing encoded run, and a long one that is cancelled.
	e.control(t, "POST", "acr/next-run", map[string]any{"registryId": id, "status": "Failed", "runErrorMessage": "step build failed", "runningMillis": 200})
	e.control(t, "POST", "acr/next-run", map[string]any{"registryId": id, "status": "Succeeded", "runningMillis": 60000})
	var ids []string
	for range 2 {
		poller, err := f.NewRegistriesClient().BeginScheduleRun(ctx, rg, name, &armcontainerregistry.EncodedTaskRunRequest{
			Type:               to.Ptr("EncodedTaskRunRequest"),
			EncodedTaskContent: to.Ptr(encoded),
			Platform:           &armcontainerregistry.PlatformProperties{OS: to.Ptr(armcontainerregistry.OSLinux), Architecture: to.Ptr(armcontainerregistry.ArchitectureArm64)},
			Timeout:            to.Ptr[int32](600),
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		r, err := poller.PollUntilDone(ctx, &runtimeFrequency)
		if err != nil {
			t.Fatal(err)
		}
		if *r.Properties.RunType != armcontainerregistry.RunTypeQuickRun || *r.Properties.Platform.Architecture != armcontainerregistry.ArchitectureArm64 {
			t.Fatalf("encoded run: %v %+v", *r.Properties.RunType, r.Properties.Platform)
		}
		ids = append(ids, str(r.Properties.RunID))
	}
	failed := waitRun(t, runs, rg, name, ids[0])
	if *failed.Properties.Status != armcontainerregistry.RunStatusFailed || str(failed.Properties.RunErrorMessage) != "step build failed" {
		t.Fatalf("failed run: %s %v", *failed.Properties.Status, failed.Properties.RunErrorMessage)
	}
	if len(failed.Properties.OutputImages) != 0 {
		t.Fatal("a failed run reports no images")
	}
	cancel, err := runs.BeginCancel(ctx, rg, name, ids[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cancel.PollUntilDone(ctx, &runtimeFrequency); err != nil {
		t.Fatal(err)
	}
	if cancelled, _ := runs.Get(ctx, rg, name, ids[1], nil); *cancelled.Properties.Status != armcontainerregistry.RunStatusCanceled {
		t.Fatalf("cancelled run is %s", *cancelled.Properties.Status)
	}

	// The pager, newest first, filtered by task and limited by $top.
	list := func(options *armcontainerregistry.RunsClientListOptions) []string {
		var out []string
		pager := runs.NewListPager(rg, name, options)
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page.Value {
				out = append(out, str(r.Properties.RunID))
			}
		}
		return out
	}
	if all := list(nil); len(all) != 3 || all[0] != ids[1] || all[2] != runID {
		t.Fatalf("all runs, newest first: %v (want [%s %s %s])", all, ids[1], ids[0], runID)
	}
	if byTask := list(&armcontainerregistry.RunsClientListOptions{Filter: to.Ptr("TaskName eq 'rebuild'")}); len(byTask) != 1 || byTask[0] != runID {
		t.Fatalf("TaskName filter: %v", byTask)
	}
	if byImage := list(&armcontainerregistry.RunsClientListOptions{Filter: to.Ptr("contains(OutputImageManifests, 'shop/web:t1')")}); len(byImage) != 1 {
		t.Fatalf("OutputImageManifests filter: %v", byImage)
	}
	if top := list(&armcontainerregistry.RunsClientListOptions{Top: to.Ptr[int32](1)}); len(top) != 1 || top[0] != ids[1] {
		t.Fatalf("$top=1: %v", top)
	}

	// An unknown key is refused, as ARM refuses what its models do not know.
	body := `{"type":"TaskRunRequest","taskId":"rebuild","overrideTaskStepProperties":{"valuez":[]}}`
	status, out := e.rawARM(t, cred, "POST", id+"/scheduleRun?api-version=2025-03-01-preview", body)
	if status != 400 || !strings.Contains(out, "unknown field overrideTaskStepProperties.valuez") {
		t.Fatalf("unknown key: %d %s", status, out)
	}
	status, out = e.rawARM(t, cred, "GET", id+"?api-version=2025-07-01", "")
	if status != 400 || !strings.Contains(out, "InvalidApiVersionParameter") {
		t.Fatalf("a Container Apps api-version on a registry: %d %s", status, out)
	}
}

func waitRun(t *testing.T, runs *armcontainerregistry.RunsClient, rg, name, id string) armcontainerregistry.Run {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := runs.Get(context.Background(), rg, name, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		switch *got.Properties.Status {
		case armcontainerregistry.RunStatusQueued, armcontainerregistry.RunStatusStarted, armcontainerregistry.RunStatusRunning:
		default:
			return got.Run
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s still %s", id, *got.Properties.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rawARM sends one ARM request with a token of cred.
func (e *env) rawARM(t *testing.T, cred azcore.TokenCredential, method, path, body string) (int, string) {
	t.Helper()
	tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(method, e.arm+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

var acrOperations = map[string]operation{
	"RegistriesScheduleRun":                       {"POST", acrBase + "scheduleRun", "runRequest"},
	"RegistriesScheduleRun_EncodedTaskRun":        {"POST", acrBase + "scheduleRun", "runRequest"},
	"RegistriesScheduleRun_FileTaskRun":           {"POST", acrBase + "scheduleRun", "runRequest"},
	"RegistriesScheduleRun_Task":                  {"POST", acrBase + "scheduleRun", "runRequest"},
	"RegistriesScheduleRun_WithCustomCredentials": {"POST", acrBase + "scheduleRun", "runRequest"},
	"RunsGet":     {"GET", acrBase + "runs/{runId}", ""},
	"RunsList":    {"GET", acrBase + "runs", ""},
	"TasksCreate": {"PUT", acrBase + "tasks/{taskName}", "taskCreateParameters"},
}

const acrBase = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries/{registryName}/"

// TestACRRESTExamples sends every official Container Registry Tasks example's request and checks
// that the answer has a documented status and every key of the documented response.
func TestACRRESTExamples(t *testing.T) {
	e := setup(t)
	dir := e.acrExamples(t)
	tok, err := e.credential(t).GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		t.Fatalf("no examples in %q", dir)
	}
	read := func(name string) map[string]any {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return m
	}
	// The run the Runs examples read is the one they document.
	runExample := read("RunsGet.json")
	runBody := runExample["responses"].(map[string]any)["200"].(map[string]any)["body"].(map[string]any)
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			ex := read(filepath.Base(file))
			params := ex["parameters"].(map[string]any)
			op, ok := acrOperations[name]
			if !ok {
				t.Fatalf("no operation known for example %s", name)
			}
			sub, rg, regName := params["subscriptionId"].(string), params["resourceGroupName"].(string), params["registryName"].(string)
			id := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ContainerRegistry/registries/%s", sub, rg, regName)
			e.control(t, "POST", "acr/registries", map[string]any{"id": id})
			e.control(t, "POST", "acr/tasks", map[string]any{"registryId": id, "name": "myTask"})
			if strings.HasPrefix(name, "Runs") {
				e.control(t, "POST", "acr/runs", map[string]any{"registryId": id, "runId": runBody["name"], "properties": runBody["properties"]})
			}
			path := paramRef.ReplaceAllStringFunc(op.path, func(m string) string {
				v, _ := params[m[1:len(m)-1]].(string)
				return url.PathEscape(v)
			})
			q := url.Values{"api-version": {params["api-version"].(string)}}
			if f, ok := params["$filter"].(string); ok {
				q.Set("$filter", f)
			}
			if top, ok := params["$top"].(float64); ok {
				q.Set("$top", fmt.Sprint(int(top)))
			}
			var body io.Reader
			if op.body != "" {
				b, _ := json.Marshal(params[op.body])
				body = bytes.NewReader(b)
			}
			req, _ := http.NewRequest(op.method, e.arm+path+"?"+q.Encode(), body)
			req.Header.Set("Authorization", "Bearer "+tok.Token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := e.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			responses := ex["responses"].(map[string]any)
			expected, ok := responses[fmt.Sprint(resp.StatusCode)].(map[string]any)
			if !ok {
				t.Fatalf("%s %s: status %d is not one the example documents (%v): %s", op.method, path, resp.StatusCode, keys(responses), out)
			}
			if resp.Header.Get("x-ms-request-id") == "" {
				t.Fatal("no x-ms-request-id")
			}
			if want, ok := expected["body"]; ok {
				var got any
				if err := json.Unmarshal(out, &got); err != nil {
					t.Fatalf("response is not JSON: %v: %s", err, out)
				}
				var missing []string
				shape(want, got, "", &missing)
				if len(missing) > 0 {
					t.Errorf("keys of the example's response missing from ours: %v\nours: %s", missing, out)
				}
			}
		})
	}
}

// str dereferences an optional string of the SDK's models.
func str(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
