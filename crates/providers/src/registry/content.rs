//! Content the client already holds, by repository and digest.
//!
//! A manifest or blob is named by the SHA-256 of its bytes, checked when fetched, so what was
//! read (or pushed) once under a digest is the same bytes for as long as the repository keeps it.
//! Callers that only need the content (a shared base image's manifests and configs, a signature
//! envelope whose manifest was just fetched) take it from here; callers that must notice a
//! deletion fetch again. Small objects only, within a bounded total; the oldest go first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Largest object kept.
pub const MAX_OBJECT_BYTES: usize = 64 * 1024;
/// Total bytes kept.
pub const MAX_TOTAL_BYTES: usize = 2 * 1024 * 1024;

/// One object: its bytes and media type (empty for blobs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    /// The bytes, whose SHA-256 is the digest they are kept under.
    pub bytes: Arc<[u8]>,
    /// The manifest's media type; empty for blobs.
    pub media_type: String,
}

/// Objects by (repository, digest), oldest first out.
#[derive(Debug, Default)]
pub struct ContentCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    objects: HashMap<(String, String), Content>,
    order: VecDeque<(String, String)>,
    bytes: usize,
}

impl ContentCache {
    /// The object `digest` of `repository`, if held.
    pub fn get(&self, repository: &str, digest: &str) -> Option<Content> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.objects.get(&(repository.to_string(), digest.to_string())).cloned()
    }

    /// Keeps `content`, which is `digest` of `repository` (checked by the caller). Objects over
    /// [`MAX_OBJECT_BYTES`] are not kept.
    pub fn keep(&self, repository: &str, digest: &str, content: Content) {
        if content.bytes.len() > MAX_OBJECT_BYTES {
            return;
        }
        let key = (repository.to_string(), digest.to_string());
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let size = content.bytes.len();
        match inner.objects.insert(key.clone(), content) {
            Some(old) => inner.bytes -= old.bytes.len(),
            None => inner.order.push_back(key),
        }
        inner.bytes += size;
        while inner.bytes > MAX_TOTAL_BYTES {
            let Some(oldest) = inner.order.pop_front() else { break };
            if let Some(gone) = inner.objects.remove(&oldest) {
                inner.bytes -= gone.bytes.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(size: usize) -> Content {
        Content { bytes: vec![7u8; size].into(), media_type: String::new() }
    }

    #[test]
    fn an_object_is_found_only_in_its_own_repository() {
        let cache = ContentCache::default();
        cache.keep("h/r/a", "sha256:1", content(3));
        assert_eq!(cache.get("h/r/a", "sha256:1"), Some(content(3)));
        assert!(cache.get("h/r/b", "sha256:1").is_none());
        assert!(cache.get("h/r/a", "sha256:2").is_none());
    }

    #[test]
    fn large_objects_are_not_kept_and_the_total_is_bounded_oldest_first() {
        let cache = ContentCache::default();
        cache.keep("r", "sha256:big", content(MAX_OBJECT_BYTES + 1));
        assert!(cache.get("r", "sha256:big").is_none());
        let count = MAX_TOTAL_BYTES / MAX_OBJECT_BYTES;
        for i in 0..=count {
            cache.keep("r", &format!("sha256:{i}"), content(MAX_OBJECT_BYTES));
        }
        assert!(cache.get("r", "sha256:0").is_none(), "the oldest went");
        assert!(cache.get("r", &format!("sha256:{count}")).is_some());
        assert!(cache.inner.lock().unwrap().bytes <= MAX_TOTAL_BYTES);
    }
}
