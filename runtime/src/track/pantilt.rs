//! A pan-tilt head that keeps the target centred: two hobby servos driven through
//! `embedded_hal::pwm::SetDutyCycle` by a proportional-derivative controller, and a status LED
//! (`embedded_hal::digital::OutputPin`) that is on while the target is locked.
//!
//! The controller works on the target's offset from the frame centre, normalised to [−1, 1]
//! per axis. Inside the dead band it holds still (no hunting around the centre). Outside,
//! each axis moves its pulse width by `−(kp·e + kd·de/dt)` µs (`invert` flips an axis whose
//! servo is mounted the other way), clamped to `[min_us, max_us]`. When the target is not
//! locked the head holds its position and the LED is off.
//!
//! The configuration is JSON (`--pan-tilt CONFIG`), e.g.
//! ```json
//! {"pan":  {"chip": 0, "channel": 0, "min_us": 600, "max_us": 2400, "center_us": 1500},
//!  "tilt": {"chip": 0, "channel": 1, "min_us": 900, "max_us": 2100, "center_us": 1500, "invert": true},
//!  "kp": 250, "kd": 20, "dead_band": 0.05, "period_us": 20000, "led_gpio": null}
//! ```
//! On Linux the servos are sysfs PWM channels (`/sys/class/pwm/pwmchipN/pwmM`), exported and
//! enabled at start and disabled when the head is dropped.

use embedded_hal::digital::OutputPin;
use embedded_hal::pwm::SetDutyCycle;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AxisConfig {
    /// sysfs PWM chip and channel.
    #[serde(default)]
    pub chip: u32,
    #[serde(default)]
    pub channel: u32,
    pub min_us: f32,
    pub max_us: f32,
    pub center_us: f32,
    #[serde(default)]
    pub invert: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanTiltConfig {
    pub pan: AxisConfig,
    pub tilt: AxisConfig,
    /// µs of pulse per unit of normalised error.
    pub kp: f32,
    /// µs of pulse per unit of normalised error change per second.
    #[serde(default)]
    pub kd: f32,
    /// Normalised error below which an axis holds still.
    #[serde(default = "default_dead_band")]
    pub dead_band: f32,
    /// Servo PWM period (50 Hz: 20000 µs).
    #[serde(default = "default_period")]
    pub period_us: f32,
    /// Largest pulse change per update, µs (limits slew so a jump of the box does not yank
    /// the head).
    #[serde(default = "default_max_step")]
    pub max_step_us: f32,
    /// GPIO line of the status LED (`gpiochip0` line; needs the `gpio` feature).
    #[serde(default)]
    pub led_gpio: Option<u32>,
}

fn default_dead_band() -> f32 {
    0.05
}
fn default_period() -> f32 {
    20_000.0
}
fn default_max_step() -> f32 {
    100.0
}

impl PanTiltConfig {
    pub fn load(path: &Path) -> Result<PanTiltConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--pan-tilt {}: {e}", path.display()))?;
        let c: PanTiltConfig = serde_json::from_str(&text)
            .map_err(|e| format!("--pan-tilt {}: {e}", path.display()))?;
        c.validate()
            .map_err(|e| format!("--pan-tilt {}: {e}", path.display()))?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), String> {
        for (n, a) in [("pan", &self.pan), ("tilt", &self.tilt)] {
            if !(a.min_us < a.max_us && a.min_us <= a.center_us && a.center_us <= a.max_us) {
                return Err(format!(
                    "{n}: need min_us ≤ center_us ≤ max_us and min < max, got {} / {} / {}",
                    a.min_us, a.center_us, a.max_us
                ));
            }
            if a.max_us >= self.period_us {
                return Err(format!(
                    "{n}: max_us {} must be below period_us {}",
                    a.max_us, self.period_us
                ));
            }
        }
        if !(self.kp.is_finite() && self.kd.is_finite() && self.kp >= 0.0 && self.kd >= 0.0) {
            return Err("kp and kd must be finite and ≥ 0".into());
        }
        if !(0.0..1.0).contains(&self.dead_band) {
            return Err(format!("dead_band {} must be in [0, 1)", self.dead_band));
        }
        Ok(())
    }
}

/// The PD controller and its outputs.
pub struct PanTilt<P, T, L> {
    pan: P,
    tilt: T,
    led: Option<L>,
    cfg: PanTiltConfig,
    /// Current pulse widths, µs.
    pub pan_us: f32,
    pub tilt_us: f32,
    prev_err: Option<[f32; 2]>,
}

