package fidelity

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/appcontainers/armappcontainers/v3"
)

const subscription = "00000000-0000-4000-8000-00000000c0de"

type env struct {
	arm, tenant, ingress, domain, examples string
	http                                   *http.Client
}

func setup(t *testing.T) *env {
	t.Helper()
	e := &env{
		arm: os.Getenv("AZURE_STANDIN_ARM_URL"), tenant: os.Getenv("AZURE_STANDIN_TENANT"),
		ingress: os.Getenv("AZURE_STANDIN_INGRESS"), domain: os.Getenv("AZURE_STANDIN_DOMAIN"),
		examples: os.Getenv("AZURE_STANDIN_EXAMPLES"),
	}
	if e.arm == "" {
		t.Skip("AZURE_STANDIN_ARM_URL is not set")
	}
	pem, err := os.ReadFile(os.Getenv("AZURE_STANDIN_CA_FILE"))
	if err != nil {
		t.Fatalf("reading the CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in AZURE_STANDIN_CA_FILE")
	}
	e.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, Proxy: nil,
	}}
	e.control(t, "POST", "delays", map[string]any{"lroMillis": 200, "provisioningMillis": 300, "executionMillis": 300, "pageSize": 2})
	return e
}

func (e *env) control(t *testing.T, method, path string, body any) []byte {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, e.arm+"/_standin/"+path, bytes.NewReader(b))
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("control %s: %v", path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("control %s %s: %d %s", method, path, resp.StatusCode, out)
	}
	return out
}

func (e *env) cloud() cloud.Configuration {
	return cloud.Configuration{
		ActiveDirectoryAuthorityHost: e.arm + "/",
		Services:                     map[cloud.ServiceName]cloud.ServiceConfiguration{cloud.ResourceManager: {Endpoint: e.arm, Audience: e.arm}},
	}
}

func (e *env) clientOptions() policy.ClientOptions {
	return policy.ClientOptions{Cloud: e.cloud(), Transport: e.http, Retry: policy.RetryOptions{RetryDelay: 100 * time.Millisecond, MaxRetryDelay: 2 * time.Second}}
}

