//! Certificate revocation with CRLs (RFC 5280 certificate revocation lists), the "revocation"
//! validation of the trust policy specification.
//!
//! The library does no I/O: verification tells the caller which CRL URLs it needs
//! ([`Progress::NeedCrls`]), the caller fetches them and verifies again with what it got (a
//! [`CrlSource`], e.g. [`FetchedCrls`]). URLs are asked for only once the chain has validated
//! and leads to a trusted certificate, so an untrusted chain cannot make the verifier contact
//! the addresses it names.
//!
//! What is checked, for every certificate of the chain except the root (a root is trusted or
//! not; a CRL its own key signs cannot revoke it), leaf first:
//!
//! - a certificate without CRL distribution points and without an OCSP responder cannot be
//!   revoked, and passes;
//! - a certificate with CRL distribution points is checked with its CRLs only, also when it
//!   names an OCSP responder too (notation asks OCSP first and falls back to the CRL);
//! - a certificate with an OCSP responder and no CRL distribution point has an unchecked
//!   revocation status ([`VerifyError::RevocationUnchecked`]): OCSP is not implemented;
//! - every distribution point must be satisfied. Its `http`/`https` URLs are alternatives for
//!   the same CRL, tried in order until one gives a valid CRL; other URIs (`ldap:`) are not
//!   used. A distribution point that names a CRL issuer (indirect CRL) or only a name relative
//!   to the issuer cannot be used;
//! - a CRL is valid when it is DER, is issued by (names and is signed by) the certificate's
//!   issuer in the chain, whose key usage allows `cRLSign`, with an allowed algorithm (no SHA-1);
//!   has a `nextUpdate` that has not passed and a `thisUpdate` that has; is a complete CRL (not
//!   a delta CRL); whose issuing distribution point, if any, covers the certificate and is not
//!   indirect; and with no critical extension that is not understood;
//! - a complete CRL that names a delta CRL (freshest CRL extension) needs it: its `http`/`https`
//!   URLs are tried in order, and the delta CRL must pass the same checks, carry a delta CRL
//!   indicator no newer than the base CRL's number, and have a greater CRL number. A delta CRL
//!   named only by the certificate, not by its complete CRL, is not supported (as in notation);
//! - a certificate listed on a valid CRL (or its delta CRL) is revoked
//!   ([`VerifyError::Revoked`]), with notation's rule for `certificateHold` and
//!   `removeFromCRL`: the latest of such entries decides. The
//!   invalidity date is not used: it only counts against an authentic (timestamped) signing
//!   time, and timestamps are not verified;
//! - anything else (unreachable URL, invalid CRL) is "revocation status unknown"
//!   ([`VerifyError::RevocationUnknown`]).
//!
//! A revoked certificate is reported before an unknown status. Whether either fails
//! verification or is only logged is the trust policy's `revocation` action.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use x509_parser::der_parser::der::parse_der_integer;
use x509_parser::extensions::{CRLDistributionPoints, DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_CRL_DISTRIBUTION_POINTS, OID_X509_EXT_CRL_NUMBER,
    OID_X509_EXT_DELTA_CRL_INDICATOR, OID_X509_EXT_FRESHEST_CRL, OID_X509_EXT_INVALIDITY_DATE, OID_X509_EXT_ISSUER,
    OID_X509_EXT_ISSUER_DISTRIBUTION_POINT, OID_X509_EXT_REASON_CODE,
};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::{CertificateRevocationList, RevokedCertificate};

use crate::error::VerifyError;
use crate::x509::{ChainCert, verify_signed_data};

/// The result of a verification that may need CRLs first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress<T> {
    /// Verification finished.
    Done(T),
    /// Verification needs these CRLs (URLs, in the order the chain names them, without
    /// duplicates): fetch them, record each result in the [`CrlSource`], and verify again.
    NeedCrls(Vec<String>),
}

/// What a [`CrlSource`] knows about one CRL URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrlLookup<'a> {
    /// Not fetched: verification asks for it with [`Progress::NeedCrls`].
    NotFetched,
    /// The body the URL answered with (DER).
    Fetched(&'a [u8]),
    /// Why the CRL could not be fetched (unreachable, not 200, too large, timed out...).
    Failed(&'a str),
}

/// CRLs the caller has fetched, by URL.
pub trait CrlSource {
    /// What is known about `url`.
    fn lookup(&self, url: &str) -> CrlLookup<'_>;
}

/// A [`CrlSource`] that fetches nothing: every CRL counts as unavailable, so a certificate with
/// CRL distribution points has an unknown revocation status. Used by the verification
/// functions that take no CRLs.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCrlFetching;

impl CrlSource for NoCrlFetching {
    fn lookup(&self, _url: &str) -> CrlLookup<'_> {
        CrlLookup::Failed("this verification does not fetch CRLs")
    }
}

