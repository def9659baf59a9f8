//! azure_core's [`HttpClient`] over the workspace's reqwest client, so that every Azure request
//! (token requests included) goes through one client that trusts the system roots plus the
//! configured extra CA, and azure_core's own reqwest (a second TLS stack) stays out of the build.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use azure_core::error::{Error, ErrorKind};
use azure_core::http::headers::{HeaderName, HeaderValue, Headers};
use azure_core::http::request::Body;
use azure_core::http::{AsyncRawResponse, HttpClient, Method, Request, StatusCode, Transport};
use tracing::warn;

use super::error::AzureError;

/// The largest answer body read; ARM answers are far smaller.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// The reqwest client behind every Azure request.
#[derive(Clone, Debug)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl ReqwestTransport {
    /// A client trusting the system roots plus the PEM certificates in `ca_file`, with a
    /// per-request `timeout`. Redirects are not followed: ARM does not use them, and a redirect
    /// must not carry the bearer token elsewhere.
    pub fn new(ca_file: Option<&Path>, timeout: Duration) -> Result<Self, AzureError> {
        crate::ensure_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| AzureError::Config(format!("cannot read --azure-ca-file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                AzureError::Config(format!("--azure-ca-file {} holds no valid PEM certificate: {e}", path.display()))
            })?;
            if certs.is_empty() {
                return Err(AzureError::Config(format!("--azure-ca-file {} holds no certificate", path.display())));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let client =
            builder.build().map_err(|e| AzureError::Config(format!("cannot build the Azure HTTP client: {e}")))?;
        Ok(Self { client })
    }

    /// A transport over a client built elsewhere (its own roots, proxy or resolver); it must
    /// not follow redirects, as [`ReqwestTransport::new`]'s does not.
    pub fn from_client(client: reqwest::Client) -> Self {
        Self { client }
    }

    /// The azure_core transport for pipelines and credentials.
    pub fn transport(&self) -> Transport {
        Transport::new(Arc::new(self.clone()))
    }
}

fn method(m: Method) -> Result<reqwest::Method, Error> {
    Ok(match m {
        Method::Delete => reqwest::Method::DELETE,
        Method::Get => reqwest::Method::GET,
        Method::Head => reqwest::Method::HEAD,
        Method::Patch => reqwest::Method::PATCH,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        other => return Err(Error::with_message(ErrorKind::Other, format!("unsupported HTTP method {other:?}"))),
    })
}

#[async_trait::async_trait]
impl HttpClient for ReqwestTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let mut builder = self.client.request(method(request.method())?, request.url().clone());
        for (name, value) in request.headers().iter() {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let builder = match request.body() {
            Body::Bytes(bytes) => builder.body(bytes.clone()),
            #[allow(unreachable_patterns)]
            _ => return Err(Error::with_message(ErrorKind::Other, "streamed request bodies are not supported")),
        };
        let mut response = builder.send().await.map_err(|e| {
            let kind = if e.is_connect() { ErrorKind::Connection } else { ErrorKind::Io };
            Error::with_message(kind, format!("{}: {}", request.url().origin().ascii_serialization(), error_chain(&e)))
        })?;
        let status = StatusCode::from(response.status().as_u16());
        let mut headers = HashMap::new();
        for (name, value) in response.headers() {
            match value.to_str() {
                Ok(v) => {
                    headers.insert(HeaderName::from(name.as_str().to_owned()), HeaderValue::from(v.to_owned()));
                }
                Err(_) => warn!(header = name.as_str(), "ignoring a non-UTF-8 header value from Azure"),
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) =
            response.chunk().await.map_err(|e| Error::with_message(ErrorKind::Io, error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(Error::with_message(ErrorKind::Io, format!("answer larger than {MAX_BODY} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(AsyncRawResponse::from_bytes(status, Headers::from(headers), body))
    }
}

/// An error with its sources (reqwest's own message rarely says what failed: TLS, DNS, refused).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let err = ReqwestTransport::new(Some(&path), Duration::from_secs(5)).unwrap_err();
        assert!(err.to_string().contains("--azure-ca-file"), "{err}");
        let err = ReqwestTransport::new(Some(&dir.path().join("missing.pem")), Duration::from_secs(5)).unwrap_err();
        assert!(err.to_string().contains("cannot read --azure-ca-file"), "{err}");
    }

    #[test]
    fn builds_with_a_real_ca() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        std::fs::write(&path, cert.pem()).unwrap();
        ReqwestTransport::new(Some(&path), Duration::from_secs(5)).unwrap();
    }
}
