package fidelity

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	_ "crypto/sha512"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// vaultClient is an http.Client that reaches {vault}.vault.azure.net through the stand-in's
// CONNECT proxy (AZURE_STANDIN_VAULT_PROXY) and everything else directly.
func (e *env) vaultClient(t *testing.T) *http.Client {
	t.Helper()
	proxy, err := url.Parse(os.Getenv("AZURE_STANDIN_VAULT_PROXY"))
	if err != nil || proxy.Host == "" {
		t.Fatalf("AZURE_STANDIN_VAULT_PROXY is not set")
	}
	base := e.http.Transport.(*http.Transport)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: base.TLSClientConfig.Clone(),
		Proxy: func(r *http.Request) (*url.URL, error) {
			if strings.HasSuffix(r.URL.Hostname(), ".vault.azure.net") {
				return proxy, nil
			}
			return nil, nil
		},
	}}
}

func (e *env) keysClient(t *testing.T, vault string) *azkeys.Client {
	t.Helper()
	c, err := azkeys.NewClient("https://"+vault+".vault.azure.net", e.credential(t), &azkeys.ClientOptions{
		ClientOptions: policy.ClientOptions{Transport: e.vaultClient(t), Retry: policy.RetryOptions{MaxRetries: -1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSDKKeyVault drives the stand-in's Key Vault with azkeys v1.5.0 (its challenge policy with
// resource verification on, api-version 2025-07-01): CreateKey for every supported key type,
// GetKey, Sign and Verify (checked independently with Go crypto), UpdateKey disabling a key,
// after which Sign fails with 403 KeyDisabled.
func TestSDKKeyVault(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	c := e.keysClient(t, "fidelity")
	cases := []struct {
		name string
		kty  azkeys.KeyType
		crv  *azkeys.CurveName
		size *int32
		alg  azkeys.SignatureAlgorithm
		hash crypto.Hash
	}{
		{"ec256", azkeys.KeyTypeEC, to.Ptr(azkeys.CurveNameP256), nil, azkeys.SignatureAlgorithmES256, crypto.SHA256},
		{"ec384", azkeys.KeyTypeEC, to.Ptr(azkeys.CurveNameP384), nil, azkeys.SignatureAlgorithmES384, crypto.SHA384},
		{"ec521", azkeys.KeyTypeECHSM, to.Ptr(azkeys.CurveNameP521), nil, azkeys.SignatureAlgorithmES512, crypto.SHA512},
		{"rsa2048", azkeys.KeyTypeRSA, nil, to.Ptr[int32](2048), azkeys.SignatureAlgorithmPS256, crypto.SHA256},
		{"rsa3072", azkeys.KeyTypeRSA, nil, to.Ptr[int32](3072), azkeys.SignatureAlgorithmPS384, crypto.SHA384},
		{"rsa4096", azkeys.KeyTypeRSAHSM, nil, to.Ptr[int32](4096), azkeys.SignatureAlgorithmRS512, crypto.SHA512},
	}
	for _, tc := range cases {
		created, err := c.CreateKey(ctx, tc.name, azkeys.CreateKeyParameters{Kty: &tc.kty, Curve: tc.crv, KeySize: tc.size}, nil)
		if err != nil {
			t.Fatalf("%s: CreateKey: %v", tc.name, err)
		}
		kid := created.Key.KID
		if kid == nil || kid.Name() != tc.name || kid.Version() == "" || !strings.HasPrefix(string(*kid), "https://fidelity.vault.azure.net/keys/") {
			t.Fatalf("%s: kid %v", tc.name, kid)
		}
		got, err := c.GetKey(ctx, tc.name, "", nil)
		if err != nil || got.Key.KID == nil || *got.Key.KID != *kid || got.Attributes == nil || got.Attributes.Enabled == nil || !*got.Attributes.Enabled {
			t.Fatalf("%s: GetKey: %+v %v", tc.name, got, err)
		}
		h := tc.hash.New()
		h.Write([]byte("the signing input of " + tc.name))
		digest := h.Sum(nil)
		signed, err := c.Sign(ctx, tc.name, kid.Version(), azkeys.SignParameters{Algorithm: &tc.alg, Value: digest}, nil)
		if err != nil {
			t.Fatalf("%s: Sign: %v", tc.name, err)
		}
		if signed.KID == nil || *signed.KID != *kid {
			t.Fatalf("%s: Sign answered kid %v", tc.name, signed.KID)
		}
		if !independentlyVerified(t, got.Key, tc.alg, tc.hash, digest, signed.Result) {
			t.Fatalf("%s: the signature does not verify with the key's public JWK", tc.name)
		}
		verified, err := c.Verify(ctx, tc.name, kid.Version(), azkeys.VerifyParameters{Algorithm: &tc.alg, Digest: digest, Signature: signed.Result}, nil)
		if err != nil || verified.Value == nil || !*verified.Value {
			t.Fatalf("%s: Verify: %+v %v", tc.name, verified, err)
		}
		bad := append([]byte{}, signed.Result...)
		bad[len(bad)/2] ^= 1
		verified, err = c.Verify(ctx, tc.name, kid.Version(), azkeys.VerifyParameters{Algorithm: &tc.alg, Digest: digest, Signature: bad}, nil)
		if err != nil || verified.Value == nil || *verified.Value {
			t.Fatalf("%s: Verify of a tampered signature: %+v %v", tc.name, verified, err)
		}
	}

	// A disabled key: Sign is refused with Key Vault's error.
	updated, err := c.UpdateKey(ctx, "ec256", "", azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(false)}}, nil)
	if err != nil || updated.Attributes == nil || updated.Attributes.Enabled == nil || *updated.Attributes.Enabled {
		t.Fatalf("UpdateKey: %+v %v", updated, err)
	}
	digest := sha256.Sum256([]byte("x"))
	_, err = c.Sign(ctx, "ec256", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest[:]}, nil)
	var respErr *azcore.ResponseError
	if !errors.As(err, &respErr) || respErr.StatusCode != http.StatusForbidden || respErr.ErrorCode != "Forbidden" || !strings.Contains(err.Error(), "disabled key") || !strings.Contains(err.Error(), "KeyDisabled") {
		t.Fatalf("Sign with a disabled key: %v", err)
	}
	// A wrong algorithm for the key type, and a wrong digest length.
	_, err = c.Sign(ctx, "rsa2048", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest[:]}, nil)
	if !errors.As(err, &respErr) || respErr.StatusCode != http.StatusBadRequest {
		t.Fatalf("ES256 with an RSA key: %v", err)
	}
	_, err = c.Sign(ctx, "rsa2048", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmPS256), Value: digest[:20]}, nil)
	if !errors.As(err, &respErr) || respErr.StatusCode != http.StatusBadRequest {
		t.Fatalf("a short digest: %v", err)
	}
}