// credential registers a client secret with the stand-in and returns azidentity's credential for it.
func (e *env) credential(t *testing.T) azcore.TokenCredential {
	t.Helper()
	e.control(t, "POST", "clients", map[string]any{"clientId": "fidelity-client", "secret": "fidelity-secret"})
	cred, err := azidentity.NewClientSecretCredential(e.tenant, "fidelity-client", "fidelity-secret",
		&azidentity.ClientSecretCredentialOptions{ClientOptions: e.clientOptions(), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

func (e *env) factory(t *testing.T, cred azcore.TokenCredential) *armappcontainers.ClientFactory {
	t.Helper()
	f, err := armappcontainers.NewClientFactory(subscription, cred, &arm.ClientOptions{ClientOptions: e.clientOptions()})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func readExample(t *testing.T, e *env, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.examples, name))
	if err != nil {
		t.Fatalf("example %s: %v", name, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("example %s: %v", name, err)
	}
	return m
}

// TestSDKContainerAppLifecycle: create, get, patch (new revision), Multiple mode with traffic and
// a label, list revisions across pages, deactivate/activate/restart, replicas, ingress.
func TestSDKContainerAppLifecycle(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	f := e.factory(t, e.credential(t))
	apps := f.NewContainerAppsClient()
	revisions := f.NewContainerAppsRevisionsClient()
	replicas := f.NewContainerAppsRevisionReplicasClient()

	// The body of ContainerApps_CreateOrUpdate.json; its traffic names a revision of an app that
	// exists already in the example, so a new app sends its traffic to the latest revision.
	example := readExample(t, e, "ContainerApps_CreateOrUpdate.json")
	body, _ := json.Marshal(example["parameters"].(map[string]any)["containerAppEnvelope"])
	var envelope armappcontainers.ContainerApp
	if err := json.Unmarshal(body, &envelope); err != nil {
		t.Fatal(err)
	}
	envelope.Properties.Configuration.Ingress.Traffic = []*armappcontainers.TrafficWeight{
		{LatestRevision: to.Ptr(true), Weight: to.Ptr[int32](100), Label: to.Ptr("production")},
	}
	envelope.Properties.Configuration.Secrets = []*armappcontainers.Secret{{Name: to.Ptr("db"), Value: to.Ptr("hunter2")}}
	envelope.Properties.Template.RevisionSuffix = to.Ptr("first")
	poller, err := apps.BeginCreateOrUpdate(ctx, "rg", "fidelity", envelope, nil)
	if err != nil {
		t.Fatalf("BeginCreateOrUpdate: %v", err)
	}
	created, err := poller.PollUntilDone(ctx, &runtimeFrequency)
	if err != nil {
		t.Fatalf("PollUntilDone: %v", err)
	}
	p := created.Properties
	if *p.ProvisioningState != armappcontainers.ContainerAppProvisioningStateSucceeded {
		t.Fatalf("provisioningState %s", *p.ProvisioningState)
	}
	if *p.LatestRevisionName != "fidelity--first" || *p.Configuration.Ingress.Fqdn != "fidelity."+e.domain {
		t.Fatalf("latestRevisionName %s fqdn %s", *p.LatestRevisionName, *p.Configuration.Ingress.Fqdn)
	}
	if len(p.Configuration.Secrets) != 1 || p.Configuration.Secrets[0].Value != nil {
		t.Fatalf("secret values must not be returned: %+v", p.Configuration.Secrets)
	}
	if len(p.Template.Scale.Rules) != 3 || *p.Template.Scale.Rules[1].Custom.Metadata["queueName"] != "myqueue" {
		t.Fatalf("scale rules not kept as sent")
	}
	got, err := apps.Get(ctx, "rg", "fidelity", nil)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.Properties.LatestReadyRevisionName == nil || *got.Properties.LatestReadyRevisionName != "fidelity--first" {
		t.Fatalf("latestReadyRevisionName %v", got.Properties.LatestReadyRevisionName)
	}

	// PATCH the image only: a new revision (random suffix).
	// The stored template keeps revisionSuffix "first" (merge patch), which would name the new
	// revision like the old one: clear it.
	patch := armappcontainers.ContainerApp{Location: to.Ptr("East US"), Properties: &armappcontainers.ContainerAppProperties{
		Template: &armappcontainers.Template{RevisionSuffix: to.Ptr(""), Containers: []*armappcontainers.Container{{
			Name: to.Ptr("testcontainerapp0"), Image: to.Ptr("repo/testcontainerapp0:v5"),
			Resources: &armappcontainers.ContainerResources{CPU: to.Ptr(0.5), Memory: to.Ptr("1Gi")},
		}}},
	}}
	up, err := apps.BeginUpdate(ctx, "rg", "fidelity", patch, nil)
	if err != nil {
		t.Fatalf("BeginUpdate: %v", err)
	}
	updated, err := up.PollUntilDone(ctx, &runtimeFrequency)
	if err != nil {
		t.Fatalf("update PollUntilDone: %v", err)
	}
	second := *updated.Properties.LatestRevisionName
	if second == "fidelity--first" || !strings.HasPrefix(second, "fidelity--") {
		t.Fatalf("PATCH of the image made no new revision: %s", second)
	}
	if *updated.Properties.Template.Containers[0].Image != "repo/testcontainerapp0:v5" {
		t.Fatal("image not patched")
	}
	if updated.Properties.Configuration.Dapr == nil || !*updated.Properties.Configuration.Dapr.Enabled {
		t.Fatal("merge patch lost configuration.dapr")
	}
	waitRevision(t, revisions, second, func(r armappcontainers.Revision) bool {
		return *r.Properties.ProvisioningState == armappcontainers.RevisionProvisioningStateProvisioned
	})
	first, err := revisions.GetRevision(ctx, "rg", "fidelity", "fidelity--first", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *first.Properties.Active {
		t.Fatal("Single mode: the first revision stays active after the second is provisioned")
	}

	// Multiple mode, 3rd revision, traffic 80/20 with a label on the newest.
	patch = armappcontainers.ContainerApp{Location: to.Ptr("East US"), Properties: &armappcontainers.ContainerAppProperties{
		Configuration: &armappcontainers.Configuration{ActiveRevisionsMode: to.Ptr(armappcontainers.ActiveRevisionsModeMultiple)},
	}}
	up, err = apps.BeginUpdate(ctx, "rg", "fidelity", patch, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.PollUntilDone(ctx, &runtimeFrequency); err != nil {
		t.Fatal(err)
	}
	patch.Properties.Configuration.Ingress = &armappcontainers.Ingress{Traffic: []*armappcontainers.TrafficWeight{
		{RevisionName: to.Ptr(second), Weight: to.Ptr[int32](80), Label: to.Ptr("production")},
		{LatestRevision: to.Ptr(true), Weight: to.Ptr[int32](20), Label: to.Ptr("staging")},
	}}
	patch.Properties.Template = &armappcontainers.Template{RevisionSuffix: to.Ptr("third"), Containers: []*armappcontainers.Container{{
		Name: to.Ptr("testcontainerapp0"), Image: to.Ptr("repo/testcontainerapp0:v6"),
	}}}
	up, err = apps.BeginUpdate(ctx, "rg", "fidelity", patch, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.PollUntilDone(ctx, &runtimeFrequency); err != nil {
		t.Fatal(err)
	}
	third := waitRevision(t, revisions, "fidelity--third", func(r armappcontainers.Revision) bool {
		return *r.Properties.ProvisioningState == armappcontainers.RevisionProvisioningStateProvisioned
	})
	if *third.Properties.TrafficWeight != 20 || *third.Properties.HealthState != armappcontainers.RevisionHealthStateHealthy {
		t.Fatalf("third: weight %d health %s", *third.Properties.TrafficWeight, *third.Properties.HealthState)
	}
	// Ingress: the label URL answers as its revision.
	if rev := e.ingressGet(t, "fidelity---staging."+e.domain, 200); rev != "fidelity--third" {
		t.Fatalf("staging label served by %s", rev)
	}
	if rev := e.ingressGet(t, "fidelity---production."+e.domain, 200); rev != second {
		t.Fatalf("production label served by %s", rev)
	}

	// List across pages (page size 2, three revisions).
	pager := revisions.NewListRevisionsPager("rg", "fidelity", nil)
	var names []string
	pages := 0
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("NextPage: %v", err)
		}
		pages++
		for _, r := range page.Value {
			names = append(names, *r.Name)
		}
	}
	sort.Strings(names)
	if pages < 2 || strings.Join(names, ",") != "fidelity--first,fidelity--third,"+second && !contains(names, second) {
		t.Fatalf("revisions %v in %d pages", names, pages)
	}
	if len(names) != 3 {
		t.Fatalf("revisions %v", names)
	}

	// Deactivating a revision with traffic fails; activate, deactivate, restart the first.
	if _, err := revisions.DeactivateRevision(ctx, "rg", "fidelity", second, nil); err == nil {
		t.Fatal("deactivating a revision with traffic succeeded")
	}
	if _, err := revisions.ActivateRevision(ctx, "rg", "fidelity", "fidelity--first", nil); err != nil {
		t.Fatalf("ActivateRevision: %v", err)
	}
	if _, err := revisions.RestartRevision(ctx, "rg", "fidelity", "fidelity--first", nil); err != nil {
		t.Fatalf("RestartRevision: %v", err)
	}
	list, err := replicas.ListReplicas(ctx, "rg", "fidelity", "fidelity--first", nil)
	if err != nil {
		t.Fatalf("ListReplicas: %v", err)
	}
	if len(list.Value) != 1 {
		t.Fatalf("replicas of the first revision (minReplicas 1): %d", len(list.Value))
	}
	replica, err := replicas.GetReplica(ctx, "rg", "fidelity", "fidelity--first", *list.Value[0].Name, nil)
	if err != nil {
		t.Fatalf("GetReplica: %v", err)
	}
	if c := replica.Properties.Containers[0]; !*c.Ready || *c.RestartCount != 0 || *c.RunningState != armappcontainers.ContainerAppContainerRunningStateRunning {
		t.Fatalf("replica container %+v", c)
	}
	if _, err := revisions.DeactivateRevision(ctx, "rg", "fidelity", "fidelity--first", nil); err != nil {
		t.Fatalf("DeactivateRevision: %v", err)
	}
	e.ingressGet(t, "fidelity--first."+e.domain, 503)

	// A misspelt property is rejected with the ARM error shape (sent raw: the SDK's own models
	// would drop it before sending).
	raw := []byte(`{"location":"East US","properties":{"template":{"containerz":[]}}}`)
	req, _ := http.NewRequest("PATCH", e.arm+"/subscriptions/"+subscription+"/resourceGroups/rg/providers/Microsoft.App/containerApps/fidelity?api-version=2025-01-01", bytes.NewReader(raw))
	tok, _ := e.credential(t).GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{e.arm + "/.default"}})
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(out), "properties.template.containerz") {
		t.Fatalf("misspelt property: %d %s", resp.StatusCode, out)
	}
	// Throttling: azcore's retry policy honours 429 + Retry-After.
	e.control(t, "POST", "throttle", map[string]any{"method": "GET", "pathPrefix": "/subscriptions/" + subscription + "/resourceGroups/rg/providers/Microsoft.App/containerApps/fidelity", "count": 1, "retryAfterSeconds": 1})
	began := time.Now()
	if _, err := apps.Get(ctx, "rg", "fidelity", nil); err != nil {
		t.Fatalf("Get after one 429: %v", err)
	}
	if time.Since(began) < 900*time.Millisecond {
		t.Fatal("the SDK did not wait Retry-After")
	}
	// A second write while an operation runs: 409 through the SDK.
	e.control(t, "POST", "delays", map[string]any{"lroMillis": 1500})
	up, err = apps.BeginUpdate(ctx, "rg", "fidelity", armappcontainers.ContainerApp{Location: to.Ptr("East US"), Tags: map[string]*string{"a": to.Ptr("b")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := apps.BeginUpdate(ctx, "rg", "fidelity", armappcontainers.ContainerApp{Location: to.Ptr("East US"), Tags: map[string]*string{"a": to.Ptr("c")}}, nil); !isStatus(err, 409) {
		t.Fatalf("second write during an operation: %v", err)
	}
	if _, err := up.PollUntilDone(ctx, &runtimeFrequency); err != nil {
		t.Fatal(err)
	}
	e.control(t, "POST", "delays", map[string]any{"lroMillis": 200})

	// Delete.
	del, err := apps.BeginDelete(ctx, "rg", "fidelity", nil)
	if err != nil {
		t.Fatalf("BeginDelete: %v", err)
	}
	if _, err := del.PollUntilDone(ctx, &runtimeFrequency); err != nil {
		t.Fatalf("delete PollUntilDone: %v", err)
	}
	if _, err := apps.Get(ctx, "rg", "fidelity", nil); !isStatus(err, 404) {
		t.Fatalf("Get after delete: %v", err)
	}
}

var runtimeFrequency = runtimePollOptions()

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func isStatus(err error, status int) bool {
	re, ok := err.(*azcore.ResponseError)
	return ok && re.StatusCode == status
}

func waitRevision(t *testing.T, c *armappcontainers.ContainerAppsRevisionsClient, name string, done func(armappcontainers.Revision) bool) armappcontainers.Revision {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := c.GetRevision(context.Background(), "rg", strings.Split(name, "--")[0], name, nil)
		if err != nil {
			t.Fatalf("GetRevision %s: %v", name, err)
		}
		if done(r.Revision) {
			return r.Revision
		}
		if time.Now().After(deadline) {
			t.Fatalf("revision %s: %+v", name, r.Properties)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ingressGet asks the ingress listener for host and returns the revision that answered.
func (e *env) ingressGet(t *testing.T, host string, want int) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://"+e.ingress+"/anything", nil)
	req.Host = host
	c := *e.http
	tr := e.http.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.ServerName = host
	c.Transport = tr
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("ingress %s: %v", host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("ingress %s: %d %s, want %d", host, resp.StatusCode, b, want)
	}
	return resp.Header.Get("x-standin-revision")
}

// TestSDKJobs: create, patch, start (LRO), executions across pages, execution get, failure.
func TestSDKJobs(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	f := e.factory(t, e.credential(t))
	jobs := f.NewJobsClient()
	execs := f.NewJobsExecutionsClient()
	api := f.NewContainerAppsAPIClient()

	example := readExample(t, e, "Job_CreateorUpdate.json")
	body, _ := json.Marshal(example["parameters"].(map[string]any)["JobEnvelope"])
	var envelope armappcontainers.Job
	if err := json.Unmarshal(body, &envelope); err != nil {
		t.Fatal(err)
	}
	cp, err := jobs.BeginCreateOrUpdate(ctx, "rg", "fidelityjob", envelope, nil)
	if err != nil {
		t.Fatalf("BeginCreateOrUpdate: %v", err)
	}
	job, err := cp.PollUntilDone(ctx, &runtimeFrequency)
	if err != nil {
		t.Fatalf("PollUntilDone: %v", err)
	}
	if *job.Properties.ProvisioningState != armappcontainers.JobProvisioningStateSucceeded {
		t.Fatalf("job provisioningState %s", *job.Properties.ProvisioningState)
	}
	up, err := jobs.BeginUpdate(ctx, "rg", "fidelityjob", armappcontainers.JobPatchProperties{Properties: &armappcontainers.JobPatchPropertiesProperties{
		Template: &armappcontainers.JobTemplate{Containers: []*armappcontainers.Container{{Name: to.Ptr("testcontainerappsjob0"), Image: to.Ptr("repo/testcontainerappsjob0:v2")}}},
	}}, nil)
	if err != nil {
		t.Fatalf("BeginUpdate: %v", err)
	}
	patched, err := up.PollUntilDone(ctx, &runtimeFrequency)
	if err != nil {
		t.Fatalf("update PollUntilDone: %v", err)
	}
	if *patched.Properties.Template.Containers[0].Image != "repo/testcontainerappsjob0:v2" {
		t.Fatal("job image not patched")
	}
	var started []string
	for i := 0; i < 3; i++ {
		if i == 2 {
			e.control(t, "POST", "fail-next-execution", map[string]any{"jobId": *job.ID})
		}
		sp, err := jobs.BeginStart(ctx, "rg", "fidelityjob", nil)
		if err != nil {
			t.Fatalf("BeginStart: %v", err)
		}
		res, err := sp.PollUntilDone(ctx, &runtimeFrequency)
		if err != nil {
			t.Fatalf("start PollUntilDone: %v", err)
		}
		if res.Name == nil || res.ID == nil {
			t.Fatalf("start result %+v", res)
		}
		started = append(started, *res.Name)
	}
	pager := execs.NewListPager("rg", "fidelityjob", nil)
	var seen []string
	pages := 0
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("executions NextPage: %v", err)
		}
		pages++
		for _, x := range page.Value {
			seen = append(seen, *x.Name)
		}
	}
	if pages != 2 || len(seen) != 3 {
		t.Fatalf("executions %v in %d pages", seen, pages)
	}
	want := map[string]armappcontainers.JobExecutionRunningState{
		started[0]: armappcontainers.JobExecutionRunningStateSucceeded,
		started[2]: armappcontainers.JobExecutionRunningStateFailed,
	}
	for name, status := range want {
		deadline := time.Now().Add(10 * time.Second)
		for {
			x, err := api.JobExecution(ctx, "rg", "fidelityjob", name, nil)
			if err != nil {
				t.Fatalf("JobExecution: %v", err)
			}
			if *x.Properties.Status == status {
				if x.Properties.Template.Containers[0].Image == nil || *x.Properties.Template.Containers[0].Image != "repo/testcontainerappsjob0:v2" {
					t.Fatal("execution template is not the job's")
				}
				break
			}
			if *x.Properties.Status != armappcontainers.JobExecutionRunningStateRunning || time.Now().After(deadline) {
				t.Fatalf("execution %s: %s, want %s", name, *x.Properties.Status, status)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// Start with a template override.
	sp, err := jobs.BeginStart(ctx, "rg", "fidelityjob", &armappcontainers.JobsClientBeginStartOptions{Template: &armappcontainers.JobExecutionTemplate{
		Containers: []*armappcontainers.JobExecutionContainer{{Name: to.Ptr("testcontainerappsjob0"), Image: to.Ptr("repo/override:v1")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := sp.PollUntilDone(ctx, &runtimeFrequency)
	if err != nil {
		t.Fatal(err)
	}
	x, err := api.JobExecution(ctx, "rg", "fidelityjob", *res.Name, nil)
	if err != nil || *x.Properties.Template.Containers[0].Image != "repo/override:v1" {
		t.Fatalf("override execution: %v", err)
	}
}

// TestWorkloadIdentity: a federated client assertion through azidentity.
func TestWorkloadIdentity(t *testing.T) {
	e := setup(t)
	e.control(t, "POST", "clients", map[string]any{"clientId": "wi-client", "federated": []any{
		map[string]any{"issuer": "https://oidc.example.test", "subject": "system:serviceaccount:tidegate:controller", "audience": "api://AzureADTokenExchange"},
	}})
	assertion := func(sub string) string {
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
		c, _ := json.Marshal(map[string]any{"iss": "https://oidc.example.test", "sub": sub, "aud": []string{"api://AzureADTokenExchange"}, "exp": time.Now().Add(time.Hour).Unix()})
		return h + "." + base64.RawURLEncoding.EncodeToString(c) + ".c2ln"
	}
	for sub, ok := range map[string]bool{"system:serviceaccount:tidegate:controller": true, "system:serviceaccount:other:x": false} {
		cred, err := azidentity.NewClientAssertionCredential(e.tenant, "wi-client", func(context.Context) (string, error) { return assertion(sub), nil },
			&azidentity.ClientAssertionCredentialOptions{ClientOptions: e.clientOptions(), DisableInstanceDiscovery: true})
		if err != nil {
			t.Fatal(err)
		}
		_, err = cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}})
		if (err == nil) != ok {
			t.Fatalf("subject %s: %v", sub, err)
		}
		if err != nil && !strings.Contains(err.Error(), "AADSTS700213") {
			t.Fatalf("subject %s: %v", sub, err)
		}
	}
	// A wrong secret gives AADSTS7000215.
	e.control(t, "POST", "clients", map[string]any{"clientId": "secret-client", "secret": "right"})
	cred, _ := azidentity.NewClientSecretCredential(e.tenant, "secret-client", "wrong",
		&azidentity.ClientSecretCredentialOptions{ClientOptions: e.clientOptions(), DisableInstanceDiscovery: true})
	if _, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}}); err == nil || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Fatalf("wrong secret: %v", err)
	}
	// Managed identity, App Service shape, through azidentity (MSAL's App Service source).
	e.control(t, "POST", "managed-identity", map[string]any{"header": "mi-secret", "clientId": "mi-client"})
	t.Setenv("IDENTITY_ENDPOINT", e.arm+"/msi/token")
	t.Setenv("IDENTITY_HEADER", "mi-secret")
	mic, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ClientOptions: e.clientOptions()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mic.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}}); err != nil {
		t.Fatalf("managed identity through azidentity: %v", err)
	}
	req, _ := http.NewRequest("GET", e.arm+"/msi/token?api-version=2019-08-01&resource="+url.QueryEscape("https://management.azure.com"), nil)
	req.Header.Set("X-IDENTITY-HEADER", "mi-secret")
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var mi map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&mi)
	resp.Body.Close()
	if resp.StatusCode != 200 || mi["access_token"] == nil || mi["expires_on"] == nil {
		t.Fatalf("managed identity: %d %v", resp.StatusCode, mi)
	}
}