/// CRLs fetched by the caller: each URL's body or why it could not be fetched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchedCrls {
    entries: BTreeMap<String, Result<Arc<[u8]>, String>>,
}

impl FetchedCrls {
    /// No CRL yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records what fetching `url` gave: the body, or why it failed.
    pub fn insert(&mut self, url: impl Into<String>, result: Result<Arc<[u8]>, String>) {
        self.entries.insert(url.into(), result);
    }

    /// Whether `url` has been recorded.
    pub fn contains(&self, url: &str) -> bool {
        self.entries.contains_key(url)
    }

    /// How many URLs have been recorded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no URL has been recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl CrlSource for FetchedCrls {
    fn lookup(&self, url: &str) -> CrlLookup<'_> {
        match self.entries.get(url) {
            None => CrlLookup::NotFetched,
            Some(Ok(body)) => CrlLookup::Fetched(body),
            Some(Err(why)) => CrlLookup::Failed(why),
        }
    }
}

/// The validity period a CRL states, without checking anything else (for caches: a CRL is not
/// used after its `nextUpdate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrlValidity {
    /// `thisUpdate`: when the CRL was issued.
    pub this_update: Timestamp,
    /// `nextUpdate`: when the next CRL is due; the CRL is not valid after it. `None` when the
    /// CRL has none (such a CRL is never accepted).
    pub next_update: Option<Timestamp>,
}

/// Reads the validity period of a DER-encoded CRL (its signature is not checked here).
pub fn crl_validity(der: &[u8]) -> Result<CrlValidity, String> {
    let crl = parse_crl(der)?;
    Ok(CrlValidity {
        this_update: timestamp(&crl.last_update())?,
        next_update: crl.next_update().map(|t| timestamp(&t)).transpose()?,
    })
}

/// The revocation check of a chain: finished, or CRLs to fetch first.
pub(crate) enum ChainRevocation {
    Done(Result<(), VerifyError>),
    Need(Vec<String>),
}

/// Checks every certificate of `chain` but the root, leaf first. `trusted`: the chain leads to a
/// trusted certificate (only then are CRL URLs asked for).
pub(crate) fn check_chain(
    chain: &[ChainCert<'_>],
    trusted: bool,
    crls: &dyn CrlSource,
    now: Timestamp,
) -> ChainRevocation {
    let mut need: Vec<String> = Vec::new();
    let mut unknown = None;
    let checked = chain.len().saturating_sub(1);
    for (index, cert) in chain.iter().enumerate().take(checked) {
        let issuer = &chain[index + 1];
        let subject = cert.subject().to_string();
        let unknown_because = |reason: String| VerifyError::RevocationUnknown { subject: subject.clone(), reason };
        let points = match distribution_points(cert) {
            Ok(Some(points)) => points,
            Ok(None) => {
                if cert.has_ocsp_responder() && unknown.is_none() {
                    unknown = Some(VerifyError::RevocationUnchecked { subject: subject.clone() });
                }
                continue;
            }
            Err(reason) => {
                unknown.get_or_insert_with(|| unknown_because(reason));
                continue;
            }
        };
        if !trusted {
            unknown.get_or_insert_with(|| {
                unknown_because(
                    "the chain does not lead to a trusted certificate, so its CRL distribution points are not \
                     contacted"
                        .into(),
                )
            });
            continue;
        }
        for point in points {
            match check_point(cert, issuer, index > 0, &point, crls, now) {
                PointStatus::Good => {}
                PointStatus::Revoked(revoked) => return ChainRevocation::Done(Err(revoked)),
                PointStatus::Need(url) => {
                    if !need.contains(&url) {
                        need.push(url);
                    }
                }
                PointStatus::Unknown(reason) => {
                    unknown.get_or_insert_with(|| unknown_because(reason));
                }
            }
        }
    }
    if !need.is_empty() {
        return ChainRevocation::Need(need);
    }
    ChainRevocation::Done(unknown.map_or(Ok(()), Err))
}

/// One CRL distribution point of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Point {
    /// `http`/`https` URLs of the same CRL, in order, and the other URIs or names it lists.
    Urls { http: Vec<String>, other: Vec<String> },
    /// A distribution point that cannot be used, and why.
    Unusable(String),
}

