//! The JWS envelope (flattened JWS JSON serialization) of the Notary Project: building it, and
//! parsing it strictly.

use crate::algorithm::SignatureAlgorithm;
use crate::error::{SignError, VerifyError};
use crate::x509::Certificate;
use crate::{PAYLOAD_CONTENT_TYPE, SIGNING_SCHEME_X509};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jiff::Timestamp;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

const ALG: &str = "alg";
const CTY: &str = "cty";
const CRIT: &str = "crit";
const SIGNING_SCHEME: &str = "io.cncf.notary.signingScheme";
const SIGNING_TIME: &str = "io.cncf.notary.signingTime";
const AUTHENTIC_SIGNING_TIME: &str = "io.cncf.notary.authenticSigningTime";
const EXPIRY: &str = "io.cncf.notary.expiry";
const X5C: &str = "x5c";
const SIGNING_AGENT: &str = "io.cncf.notary.signingAgent";
/// The RFC 3161 timestamp token (base64 DER), under the name notation writes and reads.
const TIMESTAMP_SIGNATURE: &str = "io.cncf.notary.timestampSignature";
/// The same, under the name of the JWS envelope specification's example.
const TIMESTAMP: &str = "io.cncf.notary.timestamp";

/// A JSON object whose keys are unique (duplicate keys are an error, so that no two parsers can
/// read different values from the same signed bytes).
struct UniqueObject(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueObject, A::Error> {
                let mut out = Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    if out.contains_key(&key) {
                        return Err(de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    let value: Value = map.next_value()?;
                    out.insert(key, value);
                }
                Ok(UniqueObject(out))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// The four members of a flattened JWS JSON envelope; nothing else is allowed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    payload: String,
    protected: String,
    header: UniqueObject,
    signature: String,
}

#[derive(Serialize)]
struct OutEnvelope<'a> {
    payload: &'a str,
    protected: &'a str,
    header: OutHeader,
    signature: &'a str,
}

#[derive(Serialize)]
struct OutHeader {
    x5c: Vec<String>,
    #[serde(rename = "io.cncf.notary.signingAgent", skip_serializing_if = "Option::is_none")]
    signing_agent: Option<String>,
}

/// An envelope whose structure and headers are valid; its signature is not verified yet.
#[derive(Debug)]
pub(crate) struct ParsedEnvelope {
    /// `ASCII(protected || '.' || payload)`, exactly as found in the envelope.
    pub(crate) signing_input: String,
    pub(crate) signature: Vec<u8>,
    /// Decoded payload bytes (untrusted until the signature is verified).
    pub(crate) payload: Vec<u8>,
    pub(crate) alg: SignatureAlgorithm,
    pub(crate) signing_time: Timestamp,
    pub(crate) expiry: Option<Timestamp>,
    pub(crate) certificates: Vec<Certificate>,
    pub(crate) signing_agent: Option<String>,
}

fn malformed(message: impl Into<String>) -> VerifyError {
    VerifyError::MalformedEnvelope(message.into())
}

fn rfc3339(ts: Timestamp) -> String {
    ts.to_string()
}

fn parse_time(header: &Map<String, Value>, key: &str) -> Result<Option<Timestamp>, VerifyError> {
    match header.get(key) {
        None => Ok(None),
        Some(Value::String(text)) => text
            .parse::<Timestamp>()
            .map(Some)
            .map_err(|e| malformed(format!("{key} {text:?} is not an RFC 3339 time: {e}"))),
        Some(_) => Err(malformed(format!("{key} must be a string"))),
    }
}

fn string_header<'a>(header: &'a Map<String, Value>, key: &str) -> Result<&'a str, VerifyError> {
    match header.get(key) {
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(malformed(format!("protected header {key} must be a string"))),
        None => Err(malformed(format!("protected header {key} is missing"))),
    }
}

