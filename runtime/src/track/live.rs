//! The live tracking loop: frames in, boxes out, to the terminal, the live view, a recording
//! folder and the actuators (pan-tilt head, status LED). It mirrors `inspect::run`: the binary
//! opens the source, the view and the hardware, this loop runs them, and a test can drive it
//! with a test double for each.

use super::draw::draw_rect;
use super::{Rect, TrackResult, TrackState, Tracker};
use crate::error::{Result, RuntimeError};
use crate::io::source::FrameSource;
use crate::view::View;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What the loop does besides tracking.
#[derive(Debug, Clone, Default)]
pub struct LiveConfig {
    /// Stop after this many frames.
    pub max_frames: Option<u64>,
    /// At most one frame per this interval (pace a folder like a camera).
    pub pace: Option<Duration>,
    /// Save annotated frames as `img/NNNN.jpg` here (the folder must exist).
    pub record: Option<PathBuf>,
    /// Keep every frame's box in the summary (for `boxes.txt` and JSON).
    pub keep_boxes: bool,
    /// A first box the user gave that cannot start the tracker is an error, not a warning
    /// (there is no live view to drag a better one).
    pub strict_init: bool,
}

/// What the run did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct LiveSummary {
    pub frames: u64,
    pub corrupt_frames: u64,
    /// Times the device went away (and was waited for) during the run.
    pub source_interruptions: u64,
    pub tracked_frames: u64,
    pub lost_frames: u64,
    pub reinits: u64,
    pub fps: f64,
    pub mean_search_ms: f64,
    pub mean_template_ms: f64,
    pub mean_loop_ms: f64,
    pub boxes: Vec<Rect>,
}

impl LiveSummary {
    /// The boxes in OTB's text format (1-based x, y), one line per frame.
    pub fn otb_boxes(&self) -> String {
        self.boxes
            .iter()
            .map(|r| {
                format!(
                    "{:.2},{:.2},{:.2},{:.2}\n",
                    r[0] + 1.0,
                    r[1] + 1.0,
                    r[2],
                    r[3]
                )
            })
            .collect()
    }
}

/// One processed frame, for the caller's terminal line.
pub struct FrameEvent<'a> {
    /// 1-based count of frames processed.
    pub number: u64,
    pub label: &'a str,
    pub rect: Rect,
    pub result: Option<&'a TrackResult>,
}

/// What follows the target in the physical world: a pan-tilt head, a status LED.
pub trait Follower {
    /// Called once per frame with that frame's result (`None`: nothing tracked yet), the frame
    /// size and the seconds since the previous frame.
    fn follow(&mut self, result: Option<&TrackResult>, frame: (u32, u32), dt: f32) -> Result<()>;
    /// The run is over: switch outputs off.
    fn stop(&mut self) {}
}

/// How the run ended: the summary, and the last frame (what a lingering view keeps showing).
pub struct LiveOutcome {
    pub summary: LiveSummary,
    pub last_frame: Option<image::RgbImage>,
}

