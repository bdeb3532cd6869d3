//! One Create at a time per container id: a Create reserves its id before it
//! touches the bundle or the runtime, so a second Create for the same id is
//! refused instead of racing the first (and deleting its sandbox when it
//! cleans up after itself).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::Pod;

/// The ids with a Create in flight.
#[derive(Debug, Default, Clone)]
pub(super) struct Ids(Arc<Mutex<HashSet<String>>>);

/// A reserved id; released when dropped (the Create finished, either way).
#[derive(Debug)]
pub struct Reservation {
    ids: Ids,
    id: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.ids
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Pod {
    /// Reserve `id` for a Create; an error if another Create holds it.
    pub fn reserve(&self, id: &str) -> Result<Reservation, String> {
        let mut g = self.creating.0.lock().unwrap_or_else(|p| p.into_inner());
        if !g.insert(id.to_string()) {
            return Err(format!("container {id} is already being created"));
        }
        Ok(Reservation {
            ids: self.creating.clone(),
            id: id.to_string(),
        })
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
}
