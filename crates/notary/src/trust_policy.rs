//! `trustpolicy.json` (version 1.0, OCI artifacts): parsing, validation with the rules of the
//! Notary Project trust policy specification (and notation's implementation of them), policy
//! selection by registry scope, and trusted identity evaluation.
//!
//! A document that notation accepts is refused when it asks for something this implementation
//! does not verify: timestamp countersignatures (a `tsa:` trust store or `verifyTimestamp`) and
//! the `notary.x509.signingAuthority` signing scheme (a `signingAuthority:` trust store). Loading
//! such a policy and then ignoring part of it would accept signatures that notation rejects.

use crate::dn::DistinguishedName;
use crate::error::{TrustPolicyError, VerifyError};
use crate::trust_store::{TrustStoreRef, TrustStoreType, is_valid_store_name};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

const WILDCARD: &str = "*";
const X509_SUBJECT: &str = "x509.subject";

/// A validated trust policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicyDocument {
    /// Document version (always `1.0`).
    pub version: String,
    /// The policy statements, in document order.
    pub policies: Vec<TrustPolicy>,
}

/// One trust policy statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicy {
    /// Unique statement name.
    pub name: String,
    /// The repositories the statement applies to.
    pub registry_scopes: RegistryScopes,
    /// How verification is performed.
    pub signature_verification: SignatureVerification,
    /// Trust stores holding the trusted roots (empty for `skip`).
    pub trust_stores: Vec<TrustStoreRef>,
    /// Trusted signers (empty list for `skip`).
    pub trusted_identities: TrustedIdentities,
}

/// Registry scopes of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryScopes {
    /// `["*"]`: every artifact without a statement of its own.
    Global,
    /// Fully qualified repositories (`registry/namespace/repository`).
    Repositories(Vec<String>),
}

/// The verification level and the action taken for each validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureVerification {
    /// The preset level.
    pub level: VerificationLevel,
    /// The action per validation, after applying `override`. Without timestamp verification,
    /// the authentic timestamp validation checks that every certificate of the chain is valid at
    /// verification time.
    pub actions: ValidationActions,
}

/// Preset verification levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationLevel {
    /// Every validation enforced.
    Strict,
    /// Integrity and authenticity enforced; the rest logged.
    Permissive,
    /// Only integrity enforced.
    Audit,
    /// No verification at all.
    Skip,
}

impl VerificationLevel {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "strict" => Self::Strict,
            "permissive" => Self::Permissive,
            "audit" => Self::Audit,
            "skip" => Self::Skip,
            _ => return None,
        })
    }

    /// The actions of the preset, before overrides.
    pub fn actions(self) -> ValidationActions {
        use ValidationAction::{Enforce, Log, Skip};
        let (authenticity, authentic_timestamp, expiry, revocation) = match self {
            Self::Strict => (Enforce, Enforce, Enforce, Enforce),
            Self::Permissive => (Enforce, Log, Log, Log),
            Self::Audit => (Log, Log, Log, Log),
            Self::Skip => (Skip, Skip, Skip, Skip),
        };
        ValidationActions { authenticity, authentic_timestamp, expiry, revocation }
    }
}

/// What happens when a validation fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationAction {
    /// The failure fails verification.
    Enforce,
    /// The failure is reported as a warning; verification continues.
    Log,
    /// The validation is not performed.
    Skip,
}

impl ValidationAction {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "enforce" => Self::Enforce,
            "log" => Self::Log,
            "skip" => Self::Skip,
            _ => return None,
        })
    }
}

/// Actions for the validations that a policy can relax (integrity is always enforced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidationActions {
    /// Trusted root and trusted identity.
    pub authenticity: ValidationAction,
    /// Certificates valid at verification time.
    pub authentic_timestamp: ValidationAction,
    /// Signature expiry.
    pub expiry: ValidationAction,
    /// Certificate revocation.
    pub revocation: ValidationAction,
}

impl ValidationActions {
    /// Every validation enforced (the `strict` level).
    pub fn strict() -> Self {
        VerificationLevel::Strict.actions()
    }
}