var paramRef = regexp.MustCompile(`\{([^}]+)\}`)

// TestRESTExamples sends every official example's request and compares the response's shape.
func TestRESTExamples(t *testing.T) {
	e := setup(t)
	tok, err := e.credential(t).GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(e.examples, "*.json"))
	if len(files) == 0 {
		t.Fatalf("no examples in %q", e.examples)
	}
	appSeed := readExample(t, e, "ContainerApps_Get.json")["responses"].(map[string]any)["200"].(map[string]any)["body"]
	jobSeed := readExample(t, e, "Job_CreateorUpdate.json")["parameters"].(map[string]any)["JobEnvelope"]
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			ex := readExample(t, e, filepath.Base(file))
			params := ex["parameters"].(map[string]any)
			op, ok := operations[name]
			if !ok {
				t.Fatalf("no operation known for example %s", name)
			}
			path := paramRef.ReplaceAllStringFunc(op.path, func(m string) string {
				v, _ := params[m[1:len(m)-1]].(string)
				return url.PathEscape(v)
			})
			sub, rg := params["subscriptionId"].(string), params["resourceGroupName"].(string)
			if app, _ := params["containerAppName"].(string); app != "" && name != "ContainerApps_CreateOrUpdate_new" {
				revs := []any{}
				names := map[string]bool{}
				if rev, _ := params["revisionName"].(string); rev != "" {
					r := map[string]any{"name": rev}
					if replica, _ := params["replicaName"].(string); replica != "" {
						r["replicas"] = []any{replica}
					}
					revs = append(revs, r)
					names[rev] = true
				}
				for _, rn := range []string{"testcontainerapp0-ab1234", "testcontainerapp0-ab4321", "testcontainerapp0-pjxhsye"} {
					if !names[rn] {
						revs = append(revs, map[string]any{"name": rn})
					}
				}
				e.control(t, "POST", "apps", map[string]any{"id": fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.App/containerApps/%s", sub, rg, app), "app": appSeed, "revisions": revs})
			}
			if job, _ := params["jobName"].(string); job != "" && name != "Job_CreateorUpdate" {
				execName, _ := params["jobExecutionName"].(string)
				execsSeed := []any{map[string]any{"name": job + "-aaaaaaa"}, map[string]any{"name": job + "-bbbbbbb"}, map[string]any{"name": job + "-ccccccc"}}
				if execName != "" {
					execsSeed = append(execsSeed, map[string]any{"name": execName})
				}
				e.control(t, "POST", "jobs", map[string]any{"id": fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.App/jobs/%s", sub, rg, job), "job": jobSeed, "executions": execsSeed})
			}
			var body io.Reader
			if op.body != "" {
				b, _ := json.Marshal(params[op.body])
				body = bytes.NewReader(b)
			}
			req, _ := http.NewRequest(op.method, e.arm+path+"?api-version="+url.QueryEscape(params["api-version"].(string)), body)
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
			if resp.Header.Get("x-ms-request-id") == "" || resp.Header.Get("x-ms-correlation-request-id") == "" {
				t.Fatal("no x-ms-request-id / x-ms-correlation-request-id")
			}
			if hs, ok := expected["headers"].(map[string]any); ok {
				for h := range hs {
					if resp.Header.Get(h) == "" {
						t.Errorf("header %s missing", h)
					}
				}
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

type operation struct{ method, path, body string }

const base = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.App/"

var operations = map[string]operation{
	"ContainerApps_CreateOrUpdate": {"PUT", base + "containerApps/{containerAppName}", "containerAppEnvelope"},
	"ContainerApps_Get":            {"GET", base + "containerApps/{containerAppName}", ""},
	"ContainerApps_Patch":          {"PATCH", base + "containerApps/{containerAppName}", "containerAppEnvelope"},
	"Job_CreateorUpdate":           {"PUT", base + "jobs/{jobName}", "JobEnvelope"},
	"Job_Execution_Get":            {"GET", base + "jobs/{jobName}/executions/{jobExecutionName}", ""},
	"Job_Executions_Get":           {"GET", base + "jobs/{jobName}/executions", ""},
	"Job_Patch":                    {"PATCH", base + "jobs/{jobName}", "JobEnvelope"},
	"Job_Start":                    {"POST", base + "jobs/{jobName}/start", "template"},
	"Replicas_Get":                 {"GET", base + "containerApps/{containerAppName}/revisions/{revisionName}/replicas/{replicaName}", ""},
	"Revisions_Activate":           {"POST", base + "containerApps/{containerAppName}/revisions/{revisionName}/activate", ""},
	"Revisions_Get":                {"GET", base + "containerApps/{containerAppName}/revisions/{revisionName}", ""},
	"Revisions_List":               {"GET", base + "containerApps/{containerAppName}/revisions", ""},
	"Revisions_Restart":            {"POST", base + "containerApps/{containerAppName}/revisions/{revisionName}/restart", ""},
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// shape lists the keys of want (recursively; arrays by their first element) missing from got.
// nextLink is not compared: it is there only when another page exists.
func shape(want, got any, path string, missing *[]string) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			*missing = append(*missing, path+" (not an object)")
			return
		}
		for k, v := range w {
			if k == "nextLink" {
				continue
			}
			gv, ok := g[k]
			if !ok {
				*missing = append(*missing, strings.TrimPrefix(path+"."+k, "."))
				continue
			}
			shape(v, gv, path+"."+k, missing)
		}
	case []any:
		g, _ := got.([]any)
		if len(w) > 0 && len(g) > 0 {
			shape(w[0], g[0], path+"[0]", missing)
		}
	}
}