/// The certificate's CRL distribution points; `None` without the extension.
fn distribution_points(cert: &ChainCert<'_>) -> Result<Option<Vec<Point>>, String> {
    let mut found = cert.cert.extensions().iter().filter(|e| e.oid == OID_X509_EXT_CRL_DISTRIBUTION_POINTS);
    let Some(ext) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err("the CRL distribution points extension appears more than once".into());
    }
    let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() else {
        return Err("its CRL distribution points extension cannot be parsed".into());
    };
    if points.is_empty() {
        return Err("its CRL distribution points extension is empty".into());
    }
    let points = points
        .iter()
        .map(|point| {
            if point.crl_issuer.is_some() {
                return Point::Unusable(
                    "a CRL distribution point names a CRL issuer (indirect CRL), which is not supported".into(),
                );
            }
            match &point.distribution_point {
                None => Point::Unusable("a CRL distribution point has no distribution point name".into()),
                Some(DistributionPointName::NameRelativeToCRLIssuer(_)) => Point::Unusable(
                    "a CRL distribution point is named relative to the CRL issuer, which is not supported".into(),
                ),
                Some(DistributionPointName::FullName(names)) => {
                    let (mut http, mut other) = (Vec::new(), Vec::new());
                    for name in names {
                        match name {
                            GeneralName::URI(uri) if is_http(uri) => http.push((*uri).to_string()),
                            GeneralName::URI(uri) => other.push((*uri).to_string()),
                            other_name => other.push(other_name.to_string()),
                        }
                    }
                    Point::Urls { http, other }
                }
            }
        })
        .collect();
    Ok(Some(points))
}

fn is_http(uri: &str) -> bool {
    let lower = uri.get(..8).unwrap_or(uri).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

enum PointStatus {
    Good,
    Revoked(VerifyError),
    Need(String),
    Unknown(String),
}

fn check_point(
    cert: &ChainCert<'_>,
    issuer: &ChainCert<'_>,
    cert_is_ca: bool,
    point: &Point,
    crls: &dyn CrlSource,
    now: Timestamp,
) -> PointStatus {
    let (http, other) = match point {
        Point::Unusable(why) => return PointStatus::Unknown(why.clone()),
        Point::Urls { http, other } => (http, other),
    };
    if http.is_empty() {
        return PointStatus::Unknown(format!(
            "a CRL distribution point names no http or https URL ({}); only http and https CRLs are fetched",
            if other.is_empty() { "it names nothing".to_string() } else { other.join(", ") }
        ));
    }
    let mut failures = Vec::new();
    for url in http {
        match crls.lookup(url) {
            CrlLookup::NotFetched => return PointStatus::Need(url.clone()),
            CrlLookup::Failed(why) => failures.push(format!("the CRL at {url} could not be fetched: {why}")),
            CrlLookup::Fetched(der) => match check_crl(cert, issuer, cert_is_ca, der, crls, now) {
                CrlStatus::Good => return PointStatus::Good,
                CrlStatus::Need(delta) => return PointStatus::Need(delta),
                CrlStatus::Revoked(entry) => {
                    return PointStatus::Revoked(VerifyError::Revoked {
                        subject: cert.subject().to_string(),
                        serial: entry.serial,
                        reason: entry.reason,
                        revoked_at: entry.revoked_at,
                        crl: entry.delta.unwrap_or_else(|| url.clone()),
                    });
                }
                CrlStatus::Invalid(why) => failures.push(format!("the CRL at {url} is not usable: {why}")),
            },
        }
    }
    PointStatus::Unknown(failures.join("; "))
}

/// A revocation entry that applies to a certificate.
#[derive(Debug)]
struct Revocation {
    serial: String,
    reason: Option<String>,
    revoked_at: Timestamp,
    /// The delta CRL that lists it, when not the base CRL.
    delta: Option<String>,
}

fn parse_crl(der: &[u8]) -> Result<CertificateRevocationList<'_>, String> {
    let (rest, crl) = CertificateRevocationList::from_der(der).map_err(|e| format!("it is not a DER CRL: {e}"))?;
    if !rest.is_empty() {
        return Err("it has trailing bytes after the CRL".into());
    }
    Ok(crl)
}

fn timestamp(time: &x509_parser::time::ASN1Time) -> Result<Timestamp, String> {
    Timestamp::from_second(time.timestamp()).map_err(|e| format!("a time in the CRL is out of range: {e}"))
}