/// Track from `init` (or from the first box dragged on the view) until the source ends or
/// `max_frames`.
pub fn run(
    tracker: &mut Tracker,
    source: &mut dyn FrameSource,
    init: Option<Rect>,
    cfg: &LiveConfig,
    view: Option<&dyn View>,
    mut follower: Option<&mut dyn Follower>,
    mut on_frame: impl FnMut(&FrameEvent),
) -> Result<LiveOutcome> {
    let mut pending = init;
    let mut sum = LiveSummary::default();
    let (mut search_total, mut template_total, mut template_n, mut loop_total) =
        (0.0, 0.0, 0u64, 0.0);
    let started = Instant::now();
    let mut last_tick = Instant::now();
    let mut fps_ema = 0.0f64;
    let mut last_frame: Option<image::RgbImage> = None;
    let mut source_lost = false;
    loop {
        if cfg.max_frames.is_some_and(|m| sum.frames >= m) {
            break;
        }
        let tick = Instant::now();
        let frame = match source.next_frame() {
            None => break,
            Some(Err(RuntimeError::SourceLost(why))) => {
                // The device went away: keep serving the last frame and say so; the source
                // reopens it when it comes back.
                if !source_lost {
                    source_lost = true;
                    sum.source_interruptions += 1;
                    eprintln!("edgeslim-rt: {why}; still serving, reconnecting");
                }
                if let Some(v) = view {
                    v.set_state(serde_json::json!({
                        "frame": sum.frames,
                        "source": source.describe(),
                        "source_state": source.health().name(),
                        "source_error": why,
                        "state": tracker.state(),
                        "reinits": sum.reinits,
                        "viewers": v.viewer_stats().viewers,
                        "published_at_ms": started.elapsed().as_secs_f64() * 1e3,
                    }));
                }
                continue;
            }
            Some(Err(e)) => {
                sum.corrupt_frames += 1;
                log::warn!("frame skipped: {e}");
                continue;
            }
            Some(Ok(f)) => f,
        };
        if std::mem::take(&mut source_lost) {
            eprintln!("edgeslim-rt: {} is back", source.describe());
        }
        let img = frame.image;
        if let Some(v) = view {
            v.frame_size(img.width(), img.height());
            if let Some(r) = next_init(v) {
                pending = Some(r);
                sum.reinits += 1;
            }
        }
        let t0 = Instant::now();
        let result = match pending.take() {
            Some(r) => match tracker.init(&img, r) {
                Ok(res) => {
                    template_total += res.template_ms;
                    template_n += 1;
                    Some(res)
                }
                Err(e) => {
                    if cfg.strict_init && sum.frames == 0 && view.is_none() {
                        return Err(RuntimeError::Other(format!("the first box {r:?}: {e}")));
                    }
                    eprintln!("edgeslim-rt: {e}");
                    None
                }
            },
            None => match tracker.state() {
                TrackState::Idle => None,
                _ => Some(tracker.update(&img)?),
            },
        };
        let loop_ms = t0.elapsed().as_secs_f64() * 1e3;
        sum.frames += 1;
        let rect = result.as_ref().map(|r| r.rect).unwrap_or([f32::NAN; 4]);
        if let Some(r) = &result {
            search_total += r.search_ms;
            loop_total += loop_ms;
            match r.state {
                TrackState::Lost => sum.lost_frames += 1,
                TrackState::Tracking => sum.tracked_frames += 1,
                TrackState::Idle => {}
            }
        }
        if cfg.keep_boxes {
            sum.boxes.push(rect);
        }
        let dt = last_tick.elapsed().as_secs_f64();
        last_tick = Instant::now();
        fps_ema = if fps_ema == 0.0 {
            1.0 / dt.max(1e-6)
        } else {
            0.9 * fps_ema + 0.1 / dt.max(1e-6)
        };
        if let Some(f) = follower.as_deref_mut() {
            f.follow(result.as_ref(), (img.width(), img.height()), dt as f32)?;
        }
        let want_view = view.is_some_and(|v| v.has_viewers());
        if want_view || cfg.record.is_some() {
            let mut shown = img.clone();
            let colour = match result.as_ref().map(|r| r.state) {
                Some(TrackState::Tracking) => [0, 230, 0],
                Some(TrackState::Lost) => [230, 0, 0],
                _ => [230, 230, 0],
            };
            draw_rect(&mut shown, &rect, colour);
            let bytes = jpeg(&shown)?;
            if let Some(dir) = &cfg.record {
                let f = dir.join(format!("img/{:04}.jpg", sum.frames));
                crate::fsutil::write_atomic(&f, &bytes)?;
            }
            if let Some(v) = view.filter(|_| want_view) {
                // Timed from the frame's arrival: tracking, drawing and encoding are inside.
                v.publish_jpeg_since(bytes, t0);
            }
        }
        if let Some(v) = view {
            let d = v.viewer_stats();
            v.set_state(serde_json::json!({
                "frame": sum.frames,
                "source": frame.label,
                "source_state": source.health().name(),
                "state": result.as_ref().map(|r| r.state).unwrap_or(tracker.state()),
                "box": rect.iter().map(|v| if v.is_finite() { serde_json::json!(v) } else { serde_json::Value::Null }).collect::<Vec<_>>(),
                "confidence": result.as_ref().map(|r| r.confidence),
                "fps": fps_ema,
                "search_ms": result.as_ref().map(|r| r.search_ms),
                "template_ms": (template_n > 0).then(|| template_total / template_n as f64),
                "loop_ms": loop_ms,
                "reinits": sum.reinits,
                "viewers": d.viewers,
                "frames_dropped": d.frames_dropped,
                "delivery_ms": d.delivery_ms,
                "published_at_ms": started.elapsed().as_secs_f64() * 1e3,
            }));
        }
        on_frame(&FrameEvent {
            number: sum.frames,
            label: &frame.label,
            rect,
            result: result.as_ref(),
        });
        last_frame = Some(img);
        if let Some(p) = cfg.pace {
            let spent = tick.elapsed();
            if spent < p {
                std::thread::sleep(p - spent);
            }
        }
    }
    if let Some(f) = follower {
        f.stop();
    }
    let tracked = (sum.tracked_frames + sum.lost_frames).max(1) as f64;
    sum.mean_search_ms = search_total / tracked;
    sum.mean_loop_ms = loop_total / tracked;
    sum.mean_template_ms = if template_n > 0 {
        template_total / template_n as f64
    } else {
        0.0
    };
    sum.fps = 1e3 / sum.mean_loop_ms.max(1e-9);
    Ok(LiveOutcome {
        summary: sum,
        last_frame,
    })
}

