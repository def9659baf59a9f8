//! Staging tests: HTTP checks against the staging URL and a test Job whose outcome decides.

use std::time::Duration;

use tidegate_api::image_policy::HttpCheck;

use crate::Result;

/// The result of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    /// The check's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was observed.
    pub message: String,
}

/// How staging HTTP checks reach what they call, beyond the system's trust roots and DNS.
#[derive(Clone, Debug, Default)]
pub struct HttpCheckOptions {
    /// Extra CA certificates (PEM) trusted for HTTPS staging URLs, e.g. a private environment's.
    pub extra_roots_pem: Vec<u8>,
    /// Host-name suffixes resolved to a fixed address instead of through DNS, e.g. an internal
    /// Container Apps environment's domain to its static IP (`--staging-resolve`).
    pub resolve: Vec<(String, std::net::SocketAddr)>,
}

impl HttpCheckOptions {
    /// Parses `SUFFIX=IP[:PORT]` entries (port 443 when omitted).
    pub fn parse_resolve<S: AsRef<str>>(
        entries: &[S],
    ) -> std::result::Result<Vec<(String, std::net::SocketAddr)>, String> {
        entries
            .iter()
            .map(|entry| {
                let entry = entry.as_ref();
                let (suffix, addr) = entry
                    .split_once('=')
                    .ok_or_else(|| format!("--staging-resolve {entry:?}: expected SUFFIX=IP[:PORT]"))?;
                let suffix = suffix.trim().trim_start_matches('.').to_ascii_lowercase();
                if suffix.is_empty() || !suffix.contains('.') {
                    return Err(format!("--staging-resolve {entry:?}: {suffix:?} is not a domain"));
                }
                let addr = match addr.parse::<std::net::SocketAddr>() {
                    Ok(a) => a,
                    Err(_) => std::net::SocketAddr::new(
                        addr.parse().map_err(|_| format!("--staging-resolve {entry:?}: {addr:?} is not IP[:PORT]"))?,
                        443,
                    ),
                };
                Ok((suffix, addr))
            })
            .collect()
    }
}

/// Runs one HTTP check: GET `base + path`, compare the status.
pub async fn http_check(check: &HttpCheck, base_url: &str, options: &HttpCheckOptions) -> CheckResult {
    let url = format!("{}{}", base_url.trim_end_matches('/'), check.path);
    let timeout = tidegate_core::parse_duration(&check.timeout).unwrap_or(Duration::from_secs(10));
    crate::ensure_crypto_provider();
    let failed = |message: String| CheckResult { name: check.name.clone(), passed: false, message };
    let mut builder = reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none());
    if !options.extra_roots_pem.is_empty() {
        match reqwest::Certificate::from_pem_bundle(&options.extra_roots_pem) {
            Ok(roots) => {
                for root in roots {
                    builder = builder.add_root_certificate(root);
                }
            }
            Err(e) => return failed(format!("the staging CA bundle does not parse: {e}")),
        }
    }
    let host = reqwest::Url::parse(&url).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    if let Some(host) = &host {
        let pinned = options.resolve.iter().find(|(suffix, _)| host == suffix || host.ends_with(&format!(".{suffix}")));
        if let Some((_, addr)) = pinned {
            builder = builder.resolve(host, *addr);
        }
    }
    let client = match builder.build() {
        Ok(client) => client,
        Err(e) => return failed(format!("cannot build an HTTP client: {e}")),
    };
    // A target that has just rolled out can refuse connections for a moment, until its Service
    // routes to the new Pods: a refused connection is tried again, twice, after 1 s and 2 s. Any
    // answer, and any other error, counts at once.
    let mut attempt = 0;
    let sent = loop {
        match client.get(&url).send().await {
            Err(e) if e.is_connect() && attempt < CONNECT_RETRIES.len() => {
                tokio::time::sleep(CONNECT_RETRIES[attempt]).await;
                attempt += 1;
            }
            sent => break sent,
        }
    };
    let (passed, message) = match sent {
        Ok(response) => {
            let status = i32::from(response.status().as_u16());
            (status == check.expect_status, format!("GET {url}: {status}, expected {}", check.expect_status))
        }
        Err(e) => (false, format!("GET {url} failed: {e}")),
    };
    CheckResult { name: check.name.clone(), passed, message }
}

