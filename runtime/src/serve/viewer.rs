//! Per-viewer one-slot mailboxes: the producer overwrites, the viewer's thread takes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A published frame as the viewers share it.
pub type Frame = Arc<super::Published>;

/// Holds at most one frame: a newer frame replaces an untaken one (counted as dropped), so a
/// slow viewer costs the producer one lock and one pointer swap, never a wait.
#[derive(Default)]
pub struct Mailbox {
    slot: Mutex<Option<Frame>>,
    ready: Condvar,
    closed: AtomicBool,
    sent: AtomicU64,
    dropped: AtomicU64,
}

impl Mailbox {
    pub fn put(&self, frame: Frame) {
        if let Ok(mut slot) = self.slot.lock() {
            if slot.replace(frame).is_some() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            self.ready.notify_one();
        }
    }

    /// The waiting frame, waiting up to `timeout` for one.
    pub fn take(&self, timeout: Duration) -> Option<Frame> {
        let slot = self.slot.lock().ok()?;
        let (mut slot, _) = self
            .ready
            .wait_timeout_while(slot, timeout, |s| {
                s.is_none() && !self.closed.load(Ordering::SeqCst)
            })
            .ok()?;
        slot.take()
    }

    pub fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Ok(_slot) = self.slot.lock() {
            self.ready.notify_all();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// The open streams. Counters of viewers that left are kept in the totals.
#[derive(Default)]
pub struct Registry {
    viewers: Mutex<Vec<Arc<Mailbox>>>,
    gone_sent: AtomicU64,
    gone_dropped: AtomicU64,
}

impl Registry {
    /// A mailbox for a new viewer, or None when `max` are already open.
    pub fn join(&self, max: usize) -> Option<Arc<Mailbox>> {
        let mut v = self.viewers.lock().ok()?;
        if v.len() >= max {
            return None;
        }
        let m = Arc::new(Mailbox::default());
        v.push(m.clone());
        Some(m)
    }

    pub fn leave(&self, m: &Arc<Mailbox>) {
        if let Ok(mut v) = self.viewers.lock() {
            v.retain(|x| !Arc::ptr_eq(x, m));
        }
        self.gone_sent
            .fetch_add(m.sent.load(Ordering::Relaxed), Ordering::Relaxed);
        self.gone_dropped
            .fetch_add(m.dropped.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    pub fn offer(&self, frame: &Frame) {
        // Clone the list so no viewer's lock is taken while the registry is held.
        let viewers: Vec<Arc<Mailbox>> = match self.viewers.lock() {
            Ok(v) => v.clone(),
            Err(_) => return,
        };
        for m in viewers {
            m.put(frame.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.viewers.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// (frames sent, frames dropped) over all viewers, present and past.
    pub fn totals(&self) -> (u64, u64) {
        let (mut s, mut d) = (
            self.gone_sent.load(Ordering::Relaxed),
            self.gone_dropped.load(Ordering::Relaxed),
        );
        if let Ok(v) = self.viewers.lock() {
            for m in v.iter() {
                s += m.sent.load(Ordering::Relaxed);
                d += m.dropped.load(Ordering::Relaxed);
            }
        }
        (s, d)
    }

    pub fn close_all(&self) {
        if let Ok(v) = self.viewers.lock() {
            for m in v.iter() {
                m.close();
            }
        }
    }
}
