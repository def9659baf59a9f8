//! Image references: `registry/repository[:tag][@sha256:…]`.
//!
//! Tidegate always names the registry (no implicit Docker Hub), and writes to workloads only the
//! pinned form `registry/repository@sha256:…`.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host, with port if any (`registry.example.com`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path inside the registry (`shop/app`).
    pub repository: String,
    /// Tag, if given.
    pub tag: Option<String>,
    /// Digest, if given.
    pub digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// No registry host before the first `/`.
    #[error("image reference {0:?} must start with a registry host, e.g. registry.example.com/team/app")]
    NoRegistry(String),
    /// Repository path has characters outside `[a-z0-9._/-]`.
    #[error("image reference {0:?} has an invalid repository path (lowercase letters, digits, '.', '_', '-' and '/')")]
    Repository(String),
    /// Tag is empty, too long or has invalid characters.
    #[error("image reference {0:?} has an invalid tag")]
    Tag(String),
    /// The digest part is malformed.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

impl ImageRef {
    /// `registry/repository`, without tag or digest.
    pub fn repository_ref(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The pinned reference of this repository at `digest`: `registry/repository@sha256:…`.
    pub fn pinned(&self, digest: &Digest) -> String {
        format!("{}@{}", self.repository_ref(), digest)
    }

    /// Whether the reference names a digest.
    pub fn is_pinned(&self) -> bool {
        self.digest.is_some()
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, digest) = match s.split_once('@') {
            Some((name, digest)) => (name, Some(digest.parse::<Digest>()?)),
            None => (s, None),
        };
        let (registry, path) = name.split_once('/').ok_or_else(|| ReferenceError::NoRegistry(s.to_string()))?;
        let is_host = registry.contains('.') || registry.contains(':') || registry == "localhost";
        if !is_host || registry.is_empty() {
            return Err(ReferenceError::NoRegistry(s.to_string()));
        }
        // A ':' after the last '/' starts the tag; one before it belongs to the registry port.
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
            _ => (path, None),
        };
        let valid_repo = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                    && part.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            });
        if !valid_repo {
            return Err(ReferenceError::Repository(s.to_string()));
        }
        if let Some(tag) = tag {
            let valid_tag = !tag.is_empty()
                && tag.len() <= 128
                && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && !tag.starts_with(['.', '-']);
            if !valid_tag {
                return Err(ReferenceError::Tag(s.to_string()));
            }
        }
        Ok(Self {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "ce1b317e127fb4b0d72f66285df6a71cad81e71ec2ec2512fbdce9faa94939dc";

    #[test]
    fn parses_tags_digests_and_ports() {
        let r: ImageRef = "127.0.0.1:5000/shop/app:1.2".parse().unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "shop/app", Some("1.2"))
        );
        let r: ImageRef = format!("registry.example.com/shop/app@sha256:{HEX}").parse().unwrap();
        assert!(r.is_pinned() && r.tag.is_none());
        let r: ImageRef = format!("localhost/app:v1@sha256:{HEX}").parse().unwrap();
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.pinned(r.digest.as_ref().unwrap()), format!("localhost/app@sha256:{HEX}"));
    }

    #[test]
    fn rejects_what_tidegate_will_not_deploy() {
        assert!(matches!("nginx:latest".parse::<ImageRef>(), Err(ReferenceError::NoRegistry(_))));
        assert!(matches!("library/nginx".parse::<ImageRef>(), Err(ReferenceError::NoRegistry(_))));
        assert!(matches!("r.io/Shop/App".parse::<ImageRef>(), Err(ReferenceError::Repository(_))));
        assert!(matches!("r.io/app:".parse::<ImageRef>(), Err(ReferenceError::Tag(_))));
        assert!(matches!("r.io/app@sha256:abc".parse::<ImageRef>(), Err(ReferenceError::Digest(_))));
    }

    proptest! {
        #[test]
        fn display_round_trips(
            host in "[a-z]{1,8}\\.[a-z]{2,3}(:[0-9]{2,5})?",
            repo in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}",
            tag in proptest::option::of("[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,20}"),
            hex in proptest::option::of("[0-9a-f]{64}"),
        ) {
            let mut text = format!("{host}/{repo}");
            if let Some(tag) = &tag { text.push(':'); text.push_str(tag); }
            if let Some(hex) = &hex { text.push_str("@sha256:"); text.push_str(hex); }
            let parsed: ImageRef = text.parse().unwrap();
            prop_assert_eq!(parsed.to_string(), text);
            prop_assert_eq!(parsed.tag, tag);
        }

        #[test]
        fn never_panics(s in ".{0,100}") {
            let _ = s.parse::<ImageRef>();
        }
    }
}
