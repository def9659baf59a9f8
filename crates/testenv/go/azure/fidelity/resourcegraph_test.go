package fidelity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resourcegraph/armresourcegraph"
)

const (
	defenderKey     = "c0b7cfc6-3172-465a-b378-53c7ff2cc0d5"
	graphDigest     = "sha256:4af8e6f002401a965bbe753a381af308b40d8947fad2b9e1f6a369aa81abee59"
	graphRegistryID = "/subscriptions/" + subscription + "/resourceGroups/shop/providers/Microsoft.ContainerRegistry/registries/shopacr"
)

// defenderQuery is the query text Tidegate's Defender scanner sends for
// shopacr.azurecr.io/shop/app@graphDigest (crates/providers/src/defender.rs, fn query; a unit
// test there checks that this text is exactly what it builds).
const defenderQuery = `securityresources
| where type =~ "microsoft.security/assessments/subassessments"
| extend assessmentKey = extract("(?i)/providers/Microsoft.Security/assessments/([^/]+)/subassessments/", 1, id)
| where assessmentKey == "c0b7cfc6-3172-465a-b378-53c7ff2cc0d5"
| where tostring(properties.additionalData.artifactDetails.digest) == "sha256:4af8e6f002401a965bbe753a381af308b40d8947fad2b9e1f6a369aa81abee59"
| where tostring(properties.additionalData.artifactDetails.registryHost) =~ "shopacr.azurecr.io"
| where tostring(properties.additionalData.artifactDetails.repositoryName) == "shop/app"
| project id, subscriptionId, properties`

// subAssessment is a row in the shape Microsoft documents for MDVM container sub-assessments.
func subAssessment(registry, key, cve, digest, host, repo, code string) map[string]any {
	return map[string]any{
		"id":             fmt.Sprintf("%s/providers/Microsoft.Security/assessments/%s/subassessments/%s", registry, key, strings.ToLower(cve)),
		"name":           strings.ToLower(cve),
		"type":           "microsoft.security/assessments/subassessments",
		"subscriptionId": strings.Split(registry, "/")[2],
		"resourceGroup":  "shop",
		"properties": map[string]any{
			"id": cve, "displayName": cve,
			"additionalData": map[string]any{
				"assessedResourceType": "AzureContainerRegistryVulnerability",
				"vulnerabilityDetails": map[string]any{"cveId": cve, "severity": "High"},
				"artifactDetails":      map[string]any{"registryHost": host, "repositoryName": repo, "digest": digest, "artifactType": "ContainerImage"},
				"softwareDetails":      map[string]any{"packageName": "openssl", "version": "3.0.1", "fixedVersion": "3.0.2", "fixStatus": "FixAvailable"},
			},
			"timeGenerated": "2026-12-02T10:00:00Z",
			"status":        map[string]any{"code": code, "severity": "High"},
		},
	}
}

