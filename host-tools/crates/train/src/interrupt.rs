//! Ctrl-C during training: the first SIGINT asks the training loop to stop after the current
//! step (it then returns the best checkpoint so far, which the command writes); a second one
//! exits at once with status 130.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    if REQUESTED.swap(true, Ordering::SeqCst) {
        edgeslim_runtime::fsutil::remove_temp_files_now();
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Route SIGINT to [`requested`] (binaries only; a library must not take over signals).
pub fn install() {
    // SAFETY: installs a handler that only touches an atomic and calls _exit, both
    // async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
}

/// Has Ctrl-C been pressed since [`install`]?
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
