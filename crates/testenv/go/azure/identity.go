package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// tokenLifetime is what expires_in says.
const tokenLifetime = 3599 * time.Second

// issueToken makes an HS256 JWT shaped like an Entra ID access token.
func (s *server) issueToken(clientID, audience string) (string, time.Time) {
	exp := now().Add(tokenLifetime)
	header := b64(`{"alg":"HS256","typ":"JWT"}`)
	claims, _ := json.Marshal(map[string]any{
		"aud":   audience,
		"iss":   "https://sts.windows.net/" + s.tenant + "/",
		"iat":   now().Unix(),
		"nbf":   now().Unix(),
		"exp":   exp.Unix(),
		"appid": clientID,
		"oid":   clientID,
		"sub":   clientID,
		"tid":   s.tenant,
		"ver":   "1.0",
	})
	unsigned := header + "." + b64(string(claims))
	return unsigned + "." + s.sign(unsigned), exp
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func (s *server) sign(data string) string {
	m := hmac.New(sha256.New, s.signKey)
	m.Write([]byte(data))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// decodeJWT returns the claims of a JWT without checking a signature.
func decodeJWT(token string) (map[string]any, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil, false
	}
	var claims map[string]any
	if json.Unmarshal(payload, &claims) != nil {
		return nil, false
	}
	return claims, true
}

func (s *server) acceptedAudience(aud string) bool {
	aud = strings.TrimSuffix(aud, "/")
	if strings.EqualFold(aud, s.armURL) {
		return true
	}
	for _, a := range publicAudiences {
		if strings.EqualFold(aud, a) {
			return true
		}
	}
	return false
}

// dataPlaneAudiences are the resources other than ARM the stand-in issues tokens for: Azure
// Container Registry's data plane (the token exchange of a loopback ACR front) and Key Vault.
var dataPlaneAudiences = []string{"https://containerregistry.azure.net", "https://vault.azure.net"}

// issuable tells whether tokens are issued for resource: ARM's audiences and the data planes.
// ARM requests themselves accept ARM audiences only (acceptedAudience).
func (s *server) issuable(resource string) bool {
	if s.acceptedAudience(resource) {
		return true
	}
	resource = strings.TrimSuffix(resource, "/")
	for _, a := range dataPlaneAudiences {
		if strings.EqualFold(resource, a) {
			return true
		}
	}
	return false
}

// authenticated checks the bearer token of an ARM request.
func (s *server) authenticated(w http.ResponseWriter, r *http.Request) bool {
	challenge := func(errCode, code, message string) bool {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(
			`Bearer authorization_uri="%s/%s", error="%s", error_description="%s"`, s.armURL, s.tenant, errCode, message))
		writeError(w, http.StatusUnauthorized, code, message, "")
		return false
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return challenge("invalid_token", "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
	}
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		return challenge("invalid_token", "AuthenticationFailed", "Authentication failed. The 'Authorization' header is provided in an invalid format.")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || !hmac.Equal([]byte(s.sign(parts[0]+"."+parts[1])), []byte(parts[2])) {
		return challenge("invalid_token", "InvalidAuthenticationToken", "The access token is invalid.")
	}
	claims, _ := decodeJWT(token)
	exp, _ := claims["exp"].(float64)
	if now().Unix() >= int64(exp) {
		return challenge("invalid_token", "ExpiredAuthenticationToken", "The access token expiry UTC time is earlier than current UTC time.")
	}
	aud, _ := claims["aud"].(string)
	if !s.acceptedAudience(aud) {
		return challenge("invalid_token", "InvalidAuthenticationTokenAudience", "The access token has been obtained for wrong audience or resource '"+aud+"'.")
	}
	return true
}

// aadError writes an Entra ID style OAuth error.
func aadError(w http.ResponseWriter, status int, errCode string, aadsts int, description string) {
	writeJSON(w, status, map[string]any{
		"error":             errCode,
		"error_description": fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s", aadsts, description, newUUID(), newUUID(), now().Format("2006-01-02 15:04:05Z")),
		"error_codes":       []int{aadsts},
		"timestamp":         now().Format("2006-01-02 15:04:05Z"),
		"trace_id":          newUUID(),
		"correlation_id":    newUUID(),
		"error_uri":         "https://login.microsoftonline.com/error?code=" + strconv.Itoa(aadsts),
	})
}

func (s *server) tenantOf(path string) string {
	return strings.SplitN(strings.TrimPrefix(path, "/"), "/", 2)[0]
}

func (s *server) knownTenant(t string) bool {
	return strings.EqualFold(t, s.tenant) || t == "organizations" || t == "common"
}

// instanceDiscovery answers MSAL's instance discovery for this host.
func (s *server) instanceDiscovery(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	tenant := s.tenant
	if ae := r.URL.Query().Get("authorization_endpoint"); ae != "" {
		if u, err := url.Parse(ae); err == nil {
			tenant = s.tenantOf(u.Path)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"tenant_discovery_endpoint": fmt.Sprintf("https://%s/%s/v2.0/.well-known/openid-configuration", host, tenant),
		"api-version":               "1.1",
		"metadata":                  []any{map[string]any{"preferred_network": host, "preferred_cache": host, "aliases": []string{host}}},
	})
}

func (s *server) openIDConfiguration(w http.ResponseWriter, r *http.Request) {
	tenant := s.tenantOf(r.URL.Path)
	if !s.knownTenant(tenant) {
		aadError(w, http.StatusBadRequest, "invalid_tenant", 90002, fmt.Sprintf("Tenant '%s' not found.", tenant))
		return
	}
	base := "https://" + r.Host + "/" + tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"jwks_uri":                              "https://" + r.Host + "/" + tenant + "/discovery/v2.0/keys",
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"issuer":                                "https://" + r.Host + "/" + s.tenant + "/v2.0",
		"request_uri_parameter_supported":       false,
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":         base + "/oauth2/v2.0/devicecode",
		"end_session_endpoint":                  base + "/oauth2/v2.0/logout",
		"tenant_region_scope":                   "EU",
		"cloud_instance_name":                   "microsoftonline.com",
	})
}

