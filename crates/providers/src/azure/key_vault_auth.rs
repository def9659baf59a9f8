//! Key Vault's authentication challenge. Key Vault does not say in advance which token it wants:
//! a request without a token is answered `401` with
//! `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/{tenant}",
//! resource="https://vault.azure.net"` (or `scope="…/.default"`), and the client then asks its
//! credential for a token for that resource. Because the vault names the audience, a vault URL
//! pointing somewhere else could ask for a token to another service; as Microsoft's SDKs do,
//! the resource's host must be a parent domain of the vault's host (`vault.azure.net` for
//! `myvault.vault.azure.net`), otherwise nothing is requested and nothing is sent.

use url::Url;

/// What a `WWW-Authenticate: Bearer …` challenge asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// The token scope, ending in `/.default`.
    pub(crate) scope: String,
    /// The authority (`authorization` or `authorization_uri`), when the challenge names one.
    pub(crate) authorization: Option<String>,
}

/// The `name="value"` (or `name=value`) parameters of a `Bearer` challenge, names lower-cased.
fn parameters(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.trim_start();
    let (scheme, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut out = Vec::new();
    let mut rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let name = name.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (quoted[..end].to_string(), &quoted[end + 1..])
            }
            None => {
                let end = after.find(|c: char| c == ',' || c.is_whitespace()).unwrap_or(after.len());
                (after[..end].to_string(), &after[end..])
            }
        };
        out.push((name, value));
        rest = remaining.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
    }
    Some(out)
}

/// Reads a Key Vault challenge and checks that its resource belongs to `vault`'s domain.
pub(crate) fn challenge_for(vault: &Url, header: &str) -> Result<Challenge, String> {
    let params = parameters(header).ok_or_else(|| format!("not a Bearer challenge: {header:?}"))?;
    let get = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let resource = get("scope")
        .or_else(|| get("resource"))
        .filter(|r| !r.is_empty())
        .ok_or_else(|| format!("the challenge names no resource or scope: {header:?}"))?;
    let parsed =
        Url::parse(&resource).map_err(|e| format!("the challenge's resource {resource:?} is not a URL: {e}"))?;
    let resource_host = parsed.host_str().map(str::to_ascii_lowercase).unwrap_or_default();
    let vault_host = vault.host_str().map(str::to_ascii_lowercase).unwrap_or_default();
    // At least two labels (never a whole top-level domain), and a parent domain of the vault.
    if parsed.scheme() != "https" || !resource_host.contains('.') || !vault_host.ends_with(&format!(".{resource_host}"))
    {
        return Err(format!(
            "the vault {vault_host} asks for a token to {resource:?}, which is not its own domain; no token is \
             requested (a Key Vault at NAME.vault.azure.net asks for https://vault.azure.net)"
        ));
    }
    let scope =
        if resource.ends_with("/.default") { resource } else { format!("{}/.default", resource.trim_end_matches('/')) };
    Ok(Challenge { scope, authorization: get("authorization").or_else(|| get("authorization_uri")) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(url: &str) -> Url {
        Url::parse(url).expect("url")
    }

    #[test]
    fn reads_the_resource_and_scope_forms() {
        let v = vault("https://myvault.vault.azure.net");
        let c = challenge_for(
            &v,
            r#"Bearer authorization="https://login.microsoftonline.com/72f988bf-86f1", resource="https://vault.azure.net""#,
        )
        .expect("resource form");
        assert_eq!(c.scope, "https://vault.azure.net/.default");
        assert_eq!(c.authorization.as_deref(), Some("https://login.microsoftonline.com/72f988bf-86f1"));
        let c = challenge_for(
            &v,
            r#"Bearer authorization="https://login.microsoftonline.com/t", scope="https://vault.azure.net/.default""#,
        )
        .expect("scope form");
        assert_eq!(c.scope, "https://vault.azure.net/.default");
        let c = challenge_for(&v, "bearer resource=https://vault.azure.net/ authorization_uri=https://login/x")
            .expect("unquoted, lower-case scheme");
        assert_eq!(c.scope, "https://vault.azure.net/.default");
        assert_eq!(c.authorization.as_deref(), Some("https://login/x"));
        let c = challenge_for(
            &vault("https://myvault.vault.azure.net:443/"),
            r#"Bearer resource="https://VAULT.azure.net",authorization="a""#,
        )
        .expect("no space after the comma, case of the host");
        assert_eq!(c.scope, "https://VAULT.azure.net/.default");
        challenge_for(&vault("https://hsm1.managedhsm.azure.net"), r#"Bearer resource="https://managedhsm.azure.net""#)
            .expect("managed HSM");
        challenge_for(&vault("https://kv.vault.azure.cn"), r#"Bearer resource="https://vault.azure.cn""#)
            .expect("a sovereign cloud");
    }

    #[test]
    fn a_resource_outside_the_vault_domain_gets_no_token() {
        let v = vault("https://myvault.vault.azure.net");
        for header in [
            r#"Bearer authorization="https://login.microsoftonline.com/t", resource="https://management.azure.com""#,
            r#"Bearer scope="https://graph.microsoft.com/.default""#,
            r#"Bearer resource="https://myvault.vault.azure.net""#,
            r#"Bearer resource="https://net""#,
            r#"Bearer resource="http://vault.azure.net""#,
            r#"Bearer resource="https://azure.net.evil.example""#,
        ] {
            let err = challenge_for(&v, header).expect_err(header);
            assert!(err.contains("not its own domain"), "{header}: {err}");
        }
        let evil = vault("https://vault.azure.net.evil.example");
        assert!(challenge_for(&evil, r#"Bearer resource="https://vault.azure.net""#).is_err());
        let ip = vault("https://127.0.0.1:8443");
        assert!(challenge_for(&ip, r#"Bearer resource="https://vault.azure.net""#).is_err());
    }

    #[test]
    fn malformed_challenges_are_refused() {
        let v = vault("https://myvault.vault.azure.net");
        for header in [
            "",
            "Basic realm=\"x\"",
            "Bearer",
            r#"Bearer authorization="https://login/t""#,
            r#"Bearer resource="not a url""#,
            r#"Bearer resource="https://vault.azure.net"#,
            "Bearer resource",
        ] {
            assert!(challenge_for(&v, header).is_err(), "{header}");
        }
    }
}