/// The waits before trying a refused connection of an HTTP check again.
const CONNECT_RETRIES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];

pub use crate::jobs::JobOutcome;

/// Starts (once) and observes the test Job `name` in `namespace`, built from the template in
/// ConfigMap `template` (key `job.yaml`) of `template_namespace`, with `TIDEGATE_IMAGE` set to the
/// candidate on every container.
pub async fn test_job(
    client: &kube::Client,
    template_namespace: &str,
    template: &str,
    namespace: &str,
    name: &str,
    image: &str,
    labels: &[(&str, &str)],
) -> Result<JobOutcome> {
    crate::jobs::run_from_template(
        client,
        template_namespace,
        template,
        namespace,
        name,
        &[("TIDEGATE_IMAGE", image)],
        labels,
    )
    .await
    .map(|(outcome, _)| outcome)
}

/// Runs staging test Jobs for a policy's namespace. [`DeployerTestJobs`] is the product's; tests
/// use in-memory doubles (crate `tidegate-test-support`).
#[async_trait::async_trait]
pub trait TestJobs: Send + Sync {
    /// [`test_job`] as `policy_namespace`'s deployer, from the template ConfigMap `template` in
    /// `policy_namespace`.
    async fn test_job(
        &self,
        policy_namespace: &str,
        template: &str,
        namespace: &str,
        name: &str,
        image: &str,
        labels: &[(&str, &str)],
    ) -> Result<JobOutcome>;
}

/// The product's [`TestJobs`]: each Job is created (and its template read) by the deployer of the
/// policy's namespace, so it runs only where a namespace owner let that deployer create Jobs.
#[derive(Clone)]
pub struct DeployerTestJobs {
    reach: std::sync::Arc<crate::authz::Reach>,
}

impl DeployerTestJobs {
    /// Jobs created through `reach`.
    pub fn new(reach: std::sync::Arc<crate::authz::Reach>) -> Self {
        Self { reach }
    }
}

#[async_trait::async_trait]
impl TestJobs for DeployerTestJobs {
    async fn test_job(
        &self,
        policy_namespace: &str,
        template: &str,
        namespace: &str,
        name: &str,
        image: &str,
        labels: &[(&str, &str)],
    ) -> Result<JobOutcome> {
        let client = self.reach.client(policy_namespace)?;
        test_job(&client, policy_namespace, template, namespace, name, image, labels).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> HttpCheck {
        serde_json::from_value(serde_json::json!({"name": "health", "workload": "web", "path": "/healthz"}))
            .expect("a check")
    }

    #[tokio::test]
    async fn a_target_that_starts_listening_a_moment_after_its_rollout_is_checked() {
        // A port that refuses connections now and answers 200 a moment later.
        let port = tidegate_testenv::free_port().expect("a free port");
        let server = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind again");
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut request).await;
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
            tokio::io::AsyncWriteExt::write_all(&mut socket, answer).await.expect("answer");
        });
        let result = http_check(&check(), &format!("http://127.0.0.1:{port}"), &HttpCheckOptions::default()).await;
        assert!(result.passed, "{result:?}");
        server.await.expect("the server answered");
    }

    #[tokio::test]
    async fn a_target_that_never_listens_fails_after_the_retries() {
        let port = tidegate_testenv::free_port().expect("a free port");
        let result = http_check(&check(), &format!("http://127.0.0.1:{port}"), &HttpCheckOptions::default()).await;
        assert!(!result.passed);
        assert!(result.message.contains("failed"), "{}", result.message);
    }
}
