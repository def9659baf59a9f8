//! Distinguished names as trust policies write them (`x509.subject: C=US, ST=WA, O=Acme`) and
//! as certificates carry them, reduced to attribute-type → value maps for subset matching.

use std::collections::BTreeMap;
use std::fmt;
use x509_parser::x509::X509Name;

/// Attributes every `x509.subject` trusted identity must contain.
const MANDATORY: [&str; 3] = ["C", "ST", "O"];

/// A distinguished name with single-valued RDNs and unique attribute types, as the Notary
/// Project compares them. Attribute types are upper-case short names (`C`, `ST`, `L`, `O`,
/// `OU`, `CN`, ...) or dotted OIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistinguishedName {
    attributes: BTreeMap<String, String>,
}

impl fmt::Display for DistinguishedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.attributes.iter().map(|(k, v)| format!("{k}={}", escape(v))).collect();
        f.write_str(&parts.join(", "))
    }
}

impl DistinguishedName {
    /// Parses an RFC 4514 string (`,` or `;` between RDNs, `\` escapes, surrounding spaces
    /// ignored) under the Notary Project rules: no multi-valued RDN (`+`), no duplicate
    /// attribute type, no `#` hex-encoded value, and `C`, `ST` (or its alias `S`) and `O`
    /// present.
    pub fn parse_trusted_identity(text: &str) -> Result<Self, String> {
        if text.contains("=#") {
            return Err("hex-encoded (\"=#\") attribute values are not supported".into());
        }
        let mut attributes = BTreeMap::new();
        for (attr_type, value) in parse_rfc4514(text)? {
            let attr_type = normalize_type(&attr_type);
            if attributes.insert(attr_type.clone(), value).is_some() {
                return Err(format!("attribute {attr_type} appears more than once"));
            }
        }
        for field in MANDATORY {
            if attributes.get(field).is_none_or(|v: &String| v.is_empty()) {
                return Err(format!("the mandatory attribute {field} is missing; C, ST and O are required"));
            }
        }
        Ok(Self { attributes })
    }

    /// Reads a certificate subject. Fails if an RDN is multi-valued or an attribute type
    /// repeats, since such a subject cannot be compared unambiguously.
    pub(crate) fn from_x509_name(name: &X509Name<'_>) -> Result<Self, String> {
        let mut attributes = BTreeMap::new();
        for rdn in name.iter_rdn() {
            let attrs: Vec<_> = rdn.iter().collect();
            let [attr] = attrs.as_slice() else {
                return Err("the subject has a multi-valued RDN".into());
            };
            let oid = attr.attr_type().to_id_string();
            let attr_type = oid_short_name(&oid).map_or(oid, str::to_string);
            let value = match attr.as_str() {
                Ok(s) => s.to_string(),
                // Undecodable values get a form no trusted identity can match.
                Err(_) => format!("#{}", hex::encode(attr.as_slice())),
            };
            if attributes.insert(attr_type.clone(), value).is_some() {
                return Err(format!("the subject repeats attribute {attr_type}"));
            }
        }
        Ok(Self { attributes })
    }

    /// Whether every attribute of `self` is present in `other` with the same value.
    pub fn is_subset_of(&self, other: &Self) -> bool {
        self.attributes.iter().all(|(k, v)| other.attributes.get(k) == Some(v))
    }

    /// The value of an attribute type (e.g. `"O"`).
    pub fn get(&self, attr_type: &str) -> Option<&str> {
        self.attributes.get(attr_type).map(String::as_str)
    }
}

fn normalize_type(attr_type: &str) -> String {
    let upper = attr_type.to_ascii_uppercase();
    match upper.as_str() {
        "S" => "ST".to_string(),
        _ => upper,
    }
}

/// Short names as Go's `pkix.Name.String()` prints them, which is what notation compares with.
fn oid_short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.17" => "POSTALCODE",
        _ => return None,
    })
}