/// A driver error, as text (the traits' error types differ per implementation).
#[derive(Debug, thiserror::Error)]
#[error("pan-tilt: {0}")]
pub struct PanTiltError(pub String);

fn duty<D: SetDutyCycle>(d: &mut D, pulse_us: f32, period_us: f32) -> Result<(), PanTiltError> {
    let max = d.max_duty_cycle() as f32;
    let v = (pulse_us / period_us * max).round().clamp(0.0, max) as u16;
    d.set_duty_cycle(v)
        .map_err(|e| PanTiltError(format!("{e:?}")))
}

impl<P: SetDutyCycle, T: SetDutyCycle, L: OutputPin> PanTilt<P, T, L> {
    /// Centre both servos and switch the LED off.
    pub fn new(pan: P, tilt: T, led: Option<L>, cfg: PanTiltConfig) -> Result<Self, PanTiltError> {
        cfg.validate().map_err(PanTiltError)?;
        let mut s = PanTilt {
            pan,
            tilt,
            led,
            pan_us: cfg.pan.center_us,
            tilt_us: cfg.tilt.center_us,
            cfg,
            prev_err: None,
        };
        s.write()?;
        s.set_led(false)?;
        Ok(s)
    }

    fn write(&mut self) -> Result<(), PanTiltError> {
        duty(&mut self.pan, self.pan_us, self.cfg.period_us)?;
        duty(&mut self.tilt, self.tilt_us, self.cfg.period_us)
    }

    fn set_led(&mut self, on: bool) -> Result<(), PanTiltError> {
        if let Some(l) = &mut self.led {
            let r = if on { l.set_high() } else { l.set_low() };
            r.map_err(|e| PanTiltError(format!("LED: {e:?}")))?;
        }
        Ok(())
    }

    /// One control step: the target's centre `(cx, cy)` in a `width × height` frame,
    /// `locked` when the tracker is confident, `dt` seconds since the last step.
    pub fn update(
        &mut self,
        cx: f32,
        cy: f32,
        width: f32,
        height: f32,
        locked: bool,
        dt: f32,
    ) -> Result<(), PanTiltError> {
        self.set_led(locked)?;
        if !(locked && cx.is_finite() && cy.is_finite()) || width <= 0.0 || height <= 0.0 {
            self.prev_err = None;
            return Ok(());
        }
        let err = [
            ((cx - width / 2.0) / (width / 2.0)).clamp(-1.0, 1.0),
            ((cy - height / 2.0) / (height / 2.0)).clamp(-1.0, 1.0),
        ];
        let prev = self.prev_err.unwrap_or(err);
        self.prev_err = Some(err);
        let dt = dt.max(1e-3);
        let c = &self.cfg;
        let step = |e: f32, p: f32, axis: &AxisConfig, pos: f32| -> f32 {
            if e.abs() < c.dead_band {
                return pos;
            }
            let u = c.kp * e + c.kd * (e - p) / dt;
            let u = u.clamp(-c.max_step_us, c.max_step_us);
            let u = if axis.invert { -u } else { u };
            (pos + u).clamp(axis.min_us, axis.max_us)
        };
        self.pan_us = step(err[0], prev[0], &c.pan, self.pan_us);
        self.tilt_us = step(err[1], prev[1], &c.tilt, self.tilt_us);
        self.write()
    }

    /// Give back the drivers.
    pub fn release(self) -> (P, T, Option<L>) {
        (self.pan, self.tilt, self.led)
    }
}

/// A sysfs PWM channel (`/sys/class/pwm/pwmchipN/pwmM`): duty is `period · v / u16::MAX`.
pub struct SysfsPwm {
    dir: PathBuf,
    period_ns: u64,
}

impl SysfsPwm {
    /// Export (if needed), set the period, enable.
    pub fn open(chip: u32, channel: u32, period_us: f32) -> Result<SysfsPwm, PanTiltError> {
        Self::open_at(Path::new("/sys/class/pwm"), chip, channel, period_us)
    }

    /// `open` under another root (tests use a temporary folder).
    pub fn open_at(
        root: &Path,
        chip: u32,
        channel: u32,
        period_us: f32,
    ) -> Result<SysfsPwm, PanTiltError> {
        let chip_dir = root.join(format!("pwmchip{chip}"));
        let dir = chip_dir.join(format!("pwm{channel}"));
        let err = |what: &str, p: &Path, e: std::io::Error| {
            PanTiltError(format!("{what} {}: {e}", p.display()))
        };
        if !dir.exists() {
            let export = chip_dir.join("export");
            std::fs::write(&export, channel.to_string())
                .map_err(|e| err("exporting via", &export, e))?;
            // udev may take a moment to make the new files writable.
            for _ in 0..50 {
                if dir.join("period").exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let period_ns = (period_us * 1000.0) as u64;
        let p = dir.join("period");
        std::fs::write(&p, period_ns.to_string()).map_err(|e| err("writing", &p, e))?;
        let en = dir.join("enable");
        std::fs::write(&en, "1").map_err(|e| err("writing", &en, e))?;
        Ok(SysfsPwm { dir, period_ns })
    }
}

impl Drop for SysfsPwm {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("enable"), "0");
    }
}

