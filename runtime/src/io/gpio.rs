//! Output lines on a Linux GPIO character device (`/dev/gpiochipN`) through linux-embedded-hal's
//! gpio-cdev pin: the inspection reject pin, the tracker's status LED.

use super::reject::{RejectPin, RejectWorker, ThreadDelay};
use crate::error::{Result, RuntimeError};
use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
use linux_embedded_hal::CdevPin;

/// An output line as an `embedded_hal::digital::OutputPin`.
pub type OutputLine = CdevPin;

/// Open `chip`'s `line` as an output at level `initial` (0 or 1). `flag` names the option in
/// errors (`--reject-pin`, `--led`); `consumer` is the label the kernel shows for the line.
pub fn output_line(
    chip: &str,
    line: u32,
    initial: u8,
    consumer: &str,
    flag: &str,
) -> Result<OutputLine> {
    let err = |reason: String| RuntimeError::Other(format!("{flag} {chip}:{line}: {reason}"));
    let mut c = Chip::new(chip).map_err(|e| err(e.to_string()))?;
    let handle = c
        .get_line(line)
        .and_then(|l| l.request(LineRequestFlags::OUTPUT, initial, consumer))
        .map_err(|e| err(e.to_string()))?;
    CdevPin::new(handle).map_err(|e| err(e.to_string()))
}

/// Open `chip`'s `line` as an output and start a pulse worker on it.
pub fn reject_worker(
    chip: &str,
    line: u32,
    pulse_us: u32,
    active_low: bool,
) -> Result<RejectWorker> {
    let err = |reason: String| RuntimeError::Other(format!("--reject-pin {chip}:{line}: {reason}"));
    let idle = if active_low { 1 } else { 0 };
    let pin = output_line(chip, line, idle, "edgeslim-reject", "--reject-pin")?;
    let pin = RejectPin::new(pin, ThreadDelay, pulse_us, active_low)
        .map_err(|e| err(format!("{e:?}")))?;
    RejectWorker::spawn(pin).map_err(|e| err(e.to_string()))
}
