//! Fuzzing the parsers of outside data in `tidegate-providers`: OCI manifests and indexes,
//! `WWW-Authenticate` challenges, `.dockerconfigjson`, `Retry-After`, the registry client's
//! answers (tag lists with `Link` pagination, referrers, manifests, token endpoints) from a
//! loopback server that answers with fuzzed status lines, headers and bodies, Trivy JSON
//! reports, Trivy Operator VulnerabilityReports, Defender for Cloud Resource Graph rows, ARM
//! responses and errors (Container Apps, Jobs, revisions, replicas), ARM and Key Vault ids and
//! Key Vault certificate bundles. Each must answer `Ok` or `Err`, never panic.
//!
//! Bounded run: `cargo test -p tidegate-providers --test fuzz`. Longer run: see
//! `docs/fuzzing.md`.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tidegate_core::{Digest, ImageRef};
use tidegate_fuzz::{fixture, fixtures, target, text};
use tidegate_providers::acr_tasks::RegistryId;
use tidegate_providers::azure::error::ArmError;
use tidegate_providers::azure::key_vault::{CertificateBundle, Collection, ObjectId};
use tidegate_providers::azure::models::{ContainerApp, Job, JobExecution, Replica, Revision};
use tidegate_providers::azure::resource_id::ResourceId;
use tidegate_providers::defender::{self, ImageKey};
use tidegate_providers::registry::auth::{Challenge, from_docker_config, parse_challenge};
use tidegate_providers::registry::retry::parse_retry_after;
use tidegate_providers::registry::types::{ImageIndex, ImageManifest};
use tidegate_providers::registry::{ClientOptions, RegistryClient, Repository};
use tidegate_providers::{report, trivy_operator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HEX: &str = "ce1b317e127fb4b0d72f66285df6a71cad81e71ec2ec2512fbdce9faa94939dc";

fn digest() -> Digest {
    format!("sha256:{HEX}").parse().expect("digest")
}

fn strings(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

#[test]
fn oci_manifests_and_indexes() {
    let mut seeds = fixtures("oci/examples", ".json");
    seeds.push(fixture("oci/schema/image-manifest-schema.json"));
    target("providers-oci-manifest").iterations(4_000).run(&seeds, |input| {
        if let Ok(manifest) = serde_json::from_slice::<ImageManifest>(input) {
            let bytes = serde_json::to_vec(&manifest).map_err(|e| format!("manifest write: {e}"))?;
            let again: ImageManifest = serde_json::from_slice(&bytes).map_err(|e| format!("manifest re-read: {e}"))?;
            if again != manifest {
                return Err("manifest round trip: a manifest does not read back as itself".into());
            }
        }
        if let Ok(index) = serde_json::from_slice::<ImageIndex>(input) {
            let bytes = serde_json::to_vec(&index).map_err(|e| format!("index write: {e}"))?;
            let again: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| format!("index re-read: {e}"))?;
            if again != index {
                return Err("index round trip: an index does not read back as itself".into());
            }
        }
        Ok(())
    });
}

#[test]
fn www_authenticate_challenges() {
    let seeds = strings(&[
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        r#"Bearer realm="https://myregistry.azurecr.io/oauth2/token",service="myregistry.azurecr.io",scope="repository:shop/web:pull,push""#,
        r#"Basic realm="Registry Realm""#,
        r#"bearer realm=http://127.0.0.1:5000/token, service=reg"#,
    ]);
    target("providers-www-authenticate").iterations(20_000).run(&seeds, |input| {
        if let Some(Challenge::Bearer { realm, .. }) = parse_challenge(&text(input))
            && !text(input).contains(realm.as_str())
        {
            return Err(format!("challenge realm: {realm:?} is not in the header"));
        }
        Ok(())
    });
}

#[test]
fn docker_config_json() {
    let seeds = vec![
        json!({"auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"},
            "127.0.0.1:5000": {"username": "u", "password": "p"},
            "myregistry.azurecr.io": {"auth": "MDAwMDAwMDAtMDAwMDo="}
        }})
        .to_string()
        .into_bytes(),
    ];
    target("providers-dockerconfigjson").iterations(4_000).run(&seeds, |input| {
        let _ = from_docker_config(input);
        Ok(())
    });
}