#[derive(Debug)]
pub struct SysfsPwmError(pub String);

impl embedded_hal::pwm::Error for SysfsPwmError {
    fn kind(&self) -> embedded_hal::pwm::ErrorKind {
        embedded_hal::pwm::ErrorKind::Other
    }
}

impl embedded_hal::pwm::ErrorType for SysfsPwm {
    type Error = SysfsPwmError;
}

impl SetDutyCycle for SysfsPwm {
    fn max_duty_cycle(&self) -> u16 {
        u16::MAX
    }

    fn set_duty_cycle(&mut self, duty: u16) -> Result<(), SysfsPwmError> {
        let ns = self.period_ns * duty as u64 / u16::MAX as u64;
        let p = self.dir.join("duty_cycle");
        std::fs::write(&p, ns.to_string())
            .map_err(|e| SysfsPwmError(format!("{}: {e}", p.display())))
    }
}

/// The status LED without a head (`edgeslim-rt track --led` alone): on while the target is
/// locked, off otherwise; the pin is written only when that changes.
pub struct StatusLed<L> {
    pin: L,
    on: Option<bool>,
}

impl<L: OutputPin> StatusLed<L> {
    /// Switch the LED off.
    pub fn new(pin: L) -> Result<Self, PanTiltError> {
        let mut s = StatusLed { pin, on: None };
        s.set(false)?;
        Ok(s)
    }

    pub fn set(&mut self, locked: bool) -> Result<(), PanTiltError> {
        if self.on == Some(locked) {
            return Ok(());
        }
        let r = if locked {
            self.pin.set_high()
        } else {
            self.pin.set_low()
        };
        r.map_err(|e| PanTiltError(format!("LED: {e:?}")))?;
        self.on = Some(locked);
        Ok(())
    }

    /// The pin back (tests check the mock's expectations on it).
    pub fn into_inner(self) -> L {
        self.pin
    }
}

/// An LED that is not there (no `led_gpio`, or no `gpio` feature).
pub struct NoLed;

impl embedded_hal::digital::ErrorType for NoLed {
    type Error = core::convert::Infallible;
}

