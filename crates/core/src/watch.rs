//! Base-image watching, deduplicated: however many policies share a base image reference, it is
//! resolved once per interval (the shortest interval any of them asks for).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

/// What is known about one watched base reference.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Watched {
    /// The digest seen last.
    pub digest: Option<String>,
    /// When it was last resolved.
    pub checked_at: Option<Timestamp>,
    /// A push notification asked for a check as soon as possible.
    pub notified: bool,
}

/// The references to resolve now: every reference some policy watches whose shortest interval has
/// passed since its last check, or that a notification marked. Each appears once.
pub fn due(wanted: &[(String, Duration)], state: &BTreeMap<String, Watched>, now: Timestamp) -> Vec<String> {
    let mut shortest: BTreeMap<&str, Duration> = BTreeMap::new();
    for (reference, interval) in wanted {
        let entry = shortest.entry(reference.as_str()).or_insert(*interval);
        *entry = (*entry).min(*interval);
    }
    shortest
        .into_iter()
        .filter(|(reference, interval)| match state.get(*reference) {
            None => true,
            Some(w) if w.notified => true,
            Some(Watched { checked_at: None, .. }) => true,
            Some(Watched { checked_at: Some(at), .. }) => now.duration_since(*at).unsigned_abs() >= *interval,
        })
        .map(|(reference, _)| reference.to_string())
        .collect()
}

/// Whether a pushed `repository` (`host/path`, with an optional `tag`) is what `reference`
/// (`host/path:tag`) watches.
pub fn notification_matches(reference: &str, repository: &str, tag: Option<&str>) -> bool {
    let (name, wanted_tag) = match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (reference, None),
    };
    name == repository && (tag.is_none() || wanted_tag.is_none() || tag == wanted_tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn one_check_per_reference_at_the_shortest_interval() {
        let base = "r.io/base/runtime:3.20".to_string();
        let other = "r.io/base/other:1".to_string();
        let wanted: Vec<(String, Duration)> = (0..10)
            .map(|i| (base.clone(), Duration::from_secs(60 * (i + 1))))
            .chain(std::iter::once((other.clone(), Duration::from_secs(3600))))
            .collect();
        let mut state = BTreeMap::new();
        assert_eq!(due(&wanted, &state, at(0)), [other.clone(), base.clone()], "ten policies, one check each");
        state.insert(base.clone(), Watched { digest: Some("d".into()), checked_at: Some(at(0)), notified: false });
        state.insert(other.clone(), Watched { digest: Some("e".into()), checked_at: Some(at(0)), notified: false });
        assert!(due(&wanted, &state, at(59)).is_empty());
        assert_eq!(due(&wanted, &state, at(60)), std::slice::from_ref(&base), "the shortest interval (1m) wins");
        state.get_mut(&other).unwrap().notified = true;
        assert_eq!(due(&wanted, &state, at(10)), [other]);
    }

    #[test]
    fn notifications_match_repository_and_tag() {
        assert!(notification_matches("r.io/base/runtime:3.20", "r.io/base/runtime", Some("3.20")));
        assert!(
            notification_matches("r.io/base/runtime:3.20", "r.io/base/runtime", None),
            "a push by digest may move the tag"
        );
        assert!(!notification_matches("r.io/base/runtime:3.20", "r.io/base/runtime", Some("3.21")));
        assert!(!notification_matches("r.io/base/runtime:3.20", "r.io/base/other", Some("3.20")));
        assert!(notification_matches("127.0.0.1:5000/base:v1", "127.0.0.1:5000/base", Some("v1")));
    }
}