#[test]
fn retry_after_values() {
    let seeds = strings(&[
        "120",
        "0",
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Wed, 21 Oct 2125 07:28:00 GMT",
        "99999999999999999999",
    ]);
    let now = SystemTime::now();
    target("providers-retry-after").iterations(20_000).run(&seeds, |input| {
        let _ = parse_retry_after(&text(input), now);
        Ok(())
    });
}

#[test]
fn trivy_json_reports() {
    let seeds = fixtures("scanners/trivy", ".json.golden");
    let image = format!("registry.example.com/shop/app@sha256:{HEX}");
    let now = jiff::Timestamp::now();
    target("providers-trivy-report").iterations(1_000).run(&seeds, |input| {
        let input = text(input);
        let _ = report::parse_trivy(&input);
        let _ = report::check_report(&input, &image, &digest(), now, jiff::SignedDuration::from_hours(24));
        Ok(())
    });
}

#[test]
fn trivy_operator_vulnerability_reports() {
    let yaml: Value = serde_yaml::from_slice(&fixture("scanners/trivy-operator/vulnerability-ttl.yaml")).expect("yaml");
    let seeds = vec![serde_json::to_vec(&yaml).expect("json")];
    let image: ImageRef = "index.docker.io/library/nginx:1.16".parse().expect("image");
    let now = jiff::Timestamp::now();
    target("providers-trivy-operator").iterations(1_500).run(&seeds, |input| {
        let value = match serde_json::from_slice::<Value>(input) {
            Ok(value) => value,
            Err(_) => match serde_yaml::from_slice::<Value>(input) {
                Ok(value) => value,
                Err(_) => return Ok(()),
            },
        };
        if let Ok(parsed) = trivy_operator::parse(value) {
            let digest = parsed.digest.as_deref().and_then(|d| d.parse::<Digest>().ok()).unwrap_or_else(digest);
            let _ = trivy_operator::is_of(&parsed, &image, &digest);
            let _ = trivy_operator::newest_fresh(vec![("r".into(), parsed)], now, jiff::SignedDuration::from_hours(24));
        }
        Ok(())
    });
}

/// A Defender for Cloud sub-assessment row (written for this test, after the Resource Graph
/// examples in `shared/fixtures/azure/resourcegraph`).
fn defender_row() -> Value {
    json!({
        "id": "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/shopacr/providers/Microsoft.Security/assessments/dbd0cb49-b563-45e7-9724-889e799fa648/subassessments/CVE-2024-1-x",
        "subscriptionId": "s1",
        "properties": {
            "id": "CVE-2024-1",
            "additionalData": {
                "vulnerabilityDetails": {"cveId": "CVE-2024-1", "severity": "High"},
                "artifactDetails": {"registryHost": "shopacr.azurecr.io", "repositoryName": "shop/app", "digest": format!("sha256:{HEX}")},
                "softwareDetails": {"packageName": "openssl", "version": "3.0.1-r0", "fixedVersion": "3.0.2-r0", "fixStatus": "FixAvailable"}
            },
            "timeGenerated": "2026-12-02T10:00:00.1234567Z",
            "status": {"code": "Unhealthy", "severity": "High"}
        }
    })
}

