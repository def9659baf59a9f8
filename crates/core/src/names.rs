//! Deterministic names: a trigger that fires twice, or a controller that restarts halfway, asks
//! for the same name again and the API server's "already exists" makes the create a no-op.

use sha2::{Digest as _, Sha256};

/// Kubernetes object names are at most 253 characters, but labels and most tools prefer 63.
const MAX: usize = 63;

/// Name of the Release a trigger starts: `<policy>-<kind>-<10 hex of sha256(key)>`.
///
/// `key` is what makes the trigger unique: the new base digest, the manual token, the tag.
pub fn release_name(policy: &str, kind: &str, key: &str) -> String {
    let hash = short_hash(&[policy, kind, key]);
    let suffix = format!("-{kind}-{hash}");
    format!("{}{suffix}", truncate(policy, MAX - suffix.len()))
}

/// Name of the Promotion of a Release: one per Release and digest.
pub fn promotion_name(release: &str, digest_hex: &str) -> String {
    let short = &digest_hex[..digest_hex.len().min(8)];
    let suffix = format!("-{short}");
    format!("{}{suffix}", truncate(release, MAX - suffix.len()))
}

fn short_hash(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())[..10].to_string()
}

fn truncate(name: &str, max: usize) -> &str {
    let mut end = name.len().min(max);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].trim_end_matches('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_distinct_and_short() {
        let a = release_name("shop-app", "manual", "token-1");
        assert_eq!(a, release_name("shop-app", "manual", "token-1"));
        assert_ne!(a, release_name("shop-app", "manual", "token-2"));
        assert!(a.starts_with("shop-app-manual-"));
        let long = release_name(&"x".repeat(100), "base", "k");
        assert!(long.len() <= MAX, "{long}");
        assert_eq!(promotion_name("shop-app-manual-0123456789", "abcdef0123"), "shop-app-manual-0123456789-abcdef01");
        assert!(promotion_name(&"r".repeat(80), "abcdef0123").len() <= MAX);
    }
}
