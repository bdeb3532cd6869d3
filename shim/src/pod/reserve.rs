//! One Create at a time per container id: a Create reserves its id before it
//! touches the bundle or the runtime, so a second Create for the same id is
//! refused instead of racing the first (and deleting its sandbox when it
//! cleans up after itself). Other calls for an id being created wait for
//! the Create to settle (a containerd that restarted mid-Create asks for the
//! task's state and must not be told there is none, or it never deletes it).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::Pod;

/// The ids with a Create in flight.
#[derive(Debug, Default, Clone)]
pub(super) struct Ids(Arc<(Mutex<HashSet<String>>, Notify)>);

impl Ids {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0 .0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A reserved id; released when dropped (the Create finished, either way).
#[derive(Debug)]
pub struct Reservation {
    ids: Ids,
    id: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.ids.lock().remove(&self.id);
        self.ids.0 .1.notify_waiters();
    }
}

impl Pod {
    /// Reserve `id` for a Create; an error if another Create holds it.
    pub fn reserve(&self, id: &str) -> Result<Reservation, String> {
        let mut g = self.creating.lock();
        if !g.insert(id.to_string()) {
            return Err(format!("container {id} is already being created"));
        }
        Ok(Reservation {
            ids: self.creating.clone(),
            id: id.to_string(),
        })
    }

    /// Wait (at most `bound`) until no Create for `id` is in flight.
    pub async fn settled(&self, id: &str, bound: Duration) {
        let until = tokio::time::Instant::now() + bound;
        loop {
            let released = self.creating.0 .1.notified();
            if !self.creating.lock().contains(id) {
                return;
            }
            if tokio::time::timeout_at(until, released).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_reserved_once_until_released() {
        let pod = Pod::new(
            "ns",
            None,
            Arc::new(crate::events::Recorder::default()),
            Arc::new(crate::reaper::Reaper::new()),
            None,
        );
        let r = pod.reserve("c1").unwrap();
        assert!(pod
            .reserve("c1")
            .unwrap_err()
            .contains("already being created"));
        assert!(pod.reserve("c2").is_ok());
        drop(r);
        assert!(pod.reserve("c1").is_ok());
    }

    #[tokio::test]
    async fn others_wait_for_a_create_in_flight() {
        let pod = Arc::new(Pod::new(
            "ns",
            None,
            Arc::new(crate::events::Recorder::default()),
            Arc::new(crate::reaper::Reaper::new()),
            None,
        ));
        let r = pod.reserve("c1").unwrap();
        let p = pod.clone();
        let waiter = tokio::spawn(async move {
            let t = tokio::time::Instant::now();
            p.settled("c1", Duration::from_secs(10)).await;
            t.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(r);
        let waited = waiter.await.unwrap();
        assert!(
            waited >= Duration::from_millis(150) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        // nothing in flight: no wait; a bound holds
        let t = tokio::time::Instant::now();
        pod.settled("c2", Duration::from_secs(10)).await;
        let _r = pod.reserve("c3").unwrap();
        pod.settled("c3", Duration::from_millis(100)).await;
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
