//! A one-line progress counter on stderr for the runtime's long loops (`edgeslim-rt bench`).
//!
//! The board binary stays lean: no progress-bar crate, just `\r what i/n` redrawn at most ten
//! times a second, and only when stderr is a terminal and `-q` was not given, so logs and
//! pipes get nothing. It is updated between timed runs, never inside one.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const REDRAW_EVERY: Duration = Duration::from_millis(100);

pub struct Progress {
    what: &'static str,
    total: usize,
    shown: bool,
    last_draw: Option<Instant>,
    draws: usize,
}

impl Progress {
    /// A counter drawn only on an interactive stderr and without `-q`.
    pub fn on_terminal(what: &'static str, total: usize) -> Progress {
        let shown = std::io::stderr().is_terminal() && !crate::process::quiet();
        Progress::new(what, total, shown)
    }

    /// A counter that never draws.
    pub fn hidden() -> Progress {
        Progress::new("", 0, false)
    }

    fn new(what: &'static str, total: usize, shown: bool) -> Progress {
        Progress {
            what,
            total,
            shown,
            last_draw: None,
            draws: 0,
        }
    }

    /// `done` of the total are finished; redraws when enough time has passed or at the end.
    pub fn set(&mut self, done: usize) {
        if !self.shown {
            return;
        }
        let now = Instant::now();
        let due = self
            .last_draw
            .is_none_or(|t| now.duration_since(t) >= REDRAW_EVERY);
        if due || done >= self.total {
            self.last_draw = Some(now);
            self.draws += 1;
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{} {done}/{}", self.what, self.total);
            let _ = err.flush();
        }
    }

    /// The line the counter drew, as text (for tests and for `finish`).
    pub fn line(&self, done: usize) -> String {
        format!("{} {done}/{}", self.what, self.total)
    }

    /// Clear the counter's line so the report starts on a clean one.
    pub fn finish(&mut self) {
        if self.shown && self.last_draw.is_some() {
            let blank = " ".repeat(self.line(self.total).len());
            let _ = write!(std::io::stderr().lock(), "\r{blank}\r");
        }
        self.shown = false;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_counter_never_draws() {
        let mut p = Progress::hidden();
        for i in 0..10 {
            p.set(i);
        }
        assert_eq!(p.draws, 0);
    }

    #[test]
    fn redraws_are_throttled_but_the_last_count_is_always_drawn() {
        let mut p = Progress::new("bench: runs", 1000, true);
        for i in 1..=1000 {
            p.set(i);
        }
        // The first update draws, the final one draws, and a thousand updates within far less
        // than 100 ms do not redraw each time.
        assert!(p.draws >= 2, "{} draws", p.draws);
        assert!(p.draws < 100, "{} draws: not throttled", p.draws);
        assert_eq!(p.line(7), "bench: runs 7/1000");
        p.finish();
        let drawn = p.draws;
        p.set(1000);
        assert_eq!(p.draws, drawn, "a finished counter draws no more");
    }
}
