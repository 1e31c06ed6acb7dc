//! Temporary files in progress, removable from a signal handler.
//!
//! Ctrl-C (SIGINT) or SIGTERM in the middle of a write would leave `.NAME.PID.N.tmp` behind
//! (up to the size of a model). The handler may only call async-signal-safe functions, so the
//! paths live in fixed slots of static memory (no allocation, no lock): a slot is FREE,
//! being WRITTEN, or READY; the handler unlinks READY slots and exits with 130.

use std::cell::UnsafeCell;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

const SLOTS: usize = 32;
const PATH_MAX: usize = 1024;
const FREE: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

struct Slot {
    state: AtomicU8,
    path: UnsafeCell<[u8; PATH_MAX]>,
}

// SAFETY: `path` is written only by the thread that moved `state` from FREE to WRITING, and
// read only while `state` is READY.
unsafe impl Sync for Slot {}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    state: AtomicU8::new(FREE),
    path: UnsafeCell::new([0; PATH_MAX]),
};
static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];

/// Removes the path from the table when dropped.
pub struct Registered(Option<usize>);

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            TABLE[i].state.store(FREE, Ordering::SeqCst);
        }
    }
}

/// Note a temporary file so an interrupt removes it. With every slot busy (32 writes at once)
/// or an over-long path the file is simply not tracked.
pub fn register(path: &Path) -> Registered {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= PATH_MAX || bytes.contains(&0) {
        return Registered(None);
    }
    for (i, slot) in TABLE.iter().enumerate() {
        if slot
            .state
            .compare_exchange(FREE, WRITING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            // SAFETY: this thread owns the slot while it is WRITING.
            let buf = unsafe { &mut *slot.path.get() };
            buf[..bytes.len()].copy_from_slice(bytes);
            buf[bytes.len()] = 0;
            slot.state.store(READY, Ordering::SeqCst);
            return Registered(Some(i));
        }
    }
    Registered(None)
}

/// Unlink every registered temporary file. Async-signal-safe: atomics and `unlink` only.
pub fn remove_temp_files_now() {
    TABLE.iter().for_each(unlink_slot);
}

fn unlink_slot(slot: &Slot) {
    if slot.state.load(Ordering::SeqCst) == READY {
        // SAFETY: READY slots hold a NUL-terminated path; unlink is async-signal-safe.
        unsafe {
            libc::unlink(slot.path.get() as *const libc::c_char);
        }
    }
}

extern "C" fn on_interrupt(_: libc::c_int) {
    remove_temp_files_now();
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(130) };
}

/// Route SIGINT and SIGTERM to a handler that removes temporary files and exits with 130
/// (binaries only, at start; commands with their own Ctrl-C handling install theirs after
/// and call [`remove_temp_files_now`] before they exit).
pub fn install_interrupt_cleanup() {
    // SAFETY: installs a handler that only uses atomics, unlink and _exit.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_interrupt as *const () as libc::sighandler_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_temps_are_removed_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".x.1.0.tmp");
        std::fs::write(&p, b"partial").unwrap();
        let guard = register(&p);
        let i = guard.0.unwrap();
        // One slot only: the whole table would include other tests' writes in progress.
        unlink_slot(&TABLE[i]);
        assert!(!p.exists(), "the interrupt cleanup removed the temp file");
        std::fs::write(&p, b"again").unwrap();
        drop(guard);
        unlink_slot(&TABLE[i]);
        assert!(p.exists(), "a released slot is not removed");
    }
}