// independentlyVerified checks a Key Vault signature with the public JWK the vault returned.
func independentlyVerified(t *testing.T, jwk *azkeys.JSONWebKey, alg azkeys.SignatureAlgorithm, h crypto.Hash, digest, sig []byte) bool {
	t.Helper()
	switch *jwk.Kty {
	case azkeys.KeyTypeEC, azkeys.KeyTypeECHSM:
		curve := map[azkeys.CurveName]elliptic.Curve{azkeys.CurveNameP256: elliptic.P256(), azkeys.CurveNameP384: elliptic.P384(), azkeys.CurveNameP521: elliptic.P521()}[*jwk.Crv]
		pub := &ecdsa.PublicKey{Curve: curve, X: new(big.Int).SetBytes(jwk.X), Y: new(big.Int).SetBytes(jwk.Y)}
		size := (curve.Params().BitSize + 7) / 8
		return len(sig) == 2*size && ecdsa.Verify(pub, digest, new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:]))
	default:
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(jwk.N), E: int(new(big.Int).SetBytes(jwk.E).Int64())}
		if strings.HasPrefix(string(alg), "PS") {
			return rsa.VerifyPSS(pub, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
		return rsa.VerifyPKCS1v15(pub, h, digest, sig) == nil
	}
}

// TestKeyVaultAuthentication: an unauthenticated request gets Key Vault's challenge, and an ARM
// token is refused; the challenge names the vault's own resource.
func TestKeyVaultAuthentication(t *testing.T) {
	e := setup(t)
	client := e.vaultClient(t)
	get := func(token string) *http.Response {
		req, _ := http.NewRequest("GET", "https://fidelity-auth.vault.azure.net/keys/none?api-version=7.4", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := get("")
	challenge := res.Header.Get("WWW-Authenticate")
	if res.StatusCode != 401 || !strings.Contains(challenge, `resource="https://vault.azure.net"`) || !strings.Contains(challenge, `authorization="`+e.arm+"/"+e.tenant+`"`) {
		t.Fatalf("challenge: %d %q", res.StatusCode, challenge)
	}
	armToken, err := e.credential(t).GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{e.arm + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	res = get(armToken.Token)
	var body struct {
		Error struct{ Code, Message string }
	}
	_ = json.NewDecoder(res.Body).Decode(&body)
	if res.StatusCode != 401 || body.Error.Code != "Unauthorized" || !strings.Contains(body.Error.Message, "AKV10022") {
		t.Fatalf("an ARM token: %d %+v", res.StatusCode, body)
	}
	// The proxy tunnels only to vaults.
	req, _ := http.NewRequest("GET", "https://example.com/", nil)
	proxied := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12},
		Proxy:           func(*http.Request) (*url.URL, error) { return url.Parse(os.Getenv("AZURE_STANDIN_VAULT_PROXY")) },
	}}
	if res, err := proxied.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("the proxy tunnelled to example.com: %d", res.StatusCode)
	}
}

