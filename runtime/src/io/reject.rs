//! The reject arm: a pulse on an output pin when a part fails.
//!
//! [`RejectPin`] is generic over `embedded_hal::digital::OutputPin` and `DelayNs`, so the same
//! code drives a Linux GPIO line, a microcontroller pin, or a mock in tests. The inspection
//! loop must not sleep for the pulse, so [`RejectWorker`] owns the pin on its own thread and
//! takes requests through a bounded queue: a burst of failures while a pulse is running
//! queues at most a few pulses; beyond that they are counted and dropped (the arm is busy).

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A pin that pulses for a fixed time. `active_low` wiring (relay boards that switch on a
/// low level) inverts both levels.
pub struct RejectPin<P, D> {
    pin: P,
    delay: D,
    pulse_us: u32,
    active_low: bool,
}

impl<P: OutputPin, D: DelayNs> RejectPin<P, D> {
    /// Takes the pin and drives it to its idle level at once, so the arm does not fire on
    /// whatever level the line had before.
    pub fn new(
        mut pin: P,
        delay: D,
        pulse_us: u32,
        active_low: bool,
    ) -> Result<RejectPin<P, D>, P::Error> {
        if active_low {
            pin.set_high()?;
        } else {
            pin.set_low()?;
        }
        Ok(RejectPin {
            pin,
            delay,
            pulse_us,
            active_low,
        })
    }

    /// Active for the pulse length, then idle again. Blocks for the pulse.
    pub fn pulse(&mut self) -> Result<(), P::Error> {
        self.set_active(true)?;
        self.delay.delay_us(self.pulse_us);
        self.set_active(false)
    }

    fn set_active(&mut self, on: bool) -> Result<(), P::Error> {
        if on != self.active_low {
            self.pin.set_high()
        } else {
            self.pin.set_low()
        }
    }

    /// The pin back (tests check the mock's expectations on it).
    pub fn release(self) -> (P, D) {
        (self.pin, self.delay)
    }
}

/// `DelayNs` by sleeping the thread (the worker's pulses on a Linux board).
pub struct ThreadDelay;

impl DelayNs for ThreadDelay {
    fn delay_ns(&mut self, ns: u32) {
        std::thread::sleep(std::time::Duration::from_nanos(ns as u64));
    }
}

/// Counters of a [`RejectWorker`].
#[derive(Debug, Default)]
pub struct RejectCounts {
    pub requested: AtomicU64,
    pub pulsed: AtomicU64,
    /// Requests dropped because pulses were already queued.
    pub dropped: AtomicU64,
    pub errors: AtomicU64,
}

/// Pulses a [`RejectPin`] on its own thread. Dropping the worker finishes queued pulses and
/// leaves the pin idle.
pub struct RejectWorker {
    tx: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    pub counts: Arc<RejectCounts>,
}

/// Pulses that may wait behind the running one.
const QUEUED_PULSES: usize = 4;

impl RejectWorker {
    pub fn spawn<P, D>(mut pin: RejectPin<P, D>) -> std::io::Result<RejectWorker>
    where
        P: OutputPin + Send + 'static,
        D: DelayNs + Send + 'static,
    {
        let (tx, rx) = sync_channel::<()>(QUEUED_PULSES);
        let counts = Arc::new(RejectCounts::default());
        let c = counts.clone();
        let thread = std::thread::Builder::new()
            .name("reject-pin".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    match pin.pulse() {
                        Ok(()) => c.pulsed.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            log::warn!("reject pin: {e:?}");
                            c.errors.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })?;
        Ok(RejectWorker {
            tx: Some(tx),
            thread: Some(thread),
            counts,
        })
    }

    /// Ask for one pulse; never blocks.
    pub fn reject(&self) {
        self.counts.requested.fetch_add(1, Ordering::Relaxed);
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) = tx.try_send(())
            {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for RejectWorker {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Parse `--reject-pin CHIP:LINE` (`gpiochip0:17`, `/dev/gpiochip0:17`, or `0:17`) into the
/// character device path and the line offset.
pub fn parse_pin_spec(s: &str) -> Result<(String, u32), String> {
    let (chip, line) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("--reject-pin '{s}': expected CHIP:LINE, e.g. gpiochip0:17"))?;
    let line: u32 = line
        .parse()
        .map_err(|_| format!("--reject-pin '{s}': line '{line}' is not a number"))?;
    let chip = if chip.starts_with('/') {
        chip.to_string()
    } else if chip.chars().all(|c| c.is_ascii_digit()) && !chip.is_empty() {
        format!("/dev/gpiochip{chip}")
    } else if chip.starts_with("gpiochip") {
        format!("/dev/{chip}")
    } else {
        return Err(format!(
            "--reject-pin '{s}': chip '{chip}' should look like gpiochip0 or /dev/gpiochip0"
        ));
    };
    Ok((chip, line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::delay::{CheckedDelay, NoopDelay, Transaction as DelayTx};
    use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as PinTx};

    #[test]
    fn pulse_goes_high_for_the_pulse_length_then_low() {
        let pin = PinMock::new(&[
            PinTx::set(State::Low), // idle at start
            PinTx::set(State::High),
            PinTx::set(State::Low),
            PinTx::set(State::High),
            PinTx::set(State::Low),
        ]);
        let delay = CheckedDelay::new(&[DelayTx::delay_us(150_000), DelayTx::delay_us(150_000)]);
        let mut r = RejectPin::new(pin, delay, 150_000, false).unwrap();
        r.pulse().unwrap();
        r.pulse().unwrap();
        let (mut pin, mut delay) = r.release();
        pin.done();
        delay.done();
    }

    #[test]
    fn active_low_wiring_inverts_levels() {
        let pin = PinMock::new(&[
            PinTx::set(State::High),
            PinTx::set(State::Low),
            PinTx::set(State::High),
        ]);
        let mut r = RejectPin::new(pin, NoopDelay::new(), 1000, true).unwrap();
        r.pulse().unwrap();
        r.release().0.done();
    }

    #[test]
    fn worker_pulses_off_thread_and_finishes_on_drop() {
        let mut expected = vec![PinTx::set(State::Low)];
        for _ in 0..3 {
            expected.push(PinTx::set(State::High));
            expected.push(PinTx::set(State::Low));
        }
        let pin = PinMock::new(&expected);
        let mut check = pin.clone();
        let w =
            RejectWorker::spawn(RejectPin::new(pin, NoopDelay::new(), 10, false).unwrap()).unwrap();
        for _ in 0..3 {
            w.reject();
            // Let each pulse run so none is dropped as "arm busy".
            while w.counts.pulsed.load(Ordering::SeqCst) < w.counts.requested.load(Ordering::SeqCst)
            {
                std::thread::yield_now();
            }
        }
        let counts = w.counts.clone();
        drop(w);
        assert_eq!(counts.pulsed.load(Ordering::SeqCst), 3);
        assert_eq!(counts.dropped.load(Ordering::SeqCst), 0);
        check.done();
    }

    #[test]
    fn pin_specs() {
        assert_eq!(
            parse_pin_spec("gpiochip0:17").unwrap(),
            ("/dev/gpiochip0".into(), 17)
        );
        assert_eq!(parse_pin_spec("1:4").unwrap(), ("/dev/gpiochip1".into(), 4));
        assert_eq!(
            parse_pin_spec("/dev/gpiochip2:3").unwrap(),
            ("/dev/gpiochip2".into(), 3)
        );
        assert!(parse_pin_spec("17").unwrap_err().contains("CHIP:LINE"));
        assert!(parse_pin_spec("gpiochip0:x")
            .unwrap_err()
            .contains("not a number"));
        assert!(parse_pin_spec("usb:1").is_err());
    }
}
