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

/// Runs one HTTP check: GET `base + path`, compare the status.
pub async fn http_check(check: &HttpCheck, base_url: &str) -> CheckResult {
    let url = format!("{}{}", base_url.trim_end_matches('/'), check.path);
    let timeout = tidegate_core::parse_duration(&check.timeout).unwrap_or(Duration::from_secs(10));
    crate::ensure_crypto_provider();
    let client = match reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none()).build() {
        Ok(client) => client,
        Err(e) => {
            return CheckResult {
                name: check.name.clone(),
                passed: false,
                message: format!("cannot build an HTTP client: {e}"),
            };
        }
    };
    let (passed, message) = match client.get(&url).send().await {
        Ok(response) => {
            let status = i32::from(response.status().as_u16());
            (status == check.expect_status, format!("GET {url}: {status}, expected {}", check.expect_status))
        }
        Err(e) => (false, format!("GET {url} failed: {e}")),
    };
    CheckResult { name: check.name.clone(), passed, message }
}

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