/// An RFC 4514 attribute value that parses back as itself. Every `#` is escaped, not only a
/// leading one: [`DistinguishedName::parse_trusted_identity`] refuses any `=#`, which an escaped
/// `=` followed by `#` would otherwise form.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let edge_space = c == ' ' && (i == 0 || i + 1 == value.chars().count());
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' | '#') || edge_space {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Splits an RFC 4514 DN into (type, value) pairs; rejects multi-valued RDNs.
fn parse_rfc4514(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        // Attribute type, up to '='.
        let mut attr_type = String::new();
        loop {
            match chars.next() {
                Some('=') => break,
                Some(c @ (',' | ';' | '+' | '\\' | '"')) => {
                    return Err(format!("unexpected {c:?} in attribute type {:?}", attr_type.trim()));
                }
                Some(c) => attr_type.push(c),
                None if attr_type.trim().is_empty() && out.is_empty() => {
                    return Err("the distinguished name is empty".into());
                }
                None => {
                    return Err(format!("attribute {:?} has no '=' and no value", attr_type.trim()));
                }
            }
        }
        let attr_type = attr_type.trim().to_string();
        let valid_type = !attr_type.is_empty()
            && (attr_type.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && attr_type.starts_with(|c: char| c.is_ascii_alphabetic())
                || attr_type.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())));
        if !valid_type {
            return Err(format!("invalid attribute type {attr_type:?}"));
        }

        // Attribute value, up to an unescaped separator.
        let mut bytes: Vec<u8> = Vec::new();
        // Length of `bytes` up to the last escaped or non-space byte: trailing unescaped
        // spaces are dropped.
        let mut keep = 0;
        let mut leading = true;
        let mut end = None;
        while let Some(c) = chars.next() {
            match c {
                ',' | ';' => {
                    end = Some(c);
                    break;
                }
                '+' => return Err("multi-valued RDNs ('+') are not supported".into()),
                '\\' => {
                    leading = false;
                    match chars.next() {
                        Some(h1) if h1.is_ascii_hexdigit() => {
                            let h2 = chars
                                .next()
                                .filter(char::is_ascii_hexdigit)
                                .ok_or("invalid hex escape in attribute value")?;
                            let byte = u8::from_str_radix(&format!("{h1}{h2}"), 16).map_err(|e| e.to_string())?;
                            bytes.push(byte);
                        }
                        Some(e) => {
                            let mut buf = [0u8; 4];
                            bytes.extend_from_slice(e.encode_utf8(&mut buf).as_bytes());
                        }
                        None => return Err("the distinguished name ends with '\\'".into()),
                    }
                    keep = bytes.len();
                }
                ' ' if leading => {}
                c => {
                    leading = false;
                    let mut buf = [0u8; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    if c != ' ' {
                        keep = bytes.len();
                    }
                }
            }
        }
        bytes.truncate(keep);
        let value =
            String::from_utf8(bytes).map_err(|_| format!("attribute {attr_type} has a value that is not UTF-8"))?;
        out.push((attr_type, value));
        if end.is_none() {
            return Ok(out);
        }
        // A separator must be followed by another attribute.
        if chars.peek().is_none() {
            return Err("the distinguished name ends with a separator".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(s: &str) -> DistinguishedName {
        DistinguishedName::parse_trusted_identity(s).expect(s)
    }

    #[test]
    fn parses_with_spaces_and_any_order() {
        let a = dn(" CN=e2e,O=Notary,L=Seattle,ST=WA,C=US");
        let b = dn("C=US, ST=WA, L=Seattle, O=Notary, CN=e2e");
        assert_eq!(a, b);
        assert_eq!(a.get("CN"), Some("e2e"));
    }

    #[test]
    fn mandatory_attributes() {
        for s in [
            "CN=e2e,O=Notary,L=Seattle,ST=WA",
            "CN=e2e,L=Seattle,ST=WA,C=US",
            "CN=e2e,O=Notary,L=Seattle,C=US",
            "C=US,ST=,O=x",
        ] {
            assert!(DistinguishedName::parse_trusted_identity(s).is_err(), "{s}");
        }
        assert_eq!(dn("C=US,S=WA,O=x").get("ST"), Some("WA"));
    }

    #[test]
    fn escapes() {
        let d = dn(r"C=US, ST=WA, O=Acme\, Inc., OU=\ padded\ , CN=a\5cb");
        assert_eq!(d.get("O"), Some("Acme, Inc."));
        assert_eq!(d.get("OU"), Some(" padded "));
        assert_eq!(d.get("CN"), Some(r"a\b"));
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "   ",
            "C=US,ST=WA,O=x,",
            "C=US+ST=WA,O=x",
            "C=US,ST=WA,O=x,C=CA",
            "C=US,ST=WA,O=#0403",
            "C=US ST=WA O=x",
            "=US,ST=WA,O=x",
            "C=US,ST=WA,O=x\\",
        ] {
            assert!(DistinguishedName::parse_trusted_identity(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn subset() {
        let small = dn("C=US, ST=WA, O=Notary");
        let big = dn("C=US, ST=WA, L=Seattle, O=Notary, CN=x");
        assert!(small.is_subset_of(&big));
        assert!(!big.is_subset_of(&small));
        assert!(!dn("C=USB, ST=WA, O=Notary").is_subset_of(&big));
    }

    #[test]
    fn display_round_trips() {
        let d = dn(r"C=US, ST=WA, O=Acme\, Inc.");
        assert_eq!(dn(&d.to_string()), d);
    }

    #[test]
    fn display_round_trips_values_with_hash_signs() {
        // Found by the fuzzer (crates/notary/tests/fuzz.rs): a value starting with an escaped
        // `#`, or holding `=#`, was displayed unescaped and did not parse again.
        for text in [r"C=US, ST=WA, O=wabbit-network.io, OU=org1, CN=\#hash", r"C=US, ST=WA, O=a\=\#b"] {
            let d = dn(text);
            assert_eq!(dn(&d.to_string()), d, "{text} displayed as {d}");
        }
    }
}