/// Finds an unprotected header member by name, ignoring ASCII case as notation (Go's JSON
/// decoder) does; several spellings of one name are refused as ambiguous.
fn unprotected<'a>(header: &'a Map<String, Value>, name: &str) -> Result<Option<&'a Value>, VerifyError> {
    let mut found = header.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name));
    let first = found.next();
    if found.next().is_some() {
        return Err(malformed(format!("unprotected header {name} appears more than once")));
    }
    Ok(first.map(|(_, v)| v))
}

/// Parses an envelope and validates everything that does not need the signature: structure,
/// encodings, protected headers (`alg`, `cty`, signing scheme, times, `crit`) and the
/// certificate encodings.
pub(crate) fn parse(envelope: &[u8]) -> Result<ParsedEnvelope, VerifyError> {
    let raw: RawEnvelope =
        serde_json::from_slice(envelope).map_err(|e| malformed(format!("not a flattened JWS JSON envelope: {e}")))?;

    let decode = |what: &str, text: &str| {
        URL_SAFE_NO_PAD.decode(text).map_err(|e| malformed(format!("{what} is not base64url without padding: {e}")))
    };
    let protected_bytes = decode("protected", &raw.protected)?;
    let payload = decode("payload", &raw.payload)?;
    let signature = decode("signature", &raw.signature)?;
    if signature.is_empty() {
        return Err(malformed("the signature is empty"));
    }
    let UniqueObject(protected) = serde_json::from_slice(&protected_bytes)
        .map_err(|e| malformed(format!("protected header is not a JSON object: {e}")))?;

    // alg
    let alg_text = string_header(&protected, ALG)?;
    let alg = SignatureAlgorithm::from_jws_name(alg_text)
        .ok_or_else(|| VerifyError::UnsupportedAlgorithm(alg_text.to_string()))?;
    // cty
    let cty = string_header(&protected, CTY)?;
    if cty != PAYLOAD_CONTENT_TYPE {
        return Err(VerifyError::UnsupportedContentType(cty.to_string()));
    }
    // signing scheme and times
    let scheme = string_header(&protected, SIGNING_SCHEME)?;
    if scheme != SIGNING_SCHEME_X509 {
        return Err(VerifyError::UnsupportedSigningScheme(scheme.to_string()));
    }
    if protected.contains_key(AUTHENTIC_SIGNING_TIME) {
        return Err(malformed(format!(
            "{AUTHENTIC_SIGNING_TIME} must not be present with signing scheme {SIGNING_SCHEME_X509}"
        )));
    }
    let signing_time = parse_time(&protected, SIGNING_TIME)?
        .ok_or_else(|| malformed(format!("protected header {SIGNING_TIME} is missing")))?;
    let expiry = parse_time(&protected, EXPIRY)?;
    validate_crit(&protected, expiry.is_some())?;

    // unprotected header
    let header = &raw.header.0;
    let x5c = match unprotected(header, X5C)? {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) | None => {
            return Err(malformed("the certificate chain (x5c) is missing"));
        }
        Some(_) => return Err(malformed("x5c must be an array of base64 certificates")),
    };
    let certificates = x5c
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let bad = |reason: String| VerifyError::MalformedCertificate { index, reason };
            let text = item.as_str().ok_or_else(|| bad("not a string".into()))?;
            let der = STANDARD.decode(text).map_err(|e| bad(format!("not base64: {e}")))?;
            Certificate::from_der(der).map_err(|e| bad(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let signing_agent = match unprotected(header, SIGNING_AGENT)? {
        None => None,
        Some(Value::String(agent)) => Some(agent.clone()),
        Some(_) => return Err(malformed("io.cncf.notary.signingAgent must be a string")),
    };
    // A timestamp countersignature is not verified and never extends trust: without one, every
    // certificate must be valid at verification time, and that is what is checked (notation
    // does the same when the trust policy names no tsa trust store; policies that name one are
    // refused). It must still be base64, as notation requires of the member it decodes.
    for name in [TIMESTAMP_SIGNATURE, TIMESTAMP] {
        match unprotected(header, name)? {
            None => {}
            Some(Value::String(text)) if STANDARD.decode(text).is_ok() => {}
            Some(_) => return Err(malformed(format!("{name} must be a base64 string (an RFC 3161 timestamp token)"))),
        }
    }

    Ok(ParsedEnvelope {
        signing_input: format!("{}.{}", raw.protected, raw.payload),
        signature,
        payload,
        alg,
        signing_time,
        expiry,
        certificates,
        signing_agent,
    })
}

/// `crit` must list the signing scheme, the expiry when present, and nothing this
/// implementation does not process.
fn validate_crit(protected: &Map<String, Value>, has_expiry: bool) -> Result<(), VerifyError> {
    let invalid = |m: String| VerifyError::InvalidCriticalHeaders(m);
    let crit = match protected.get(CRIT) {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) | None => return Err(invalid("the crit header is missing".into())),
        Some(_) => return Err(invalid("crit must be an array of strings".into())),
    };
    let mut listed: Vec<&str> = Vec::with_capacity(crit.len());
    for item in crit {
        let name = item.as_str().ok_or_else(|| invalid("crit must be an array of strings".into()))?;
        if listed.contains(&name) {
            return Err(invalid(format!("{name:?} is listed twice")));
        }
        listed.push(name);
        if !protected.contains_key(name) {
            return Err(invalid(format!("{name:?} is marked critical but not present")));
        }
        match name {
            SIGNING_SCHEME | EXPIRY => {}
            ALG | CTY | CRIT | SIGNING_TIME => {
                return Err(invalid(format!("{name:?} must not be marked critical")));
            }
            other => return Err(VerifyError::UnsupportedCriticalHeader(other.to_string())),
        }
    }
    if !listed.contains(&SIGNING_SCHEME) {
        return Err(invalid(format!("{SIGNING_SCHEME} must be marked critical")));
    }
    if has_expiry && !listed.contains(&EXPIRY) {
        return Err(invalid(format!("{EXPIRY} is present but not marked critical")));
    }
    Ok(())
}