/// What one complete CRL (with its delta CRL, if it names one) says about a certificate.
enum CrlStatus {
    Good,
    Revoked(Revocation),
    /// The delta CRL at this URL is needed first.
    Need(String),
    /// The CRL cannot be used, and why.
    Invalid(String),
}

/// Whether a CRL is a complete (base) CRL or a delta CRL.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Base,
    Delta,
}

/// Validates a CRL for `cert` (from a distribution point), issued by `issuer`, fetches its delta
/// CRL if it names one, and looks the certificate up in both.
fn check_crl<'c>(
    cert: &ChainCert<'_>,
    issuer: &ChainCert<'_>,
    cert_is_ca: bool,
    der: &'c [u8],
    crls: &'c dyn CrlSource,
    now: Timestamp,
) -> CrlStatus {
    let base =
        match parse_crl(der).and_then(|crl| validate_crl(&crl, issuer, cert_is_ca, now, Role::Base).map(|()| crl)) {
            Ok(base) => base,
            Err(why) => return CrlStatus::Invalid(why),
        };
    let freshest = base.extensions().iter().find(|e| e.oid == OID_X509_EXT_FRESHEST_CRL);
    let delta = match freshest {
        None if cert.cert.extensions().iter().any(|e| e.oid == OID_X509_EXT_FRESHEST_CRL) => {
            return CrlStatus::Invalid(
                "the certificate names a delta CRL (freshest CRL extension) and this CRL does not; a delta CRL \
                 named only by the certificate is not supported"
                    .into(),
            );
        }
        None => None,
        Some(ext) => match delta_crl(&base, ext.value, issuer, cert_is_ca, crls, now) {
            Ok(Ok(found)) => Some(found),
            Ok(Err(need)) => return CrlStatus::Need(need),
            Err(why) => return CrlStatus::Invalid(why),
        },
    };
    match look_up(cert, &base, delta.as_ref()) {
        Ok(Some(revocation)) => CrlStatus::Revoked(revocation),
        Ok(None) => CrlStatus::Good,
        Err(why) => CrlStatus::Invalid(why),
    }
}

/// What every CRL must satisfy: issued and signed by `issuer` (allowed to sign CRLs), current,
/// in scope for the certificate, with no unknown critical extension. A base CRL must not be a
/// delta CRL; a delta CRL's indicator is checked by [`delta_crl`].
fn validate_crl(
    crl: &CertificateRevocationList<'_>,
    issuer: &ChainCert<'_>,
    cert_is_ca: bool,
    now: Timestamp,
    role: Role,
) -> Result<(), String> {
    if crl.signature_algorithm != crl.tbs_cert_list.signature {
        return Err("its inner and outer signature algorithms differ".into());
    }
    if crl.issuer().as_raw() != issuer.cert.subject().as_raw() {
        return Err(format!(
            "it is issued by {:?}, not by the certificate's issuer {:?}",
            crl.issuer().to_string(),
            issuer.subject()
        ));
    }
    let key_usage = issuer.key_usage().map_err(|e| e.to_string())?;
    if !key_usage.crl_sign() {
        return Err(format!("the issuer {:?} may not sign CRLs (its key usage lacks cRLSign)", issuer.subject()));
    }
    let key =
        issuer.key.as_ref().map_err(|e| format!("the key of the issuer {:?} cannot be used: {e}", issuer.subject()))?;
    verify_signed_data(crl.tbs_cert_list.as_ref(), &crl.signature_algorithm, &crl.signature_value.data, key)
        .map_err(|e| format!("its signature does not verify with the key of {:?}: {e}", issuer.subject()))?;

    let this_update = timestamp(&crl.last_update())?;
    let next_update = crl.next_update().ok_or("it has no nextUpdate")?;
    let next_update = timestamp(&next_update)?;
    if now < this_update {
        return Err(format!("it is not valid before its thisUpdate {this_update} (now {now})"));
    }
    if now > next_update {
        return Err(format!("it expired at its nextUpdate {next_update} (now {now})"));
    }

    if crl.tbs_cert_list.extensions_map().is_err() {
        return Err("an extension appears more than once".into());
    }
    for ext in crl.extensions() {
        if ext.oid == OID_X509_EXT_DELTA_CRL_INDICATOR {
            if role == Role::Base {
                return Err("it is a delta CRL; the distribution point must serve a complete CRL".into());
            }
        } else if ext.oid == OID_X509_EXT_ISSUER_DISTRIBUTION_POINT {
            let ParsedExtension::IssuingDistributionPoint(idp) = ext.parsed_extension() else {
                return Err("its issuing distribution point extension cannot be parsed".into());
            };
            if idp.indirect_crl {
                return Err("it is an indirect CRL, which is not supported".into());
            }
            if idp.only_contains_attribute_certs {
                return Err("it covers attribute certificates only".into());
            }
            if idp.only_contains_user_certs && cert_is_ca {
                return Err("it covers end-entity certificates only, and this is a CA certificate".into());
            }
            if idp.only_contains_ca_certs && !cert_is_ca {
                return Err("it covers CA certificates only, and this is the signing certificate".into());
            }
        } else if ext.oid != OID_X509_EXT_CRL_NUMBER
            && ext.oid != OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER
            && ext.oid != OID_X509_EXT_FRESHEST_CRL
            && ext.critical
        {
            return Err(format!("it has an unsupported critical extension {}", ext.oid.to_id_string()));
        }
    }
    Ok(())
}

