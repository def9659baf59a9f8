package fidelity

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/containers/azcontainerregistry"
)

// acrAudience is ACR's data-plane audience in the public cloud.
const acrAudience = "https://containerregistry.azure.net"

// TestSDKACRTokenExchange drives the ACR front of the test registry (crates/testenv, not this
// binary) with Microsoft's azcontainerregistry v0.2.3: its client's challenge policy (the
// registry's 401, the Entra ID token exchanged at /oauth2/exchange, the refresh grant at
// /oauth2/token) reads a manifest, and its AuthenticationClient runs both exchanges by hand,
// with the tenant; a Key Vault token is refused. The registry comes from
// AZURE_STANDIN_ACR_ENDPOINT, its image from AZURE_STANDIN_ACR_REPOSITORY and _TAG.
func TestSDKACRTokenExchange(t *testing.T) {
	e := setup(t)
	endpoint := os.Getenv("AZURE_STANDIN_ACR_ENDPOINT")
	repository, tag := os.Getenv("AZURE_STANDIN_ACR_REPOSITORY"), os.Getenv("AZURE_STANDIN_ACR_TAG")
	if endpoint == "" || repository == "" || tag == "" {
		t.Fatal("AZURE_STANDIN_ACR_ENDPOINT, AZURE_STANDIN_ACR_REPOSITORY and AZURE_STANDIN_ACR_TAG must name the ACR front and an image in it")
	}
	ctx := context.Background()
	cred := e.credential(t)
	options := e.clientOptions()
	// The registry clients need the cloud's ACR audience next to ARM's.
	services := map[cloud.ServiceName]cloud.ServiceConfiguration{azcontainerregistry.ServiceName: {Audience: acrAudience}}
	for name, service := range options.Cloud.Services {
		services[name] = service
	}
	options.Cloud.Services = services

	client, err := azcontainerregistry.NewClient(endpoint, cred, &azcontainerregistry.ClientOptions{ClientOptions: options})
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := client.GetManifest(ctx, repository, tag, &azcontainerregistry.ClientGetManifestOptions{
		Accept: to.Ptr("application/vnd.oci.image.manifest.v1+json"),
	})
	if err != nil {
		t.Fatalf("GetManifest through the token exchange: %v", err)
	}
	body, err := io.ReadAll(manifest.ManifestData)
	if err != nil {
		t.Fatal(err)
	}
	var parsed map[string]any
	if err := json.Unmarshal(body, &parsed); err != nil || parsed["schemaVersion"] == nil {
		t.Fatalf("not a manifest: %s", body)
	}
	if manifest.DockerContentDigest == nil || !strings.HasPrefix(*manifest.DockerContentDigest, "sha256:") {
		t.Fatalf("no Docker-Content-Digest: %v", manifest.DockerContentDigest)
	}

	// The same two exchanges by hand, as the REST API documents them.
	auth, err := azcontainerregistry.NewAuthenticationClient(endpoint, &azcontainerregistry.AuthenticationClientOptions{ClientOptions: options})
	if err != nil {
		t.Fatal(err)
	}
	service := strings.TrimPrefix(strings.TrimPrefix(endpoint, "http://"), "https://")
	aad, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{acrAudience + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	refresh, err := auth.ExchangeAADAccessTokenForACRRefreshToken(ctx, azcontainerregistry.PostContentSchemaGrantTypeAccessToken, service,
		&azcontainerregistry.AuthenticationClientExchangeAADAccessTokenForACRRefreshTokenOptions{AccessToken: &aad.Token, Tenant: &e.tenant})
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if refresh.RefreshToken == nil || strings.Count(*refresh.RefreshToken, ".") != 2 {
		t.Fatalf("the refresh token is not a JWT: %v", refresh.RefreshToken)
	}
	access, err := auth.ExchangeACRRefreshTokenForACRAccessToken(ctx, service, "repository:"+repository+":pull", *refresh.RefreshToken,
		&azcontainerregistry.AuthenticationClientExchangeACRRefreshTokenForACRAccessTokenOptions{GrantType: to.Ptr(azcontainerregistry.TokenGrantTypeRefreshToken)})
	if err != nil {
		t.Fatalf("refresh grant: %v", err)
	}
	if access.AccessToken == nil || *access.AccessToken == "" {
		t.Fatal("no access token")
	}

	// A token for another audience is not accepted in the exchange.
	vault, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://vault.azure.net/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auth.ExchangeAADAccessTokenForACRRefreshToken(ctx, azcontainerregistry.PostContentSchemaGrantTypeAccessToken, service,
		&azcontainerregistry.AuthenticationClientExchangeAADAccessTokenForACRRefreshTokenOptions{AccessToken: &vault.Token}); err == nil {
		t.Fatal("a Key Vault token was exchanged for a registry refresh token")
	}
}