#[test]
fn defender_resource_graph_rows() {
    let mut seeds = vec![defender_row().to_string().into_bytes()];
    seeds.extend(fixtures("azure/resourcegraph", ".json"));
    let key = ImageKey::new(&format!("shopacr.azurecr.io/shop/app@sha256:{HEX}"), &digest()).expect("key");
    let scopes = vec!["/subscriptions/s1".to_string(), "/subscriptions/s2/resourceGroups/rg".to_string()];
    target("providers-defender-rows").iterations(1_500).run(&seeds, |input| {
        let Ok(value) = serde_json::from_slice::<Value>(input) else { return Ok(()) };
        let rows = match value.pointer("/responses/200/body/data") {
            Some(Value::Array(rows)) => rows.clone(),
            _ => vec![value],
        };
        for row in &rows {
            let _ = defender::read_row(row, &key);
            let id = row.get("id").and_then(Value::as_str).unwrap_or_default();
            let _ = defender::within_scopes(id, &scopes);
            let _ = defender::registry_scopes(&[id.to_string()]);
        }
        Ok(())
    });
}

#[test]
fn image_keys_and_queries() {
    let seeds = strings(&[
        &format!("shopacr.azurecr.io/shop/app@sha256:{HEX}"),
        &format!("127.0.0.1:5000/a/b/c@sha256:{HEX}"),
        "shopacr.azurecr.io/shop/app:1.0",
    ]);
    target("providers-defender-image-key").iterations(10_000).run(&seeds, |input| {
        let image = text(input);
        let digest = image.split_once('@').and_then(|(_, d)| d.parse::<Digest>().ok()).unwrap_or_else(digest);
        if let Ok(key) = ImageKey::new(&image, &digest) {
            let query = defender::query(&key).map_err(|e| format!("query: a key that parsed gives no query: {e}"))?;
            if query.contains('\'') || query.matches('"').count() % 2 != 0 {
                return Err(format!("query quoting: {image:?} gives {query}"));
            }
        }
        Ok(())
    });
}

#[test]
fn arm_resource_ids() {
    let seeds = strings(&[
        "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/shopacr",
        "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.App/containerApps/web",
        "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.App/jobs/nightly",
        "/subscriptions/s1",
    ]);
    target("providers-arm-ids").iterations(3_000).run(&seeds, |input| {
        let id = text(input);
        if let Ok(registry) = RegistryId::parse(&id) {
            let _ = (
                registry.name(),
                registry.child("runs/x"),
                registry.is_within(&id),
                registry.is_within("/subscriptions"),
            );
        }
        if let Ok(resource) = ResourceId::parse(&id) {
            let _ = (resource.subscription(), resource.resource_group(), resource.name(), resource.is_within(&id));
        }
        Ok(())
    });
}

#[test]
fn arm_container_apps_responses() {
    let mut seeds = Vec::new();
    for example in fixtures("azure/containerapps/examples", ".json") {
        let value: Value = serde_json::from_slice(&example).expect("example");
        if let Some(Value::Object(responses)) = value.get("responses") {
            for response in responses.values() {
                if let Some(body) = response.get("body") {
                    seeds.push(serde_json::to_vec(body).expect("body"));
                }
            }
        }
    }
    target("providers-arm-container-apps").iterations(800).run(&seeds, |input| {
        let _ = serde_json::from_slice::<ContainerApp>(input);
        let _ = serde_json::from_slice::<Revision>(input).map(|r| (r.is_ready(), r.has_failed()));
        let _ = serde_json::from_slice::<Replica>(input);
        let _ = serde_json::from_slice::<Job>(input);
        let _ = serde_json::from_slice::<JobExecution>(input).map(|e| e.is_finished());
        for status in [400, 404, 409, 429, 500] {
            let error = ArmError::from_response(status, input, Some("req".into()), "GET", "/subscriptions/s1");
            let _ =
                (error.is_retryable(), error.is_conflict(), error.is_not_found(), error.is_auth(), error.to_string());
        }
        Ok(())
    });
}

