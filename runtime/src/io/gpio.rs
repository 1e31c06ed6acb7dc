//! The reject pin on a Linux GPIO character device (`/dev/gpiochipN`), through
//! linux-embedded-hal's gpio-cdev pin.

use super::reject::{RejectPin, RejectWorker, ThreadDelay};
use crate::error::{Result, RuntimeError};
use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
use linux_embedded_hal::CdevPin;

/// Open `chip`'s `line` as an output and start a pulse worker on it.
pub fn reject_worker(
    chip: &str,
    line: u32,
    pulse_us: u32,
    active_low: bool,
) -> Result<RejectWorker> {
    let err = |reason: String| RuntimeError::Other(format!("--reject-pin {chip}:{line}: {reason}"));
    let mut c = Chip::new(chip).map_err(|e| err(e.to_string()))?;
    let idle = if active_low { 1 } else { 0 };
    let handle = c
        .get_line(line)
        .and_then(|l| l.request(LineRequestFlags::OUTPUT, idle, "edgeslim-reject"))
        .map_err(|e| err(e.to_string()))?;
    let pin = CdevPin::new(handle).map_err(|e| err(e.to_string()))?;
    let pin = RejectPin::new(pin, ThreadDelay, pulse_us, active_low)
        .map_err(|e| err(format!("{e:?}")))?;
    RejectWorker::spawn(pin).map_err(|e| err(e.to_string()))
}