// tokenEndpoint is the client-credentials grant with a secret or a federated assertion.
func (s *server) tokenEndpoint(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Method != http.MethodPost {
		aadError(w, http.StatusMethodNotAllowed, "invalid_request", 900561, "The endpoint only accepts POST requests.")
		return
	}
	tenant := s.tenantOf(r.URL.Path)
	if !strings.EqualFold(tenant, s.tenant) {
		aadError(w, http.StatusBadRequest, "invalid_request", 90002, fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID.", tenant))
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		aadError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	if form.Get("grant_type") != "client_credentials" {
		aadError(w, http.StatusBadRequest, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '"+form.Get("grant_type")+"'.")
		return
	}
	clientID := form.Get("client_id")
	if user, pass, ok := r.BasicAuth(); ok && clientID == "" {
		clientID = user
		form.Set("client_secret", pass)
	}
	scope := form.Get("scope")
	if clientID == "" {
		aadError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
		return
	}
	resource := ""
	for _, sc := range strings.Fields(scope) {
		if strings.HasSuffix(sc, "/.default") {
			resource = strings.TrimSuffix(sc, "/.default")
		}
	}
	if resource == "" {
		aadError(w, http.StatusBadRequest, "invalid_scope", 1002012, "The provided value for scope "+scope+" is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")
		return
	}
	c := s.clients[clientID]
	if c == nil {
		aadError(w, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", clientID, s.tenant))
		return
	}
	switch {
	case form.Get("client_secret") != "":
		if c.Secret == "" || !hmac.Equal([]byte(c.Secret), []byte(form.Get("client_secret"))) {
			aadError(w, http.StatusUnauthorized, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '"+clientID+"'.")
			return
		}
	case form.Get("client_assertion") != "":
		if form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			aadError(w, http.StatusBadRequest, "invalid_request", 90014, "The request body must contain the following parameter: 'client_assertion_type'.")
			return
		}
		claims, ok := decodeJWT(form.Get("client_assertion"))
		if !ok {
			aadError(w, http.StatusBadRequest, "invalid_client", 50027, "JWT token is invalid or malformed.")
			return
		}
		if exp, ok := claims["exp"].(float64); ok && now().Unix() >= int64(exp) {
			aadError(w, http.StatusBadRequest, "invalid_client", 700024, "Client assertion is not within its valid time range.")
			return
		}
		iss, _ := claims["iss"].(string)
		sub, _ := claims["sub"].(string)
		matched := false
		for _, f := range c.Federated {
			if f.Issuer == iss && f.Subject == sub && audienceContains(claims["aud"], f.Audience) {
				matched = true
			}
		}
		if !matched {
			aadError(w, http.StatusBadRequest, "invalid_client", 700213, fmt.Sprintf("No matching federated identity record found for presented assertion subject '%s'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion.", sub))
			return
		}
	default:
		aadError(w, http.StatusUnauthorized, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return
	}
	if !s.issuable(resource) {
		aadError(w, http.StatusBadRequest, "invalid_resource", 500011, fmt.Sprintf("The resource principal named %s was not found in the tenant named %s.", resource, s.tenant))
		return
	}
	token, _ := s.issueToken(clientID, resource)
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     int(tokenLifetime.Seconds()),
		"ext_expires_in": int(tokenLifetime.Seconds()),
		"access_token":   token,
	})
}

func audienceContains(aud any, want string) bool {
	if want == "" {
		want = "api://AzureADTokenExchange"
	}
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		for _, x := range a {
			if x == want {
				return true
			}
		}
	}
	return false
}

// managedIdentityToken is the App Service managed identity endpoint (api-version 2019-08-01),
// what azure_identity's ManagedIdentityCredential calls when IDENTITY_ENDPOINT and
// IDENTITY_HEADER are set.
func (s *server) managedIdentityToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if r.Method != http.MethodGet {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"statusCode": 405, "message": "method not allowed"})
		return
	}
	if q.Get("api-version") != "2019-08-01" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "Unsupported api-version; this endpoint serves 2019-08-01.", "correlationId": newUUID()})
		return
	}
	mi := s.managed
	if mi == nil || r.Header.Get("X-IDENTITY-HEADER") != mi.Header || mi.Header == "" {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"statusCode": 401, "message": "The X-IDENTITY-HEADER header is missing or wrong.", "correlationId": newUUID()})
		return
	}
	if id := q.Get("client_id"); id != "" && id != mi.ClientID {
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "No User Assigned or Delegated Managed Identity found for specified ClientId/ResourceId/PrincipalId.", "correlationId": newUUID()})
		return
	}
	resource := q.Get("resource")
	if !s.issuable(resource) {
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "AADSTS500011: The resource principal named " + resource + " was not found in the tenant.", "correlationId": newUUID()})
		return
	}
	token, exp := s.issueToken(mi.ClientID, resource)
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": token,
		"expires_on":   strconv.FormatInt(exp.Unix(), 10),
		"resource":     resource,
		"token_type":   "Bearer",
		"client_id":    mi.ClientID,
	})
}
