//! One pass at a time per object, across controllers.
//!
//! kube's controller never runs two reconciles of one object at once, but two controllers over
//! the same kind (the Promotion controller and its approval lane) know nothing of each other.
//! A pass acts on what it read and writes status by server-side apply, so two passes of one
//! Promotion at once could both change production from the same picture. Each pass takes the
//! object's turn first; a second pass waits until the first has written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

type Key = (String, String);

/// The turns of the objects that have a pass running or waiting.
#[derive(Default)]
pub struct Turns {
    held: Mutex<HashMap<Key, Arc<AsyncMutex<()>>>>,
}

/// The turn of one object: held until dropped.
pub struct Turn<'a> {
    turns: &'a Turns,
    key: Key,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Turns {
    /// Waits until no other pass of `namespace/name` runs, and holds its turn.
    pub async fn take(&self, namespace: &str, name: &str) -> Turn<'_> {
        let key = (namespace.to_string(), name.to_string());
        let lock = self.map().entry(key.clone()).or_default().clone();
        let guard = lock.lock_owned().await;
        Turn { turns: self, key, guard: Some(guard) }
    }

    /// How many objects have a pass running or waiting (for tests).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether no object has a pass running or waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<AsyncMutex<()>>>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        // Release first, then forget the lock unless another pass holds or waits for it (each
        // holds a clone, taken under the map's lock).
        drop(self.guard.take());
        let mut map = self.turns.map();
        if map.get(&self.key).is_some_and(|lock| Arc::strong_count(lock) == 1) {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_second_pass_of_one_object_waits_while_other_objects_go_on() {
        let turns = Arc::new(Turns::default());
        let first = turns.take("shop", "web-1").await;
        let waiting = {
            let turns = turns.clone();
            tokio::spawn(async move {
                let _turn = turns.take("shop", "web-1").await;
            })
        };
        // Another object's pass is not held up.
        let other = tokio::time::timeout(Duration::from_secs(10), turns.take("shop", "web-2")).await;
        assert!(other.is_ok(), "another object's turn is free");
        drop(other);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the second pass of web-1 waits for the first");
        drop(first);
        tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("it runs once the first ends").unwrap();
        assert!(turns.is_empty(), "no lock is kept for an object nobody works on");
    }
}