// TestKeyVaultRESTExamples replays the official Key Vault examples (sign, verify): the request
// built from the example's parameters is accepted, and every key of the example's response is
// in ours.
func TestKeyVaultRESTExamples(t *testing.T) {
	e := setup(t)
	dir := os.Getenv("AZURE_STANDIN_KEYVAULT_EXAMPLES")
	if dir == "" {
		dir = filepath.Join(e.examples, "..", "..", "keyvault")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		t.Fatalf("no Key Vault examples in %s", dir)
	}
	cred := e.credential(t)
	token, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://vault.azure.net/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	client := e.vaultClient(t)
	created := map[string]bool{}
	for _, file := range files {
		b, _ := os.ReadFile(file)
		var ex struct {
			Parameters map[string]any            `json:"parameters"`
			Responses  map[string]map[string]any `json:"responses"`
		}
		if err := json.Unmarshal(b, &ex); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		p := ex.Parameters
		vaultURL, _ := url.Parse(p["vaultBaseUrl"].(string))
		vault := strings.Split(vaultURL.Hostname(), ".")[0]
		name, version := p["key-name"].(string), p["key-version"].(string)
		body, _ := json.Marshal(p["parameters"])
		alg, _ := p["parameters"].(map[string]any)["alg"].(string)
		if !created[vault+"/"+name] {
			kty, size := "RSA", 2048
			if strings.HasPrefix(alg, "ES") {
				kty = "EC"
			}
			e.control(t, "POST", "keyvault/keys", map[string]any{"vault": vault, "name": name, "version": version, "kty": kty, "size": size})
			created[vault+"/"+name] = true
		}
		op := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(file), "-example.json"), ".json")
		u := vaultURL.JoinPath("keys", name, version, op)
		u.RawQuery = "api-version=" + p["api-version"].(string)
		req, _ := http.NewRequest("POST", u.String(), bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token.Token)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var got map[string]any
		_ = json.NewDecoder(res.Body).Decode(&got)
		res.Body.Close()
		want, ok := ex.Responses[itoa(res.StatusCode)]
		if !ok {
			t.Fatalf("%s: status %d is not one the example documents: %v", file, res.StatusCode, got)
		}
		for key := range want["body"].(map[string]any) {
			if _, ok := got[key]; !ok {
				t.Fatalf("%s: the response lacks %q: %v", file, key, got)
			}
		}
		if op == "sign" {
			sig, _ := base64.RawURLEncoding.DecodeString(got["value"].(string))
			if len(sig) != 256 {
				t.Fatalf("%s: an RS512 signature of a 2048-bit key has 256 bytes, not %d", file, len(sig))
			}
		}
	}
}

func itoa(n int) string {
	return big.NewInt(int64(n)).String()
}