/// The source ended: keep showing the last frame and answer re-inits on it, until the process
/// is interrupted.
pub fn linger(
    tracker: &mut Tracker,
    view: &dyn View,
    frame: &image::RgbImage,
    summary: &LiveSummary,
) -> ! {
    let mut reinits = summary.reinits;
    loop {
        if let Some(r) = next_init(view) {
            if let Ok(res) = tracker.init(frame, r) {
                reinits += 1;
                let mut shown = frame.clone();
                draw_rect(&mut shown, &res.rect, [230, 230, 0]);
                match jpeg(&shown) {
                    Ok(bytes) => view.publish_jpeg(bytes),
                    Err(e) => log::warn!("{e}"),
                }
                view.set_state(serde_json::json!({"frame": summary.frames, "state": "ended", "box": res.rect, "reinits": reinits}));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The box of the newest `init` action on the view, if any (older ones are superseded).
fn next_init(view: &dyn View) -> Option<Rect> {
    let mut last = None;
    while let Some((name, body)) = view.next_action() {
        if name == "init" {
            let f = |k: &str| body.get(k).and_then(|v| v.as_f64()).map(|v| v as f32);
            match (f("x"), f("y"), f("w"), f("h")) {
                (Some(x), Some(y), Some(w), Some(h)) => last = Some([x, y, w, h]),
                _ => log::warn!("init action without numbers x, y, w, h: {body}"),
            }
        }
    }
    last
}

/// The quality the tracker's page and recordings use.
const JPEG_QUALITY: u8 = 80;

fn jpeg(img: &image::RgbImage) -> Result<Vec<u8>> {
    crate::view::encode_jpeg(img, JPEG_QUALITY)
}

/// The board's outputs that follow the target: a pan-tilt head (which may carry the status LED)
/// and, without a head, a status LED of its own.
pub struct Actuators<P, T, L> {
    pub head: Option<super::pantilt::PanTilt<P, T, L>>,
    pub led: Option<super::pantilt::StatusLed<L>>,
}

impl<P, T, L> Follower for Actuators<P, T, L>
where
    P: embedded_hal::pwm::SetDutyCycle,
    T: embedded_hal::pwm::SetDutyCycle,
    L: embedded_hal::digital::OutputPin,
{
    fn follow(&mut self, result: Option<&TrackResult>, frame: (u32, u32), dt: f32) -> Result<()> {
        let locked = result.is_some_and(|r| r.state == TrackState::Tracking);
        if let Some(l) = self.led.as_mut() {
            // A stuck LED is not worth stopping the tracker for.
            if let Err(e) = l.set(locked) {
                log::warn!("{e}");
            }
        }
        if let (Some(h), Some(r)) = (self.head.as_mut(), result) {
            let [x, y, w, hgt] = r.rect;
            h.update(
                x + w / 2.0,
                y + hgt / 2.0,
                frame.0 as f32,
                frame.1 as f32,
                locked,
                dt,
            )
            .map_err(|e| RuntimeError::Other(format!("pan-tilt: {}", e.0)))?;
        }
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(l) = self.led.as_mut() {
            let _ = l.set(false);
        }
    }
}

/// The tracker's live page: the server, with dragged `init` boxes checked against the size of
/// the frame on show.
#[cfg(feature = "serve")]
pub struct TrackView {
    server: crate::serve::LiveServer,
    size: std::sync::Arc<crate::serve::validate::FrameSize>,
}

#[cfg(feature = "serve")]
impl TrackView {
    pub fn start(
        addr: std::net::SocketAddr,
        title: &str,
        token: Option<String>,
    ) -> std::result::Result<TrackView, crate::serve::ServeError> {
        use crate::serve::{validate, LiveServer, ServeConfig};
        let size = std::sync::Arc::new(validate::FrameSize::default());
        let mut cfg = ServeConfig::new(addr, title);
        cfg.page = Some(super::page::tracker_page(title));
        cfg.token = token;
        cfg.validate = Some(validate::tracker_init(size.clone()));
        Ok(TrackView {
            server: LiveServer::start(cfg)?,
            size,
        })
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }
}

#[cfg(feature = "serve")]
impl View for TrackView {
    fn has_viewers(&self) -> bool {
        self.server.has_viewers()
    }
    fn publish_jpeg(&self, jpeg: Vec<u8>) {
        self.server.publish_jpeg(jpeg)
    }
    fn publish_jpeg_since(&self, jpeg: Vec<u8>, captured: Instant) {
        self.server.publish_jpeg_since(jpeg, captured)
    }
    fn set_state(&self, state: serde_json::Value) {
        self.server.set_state(state)
    }
    fn next_action(&self) -> Option<(String, serde_json::Value)> {
        View::next_action(&self.server)
    }
    fn frame_size(&self, width: u32, height: u32) {
        self.size.set(width, height)
    }
    fn viewer_stats(&self) -> crate::view::ViewerStats {
        View::viewer_stats(&self.server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::source::Frame;
    use crate::track::{TrackerModel, TrackerParams};
    use std::cell::{Cell, RefCell};
    use std::path::Path;

    /// A bright square moving right by 2 px a frame on a dark, textured background; frame 3 is
    /// unreadable.
    struct Moving {
        next: u64,
        frames: u64,
    }

    fn square_at(i: u64) -> Rect {
        [60.0 + 2.0 * i as f32, 50.0, 24.0, 24.0]
    }

    impl FrameSource for Moving {
        fn next_frame(&mut self) -> Option<Result<Frame>> {
            let i = self.next;
            if i >= self.frames {
                return None;
            }
            self.next += 1;
            if i == 3 {
                return Some(Err(RuntimeError::Other("frame 3 is broken".into())));
            }
            let [x, y, w, h] = square_at(i);
            let img = image::RgbImage::from_fn(160, 120, |px, py| {
                let inside = (px as f32) >= x
                    && (px as f32) < x + w
                    && (py as f32) >= y
                    && (py as f32) < y + h;
                if inside {
                    image::Rgb([230, 200, 40])
                } else {
                    let t = ((px * 7 + py * 13) % 31) as u8;
                    image::Rgb([20 + t, 30 + t, 40 + t])
                }
            });
            Some(Ok(Frame {
                image: img,
                label: format!("frame {i}"),
                index: i,
            }))
        }
        fn describe(&self) -> String {
            "moving square".into()
        }
    }

    /// A view that records what the loop publishes and hands it one `init` action.
    #[derive(Default)]
    struct Recorder {
        states: RefCell<Vec<serde_json::Value>>,
        jpegs: Cell<usize>,
        frame_sizes: RefCell<Vec<(u32, u32)>>,
        action: RefCell<Option<(String, serde_json::Value)>>,
    }

    impl View for Recorder {
        fn has_viewers(&self) -> bool {
            true
        }
        fn publish_jpeg(&self, jpeg: Vec<u8>) {
            assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG");
            self.jpegs.set(self.jpegs.get() + 1);
        }
        fn set_state(&self, state: serde_json::Value) {
            self.states.borrow_mut().push(state);
        }
        fn next_action(&self) -> Option<(String, serde_json::Value)> {
            // Offered after the third state: a re-init on the square's box.
            if self.states.borrow().len() == 3 {
                return self.action.borrow_mut().take();
            }
            None
        }
        fn frame_size(&self, width: u32, height: u32) {
            self.frame_sizes.borrow_mut().push((width, height));
        }
    }

    #[derive(Default)]
    struct Follow {
        calls: Vec<(bool, (u32, u32))>,
        stopped: bool,
    }

    impl Follower for Follow {
        fn follow(&mut self, r: Option<&TrackResult>, frame: (u32, u32), _dt: f32) -> Result<()> {
            self.calls.push((r.is_some(), frame));
            Ok(())
        }
        fn stop(&mut self) {
            self.stopped = true;
        }
    }

    fn zoo_tracker() -> TrackerModel {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/siamese-tracker");
        TrackerModel::load(&dir, 3, 1).unwrap()
    }

    #[test]
    fn the_loop_tracks_publishes_follows_and_counts_like_the_binary_did() {
        let model = zoo_tracker();
        let mut tracker = Tracker::new(&model, TrackerParams::default());
        let mut source = Moving {
            next: 0,
            frames: 10,
        };
        let view = Recorder::default();
        let [x, y, w, h] = square_at(4);
        *view.action.borrow_mut() = Some((
            "init".into(),
            serde_json::json!({"x": x, "y": y, "w": w, "h": h}),
        ));
        let mut follow = Follow::default();
        let mut printed = Vec::new();
        let cfg = LiveConfig {
            keep_boxes: true,
            ..Default::default()
        };
        let out = run(
            &mut tracker,
            &mut source,
            Some(square_at(0)),
            &cfg,
            Some(&view),
            Some(&mut follow),
            |e| printed.push((e.number, e.result.is_some())),
        )
        .unwrap();
        let s = &out.summary;
        // 10 frames offered, one unreadable: 9 processed, all tracked from the first.
        assert_eq!((s.frames, s.corrupt_frames), (9, 1));
        assert_eq!(s.tracked_frames + s.lost_frames, 9);
        assert_eq!(s.reinits, 1, "the view's init action re-initialised once");
        assert_eq!(s.boxes.len(), 9);
        assert!(s.mean_search_ms > 0.0 && s.mean_template_ms > 0.0 && s.fps > 0.0);
        // The first box is where the square was; the tracker follows it rightwards.
        let first = s.boxes[0];
        assert!(
            (first[0] - 60.0).abs() < 1e-3 && (first[2] - 24.0).abs() < 1e-3,
            "{first:?}"
        );
        let last = s.boxes[8];
        let centre = last[0] + last[2] / 2.0;
        assert!(
            (centre - (72.0 + 2.0 * 9.0)).abs() < 8.0,
            "last box {last:?}"
        );
        // Every processed frame reached the view, the follower and the caller.
        assert_eq!(view.states.borrow().len(), 9);
        assert_eq!(view.jpegs.get(), 9);
        assert_eq!(view.frame_sizes.borrow().as_slice(), &[(160, 120); 9]);
        assert!(follow
            .calls
            .iter()
            .all(|&(tracked, size)| tracked && size == (160, 120)));
        assert_eq!(follow.calls.len(), 9);
        assert!(follow.stopped);
        assert_eq!(printed, (1..=9).map(|n| (n, true)).collect::<Vec<_>>());
        assert_eq!(view.states.borrow()[8]["frame"], 9);
        assert_eq!(s.otb_boxes().lines().count(), 9);
        assert!(out.last_frame.is_some());
    }

    #[test]
    fn a_bad_first_box_fails_only_without_a_view() {
        let model = zoo_tracker();
        let outside = Some([5000.0, 5000.0, 10.0, 10.0]);
        let cfg = LiveConfig {
            strict_init: true,
            ..Default::default()
        };
        let mut tracker = Tracker::new(&model, TrackerParams::default());
        let mut source = Moving { next: 0, frames: 3 };
        let e = run(&mut tracker, &mut source, outside, &cfg, None, None, |_| {})
            .err()
            .expect("an error");
        assert!(e.to_string().contains("the first box"), "{e}");
        // With a view the user can drag a better box: the run goes on, idle.
        let view = Recorder::default();
        let mut source = Moving { next: 0, frames: 3 };
        let out = run(
            &mut tracker,
            &mut source,
            outside,
            &cfg,
            Some(&view),
            None,
            |_| {},
        )
        .unwrap();
        assert_eq!(out.summary.frames, 3);
        assert_eq!(out.summary.tracked_frames, 0);
    }
}
