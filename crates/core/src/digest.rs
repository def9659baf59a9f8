//! Content digests: the only way Tidegate names an image it deploys.

use std::fmt;
use std::str::FromStr;

/// A `sha256:` content digest with 64 lowercase hex characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Not `sha256:`.
    #[error("digest {0:?} must start with sha256:")]
    Algorithm(String),
    /// Not 64 lowercase hex characters.
    #[error("digest {0:?} must be sha256: followed by 64 lowercase hex characters")]
    Hex(String),
}

impl Digest {
    /// The hex part, without `sha256:`.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The full digest, `sha256:…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short form for names and logs: the first 12 hex characters.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| DigestError::Algorithm(s.to_string()))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(DigestError::Hex(s.to_string()));
        }
        Ok(Self(s.to_string()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_only_lowercase_sha256() {
        let ok = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(ok.parse::<Digest>().map(|d| d.short().to_string()), Ok("abababababab".into()));
        assert!(matches!("sha512:00".parse::<Digest>(), Err(DigestError::Algorithm(_))));
        assert!(matches!(format!("sha256:{}", "AB".repeat(32)).parse::<Digest>(), Err(DigestError::Hex(_))));
        assert!(matches!(format!("sha256:{}", "a".repeat(63)).parse::<Digest>(), Err(DigestError::Hex(_))));
        assert!(matches!("latest".parse::<Digest>(), Err(DigestError::Algorithm(_))));
    }

    proptest! {
        #[test]
        fn round_trips(hex in "[0-9a-f]{64}") {
            let text = format!("sha256:{hex}");
            let digest: Digest = text.parse().unwrap();
            prop_assert_eq!(digest.to_string(), text);
            prop_assert_eq!(digest.hex(), hex.as_str());
        }

        #[test]
        fn never_panics(s in ".{0,80}") {
            let _ = s.parse::<Digest>();
        }
    }
}