/// The delta CRL a base CRL names in its freshest CRL extension (`value`): `Ok(Ok((crl, url)))`
/// when one of its URLs gave a valid delta CRL for this base, `Ok(Err(url))` when a URL must be
/// fetched first, `Err` when none is usable (then the revocation status is unknown).
fn delta_crl<'c>(
    base: &CertificateRevocationList<'_>,
    value: &[u8],
    issuer: &ChainCert<'_>,
    cert_is_ca: bool,
    crls: &'c dyn CrlSource,
    now: Timestamp,
) -> Result<Result<(CertificateRevocationList<'c>, String), String>, String> {
    let (_, points) = CRLDistributionPoints::from_der(value)
        .map_err(|e| format!("its freshest CRL extension cannot be parsed: {e}"))?;
    let urls: Vec<&str> = points
        .iter()
        .filter_map(|p| match &p.distribution_point {
            Some(DistributionPointName::FullName(names)) => Some(names),
            _ => None,
        })
        .flatten()
        .filter_map(|name| match name {
            GeneralName::URI(uri) if is_http(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    if urls.is_empty() {
        return Err("its freshest CRL extension names no http or https URL for the delta CRL".into());
    }
    let base_number = base.crl_number().ok_or("it names a delta CRL but has no CRL number")?;
    let mut failures = Vec::new();
    for url in urls {
        match crls.lookup(url) {
            CrlLookup::NotFetched => return Ok(Err(url.to_string())),
            CrlLookup::Failed(why) => failures.push(format!("the delta CRL at {url} could not be fetched: {why}")),
            CrlLookup::Fetched(der) => {
                let delta = parse_crl(der).and_then(|delta| {
                    validate_crl(&delta, issuer, cert_is_ca, now, Role::Delta)?;
                    let indicator = delta
                        .extensions()
                        .iter()
                        .find(|e| e.oid == OID_X509_EXT_DELTA_CRL_INDICATOR)
                        .ok_or("it has no delta CRL indicator")?;
                    let minimum_base = parse_der_integer(indicator.value)
                        .ok()
                        .filter(|(rest, _)| rest.is_empty())
                        .and_then(|(_, number)| number.as_biguint().ok())
                        .ok_or("its delta CRL indicator cannot be parsed")?;
                    let number = delta.crl_number().ok_or("it has no CRL number")?;
                    if number <= base_number {
                        return Err(format!(
                            "its CRL number {number} is not greater than the base CRL's {base_number}"
                        ));
                    }
                    if &minimum_base > base_number {
                        return Err(format!(
                            "it needs base CRL {minimum_base} or newer, and the base CRL is {base_number}"
                        ));
                    }
                    Ok(delta)
                });
                match delta {
                    Ok(delta) => return Ok(Ok((delta, url.to_string()))),
                    Err(why) => failures.push(format!("the delta CRL at {url} is not usable: {why}")),
                }
            }
        }
    }
    Err(failures.join("; "))
}

/// Looks the certificate up in the base CRL and its delta CRL. `Ok(Some(_))`: revoked;
/// `Ok(None)`: not; `Err`: an entry for it cannot be understood. As notation decides: an entry
/// with another reason than `certificateHold`/`removeFromCRL` revokes; otherwise the latest hold
/// or removal decides.
fn look_up(
    cert: &ChainCert<'_>,
    base: &CertificateRevocationList<'_>,
    delta: Option<&(CertificateRevocationList<'_>, String)>,
) -> Result<Option<Revocation>, String> {
    let serial = significant(cert.cert.raw_serial());
    let base_entries = base.iter_revoked_certificates().map(|e| (e, None));
    let delta_entries =
        delta.into_iter().flat_map(|(crl, url)| crl.iter_revoked_certificates().map(move |e| (e, Some(url))));
    let mut temporary: Option<(&RevokedCertificate<'_>, Option<&String>)> = None;
    for (entry, source) in base_entries.chain(delta_entries).filter(|(e, _)| significant(e.raw_serial()) == serial) {
        if entry.extensions_map().is_err() {
            return Err("an entry extension appears more than once".into());
        }
        for ext in entry.extensions() {
            if ext.oid == OID_X509_EXT_ISSUER {
                return Err(
                    "its entry for the certificate names a certificate issuer (indirect CRL), which is not supported"
                        .into(),
                );
            }
            if ext.oid != OID_X509_EXT_REASON_CODE && ext.oid != OID_X509_EXT_INVALIDITY_DATE && ext.critical {
                return Err(format!(
                    "its entry for the certificate has an unsupported critical extension {}",
                    ext.oid.to_id_string()
                ));
            }
        }
        match entry.reason_code().map(|(_, code)| code.0) {
            Some(CERTIFICATE_HOLD | REMOVE_FROM_CRL) => {
                if temporary.is_none_or(|(t, _)| t.revocation_date < entry.revocation_date) {
                    temporary = Some((entry, source));
                }
            }
            _ => return revocation(entry, source).map(Some),
        }
    }
    match temporary {
        Some((entry, source)) if entry.reason_code().map(|(_, c)| c.0) == Some(CERTIFICATE_HOLD) => {
            revocation(entry, source).map(Some)
        }
        _ => Ok(None),
    }
}

const CERTIFICATE_HOLD: u8 = 6;
const REMOVE_FROM_CRL: u8 = 8;

fn revocation(entry: &RevokedCertificate<'_>, delta: Option<&String>) -> Result<Revocation, String> {
    Ok(Revocation {
        serial: entry.raw_serial_as_string(),
        reason: entry.reason_code().map(|(_, code)| reason_name(code.0)),
        revoked_at: timestamp(&entry.revocation_date)?,
        delta: delta.cloned(),
    })
}

/// A serial number's bytes without leading zero bytes.
fn significant(serial: &[u8]) -> &[u8] {
    let start = serial.iter().position(|b| *b != 0).unwrap_or(serial.len());
    &serial[start..]
}

/// The RFC 5280 name of a CRL reason code.
fn reason_name(code: u8) -> String {
    match code {
        0 => "unspecified",
        1 => "keyCompromise",
        2 => "cACompromise",
        3 => "affiliationChanged",
        4 => "superseded",
        5 => "cessationOfOperation",
        6 => "certificateHold",
        8 => "removeFromCRL",
        9 => "privilegeWithdrawn",
        10 => "aACompromise",
        other => return format!("reason code {other}"),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_urls_are_fetched() {
        assert!(is_http("http://crl.example/ca.crl"));
        assert!(is_http("HTTPS://crl.example/ca.crl"));
        assert!(!is_http("ldap://ldap.example/cn=CA?certificateRevocationList"));
        assert!(!is_http("file:///etc/ca.crl"));
        assert!(!is_http("http:"));
    }

    #[test]
    fn serials_compare_without_leading_zeros() {
        assert_eq!(significant(&[0, 0x8f, 1]), &[0x8f, 1]);
        assert_eq!(significant(&[0x01]), &[0x01]);
        assert_eq!(significant(&[0]), &[] as &[u8]);
    }

    #[test]
    fn fetched_crls_answer_what_was_recorded() {
        let mut crls = FetchedCrls::new();
        assert_eq!(crls.lookup("http://a/"), CrlLookup::NotFetched);
        crls.insert("http://a/", Ok(Arc::from(&b"der"[..])));
        crls.insert("http://b/", Err("connection refused".into()));
        assert_eq!(crls.lookup("http://a/"), CrlLookup::Fetched(b"der"));
        assert_eq!(crls.lookup("http://b/"), CrlLookup::Failed("connection refused"));
        assert!(crls.contains("http://b/") && !crls.contains("http://c/"));
        assert!(matches!(NoCrlFetching.lookup("http://a/"), CrlLookup::Failed(_)));
    }

    #[test]
    fn reason_names_follow_rfc_5280() {
        assert_eq!(reason_name(1), "keyCompromise");
        assert_eq!(reason_name(6), "certificateHold");
        assert_eq!(reason_name(7), "reason code 7");
    }
}