impl OutputPin for NoLed {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as PinT};
    use embedded_hal_mock::eh1::pwm::{Mock as PwmMock, Transaction as PwmT};

    fn cfg() -> PanTiltConfig {
        serde_json::from_str(
            r#"{"pan": {"min_us": 1000, "max_us": 2000, "center_us": 1500},
                "tilt": {"min_us": 1200, "max_us": 1800, "center_us": 1500, "invert": true},
                "kp": 200, "kd": 0, "dead_band": 0.1, "max_step_us": 1000}"#,
        )
        .unwrap()
    }

    /// 50 Hz, u16 duty: pulse µs → duty value.
    fn d(us: f32) -> u16 {
        (us / 20_000.0 * u16::MAX as f32).round() as u16
    }

    #[test]
    fn status_led_follows_the_lock_and_writes_only_changes() {
        let mut led = StatusLed::new(PinMock::new(&[
            PinT::set(State::Low),
            PinT::set(State::High),
            PinT::set(State::Low),
        ]))
        .unwrap();
        for locked in [false, true, true, true, false, false] {
            led.set(locked).unwrap();
        }
        led.into_inner().done();
    }

    #[test]
    fn moves_toward_the_target_respects_limits_and_dead_band() {
        // Target right of and below centre in a 200×100 frame: e = (0.5, 0.6).
        // pan: 1500 + 200·0.5 = 1600; tilt (inverted): 1500 − 200·0.6 = 1380.
        // Second step, same error: pan 1700, tilt 1260.  Third: pan 1800, tilt 1200 (limit).
        // Then a centred target (inside the dead band): nothing moves. Then lost: LED off.
        let mut pan_t = vec![
            PwmT::max_duty_cycle(u16::MAX),
            PwmT::set_duty_cycle(d(1500.0)),
        ];
        let mut tilt_t = vec![
            PwmT::max_duty_cycle(u16::MAX),
            PwmT::set_duty_cycle(d(1500.0)),
        ];
        for (p, t) in [
            (1600.0, 1380.0),
            (1700.0, 1260.0),
            (1800.0, 1200.0),
            (1800.0, 1200.0),
        ] {
            pan_t.extend([PwmT::max_duty_cycle(u16::MAX), PwmT::set_duty_cycle(d(p))]);
            tilt_t.extend([PwmT::max_duty_cycle(u16::MAX), PwmT::set_duty_cycle(d(t))]);
        }
        let led_t = [
            PinT::set(State::Low),
            PinT::set(State::High),
            PinT::set(State::High),
            PinT::set(State::High),
            PinT::set(State::High),
            PinT::set(State::Low),
        ];
        let mut head = PanTilt::new(
            PwmMock::new(&pan_t),
            PwmMock::new(&tilt_t),
            Some(PinMock::new(&led_t)),
            cfg(),
        )
        .unwrap();
        for _ in 0..3 {
            head.update(150.0, 80.0, 200.0, 100.0, true, 0.04).unwrap();
        }
        assert_eq!((head.pan_us, head.tilt_us), (1800.0, 1200.0));
        head.update(105.0, 52.0, 200.0, 100.0, true, 0.04).unwrap();
        assert_eq!((head.pan_us, head.tilt_us), (1800.0, 1200.0), "dead band");
        head.update(10.0, 10.0, 200.0, 100.0, false, 0.04).unwrap();
        assert_eq!(
            (head.pan_us, head.tilt_us),
            (1800.0, 1200.0),
            "not locked: hold"
        );
        let (mut p, mut t, l) = head.release();
        p.done();
        t.done();
        l.unwrap().done();
    }

    #[test]
    fn left_of_centre_moves_the_other_way_and_derivative_damps() {
        let mut c = cfg();
        c.kd = 2.0;
        c.dead_band = 0.0;
        let pan_t = vec![
            PwmT::max_duty_cycle(u16::MAX),
            PwmT::set_duty_cycle(d(1500.0)),
            // e = −0.5, no previous error: 1500 − 100 = 1400.
            PwmT::max_duty_cycle(u16::MAX),
            PwmT::set_duty_cycle(d(1400.0)),
            // e = −0.25 (approaching): P −50, D 2·(0.25)/0.1 = +5 → 1355.
            PwmT::max_duty_cycle(u16::MAX),
            PwmT::set_duty_cycle(d(1355.0)),
        ];
        let tilt_t: Vec<PwmT> = (0..3)
            .flat_map(|_| {
                [
                    PwmT::max_duty_cycle(u16::MAX),
                    PwmT::set_duty_cycle(d(1500.0)),
                ]
            })
            .collect();
        let mut head: PanTilt<_, _, NoLed> =
            PanTilt::new(PwmMock::new(&pan_t), PwmMock::new(&tilt_t), None, c).unwrap();
        head.update(50.0, 50.0, 200.0, 100.0, true, 0.1).unwrap();
        head.update(75.0, 50.0, 200.0, 100.0, true, 0.1).unwrap();
        assert!((head.pan_us - 1355.0).abs() < 1e-3, "{}", head.pan_us);
        let (mut p, mut t, _) = head.release();
        p.done();
        t.done();
    }

    #[test]
    fn bad_config_is_refused_with_the_field() {
        let mut c = cfg();
        c.pan.min_us = 2500.0;
        assert!(c.validate().unwrap_err().contains("pan"));
        let e = serde_json::from_str::<PanTiltConfig>(r#"{"pan": {}, "tilt": {}, "kp": 1}"#);
        assert!(e.is_err());
    }

    #[test]
    fn sysfs_pwm_writes_period_enable_and_duty() {
        let root = tempfile::tempdir().unwrap();
        let ch = root.path().join("pwmchip0/pwm1");
        std::fs::create_dir_all(&ch).unwrap();
        std::fs::write(ch.join("period"), "0").unwrap();
        let mut p = SysfsPwm::open_at(root.path(), 0, 1, 20_000.0).unwrap();
        assert_eq!(
            std::fs::read_to_string(ch.join("period")).unwrap(),
            "20000000"
        );
        assert_eq!(std::fs::read_to_string(ch.join("enable")).unwrap(), "1");
        p.set_duty_cycle(u16::MAX / 2).unwrap();
        assert_eq!(
            std::fs::read_to_string(ch.join("duty_cycle")).unwrap(),
            "9999847"
        );
        drop(p);
        assert_eq!(std::fs::read_to_string(ch.join("enable")).unwrap(), "0");
    }
}
