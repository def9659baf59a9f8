//! Azure Container Registry's data-plane authentication with an Entra ID identity: the Entra
//! access token is exchanged for an ACR refresh token (`POST /oauth2/exchange`), and that for
//! an access token per repository scope (`POST /oauth2/token`, `grant_type=refresh_token`).
//!
//! Both endpoints are the registry's own origin (`https://<login server>/oauth2/...`), never the
//! `realm` of a challenge: the Entra token (which is good for every registry the identity may
//! use) and the refresh token go to the registry they are for and nowhere else.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// The Entra ID scope of ACR's data plane in the public cloud.
pub const DEFAULT_SCOPE: &str = "https://containerregistry.azure.net/.default";

/// The user name ACR expects with a refresh token in Basic authentication (`docker login`,
/// Trivy): the nil UUID.
pub const REFRESH_TOKEN_USER: &str = "00000000-0000-0000-0000-000000000000";

/// A source of Entra ID access tokens for ACR's data plane: the controller's Azure identity.
#[async_trait::async_trait]
pub trait EntraTokenSource: Send + Sync + fmt::Debug {
    /// A current access token for the registry audience.
    async fn token(&self) -> Result<String, String>;
    /// The tenant the identity signs in to, if known (sent with the exchange).
    fn tenant(&self) -> Option<String>;
    /// Who signs in, for messages ("client X in tenant Y").
    fn describe(&self) -> String;
}

/// `POST /oauth2/exchange`'s answer.
#[derive(Deserialize)]
pub(crate) struct ExchangeResponse {
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// The form of the exchange request.
pub(crate) fn exchange_form(service: &str, tenant: Option<&str>, access_token: &str) -> Vec<(&'static str, String)> {
    let mut form = vec![
        ("grant_type", "access_token".to_string()),
        ("service", service.to_string()),
        ("access_token", access_token.to_string()),
    ];
    if let Some(tenant) = tenant {
        form.push(("tenant", tenant.to_string()));
    }
    form
}

/// The form of the access-token request.
pub(crate) fn token_form(service: &str, scope: &str, refresh_token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "refresh_token".to_string()),
        ("service", service.to_string()),
        ("scope", scope.to_string()),
        ("refresh_token", refresh_token.to_string()),
    ]
}

/// How long a token ACR issued may be used: until its JWT `exp` less a minute, and never less
/// than 10 s or more than 3 h. Tokens that are not JWTs (or carry no `exp`) get `fallback`.
/// The claims are read, not verified: the registry verifies them; this only decides when to
/// ask again.
pub(crate) fn lifetime(token: &str, fallback: Duration) -> Duration {
    let Some(exp) = jwt_exp(token) else {
        return fallback;
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    Duration::from_secs(exp.saturating_sub(now).saturating_sub(60).clamp(10, 3 * 3600))
}

fn jwt_exp(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(claims.to_string()))
    }

    #[test]
    fn lifetimes_follow_the_token_expiry_with_a_margin() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
        let hour = lifetime(&jwt(serde_json::json!({"exp": now + 3600})), Duration::from_secs(5));
        assert!(hour <= Duration::from_secs(3540) && hour >= Duration::from_secs(3500), "{hour:?}");
        assert_eq!(
            lifetime(&jwt(serde_json::json!({"exp": now + 30})), Duration::from_secs(5)),
            Duration::from_secs(10)
        );
        assert_eq!(
            lifetime(&jwt(serde_json::json!({"exp": now + 86_400})), Duration::ZERO),
            Duration::from_secs(3 * 3600)
        );
        assert_eq!(lifetime("opaque", Duration::from_secs(7)), Duration::from_secs(7));
        assert_eq!(lifetime(&jwt(serde_json::json!({"sub": "x"})), Duration::from_secs(7)), Duration::from_secs(7));
        assert_eq!(lifetime("a.!!!.c", Duration::from_secs(7)), Duration::from_secs(7));
    }

    #[test]
    fn forms_carry_what_acr_documents() {
        let form = exchange_form("r.azurecr.io", Some("t"), "aad");
        assert!(form.contains(&("grant_type", "access_token".into())));
        assert!(form.contains(&("service", "r.azurecr.io".into())));
        assert!(form.contains(&("access_token", "aad".into())));
        assert!(form.contains(&("tenant", "t".into())));
        assert_eq!(exchange_form("r", None, "aad").len(), 3);
        let form = token_form("r.azurecr.io", "repository:app:pull", "rt");
        assert!(form.contains(&("grant_type", "refresh_token".into())));
        assert!(form.contains(&("scope", "repository:app:pull".into())));
        assert!(form.contains(&("refresh_token", "rt".into())));
    }
}
