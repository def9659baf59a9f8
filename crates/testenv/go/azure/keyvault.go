package main

// Azure Key Vault's data plane for keys and certificates, on its own HTTPS listener, reached as
// https://{vault}.vault.azure.net through the stand-in's CONNECT proxy (see serveVaultProxy and
// docs/azure-standin.md). Keys are real (Go crypto); signatures are real, in Key Vault's formats.
// Request bodies are decoded into azkeys v1.5.0 models with unknown fields rejected.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha1" // x5t
	_ "crypto/sha256"
	_ "crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// vaultDomain is the public cloud's Key Vault DNS suffix; vaults are {name}.vault.azure.net.
const vaultDomain = "vault.azure.net"

// vaultAudiences are the audiences a Key Vault token may carry.
var vaultAudiences = []string{"https://vault.azure.net", "https://vault.azure.net/"}

// vaultAPIVersions: the Key Vault data-plane versions accepted.
var vaultAPIVersions = map[string]bool{"7.0": true, "7.1": true, "7.2": true, "7.3": true, "7.4": true, "7.5": true, "7.6": true, "2025-07-01": true}

type keyVault struct {
	vaults map[string]map[string]*kvKey  // vault -> key name -> key
	certs  map[string]map[string]*kvCert // vault -> certificate name -> certificate
	caKey  *ecdsa.PrivateKey
	caCert *x509.Certificate
	caPEM  string
}

type kvKey struct {
	name     string
	versions []*kvKeyVersion // oldest first
}

type kvKeyVersion struct {
	version string
	kty     azkeys.KeyType
	curve   azkeys.CurveName
	ops     []azkeys.KeyOperation
	enabled bool
	nbf     *time.Time
	exp     *time.Time
	created time.Time
	updated time.Time
	tags    map[string]*string
	signer  crypto.Signer
}

type kvCert struct {
	name    string
	version string
	der     []byte
	kid     string
	created time.Time
}

