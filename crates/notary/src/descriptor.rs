//! The OCI descriptor of the signed artifact (`targetArtifact` of the payload).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The OCI descriptor a signature is about: the signed manifest or index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the signed manifest.
    pub media_type: String,
    /// Digest of the signed manifest, `algorithm:hex`.
    pub digest: String,
    /// Size in bytes of the signed manifest.
    pub size: u64,
    /// `config.mediaType` of the manifest, when the signer chose to include it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Signed user metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    /// A descriptor without artifact type or annotations.
    pub fn new(media_type: impl Into<String>, digest: impl Into<String>, size: u64) -> Self {
        Self { media_type: media_type.into(), digest: digest.into(), size, artifact_type: None, annotations: None }
    }

    /// Checks the fields a Notary Project payload requires.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.media_type.trim().is_empty() {
            return Err("mediaType is empty".into());
        }
        validate_digest(&self.digest)
    }
}

/// The signed payload: `{"targetArtifact": <descriptor>}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Payload {
    pub(crate) target_artifact: Descriptor,
}

/// Validates an OCI digest: `algorithm:encoded`, with the lengths of sha256 / sha512 enforced.
pub(crate) fn validate_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return Err(format!("digest {digest:?} is not of the form algorithm:hex"));
    };
    let algorithm_ok = !algorithm.is_empty()
        && algorithm
            .split(['+', '.', '_', '-'])
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    if !algorithm_ok {
        return Err(format!("digest {digest:?} has an invalid algorithm"));
    }
    let expected_len = match algorithm {
        "sha256" => Some(64),
        "sha512" => Some(128),
        _ => None,
    };
    let lower_hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    match expected_len {
        Some(len) if encoded.len() == len && lower_hex(encoded) => Ok(()),
        Some(_) => Err(format!("digest {digest:?} is not a valid {algorithm} digest")),
        None if !encoded.is_empty() && encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b)) => {
            Ok(())
        }
        None => Err(format!("digest {digest:?} has an invalid encoded part")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        let hex64 = "a".repeat(64);
        assert!(validate_digest(&format!("sha256:{hex64}")).is_ok());
        assert!(validate_digest(&format!("sha512:{}", "0".repeat(128))).is_ok());
        assert!(validate_digest(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(validate_digest("sha256:abc").is_err());
        assert!(validate_digest("sha256").is_err());
        assert!(validate_digest(":abc").is_err());
        assert!(validate_digest("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8").is_ok());
    }

    #[test]
    fn payload_round_trip_omits_empty_fields() {
        let payload = Payload {
            target_artifact: Descriptor::new(
                "application/vnd.oci.image.manifest.v1+json",
                format!("sha256:{}", "b".repeat(64)),
                7,
            ),
        };
        let json = serde_json::to_string(&payload).expect("serialize");
        assert!(!json.contains("annotations"));
        assert!(!json.contains("artifactType"));
        let back: Payload = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, payload);
    }
}