/// The trusted identities of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedIdentities {
    /// `["*"]`: any signer whose chain leads to the trust stores.
    Any,
    /// Specific identities (empty for `skip` statements).
    List(Vec<TrustedIdentity>),
}

/// One trusted identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedIdentity {
    /// `x509.subject: <DN>`: the signing certificate's subject must contain these attributes.
    X509Subject {
        /// The identity as written.
        raw: String,
        /// The parsed distinguished name.
        dn: DistinguishedName,
    },
    /// Another identity type (for verification plugins); it never matches here.
    Other {
        /// The identity as written.
        raw: String,
    },
}

impl TrustedIdentities {
    /// Whether a signing certificate subject is trusted. `Err` explains a subject that cannot be
    /// evaluated (multi-valued RDN or repeated attribute).
    pub(crate) fn matches(&self, subject: Result<&DistinguishedName, &String>) -> Result<bool, String> {
        match self {
            Self::Any => Ok(true),
            Self::List(identities) => {
                let subjects: Vec<&DistinguishedName> = identities
                    .iter()
                    .filter_map(|i| match i {
                        TrustedIdentity::X509Subject { dn, .. } => Some(dn),
                        TrustedIdentity::Other { .. } => None,
                    })
                    .collect();
                if subjects.is_empty() {
                    return Err("the trust policy has no x509.subject trusted identity".into());
                }
                let subject = subject.map_err(Clone::clone)?;
                Ok(subjects.iter().any(|dn| dn.is_subset_of(subject)))
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDocument {
    version: Option<String>,
    trust_policies: Option<Vec<RawStatement>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStatement {
    name: Option<String>,
    registry_scopes: Option<Vec<String>>,
    signature_verification: Option<RawSignatureVerification>,
    trust_stores: Option<Vec<String>>,
    trusted_identities: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSignatureVerification {
    level: Option<String>,
    #[serde(rename = "override")]
    override_: Option<BTreeMap<String, String>>,
    verify_timestamp: Option<String>,
}

impl TrustPolicyDocument {
    /// Parses and validates a `trustpolicy.json` document. Unknown fields are ignored, as notation
    /// ignores them; every rule violation is an error naming the statement and the rule.
    pub fn parse(json: &[u8]) -> Result<Self, TrustPolicyError> {
        let raw: RawDocument = serde_json::from_slice(json).map_err(|e| TrustPolicyError::Malformed(e.to_string()))?;
        let version = raw.version.unwrap_or_default();
        if version.is_empty() {
            return Err(TrustPolicyError::MissingVersion);
        }
        if version != "1.0" {
            return Err(TrustPolicyError::UnsupportedVersion(version));
        }
        let statements = raw.trust_policies.unwrap_or_default();
        if statements.is_empty() {
            return Err(TrustPolicyError::NoStatements);
        }
        let mut names = BTreeSet::new();
        let mut policies = Vec::with_capacity(statements.len());
        let mut deferred = Vec::with_capacity(statements.len());
        for statement in statements {
            let name = statement.name.clone().unwrap_or_default();
            if !name.is_empty() && names.contains(&name) {
                return Err(TrustPolicyError::DuplicateName(name));
            }
            let (policy, rest) = validate_statement(statement)?;
            names.insert(policy.name.clone());
            deferred.push(rest);
            policies.push(policy);
        }
        // Registry scopes are checked after every statement, as notation does.
        let mut seen = BTreeSet::new();
        for (policy, (raw_scopes, _)) in policies.iter_mut().zip(&mut deferred) {
            policy.registry_scopes = validate_scopes(&policy.name, std::mem::take(raw_scopes), &mut seen)?;
        }
        // Last, what notation accepts but this implementation does not verify, so that a
        // document's own mistakes are reported first, as notation reports them.
        for (policy, (_, verify_timestamp)) in policies.iter().zip(&deferred) {
            if let Some(value) = verify_timestamp {
                return Err(TrustPolicyError::TimestampVerificationUnsupported {
                    statement: policy.name.clone(),
                    setting: format!("sets verifyTimestamp to {value:?}"),
                });
            }
            policy.check_supported()?;
        }
        Ok(Self { version, policies })
    }

    /// The statement that applies to an artifact reference `registry/repository@digest`: the
    /// statement whose scopes contain the repository, else the global (`*`) statement.
    pub fn applicable_policy(&self, reference: &str) -> Result<&TrustPolicy, VerifyError> {
        let (repository, _digest) = split_reference(reference)?;
        let exact = self.policies.iter().find(
            |p| matches!(&p.registry_scopes, RegistryScopes::Repositories(r) if r.iter().any(|s| s == repository)),
        );
        exact
            .or_else(|| self.policies.iter().find(|p| p.registry_scopes == RegistryScopes::Global))
            .ok_or_else(|| VerifyError::NoApplicableTrustPolicy { reference: reference.to_string() })
    }
}

impl TrustPolicy {
    /// Refuses a statement that relies on what this implementation does not verify: a `tsa:`
    /// trust store (timestamp countersignatures) or a `signingAuthority:` trust store (the
    /// `notary.x509.signingAuthority` signing scheme). [`TrustPolicyDocument::parse`] applies it
    /// to every statement, and verification again to the statement it uses.
    pub(crate) fn check_supported(&self) -> Result<(), TrustPolicyError> {
        for store in &self.trust_stores {
            match store.store_type {
                TrustStoreType::Ca => {}
                TrustStoreType::Tsa => {
                    return Err(TrustPolicyError::TimestampVerificationUnsupported {
                        statement: self.name.clone(),
                        setting: format!("names the timestamping authority trust store {:?}", store.to_string()),
                    });
                }
                TrustStoreType::SigningAuthority => {
                    return Err(TrustPolicyError::SigningAuthorityUnsupported {
                        statement: self.name.clone(),
                        store: store.to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Splits `registry/repository@digest` into repository and digest, validating both.
pub(crate) fn split_reference(reference: &str) -> Result<(&str, &str), VerifyError> {
    let invalid = |reason: &str| VerifyError::InvalidArtifactReference {
        reference: reference.to_string(),
        reason: reason.to_string(),
    };
    let (repository, digest) = reference
        .rsplit_once('@')
        .ok_or_else(|| invalid("it must name the artifact by digest: registry/repository@sha256:..."))?;
    if !is_valid_scope(repository) {
        return Err(invalid("the repository part is not a fully qualified repository"));
    }
    crate::descriptor::validate_digest(digest).map_err(|e| invalid(&e))?;
    Ok((repository, digest))
}

fn invalid_verification(statement: &str, reason: impl Into<String>) -> TrustPolicyError {
    TrustPolicyError::InvalidSignatureVerification { statement: statement.to_string(), reason: reason.into() }
}

/// What [`validate_statement`] leaves for the document-level checks: the registry scopes as
/// written, and the `verifyTimestamp` value if the statement sets one.
type Deferred = (Vec<String>, Option<String>);

fn validate_statement(raw: RawStatement) -> Result<(TrustPolicy, Deferred), TrustPolicyError> {
    let name = raw.name.unwrap_or_default();
    if name.is_empty() {
        return Err(TrustPolicyError::MissingName);
    }
    let (signature_verification, verify_timestamp) = validate_verification(&name, raw.signature_verification)?;
    let stores = raw.trust_stores.unwrap_or_default();
    let identities = raw.trusted_identities.unwrap_or_default();
    let (trust_stores, trusted_identities) = if signature_verification.level == VerificationLevel::Skip {
        if !stores.is_empty() || !identities.is_empty() {
            return Err(TrustPolicyError::SkipWithTrustConfiguration(name));
        }
        (Vec::new(), TrustedIdentities::List(Vec::new()))
    } else {
        if stores.is_empty() || identities.is_empty() {
            return Err(TrustPolicyError::MissingTrustStoresOrIdentities(name));
        }
        (validate_trust_stores(&name, &stores)?, validate_identities(&name, &identities)?)
    };
    let policy = TrustPolicy {
        name,
        // Filled in once every statement is validated.
        registry_scopes: RegistryScopes::Repositories(Vec::new()),
        signature_verification,
        trust_stores,
        trusted_identities,
    };
    Ok((policy, (raw.registry_scopes.unwrap_or_default(), verify_timestamp)))
}

/// Validates `signatureVerification`; also returns the `verifyTimestamp` value when it is set
/// (validated as notation does, refused later by [`TrustPolicyDocument::parse`]).
fn validate_verification(
    name: &str,
    raw: Option<RawSignatureVerification>,
) -> Result<(SignatureVerification, Option<String>), TrustPolicyError> {
    let raw = raw.ok_or_else(|| invalid_verification(name, "signatureVerification is missing"))?;
    let level_text = raw.level.unwrap_or_default();
    if level_text.is_empty() {
        return Err(invalid_verification(name, "the verification level is missing"));
    }
    let level = VerificationLevel::parse(&level_text).ok_or_else(|| {
        invalid_verification(name, format!("invalid level {level_text:?} (strict, permissive, audit or skip)"))
    })?;
    let mut actions = level.actions();
    let overrides = raw.override_.unwrap_or_default();
    if !overrides.is_empty() && level == VerificationLevel::Skip {
        return Err(invalid_verification(name, "the skip level cannot be overridden"));
    }
    for (validation, action_text) in overrides {
        let action = ValidationAction::parse(&action_text).ok_or_else(|| {
            invalid_verification(
                name,
                format!("invalid action {action_text:?} for {validation:?} (enforce, log or skip)"),
            )
        })?;
        let slot = match validation.as_str() {
            "integrity" => {
                return Err(invalid_verification(name, "integrity verification cannot be overridden"));
            }
            "authenticity" => &mut actions.authenticity,
            "authenticTimestamp" => &mut actions.authentic_timestamp,
            "expiry" => &mut actions.expiry,
            "revocation" => &mut actions.revocation,
            other => {
                return Err(invalid_verification(
                    name,
                    format!(
                        "unknown validation {other:?} in override (authenticity, \
                         authenticTimestamp, expiry, revocation)"
                    ),
                ));
            }
        };
        if action == ValidationAction::Skip && validation != "revocation" {
            return Err(invalid_verification(name, format!("{validation} verification cannot be skipped")));
        }
        *slot = action;
    }
    if let Some(value) = raw.verify_timestamp.as_deref()
        && !matches!(value, "" | "always" | "afterCertExpiry")
    {
        return Err(invalid_verification(
            name,
            format!("invalid verifyTimestamp {value:?} (always or afterCertExpiry)"),
        ));
    }
    Ok((SignatureVerification { level, actions }, raw.verify_timestamp))
}

fn validate_trust_stores(name: &str, stores: &[String]) -> Result<Vec<TrustStoreRef>, TrustPolicyError> {
    let mut out: Vec<TrustStoreRef> = Vec::with_capacity(stores.len());
    for value in stores {
        let Some((store_type, store_name)) = value.split_once(':') else {
            return Err(TrustPolicyError::MalformedTrustStore { statement: name.to_string(), value: value.clone() });
        };
        let Some(store_type) = TrustStoreType::parse(store_type) else {
            return Err(TrustPolicyError::UnsupportedTrustStoreType {
                statement: name.to_string(),
                value: value.clone(),
            });
        };
        if !is_valid_store_name(store_name) {
            return Err(TrustPolicyError::InvalidTrustStoreName { statement: name.to_string(), value: value.clone() });
        }
        let store = TrustStoreRef { store_type, name: store_name.to_string() };
        // A repeated store adds nothing; notation accepts it too.
        if !out.contains(&store) {
            out.push(store);
        }
    }
    Ok(out)
}

fn validate_identities(name: &str, identities: &[String]) -> Result<TrustedIdentities, TrustPolicyError> {
    if identities.len() > 1 && identities.iter().any(|i| i == WILDCARD) {
        return Err(TrustPolicyError::WildcardIdentityWithOthers(name.to_string()));
    }
    let mut parsed = Vec::with_capacity(identities.len());
    for identity in identities {
        if identity.is_empty() {
            return Err(TrustPolicyError::EmptyTrustedIdentity(name.to_string()));
        }
        if identity == WILDCARD {
            return Ok(TrustedIdentities::Any);
        }
        let Some((prefix, value)) = identity.split_once(':') else {
            return Err(TrustPolicyError::IdentityMissingSeparator {
                statement: name.to_string(),
                identity: identity.clone(),
            });
        };
        if prefix != X509_SUBJECT {
            parsed.push(TrustedIdentity::Other { raw: identity.clone() });
            continue;
        }
        if value.is_empty() {
            return Err(TrustPolicyError::EmptyIdentityValue {
                statement: name.to_string(),
                identity: identity.clone(),
            });
        }
        let dn = DistinguishedName::parse_trusted_identity(value).map_err(|reason| {
            TrustPolicyError::InvalidDistinguishedName {
                statement: name.to_string(),
                identity: identity.clone(),
                reason,
            }
        })?;
        parsed.push(TrustedIdentity::X509Subject { raw: identity.clone(), dn });
    }
    let subjects: Vec<(&String, &DistinguishedName)> = parsed
        .iter()
        .filter_map(|i| match i {
            TrustedIdentity::X509Subject { raw, dn } => Some((raw, dn)),
            TrustedIdentity::Other { .. } => None,
        })
        .collect();
    for (i, (raw_a, a)) in subjects.iter().enumerate() {
        for (j, (raw_b, b)) in subjects.iter().enumerate() {
            if i != j && a.is_subset_of(b) {
                return Err(TrustPolicyError::OverlappingIdentities {
                    statement: name.to_string(),
                    first: (*raw_a).clone(),
                    second: (*raw_b).clone(),
                });
            }
        }
    }
    Ok(TrustedIdentities::List(parsed))
}

fn validate_scopes(
    name: &str,
    scopes: Vec<String>,
    seen: &mut BTreeSet<String>,
) -> Result<RegistryScopes, TrustPolicyError> {
    if scopes.is_empty() {
        return Err(TrustPolicyError::NoRegistryScopes(name.to_string()));
    }
    if scopes.len() > 1 && scopes.iter().any(|s| s == WILDCARD) {
        return Err(TrustPolicyError::WildcardScopeWithOthers(name.to_string()));
    }
    for scope in &scopes {
        if scope != WILDCARD && !is_valid_scope(scope) {
            return Err(TrustPolicyError::InvalidRegistryScope { statement: name.to_string(), scope: scope.clone() });
        }
        if !seen.insert(scope.clone()) {
            return Err(TrustPolicyError::DuplicateRegistryScope(scope.clone()));
        }
    }
    if scopes.len() == 1 && scopes[0] == WILDCARD {
        Ok(RegistryScopes::Global)
    } else {
        Ok(RegistryScopes::Repositories(scopes))
    }
}

/// A fully qualified repository: `domain[:port]/path`, with the distribution reference grammar
/// for the domain and the path components.
fn is_valid_scope(scope: &str) -> bool {
    let Some((domain, repository)) = scope.split_once('/') else {
        return false;
    };
    is_valid_domain(domain) && !repository.is_empty() && repository.split('/').all(is_valid_path_component)
}

fn is_valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn is_valid_path_component(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        for ok in [
            "localhost:5000/test-repo",
            "registry.acme-rockets.io/software/net-monitor",
            "docker.io/library/registry",
            "local/myOCILayout".to_ascii_lowercase().as_str(),
            "a.b/c__d/e---f/g.h_i",
        ] {
            assert!(is_valid_scope(ok), "{ok}");
        }
        for bad in [
            "localhost:5000\\test-repo",
            "registry",
            "registry/",
            "/repo",
            "localhost:/repo",
            "-bad.io/repo",
            "reg.io/Repo",
            "reg.io/repo/",
            "reg.io/a..b",
            "reg.io/a___b",
            "reg.io/a-.b",
            "reg.io/*",
            "*/repo",
            "reg.io/repo:tag",
        ] {
            assert!(!is_valid_scope(bad), "{bad}");
        }
    }

    #[test]
    fn references() {
        let digest = format!("sha256:{}", "0".repeat(64));
        let reference = format!("localhost:5000/net-monitor@{digest}");
        assert_eq!(split_reference(&reference).ok(), Some(("localhost:5000/net-monitor", digest.as_str())));
        assert!(split_reference("localhost:5000/net-monitor:v1").is_err());
        assert!(split_reference("localhost:5000/net-monitor@sha256:abc").is_err());
    }
}