func (s *server) keyVault() *keyVault {
	if s.kv != nil {
		return s.kv
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		fail("CA key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "azure-standin Key Vault test CA", Organization: []string{"Tidegate Test"}},
		NotBefore:             now().Add(-time.Hour),
		NotAfter:              now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		fail("CA certificate: %v", err)
	}
	cert, _ := x509.ParseCertificate(der)
	s.kv = &keyVault{
		vaults: map[string]map[string]*kvKey{},
		certs:  map[string]map[string]*kvCert{},
		caKey:  key, caCert: cert,
		caPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
	}
	return s.kv
}

// vaultName returns the vault a request is for: the first label of {vault}.vault.azure.net.
func vaultName(host string) (string, bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(host)
	name, ok := strings.CutSuffix(host, "."+vaultDomain)
	if !ok || name == "" || strings.Contains(name, ".") {
		return "", false
	}
	return name, true
}

func (s *server) vaultURL(vault string) string { return "https://" + vault + "." + vaultDomain }

func kvError(w http.ResponseWriter, status int, code, message string, inner string) {
	e := map[string]any{"code": code, "message": message}
	if inner != "" {
		e["innererror"] = map[string]any{"code": inner}
	}
	writeJSON(w, status, map[string]any{"error": e})
}

// serveVault is the vault listener.
func (s *server) serveVault(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("x-ms-request-id", newUUID())
	if id := r.Header.Get("x-ms-client-request-id"); id != "" {
		w.Header().Set("x-ms-client-request-id", id)
	}
	rec := &recorder{ResponseWriter: w}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routeVault(rec, r, body)
	s.requestLog = append(s.requestLog, loggedRequest{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Status: rec.status, Body: string(body),
		Time: now().Format(time.RFC3339Nano),
	})
}

// vaultAuthenticated checks the bearer token; otherwise it answers Key Vault's challenge.
func (s *server) vaultAuthenticated(w http.ResponseWriter, r *http.Request) bool {
	challenge := func(message string) bool {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization="%s/%s", resource="https://%s"`, s.armURL, s.tenant, vaultDomain))
		kvError(w, http.StatusUnauthorized, "Unauthorized", message, "")
		return false
	}
	auth := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if auth == "" || !ok {
		return challenge("AKV10000: Request is missing a Bearer or PoP token.")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || s.sign(parts[0]+"."+parts[1]) != parts[2] {
		return challenge("AKV10032: Invalid issuer or signature.")
	}
	claims, _ := decodeJWT(token)
	exp, _ := claims["exp"].(float64)
	if now().Unix() >= int64(exp) {
		return challenge("AKV10032: The token is expired.")
	}
	aud, _ := claims["aud"].(string)
	if !isVaultAudience(aud) {
		return challenge(fmt.Sprintf("AKV10022: Invalid audience. Expected https://%s, found: %s.", vaultDomain, aud))
	}
	return true
}

func isVaultAudience(aud string) bool {
	for _, a := range vaultAudiences {
		if strings.EqualFold(aud, a) {
			return true
		}
	}
	return false
}

func (s *server) routeVault(w http.ResponseWriter, r *http.Request, body []byte) {
	vault, ok := vaultName(r.Host)
	if !ok {
		kvError(w, http.StatusNotFound, "NotFound", "no vault at "+r.Host+"; vaults are {name}."+vaultDomain, "")
		return
	}
	// The challenge comes before anything else, as Key Vault's: clients elicit it with an empty body.
	if !s.vaultAuthenticated(w, r) {
		return
	}
	v := r.URL.Query().Get("api-version")
	if !vaultAPIVersions[v] {
		kvError(w, http.StatusBadRequest, "BadParameter", fmt.Sprintf("The specified version (%s) is not recognized. Consider using the latest supported version (7.4).", v), "")
		return
	}
	kv := s.keyVault()
	seg := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	// POST /keys/{name}/sign (an empty version, as clients send it for the latest) is
	// /keys/{name}//sign.
	if len(seg) == 3 && seg[0] == "keys" && (seg[2] == "sign" || seg[2] == "verify") && r.Method == http.MethodPost {
		seg = []string{seg[0], seg[1], "", seg[2]}
	}
	switch {
	case len(seg) == 3 && seg[0] == "keys" && seg[2] == "create" && r.Method == http.MethodPost:
		var p azkeys.CreateKeyParameters
		if _, aerr := decodeModel(body, &p, "", ""); aerr != nil {
			kvError(w, http.StatusBadRequest, "BadParameter", aerr.Message, "")
			return
		}
		k, msg := kv.create(vault, seg[1], p, "")
		if k == nil {
			kvError(w, http.StatusBadRequest, "BadParameter", msg, "")
			return
		}
		writeJSON(w, http.StatusOK, s.keyBundle(vault, seg[1], k))
	case seg[0] == "keys" && (len(seg) == 2 || len(seg) == 3) && r.Method == http.MethodGet:
		k, kv404 := kv.find(vault, seg[1], at(seg, 2))
		if k == nil {
			kvError(w, http.StatusNotFound, "KeyNotFound", kv404, "")
			return
		}
		writeJSON(w, http.StatusOK, s.keyBundle(vault, seg[1], k))
	case seg[0] == "keys" && (len(seg) == 2 || len(seg) == 3) && r.Method == http.MethodPatch:
		var p azkeys.UpdateKeyParameters
		if _, aerr := decodeModel(body, &p, "", ""); aerr != nil {
			kvError(w, http.StatusBadRequest, "BadParameter", aerr.Message, "")
			return
		}
		k, kv404 := kv.find(vault, seg[1], at(seg, 2))
		if k == nil {
			kvError(w, http.StatusNotFound, "KeyNotFound", kv404, "")
			return
		}
		if a := p.KeyAttributes; a != nil {
			if a.Enabled != nil {
				k.enabled = *a.Enabled
			}
			if a.NotBefore != nil {
				k.nbf = a.NotBefore
			}
			if a.Expires != nil {
				k.exp = a.Expires
			}
		}
		if p.KeyOps != nil {
			k.ops = nil
			for _, op := range p.KeyOps {
				if op != nil {
					k.ops = append(k.ops, *op)
				}
			}
		}
		if p.Tags != nil {
			k.tags = p.Tags
		}
		k.updated = now()
		writeJSON(w, http.StatusOK, s.keyBundle(vault, seg[1], k))
	case seg[0] == "keys" && len(seg) == 4 && (seg[3] == "sign" || seg[3] == "verify") && r.Method == http.MethodPost:
		k, kv404 := kv.find(vault, seg[1], seg[2])
		if k == nil {
			kvError(w, http.StatusNotFound, "KeyNotFound", kv404, "")
			return
		}
		if seg[3] == "sign" {
			s.kvSign(w, vault, seg[1], k, body)
		} else {
			s.kvVerify(w, k, body)
		}
	case seg[0] == "certificates" && (len(seg) == 2 || len(seg) == 3) && r.Method == http.MethodGet:
		c := kv.certs[vault][strings.ToLower(seg[1])]
		if c == nil || (at(seg, 2) != "" && at(seg, 2) != c.version) {
			kvError(w, http.StatusNotFound, "CertificateNotFound", fmt.Sprintf("A certificate with (name/id) %s was not found in this key vault.", strings.Join(seg[1:], "/")), "")
			return
		}
		writeJSON(w, http.StatusOK, s.certBundle(vault, c))
	default:
		kvError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("%s %s is not implemented by the stand-in's Key Vault.", r.Method, r.URL.Path), "")
	}
}

func at(seg []string, i int) string {
	if i < len(seg) {
		return seg[i]
	}
	return ""
}

// find returns a key version ("" or absent: the latest), or a KeyNotFound message.
func (kv *keyVault) find(vault, name, version string) (*kvKeyVersion, string) {
	k := kv.vaults[vault][strings.ToLower(name)]
	notFound := fmt.Sprintf("A key with (name/id) %s was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command.", strings.TrimSuffix(name+"/"+version, "/"))
	if k == nil || len(k.versions) == 0 {
		return nil, notFound
	}
	if version == "" {
		return k.versions[len(k.versions)-1], ""
	}
	for _, v := range k.versions {
		if v.version == version {
			return v, ""
		}
	}
	return nil, notFound
}

// create makes a new version of key name (version "" = random).
func (kv *keyVault) create(vault, name string, p azkeys.CreateKeyParameters, version string) (*kvKeyVersion, string) {
	if !validVaultName(name) {
		return nil, "The key name '" + name + "' is invalid: 1 to 127 letters, digits and dashes."
	}
	if p.Kty == nil {
		return nil, "Property kty is required."
	}
	v := &kvKeyVersion{kty: *p.Kty, enabled: true, created: now().Truncate(time.Second), tags: p.Tags}
	v.updated = v.created
	v.version = version
	if v.version == "" {
		v.version = randomHex(16)
	}
	switch *p.Kty {
	case azkeys.KeyTypeEC, azkeys.KeyTypeECHSM:
		curve := azkeys.CurveNameP256
		if p.Curve != nil {
			curve = *p.Curve
		}
		var c elliptic.Curve
		switch curve {
		case azkeys.CurveNameP256:
			c = elliptic.P256()
		case azkeys.CurveNameP384:
			c = elliptic.P384()
		case azkeys.CurveNameP521:
			c = elliptic.P521()
		default:
			return nil, "The curve " + string(curve) + " is not supported by the stand-in (P-256, P-384, P-521)."
		}
		key, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			fail("EC key: %v", err)
		}
		v.curve, v.signer = curve, key
	case azkeys.KeyTypeRSA, azkeys.KeyTypeRSAHSM:
		size := 2048
		if p.KeySize != nil {
			size = int(*p.KeySize)
		}
		if size != 2048 && size != 3072 && size != 4096 {
			return nil, fmt.Sprintf("The key size %d is not supported (2048, 3072, 4096).", size)
		}
		key, err := rsa.GenerateKey(rand.Reader, size)
		if err != nil {
			fail("RSA key: %v", err)
		}
		v.signer = key
	default:
		return nil, "The key type " + string(*p.Kty) + " is not supported by the stand-in (EC, EC-HSM, RSA, RSA-HSM)."
	}
	if p.KeyOps != nil {
		for _, op := range p.KeyOps {
			if op != nil {
				v.ops = append(v.ops, *op)
			}
		}
	} else if _, ok := v.signer.(*rsa.PrivateKey); ok {
		v.ops = []azkeys.KeyOperation{"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"}
	} else {
		v.ops = []azkeys.KeyOperation{"sign", "verify"}
	}
	if a := p.KeyAttributes; a != nil {
		if a.Enabled != nil {
			v.enabled = *a.Enabled
		}
		v.nbf, v.exp = a.NotBefore, a.Expires
	}
	if kv.vaults[vault] == nil {
		kv.vaults[vault] = map[string]*kvKey{}
	}
	k := kv.vaults[vault][strings.ToLower(name)]
	if k == nil {
		k = &kvKey{name: name}
		kv.vaults[vault][strings.ToLower(name)] = k
	}
	k.versions = append(k.versions, v)
	return v, ""
}

func validVaultName(name string) bool {
	if name == "" || len(name) > 127 {
		return false
	}
	for _, c := range name {
		if !(c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// keyBundle is the key as Key Vault shows it, in azkeys' own model.
func (s *server) keyBundle(vault, name string, k *kvKeyVersion) *azkeys.KeyBundle {
	kid := azkeys.ID(s.vaultURL(vault) + "/keys/" + name + "/" + k.version)
	kty := k.kty
	jwk := &azkeys.JSONWebKey{KID: &kid, Kty: &kty}
	for i := range k.ops {
		jwk.KeyOps = append(jwk.KeyOps, &k.ops[i])
	}
	switch key := k.signer.(type) {
	case *ecdsa.PrivateKey:
		crv := k.curve
		size := (key.Curve.Params().BitSize + 7) / 8
		jwk.Crv, jwk.X, jwk.Y = &crv, key.X.FillBytes(make([]byte, size)), key.Y.FillBytes(make([]byte, size))
	case *rsa.PrivateKey:
		jwk.N, jwk.E = key.N.Bytes(), big.NewInt(int64(key.E)).Bytes()
	}
	enabled, created, updated := k.enabled, k.created, k.updated
	level, days := "Recoverable+Purgeable", int32(90)
	return &azkeys.KeyBundle{
		Key:  jwk,
		Tags: k.tags,
		Attributes: &azkeys.KeyAttributes{
			Enabled: &enabled, NotBefore: k.nbf, Expires: k.exp, Created: &created, Updated: &updated,
			RecoveryLevel: &level, RecoverableDays: &days,
		},
	}
}

// signatureHash is the hash an algorithm signs, or 0 when the key cannot use it.
func signatureHash(alg azkeys.SignatureAlgorithm, k *kvKeyVersion) crypto.Hash {
	_, isRSA := k.signer.(*rsa.PrivateKey)
	switch alg {
	case "RS256", "PS256":
		if isRSA {
			return crypto.SHA256
		}
	case "RS384", "PS384":
		if isRSA {
			return crypto.SHA384
		}
	case "RS512", "PS512":
		if isRSA {
			return crypto.SHA512
		}
	case "ES256":
		if k.curve == azkeys.CurveNameP256 {
			return crypto.SHA256
		}
	case "ES384":
		if k.curve == azkeys.CurveNameP384 {
			return crypto.SHA384
		}
	case "ES512":
		if k.curve == azkeys.CurveNameP521 {
			return crypto.SHA512
		}
	}
	return 0
}

func (k *kvKeyVersion) permits(op azkeys.KeyOperation) bool {
	for _, o := range k.ops {
		if o == op {
			return true
		}
	}
	return false
}

func (s *server) kvSign(w http.ResponseWriter, vault, name string, k *kvKeyVersion, body []byte) {
	var p azkeys.SignParameters
	if _, aerr := decodeModel(body, &p, "", ""); aerr != nil {
		kvError(w, http.StatusBadRequest, "BadParameter", aerr.Message, "")
		return
	}
	if !k.enabled {
		kvError(w, http.StatusForbidden, "Forbidden", "Operation sign is not allowed on a disabled key.", "KeyDisabled")
		return
	}
	if (k.nbf != nil && now().Before(*k.nbf)) || (k.exp != nil && !now().Before(*k.exp)) {
		kvError(w, http.StatusForbidden, "Forbidden", "Operation sign is not allowed on an expired or not yet valid key.", "KeyNotYetValidOrExpired")
		return
	}
	if !k.permits(azkeys.KeyOperationSign) {
		kvError(w, http.StatusForbidden, "Forbidden", "Operation sign is not permitted on this key.", "KeyOperationForbidden")
		return
	}
	if p.Algorithm == nil || p.Value == nil {
		kvError(w, http.StatusBadRequest, "BadParameter", "Properties alg and value are required.", "")
		return
	}
	h := signatureHash(*p.Algorithm, k)
	if h == 0 {
		kvError(w, http.StatusBadRequest, "BadParameter", fmt.Sprintf("Algorithm %s is not supported for key type %s.", *p.Algorithm, k.kty), "")
		return
	}
	if len(p.Value) != h.Size() {
		kvError(w, http.StatusBadRequest, "BadParameter", fmt.Sprintf("Invalid digest length %d for algorithm %s; expected %d.", len(p.Value), *p.Algorithm, h.Size()), "")
		return
	}
	signature, err := kvSignDigest(k, *p.Algorithm, h, p.Value)
	if err != nil {
		kvError(w, http.StatusInternalServerError, "InternalError", err.Error(), "")
		return
	}
	kid := azkeys.ID(s.vaultURL(vault) + "/keys/" + name + "/" + k.version)
	writeJSON(w, http.StatusOK, &azkeys.KeyOperationResult{KID: &kid, Result: signature})
}

// kvSignDigest signs in Key Vault's formats: ECDSA as fixed-size r || s, RSASSA-PSS with the
// salt as long as the hash, RSASSA-PKCS1-v1_5.
func kvSignDigest(k *kvKeyVersion, alg azkeys.SignatureAlgorithm, h crypto.Hash, digest []byte) ([]byte, error) {
	switch key := k.signer.(type) {
	case *ecdsa.PrivateKey:
		r, sv, err := ecdsa.Sign(rand.Reader, key, digest)
		if err != nil {
			return nil, err
		}
		size := (key.Curve.Params().BitSize + 7) / 8
		return append(r.FillBytes(make([]byte, size)), sv.FillBytes(make([]byte, size))...), nil
	case *rsa.PrivateKey:
		if strings.HasPrefix(string(alg), "PS") {
			return rsa.SignPSS(rand.Reader, key, h, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		return rsa.SignPKCS1v15(rand.Reader, key, h, digest)
	}
	return nil, fmt.Errorf("unsupported key")
}

func (s *server) kvVerify(w http.ResponseWriter, k *kvKeyVersion, body []byte) {
	var p azkeys.VerifyParameters
	if _, aerr := decodeModel(body, &p, "", ""); aerr != nil {
		kvError(w, http.StatusBadRequest, "BadParameter", aerr.Message, "")
		return
	}
	if p.Algorithm == nil || p.Digest == nil || p.Signature == nil {
		kvError(w, http.StatusBadRequest, "BadParameter", "Properties alg, digest and value are required.", "")
		return
	}
	h := signatureHash(*p.Algorithm, k)
	if h == 0 {
		kvError(w, http.StatusBadRequest, "BadParameter", fmt.Sprintf("Algorithm %s is not supported for key type %s.", *p.Algorithm, k.kty), "")
		return
	}
	ok := len(p.Digest) == h.Size()
	if ok {
		switch key := k.signer.Public().(type) {
		case *ecdsa.PublicKey:
			size := (key.Curve.Params().BitSize + 7) / 8
			ok = len(p.Signature) == 2*size && ecdsa.Verify(key, p.Digest, new(big.Int).SetBytes(p.Signature[:size]), new(big.Int).SetBytes(p.Signature[size:]))
		case *rsa.PublicKey:
			if strings.HasPrefix(string(*p.Algorithm), "PS") {
				ok = rsa.VerifyPSS(key, h, p.Digest, p.Signature, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
			} else {
				ok = rsa.VerifyPKCS1v15(key, h, p.Digest, p.Signature) == nil
			}
		}
	}
	writeJSON(w, http.StatusOK, &azkeys.KeyVerifyResult{Value: &ok})
}

// issueCertificate makes an X.509 code-signing certificate for the latest version of key,
// signed by the stand-in's test CA, stored as certificate name.
func (s *server) issueCertificate(vault, name, keyName, subject string, validDays int) (*kvCert, string) {
	kv := s.keyVault()
	k, msg := kv.find(vault, keyName, "")
	if k == nil {
		return nil, msg
	}
	if validDays <= 0 {
		validDays = 365
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: subject, Organization: []string{"Tidegate Test"}},
		NotBefore:    now().Add(-time.Hour),
		NotAfter:     now().Add(time.Duration(validDays) * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		// A leaf: basic constraints present, not a CA.
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, kv.caCert, k.signer.Public(), kv.caKey)
	if err != nil {
		return nil, "issuing the certificate: " + err.Error()
	}
	if kv.certs[vault] == nil {
		kv.certs[vault] = map[string]*kvCert{}
	}
	c := &kvCert{name: name, version: randomHex(16), der: der, created: now().Truncate(time.Second),
		kid: s.vaultURL(vault) + "/keys/" + kv.vaults[vault][strings.ToLower(keyName)].name + "/" + k.version}
	kv.certs[vault][strings.ToLower(name)] = c
	return c, ""
}

// certBundle is the certificate as Key Vault's GET shows it (the fields of CertificateBundle).
func (s *server) certBundle(vault string, c *kvCert) map[string]any {
	base := s.vaultURL(vault)
	thumb := sha1Thumbprint(c.der)
	cert, _ := x509.ParseCertificate(c.der)
	return map[string]any{
		"id":  base + "/certificates/" + c.name + "/" + c.version,
		"kid": c.kid,
		"sid": base + "/secrets/" + c.name + "/" + c.version,
		"x5t": thumb,
		"cer": base64.StdEncoding.EncodeToString(c.der),
		"attributes": map[string]any{
			"enabled": true, "nbf": cert.NotBefore.Unix(), "exp": cert.NotAfter.Unix(),
			"created": c.created.Unix(), "updated": c.created.Unix(), "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90,
		},
	}
}

func sha1Thumbprint(der []byte) string {
	// x5t is the base64url SHA-1 thumbprint.
	h := crypto.SHA1.New()
	h.Write(der)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// serveVaultProxy is an HTTP CONNECT proxy that tunnels https://{vault}.vault.azure.net:443 to
// the vault listener and refuses every other destination: clients reach the vault under its
// real host name (so the challenge's resource is the vault's domain) without DNS.
func (s *server) serveVaultProxy(vaultAddr string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		host, port, err := net.SplitHostPort(r.Host)
		if r.Method != http.MethodConnect || err != nil || port != "443" {
			http.Error(w, "this proxy only tunnels CONNECT {vault}."+vaultDomain+":443", http.StatusForbidden)
			return
		}
		if _, ok := vaultName(host); !ok {
			http.Error(w, "this proxy only tunnels to {vault}."+vaultDomain, http.StatusForbidden)
			return
		}
		upstream, err := net.Dial("tcp", vaultAddr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		hj, ok := w.(http.Hijacker)
		if !ok {
			upstream.Close()
			http.Error(w, "no hijacking", http.StatusInternalServerError)
			return
		}
		conn, buf, err := hj.Hijack()
		if err != nil {
			upstream.Close()
			return
		}
		_, _ = conn.Write([]byte("HTTP/1.1 200 Connection Established\r\n\r\n"))
		go func() {
			if n := buf.Reader.Buffered(); n > 0 {
				pending, _ := buf.Reader.Peek(n)
				_, _ = upstream.Write(pending)
			}
			_, _ = io.Copy(upstream, conn)
			upstream.Close()
		}()
		go func() {
			_, _ = io.Copy(conn, upstream)
			conn.Close()
		}()
	}
}

// serveVaultControl is the Key Vault part of the control API (/_standin/keyvault/...), called
// with the lock held.
func (s *server) serveVaultControl(w http.ResponseWriter, r *http.Request, path string, body []byte) {
	kv := s.keyVault()
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
	case path == "keyvault/ca" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{"pem": kv.caPEM})
	case path == "keyvault/keys" && r.Method == http.MethodPost:
		var req struct {
			Vault   string `json:"vault"`
			Name    string `json:"name"`
			Version string `json:"version"`
			Kty     string `json:"kty"`
			Curve   string `json:"curve"`
			Size    int32  `json:"size"`
		}
		if !decode(&req) {
			return
		}
		kty := azkeys.KeyType(req.Kty)
		p := azkeys.CreateKeyParameters{Kty: &kty}
		if req.Curve != "" {
			c := azkeys.CurveName(req.Curve)
			p.Curve = &c
		}
		if req.Size != 0 {
			p.KeySize = &req.Size
		}
		k, msg := kv.create(strings.ToLower(req.Vault), req.Name, p, req.Version)
		if k == nil {
			bad("%s", msg)
			return
		}
		writeJSON(w, http.StatusOK, s.keyBundle(strings.ToLower(req.Vault), req.Name, k))
	case path == "keyvault/enabled" && r.Method == http.MethodPost:
		var req struct {
			Vault   string `json:"vault"`
			Name    string `json:"name"`
			Version string `json:"version"`
			Enabled bool   `json:"enabled"`
		}
		if !decode(&req) {
			return
		}
		k, msg := kv.find(strings.ToLower(req.Vault), req.Name, req.Version)
		if k == nil {
			bad("%s", msg)
			return
		}
		k.enabled, k.updated = req.Enabled, now()
		writeJSON(w, http.StatusOK, s.keyBundle(strings.ToLower(req.Vault), req.Name, k))
	case path == "keyvault/certificates" && r.Method == http.MethodPost:
		var req struct {
			Vault     string `json:"vault"`
			Name      string `json:"name"`
			Key       string `json:"key"`
			Subject   string `json:"subject"`
			ValidDays int    `json:"validDays"`
		}
		if !decode(&req) {
			return
		}
		if req.Subject == "" {
			req.Subject = req.Name
		}
		c, msg := s.issueCertificate(strings.ToLower(req.Vault), req.Name, req.Key, req.Subject, req.ValidDays)
		if c == nil {
			bad("%s", msg)
			return
		}
		out := s.certBundle(strings.ToLower(req.Vault), c)
		out["pem"] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der}))
		out["caPem"] = kv.caPEM
		writeJSON(w, http.StatusOK, out)
	case path == "keyvault/keys" && r.Method == http.MethodGet:
		var names []string
		for vault, keys := range kv.vaults {
			for _, k := range keys {
				names = append(names, vault+"/"+k.name)
			}
		}
		sort.Strings(names)
		writeJSON(w, http.StatusOK, names)
	default:
		bad("unknown Key Vault control request %s %s", r.Method, path)
	}
}