// TestResourceGraphDefenderQuery: Microsoft's armresourcegraph client runs Tidegate's query and
// pages with $skipToken; only the rows of the digest, registry, repository, assessment and
// subscriptions asked for come back.
func TestResourceGraphDefenderQuery(t *testing.T) {
	e := setup(t)
	cred := e.credential(t)
	e.control(t, "DELETE", "resourcegraph/rows", nil)
	other := "/subscriptions/11111111-0000-4000-8000-000000000000/resourceGroups/shop/providers/Microsoft.ContainerRegistry/registries/shopacr"
	rows := []any{}
	var want []string
	for i := 0; i < 5; i++ {
		r := subAssessment(graphRegistryID, defenderKey, fmt.Sprintf("CVE-2026-000%d", i), graphDigest, "shopacr.azurecr.io", "shop/app", "Unhealthy")
		rows = append(rows, r)
		want = append(want, r["id"].(string))
	}
	rows = append(rows,
		subAssessment(graphRegistryID, defenderKey, "CVE-1", "sha256:"+strings.Repeat("b", 64), "shopacr.azurecr.io", "shop/app", "Unhealthy"),
		subAssessment(graphRegistryID, defenderKey, "CVE-2", graphDigest, "otheracr.azurecr.io", "shop/app", "Unhealthy"),
		subAssessment(graphRegistryID, defenderKey, "CVE-3", graphDigest, "shopacr.azurecr.io", "shop/other", "Unhealthy"),
		subAssessment(graphRegistryID, "dbd0cb49-b563-45e7-9724-889e799fa648", "CVE-4", graphDigest, "shopacr.azurecr.io", "shop/app", "Unhealthy"),
		subAssessment(other, defenderKey, "CVE-5", graphDigest, "shopacr.azurecr.io", "shop/app", "Unhealthy"),
	)
	e.control(t, "POST", "resourcegraph/rows", map[string]any{"table": "securityresources", "rows": rows})
	e.control(t, "POST", "resourcegraph/settings", map[string]any{"maxPageSize": 2})
	defer e.control(t, "POST", "resourcegraph/settings", map[string]any{"maxPageSize": 1000})

	client, err := armresourcegraph.NewClient(cred, &arm.ClientOptions{ClientOptions: e.clientOptions()})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var token *string
	pages := 0
	for {
		format := armresourcegraph.ResultFormatObjectArray
		resp, err := client.Resources(context.Background(), armresourcegraph.QueryRequest{
			Query:         to.Ptr(defenderQuery),
			Subscriptions: []*string{to.Ptr(subscription)},
			Options:       &armresourcegraph.QueryRequestOptions{Top: to.Ptr[int32](1000), ResultFormat: &format, SkipToken: token},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if *resp.TotalRecords != 5 || *resp.ResultTruncated != armresourcegraph.ResultTruncatedFalse {
			t.Fatalf("totalRecords %d, resultTruncated %s", *resp.TotalRecords, *resp.ResultTruncated)
		}
		data, _ := resp.Data.([]any)
		if int64(len(data)) != *resp.Count {
			t.Fatalf("count %d but %d rows", *resp.Count, len(data))
		}
		for _, d := range data {
			row := d.(map[string]any)
			if len(row) != 3 || row["properties"] == nil || row["subscriptionId"] != subscription {
				t.Fatalf("project id, subscriptionId, properties gave %v", row)
			}
			got = append(got, row["id"].(string))
		}
		if resp.SkipToken == nil {
			break
		}
		token = resp.SkipToken
	}
	sort.Strings(want)
	sort.Strings(got)
	if strings.Join(got, "\n") != strings.Join(want, "\n") || pages != 3 {
		t.Fatalf("%d pages, rows\n%s\nwant\n%s", pages, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The table format, and an operator outside the subset refused by name.
	format := armresourcegraph.ResultFormatTable
	resp, err := client.Resources(context.Background(), armresourcegraph.QueryRequest{
		Query: to.Ptr(defenderQuery), Subscriptions: []*string{to.Ptr(subscription)},
		Options: &armresourcegraph.QueryRequestOptions{ResultFormat: &format},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	table, _ := resp.Data.(map[string]any)
	if cols, _ := table["columns"].([]any); len(cols) != 3 {
		t.Fatalf("table columns %v", table["columns"])
	}
	_, err = client.Resources(context.Background(), armresourcegraph.QueryRequest{
		Query: to.Ptr("securityresources | summarize count() by type"), Subscriptions: []*string{to.Ptr(subscription)},
	}, nil)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 400 || re.ErrorCode != "BadRequest" || !strings.Contains(err.Error(), "summarize") {
		t.Fatalf("summarize: %v", err)
	}
}

// TestResourceGraphExamples replays the official Resources*Query examples: the requests the
// KQL subset covers are accepted with a documented status and every key of the example's
// response; the others must be refused with a BadRequest naming what is not supported.
func TestResourceGraphExamples(t *testing.T) {
	e := setup(t)
	dir := os.Getenv("AZURE_STANDIN_GRAPH_EXAMPLES")
	if dir == "" {
		dir = filepath.Join(e.examples, "..", "..", "resourcegraph")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "Resources*.json"))
	if len(files) == 0 {
		t.Fatalf("no Resource Graph examples in %q", dir)
	}
	tok, err := e.credential(t).GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	// Refused: a facet request (facets are not implemented), summarize (outside the subset).
	refused := map[string]string{"ResourcesFacetQuery": "facets", "ResourcesSummarizeQuery": "summarize"}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var ex map[string]any
			if err := json.Unmarshal(b, &ex); err != nil {
				t.Fatal(err)
			}
			params := ex["parameters"].(map[string]any)
			body, _ := json.Marshal(params["query"])
			// A skip token from another server's answer means nothing here: ask for the first page.
			if strings.Contains(string(body), "$skipToken") {
				var q map[string]any
				_ = json.Unmarshal(body, &q)
				delete(q["options"].(map[string]any), "$skipToken")
				body, _ = json.Marshal(q)
			}
			req, _ := http.NewRequest("POST", e.arm+"/providers/Microsoft.ResourceGraph/resources?api-version="+params["api-version"].(string), bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tok.Token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := e.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if what, ok := refused[name]; ok {
				if resp.StatusCode != 400 || !strings.Contains(string(out), what) {
					t.Fatalf("expected a BadRequest naming %s, got %d %s", what, resp.StatusCode, out)
				}
				return
			}
			expected, ok := ex["responses"].(map[string]any)[fmt.Sprint(resp.StatusCode)].(map[string]any)
			if !ok {
				t.Fatalf("status %d is not one the example documents: %s", resp.StatusCode, out)
			}
			var got map[string]any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			want := expected["body"].(map[string]any)
			for k := range want {
				// $skipToken is there only when another page exists; data rows only when rows are seeded.
				if k == "$skipToken" || k == "data" {
					continue
				}
				if _, ok := got[k]; !ok {
					t.Errorf("key %s of the example's response missing from ours: %s", k, out)
				}
			}
			if _, ok := got["data"].([]any); !ok {
				t.Errorf("data is not an array: %s", out)
			}
		})
	}
}
