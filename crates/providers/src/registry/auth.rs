//! Registry authentication: anonymous, basic, and the bearer-token challenge flow, with
//! credentials from a Kubernetes `dockerconfigjson` Secret.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

/// Credentials for one registry host.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// No credentials.
    #[default]
    Anonymous,
    /// User name and password (or token) for Basic auth and for token requests.
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
        }
    }
}

impl Credentials {
    /// The `Authorization` header value for Basic auth, if there are credentials.
    pub fn basic_header(&self) -> Option<String> {
        match self {
            Self::Anonymous => None,
            Self::Basic { username, password } => {
                Some(format!("Basic {}", STANDARD.encode(format!("{username}:{password}"))))
            }
        }
    }
}

/// A `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="…"`.
    Basic,
    /// `Bearer realm="…",service="…",scope="…"`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The service name to ask for.
        service: Option<String>,
        /// The scope the registry asked for.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let params = parse_params(rest);
            Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            })
        }
        _ => None,
    }
}

/// `key="value", key2="value2"` (values may contain commas inside quotes).
fn parse_params(text: &str) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else { break };
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_string());
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    params
}

/// A token endpoint's answer.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Credentials per registry host from the `.dockerconfigjson` of a
/// `kubernetes.io/dockerconfigjson` Secret. Keys like `https://host/v1/` are normalised to `host`.
pub fn from_docker_config(json: &[u8]) -> Result<BTreeMap<String, Credentials>, String> {
    let config: DockerConfig =
        serde_json::from_slice(json).map_err(|e| format!(".dockerconfigjson is not valid: {e}"))?;
    let mut out = BTreeMap::new();
    for (key, entry) in config.auths {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let credentials = match (entry.username, entry.password, entry.auth) {
            (Some(username), Some(password), _) => Credentials::Basic { username, password },
            (_, _, Some(auth)) => {
                let decoded =
                    STANDARD.decode(auth.trim()).map_err(|e| format!("auths.{key}.auth is not base64: {e}"))?;
                let text = String::from_utf8(decoded).map_err(|_| format!("auths.{key}.auth is not UTF-8"))?;
                let (username, password) =
                    text.split_once(':').ok_or_else(|| format!("auths.{key}.auth is not user:password"))?;
                Credentials::Basic { username: username.to_string(), password: password.to_string() }
            }
            _ => Credentials::Anonymous,
        };
        out.insert(host, credentials);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:shop/app:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scope: Some("repository:shop/app:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Bearer realm="https://a/t""#),
            Some(Challenge::Bearer { realm: "https://a/t".into(), service: None, scope: None })
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=\"x\""), None, "a bearer challenge needs a realm");
    }

    #[test]
    fn reads_dockerconfigjson() {
        let auth = STANDARD.encode("robot:s3cret");
        let json = format!(
            r#"{{"auths":{{"https://myreg.azurecr.io/v1/":{{"auth":"{auth}"}},"127.0.0.1:5000":{{"username":"u","password":"p"}},"anon.io":{{}}}}}}"#
        );
        let creds = from_docker_config(json.as_bytes()).expect("valid");
        assert_eq!(
            creds["myreg.azurecr.io"],
            Credentials::Basic { username: "robot".into(), password: "s3cret".into() }
        );
        assert_eq!(creds["127.0.0.1:5000"], Credentials::Basic { username: "u".into(), password: "p".into() });
        assert_eq!(creds["anon.io"], Credentials::Anonymous);
        assert!(from_docker_config(b"{").is_err());
        assert!(from_docker_config(br#"{"auths":{"x":{"auth":"not base64!"}}}"#).is_err());
        assert!(!format!("{:?}", creds["myreg.azurecr.io"]).contains("s3cret"), "no secrets in Debug output");
    }
}