#[test]
fn key_vault_identifiers_and_certificates() {
    let seeds = strings(&[
        "https://myvault.vault.azure.net/keys/signing-key/4387e9f3d6e14c459867679a90fd0f79",
        "https://myvault.vault.azure.net/certificates/signing/",
        "https://127.0.0.1:8443/keys/k",
    ]);
    target("providers-key-vault-ids").iterations(4_000).run(&seeds, |input| {
        let id = text(input);
        for collection in [Collection::Keys, Collection::Certificates] {
            if let Ok(parsed) = ObjectId::parse(&id, collection) {
                let again = ObjectId::parse(
                    &format!("{}{}", parsed.vault.as_str().trim_end_matches('/'), parsed.path()),
                    collection,
                )
                .map_err(|e| format!("object id re-parse: {id:?} → {}: {e}", parsed.path()))?;
                if !again.same_object(&parsed) {
                    return Err(format!("object id round trip: {id:?} → {again:?}"));
                }
            }
        }
        Ok(())
    });
    let bundle = json!({"id": "https://myvault.vault.azure.net/certificates/c/1", "kid": "https://myvault.vault.azure.net/keys/c/1",
        "cer": "MIIBszCCAVmgAwIBAgIUQ", "attributes": {"enabled": true, "exp": 1893456000, "nbf": 1577836800}});
    let seeds = vec![
        bundle.to_string().into_bytes(),
        fixture("azure/keyvault/sign-example.json"),
        fixture("azure/keyvault/verify-example.json"),
    ];
    target("providers-key-vault-certificate").iterations(3_000).run(&seeds, |input| {
        if let Ok(bundle) = serde_json::from_slice::<CertificateBundle>(input) {
            let _ = bundle.der();
        }
        Ok(())
    });
}

/// A loopback HTTP/1.1 server that answers each connection with the next queued response (then
/// `404`), whatever was asked.
struct Loopback {
    host: String,
    queue: Arc<Mutex<VecDeque<Vec<u8>>>>,
}

impl Loopback {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = listener.local_addr().expect("addr").to_string();
        let queue: Arc<Mutex<VecDeque<Vec<u8>>>> = Arc::default();
        let answers = queue.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let answers = answers.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65_536 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let next = answers.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                    let answer = next.unwrap_or_else(|| response(404, &[], b""));
                    let _ = stream.write_all(&answer).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { host, queue }
    }

    fn answer(&self, responses: Vec<Vec<u8>>) {
        *self.queue.lock().unwrap_or_else(|e| e.into_inner()) = responses.into();
    }
}