/// What goes into a new envelope.
pub(crate) struct EnvelopeContent<'a> {
    pub(crate) alg: SignatureAlgorithm,
    pub(crate) signing_time: Timestamp,
    pub(crate) expiry: Option<Timestamp>,
    pub(crate) payload: &'a [u8],
}

/// The encoded protected header and payload of an envelope being built; their signing input is
/// `protected || '.' || payload`.
pub(crate) struct Unsigned {
    pub(crate) protected: String,
    pub(crate) payload: String,
}

impl Unsigned {
    /// `ASCII(BASE64URL(protected) || '.' || BASE64URL(payload))`, the bytes the signature covers.
    pub(crate) fn signing_input(&self) -> String {
        format!("{}.{}", self.protected, self.payload)
    }
}

/// Encodes the protected header (`alg`, `cty`, signing scheme, times, `crit`) and the payload.
pub(crate) fn unsigned(content: &EnvelopeContent<'_>) -> Result<Unsigned, SignError> {
    let mut header = Map::new();
    let mut crit = vec![Value::from(SIGNING_SCHEME)];
    header.insert(ALG.into(), content.alg.jws_name().into());
    header.insert(CTY.into(), PAYLOAD_CONTENT_TYPE.into());
    header.insert(SIGNING_SCHEME.into(), SIGNING_SCHEME_X509.into());
    header.insert(SIGNING_TIME.into(), rfc3339(content.signing_time).into());
    if let Some(expiry) = content.expiry {
        header.insert(EXPIRY.into(), rfc3339(expiry).into());
        crit.push(EXPIRY.into());
    }
    header.insert(CRIT.into(), Value::Array(crit));
    let header_json = serde_json::to_vec(&header).map_err(|e| SignError::Crypto(e.to_string()))?;
    Ok(Unsigned { protected: URL_SAFE_NO_PAD.encode(header_json), payload: URL_SAFE_NO_PAD.encode(content.payload) })
}

