//! A source that outlives its device: when a USB camera is unplugged (or its cable or hub
//! drops out) the capture reports the device gone; this wrapper then retries opening it at a
//! steady interval and carries on with the new stream once it is back. In between, every call
//! answers [`RuntimeError::SourceLost`] after a short wait, so the caller's loop keeps running
//! (serving the page, reporting the state) without spinning.

use super::source::{Frame, FrameSource, SourceHealth};
use crate::error::{Result, RuntimeError};
use std::time::{Duration, Instant};

/// Longest a call blocks while the device is away, so the caller's loop stays responsive.
const MAX_WAIT: Duration = Duration::from_millis(250);

pub struct Reconnecting<S, F> {
    inner: Option<S>,
    open: F,
    retry_every: Duration,
    next_try: Instant,
    health: SourceHealth,
    description: String,
    reconnects: u64,
}

impl<S, F> Reconnecting<S, F>
where
    S: FrameSource,
    F: FnMut() -> Result<S>,
{
    /// Wrap an open source; `open` makes a fresh one after the device is lost.
    pub fn new(first: S, open: F, retry_every: Duration) -> Self {
        let description = first.describe();
        Reconnecting {
            inner: Some(first),
            open,
            retry_every,
            next_try: Instant::now(),
            health: SourceHealth::Live,
            description,
            reconnects: 0,
        }
    }

    /// How many times the device came back.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    fn lost(&mut self, error: String) -> RuntimeError {
        self.inner = None;
        self.next_try = Instant::now() + self.retry_every;
        self.health = SourceHealth::Reconnecting {
            since: Instant::now(),
            attempts: 0,
            error: error.clone(),
        };
        log::warn!("{error}; retrying every {:?}", self.retry_every);
        RuntimeError::SourceLost(error)
    }

    /// While the device is away: wait (at most MAX_WAIT) for the next attempt, make it if due.
    fn try_reopen(&mut self) -> std::result::Result<(), RuntimeError> {
        let now = Instant::now();
        if now < self.next_try {
            std::thread::sleep((self.next_try - now).min(MAX_WAIT));
            if Instant::now() < self.next_try {
                return Err(self.waiting());
            }
        }
        self.next_try = Instant::now() + self.retry_every;
        match (self.open)() {
            Ok(s) => {
                log::warn!("{} is back", s.describe());
                self.description = s.describe();
                self.inner = Some(s);
                self.health = SourceHealth::Live;
                self.reconnects += 1;
                Ok(())
            }
            Err(e) => {
                if let SourceHealth::Reconnecting {
                    attempts, error, ..
                } = &mut self.health
                {
                    *attempts += 1;
                    *error = e.to_string();
                }
                Err(self.waiting())
            }
        }
    }

    fn waiting(&self) -> RuntimeError {
        match &self.health {
            SourceHealth::Reconnecting {
                attempts, error, ..
            } => RuntimeError::SourceLost(format!(
                "{error} (waiting for it to come back, {attempts} attempts)"
            )),
            SourceHealth::Live => RuntimeError::SourceLost(self.description.clone()),
        }
    }
}

impl<S, F> FrameSource for Reconnecting<S, F>
where
    S: FrameSource,
    F: FnMut() -> Result<S>,
{
    fn next_frame(&mut self) -> Option<Result<Frame>> {
        if self.inner.is_none() {
            if let Err(e) = self.try_reopen() {
                return Some(Err(e));
            }
        }
        let inner = self.inner.as_mut()?;
        match inner.next_frame() {
            Some(Err(RuntimeError::SourceLost(msg))) => Some(Err(self.lost(msg))),
            other => other,
        }
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn health(&self) -> SourceHealth {
        self.health.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// A device that yields `frames` numbered frames, then reports itself gone.
    struct Flaky {
        left: u32,
        index: u64,
    }

    impl FrameSource for Flaky {
        fn next_frame(&mut self) -> Option<Result<Frame>> {
            if self.left == 0 {
                return Some(Err(RuntimeError::SourceLost(
                    "camera /dev/video7: reading a frame: No such device".into(),
                )));
            }
            self.left -= 1;
            self.index += 1;
            Some(Ok(Frame {
                image: image::RgbImage::new(2, 2),
                label: format!("f{}", self.index),
                index: self.index,
            }))
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    #[test]
    fn a_lost_device_is_reopened_and_frames_resume() {
        let opens = Rc::new(Cell::new(0u32));
        let counter = opens.clone();
        // Unplugged for two attempts, then back with three frames.
        let open = move || {
            counter.set(counter.get() + 1);
            if counter.get() <= 2 {
                Err(RuntimeError::Other(
                    "camera /dev/video7: open: No such file or directory".into(),
                ))
            } else {
                Ok(Flaky { left: 3, index: 0 })
            }
        };
        let mut s = Reconnecting::new(Flaky { left: 2, index: 0 }, open, Duration::from_millis(5));
        assert_eq!(s.health(), SourceHealth::Live);
        let mut labels = Vec::new();
        let mut lost_calls = 0;
        let t0 = Instant::now();
        while labels.len() < 5 && t0.elapsed() < Duration::from_secs(5) {
            match s.next_frame() {
                Some(Ok(f)) => labels.push(f.label),
                Some(Err(RuntimeError::SourceLost(m))) => {
                    lost_calls += 1;
                    assert!(m.contains("/dev/video7"), "{m}");
                    assert_eq!(s.health().name(), "reconnecting");
                }
                other => panic!("unexpected {:?}", other.map(|r| r.map(|f| f.label))),
            }
        }
        assert_eq!(labels, ["f1", "f2", "f1", "f2", "f3"]);
        assert_eq!(
            opens.get(),
            3,
            "two failed attempts, then the device was back"
        );
        assert!(lost_calls >= 3, "{lost_calls}");
        assert_eq!(s.health(), SourceHealth::Live);
        assert_eq!(s.reconnects(), 1);
    }

    #[test]
    fn waiting_does_not_spin_and_counts_attempts() {
        let mut s = Reconnecting::new(
            Flaky { left: 0, index: 0 },
            || -> Result<Flaky> { Err(RuntimeError::Other("still unplugged".into())) },
            Duration::from_millis(100),
        );
        let t0 = Instant::now();
        for _ in 0..4 {
            assert!(matches!(
                s.next_frame(),
                Some(Err(RuntimeError::SourceLost(_)))
            ));
        }
        // Four calls: the loss, then waits of up to 100 ms between attempts.
        assert!(
            t0.elapsed() >= Duration::from_millis(250),
            "{:?}",
            t0.elapsed()
        );
        match s.health() {
            SourceHealth::Reconnecting {
                attempts, error, ..
            } => {
                assert!(attempts >= 2, "{attempts}");
                assert!(error.contains("still unplugged"), "{error}");
            }
            h => panic!("{h:?}"),
        }
    }
}