/// An HTTP/1.1 response; header values lose their line breaks (the server would not send them).
fn response(status: u16, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out =
        format!("HTTP/1.1 {status} Fuzz\r\ncontent-length: {}\r\nconnection: close\r\n", body.len()).into_bytes();
    for (name, value) in headers {
        let value: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// What the registry answers, as the fuzzer mutates it.
fn exchange_seeds() -> Vec<Vec<u8>> {
    let index = fixture("oci/examples/image-index.json");
    let manifest = fixture("oci/examples/manifest.json");
    let challenge = r#"Bearer realm="{TOKEN}",service="registry",scope="repository:shop/app:pull""#;
    [
        json!({"op": "tags", "status": 200, "headers": {"link": "</v2/shop/app/tags/list?n=100&last=b>; rel=\"next\""},
               "body": {"name": "shop/app", "tags": ["1.0", "latest"]}}),
        json!({"op": "tags", "status": 401, "challenge": challenge, "token": {"token": "t0k3n", "expires_in": 300},
               "headers": {"content-type": "application/json"}, "body": {"name": "shop/app", "tags": ["a"]}}),
        json!({"op": "referrers", "status": 200, "headers": {"content-type": "application/vnd.oci.image.index.v1+json"},
               "body": serde_json::from_slice::<Value>(&index).expect("index")}),
        json!({"op": "manifest", "status": 200, "headers": {"content-type": "", "docker-content-digest": "sha256:00"},
               "body": serde_json::from_slice::<Value>(&manifest).expect("manifest")}),
        json!({"op": "head", "status": 200, "headers": {"docker-content-digest": format!("sha256:{HEX}"), "content-type": "application/vnd.oci.image.manifest.v1+json"},
               "body": ""}),
        json!({"op": "tags", "status": 429, "headers": {"retry-after": "1"}, "body": {"errors": [{"code": "TOOMANYREQUESTS"}]}}),
    ]
    .iter()
    .map(|v| v.to_string().into_bytes())
    .collect()
}

/// A loopback registry that answers fuzzed exchanges, and what calls it.
struct Registry {
    runtime: tokio::runtime::Runtime,
    server: Loopback,
    repo: Repository,
    options: ClientOptions,
}

impl Registry {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let server = runtime.block_on(Loopback::start());
        let host = server.host.clone();
        let options = ClientOptions {
            plain_http: BTreeSet::from([host.clone()]),
            requests_per_second: 1_000_000.0,
            max_retries: 0,
            timeout: Duration::from_secs(5),
            max_retry_after: Duration::ZERO,
            ..ClientOptions::default()
        };
        Self { runtime, server, repo: Repository::new(host, "shop/app"), options }
    }

    /// Answers the exchange `input` describes (see [`exchange_seeds`]) to a fresh client.
    fn exchange(&self, input: &[u8]) -> Result<(), String> {
        let (server, repo, host) = (&self.server, &self.repo, &self.server.host);
        let Ok(exchange) = serde_json::from_slice::<Value>(input) else { return Ok(()) };
        let status = exchange["status"].as_u64().and_then(|s| u16::try_from(s).ok()).filter(|s| (100..600).contains(s));
        let headers: Vec<(String, String)> = exchange["headers"]
            .as_object()
            .map(|h| {
                h.iter()
                    .filter(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
                    .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let body = match &exchange["body"] {
            Value::String(text) => text.as_bytes().to_vec(),
            other => other.to_string().into_bytes(),
        };
        let mut answers = Vec::new();
        if let Some(challenge) = exchange["challenge"].as_str() {
            let challenge = challenge.replace("{TOKEN}", &format!("http://{host}/token"));
            answers.push(response(401, &[("www-authenticate".into(), challenge)], b""));
            answers.push(response(
                200,
                &[("content-type".into(), "application/json".into())],
                exchange["token"].to_string().as_bytes(),
            ));
        }
        answers.push(response(status.unwrap_or(200), &headers, &body));
        server.answer(answers);
        let client = RegistryClient::new(self.options.clone()).map_err(|e| format!("client: {e}"))?;
        self.runtime.block_on(async {
            match exchange["op"].as_str().unwrap_or_default() {
                "referrers" => drop(client.referrers(repo, &format!("sha256:{HEX}"), None).await),
                "manifest" => drop(client.get_manifest(repo, "latest").await),
                "head" => drop(client.head_manifest(repo, &format!("sha256:{HEX}")).await),
                _ => drop(client.tags(repo).await),
            }
        });
        Ok(())
    }
}

#[test]
fn registry_client_answers() {
    let registry = Registry::start();
    target("providers-registry-client").iterations(250).run(&exchange_seeds(), |input| registry.exchange(input));
}

/// The controller must not panic when a registry's tag list has a `Link` header whose `>`
/// comes before its `<`.
#[test]
fn regression_link_header_with_brackets_reversed() {
    let registry = Registry::start();
    let input = json!({"op": "tags", "status": 200, "headers": {"link": ">x<; rel=\"next\""}, "body": {"tags": []}});
    registry.exchange(input.to_string().as_bytes()).expect("no panic");
}

/// The controller must not panic when a token endpoint says its token lasts `u64::MAX` seconds.
#[test]
fn regression_token_that_never_expires() {
    let registry = Registry::start();
    let challenge = r#"Bearer realm="{TOKEN}",service="registry",scope="repository:shop/app:pull""#;
    let input = json!({"op": "tags", "status": 200, "challenge": challenge,
                       "token": {"token": "t", "expires_in": u64::MAX}, "body": {"tags": []}});
    registry.exchange(input.to_string().as_bytes()).expect("no panic");
}