/// The envelope of `unsigned` with its `signature`, the chain and the signing agent.
pub(crate) fn assemble(
    unsigned: &Unsigned,
    chain: &[Certificate],
    signing_agent: Option<&str>,
    signature: &[u8],
) -> Result<Vec<u8>, SignError> {
    let signature = URL_SAFE_NO_PAD.encode(signature);
    let out = OutEnvelope {
        payload: &unsigned.payload,
        protected: &unsigned.protected,
        header: OutHeader {
            x5c: chain.iter().map(|c| STANDARD.encode(c.der())).collect(),
            signing_agent: signing_agent.filter(|a| !a.is_empty()).map(str::to_string),
        },
        signature: &signature,
    };
    serde_json::to_vec(&out).map_err(|e| SignError::Crypto(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(json: &str) -> Map<String, Value> {
        let UniqueObject(map) = serde_json::from_str(json).expect("object");
        map
    }

    #[test]
    fn duplicate_keys_are_refused() {
        assert!(serde_json::from_str::<UniqueObject>(r#"{"a":1,"a":2}"#).is_err());
        assert!(serde_json::from_str::<UniqueObject>(r#"[1]"#).is_err());
    }

    #[test]
    fn crit_rules() {
        let base =
            r#""io.cncf.notary.signingScheme":"notary.x509","io.cncf.notary.signingTime":"2020-01-01T00:00:00Z""#;
        let ok = header(&format!(r#"{{{base},"crit":["io.cncf.notary.signingScheme"]}}"#));
        assert!(validate_crit(&ok, false).is_ok());

        let missing = header(&format!(r#"{{{base}}}"#));
        assert!(matches!(validate_crit(&missing, false), Err(VerifyError::InvalidCriticalHeaders(_))));

        let expiry_not_crit = header(&format!(
            r#"{{{base},"io.cncf.notary.expiry":"2030-01-01T00:00:00Z","crit":["io.cncf.notary.signingScheme"]}}"#
        ));
        assert!(matches!(validate_crit(&expiry_not_crit, true), Err(VerifyError::InvalidCriticalHeaders(_))));

        let plugin = header(&format!(
            r#"{{{base},"io.cncf.notary.verificationPlugin":"x","crit":["io.cncf.notary.signingScheme","io.cncf.notary.verificationPlugin"]}}"#
        ));
        assert_eq!(
            validate_crit(&plugin, false),
            Err(VerifyError::UnsupportedCriticalHeader("io.cncf.notary.verificationPlugin".into()))
        );

        let absent = header(&format!(r#"{{{base},"crit":["io.cncf.notary.signingScheme","io.cncf.notary.expiry"]}}"#));
        assert!(matches!(validate_crit(&absent, false), Err(VerifyError::InvalidCriticalHeaders(_))));

        let twice =
            header(&format!(r#"{{{base},"crit":["io.cncf.notary.signingScheme","io.cncf.notary.signingScheme"]}}"#));
        assert!(matches!(validate_crit(&twice, false), Err(VerifyError::InvalidCriticalHeaders(_))));

        let registered = header(&format!(r#"{{{base},"alg":"ES256","crit":["io.cncf.notary.signingScheme","alg"]}}"#));
        assert!(matches!(validate_crit(&registered, false), Err(VerifyError::InvalidCriticalHeaders(_))));
    }

    #[test]
    fn rejects_non_envelopes() {
        for input in [
            &b""[..],
            b"null",
            b"{}",
            b"[]",
            br#"{"payload":"","protected":"","header":{},"signature":"","extra":1}"#,
            br#"{"signatures":[]}"#,
            b"eyJhbGciOiJFUzI1NiJ9.e30.c2ln",
        ] {
            assert!(matches!(parse(input), Err(VerifyError::MalformedEnvelope(_))), "{input:?}");
        }
    }
}
