//! `edgeslim-rt track`: follow an object with a Siamese tracker, live or on a data set.

use anyhow::{bail, Context, Result};
use clap::Args;
use edgeslim_runtime::io::source::{FrameSource, ImageFiles};
#[cfg(feature = "serve")]
use edgeslim_runtime::track::live::TrackView;
use edgeslim_runtime::track::live::{self, Actuators, Follower, LiveConfig};
use edgeslim_runtime::track::otb::{self, OtbSequence};
use edgeslim_runtime::track::pantilt::{PanTilt, PanTiltConfig, StatusLed, SysfsPwm};
use edgeslim_runtime::track::{Rect, Tracker, TrackerModel, TrackerParams};
use edgeslim_runtime::view::View;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args)]
pub struct TrackArgs {
    /// The tracker: a folder with template.onnx and search.onnx (e.g. models/siamese-tracker).
    #[arg(value_name = "TRACKER_DIR", required_unless_present = "model_flag")]
    model_arg: Option<PathBuf>,
    /// Deprecated: the tracker folder is positional now.
    #[arg(
        long = "model",
        value_name = "DIR",
        hide = true,
        conflicts_with = "model_arg"
    )]
    model_flag: Option<PathBuf>,
    /// Frames: a V4L2 camera (/dev/video0; MJPEG or YUYV), an OTB sequence folder
    /// (img/*.jpg + groundtruth_rect.txt), a folder of images, a video file (decoded by an
    /// external ffmpeg), an image file, or synthetic:SEED (a generated sequence from the
    /// photographs in the asset cache).
    #[arg(long, required_unless_present = "eval")]
    source: Option<String>,
    /// Camera resolution to ask for, WxH (the driver picks the nearest it supports).
    #[arg(long, value_name = "WxH", default_value = "640x480", value_parser = parse_size)]
    camera_size: (u32, u32),
    /// The first target box x,y,w,h in pixels (0-based). Default: the first ground-truth box
    /// of an OTB folder; otherwise wait for a box dragged on the live page.
    #[arg(long, value_name = "X,Y,W,H")]
    init: Option<String>,
    /// Evaluate on every OTB-layout sequence under this folder instead of running live.
    #[arg(long, value_name = "DATASET_DIR", conflicts_with = "source")]
    eval: Option<PathBuf>,
    /// JSON Lines on stdout: one record per frame, then one `{"summary": ...}` record; the
    /// text lines are left out (for other programs to consume without HTTP).
    #[arg(long)]
    jsonl: bool,
    #[command(flatten)]
    json: edgeslim_runtime::json_out::JsonArg,
    /// Live view: PORT, 127.0.0.1:PORT, or 0.0.0.0:PORT to allow other machines.
    #[arg(long, value_name = "ADDR")]
    serve: Option<String>,
    /// A secret the live view's actions must carry (open the page as /?token=SECRET); use it
    /// whenever --serve binds beyond 127.0.0.1.
    #[arg(long, value_name = "SECRET", requires = "serve")]
    token: Option<String>,
    /// Save annotated frames (img/NNNN.jpg) and the boxes (OTB format) into this folder.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// Drive a pan-tilt head (JSON config: servos on sysfs PWM, limits, gains, dead band).
    #[arg(long, value_name = "CONFIG")]
    pan_tilt: Option<PathBuf>,
    /// Status LED on a GPIO line, on while the target is locked: CHIP:LINE, e.g.
    /// gpiochip0:27 (needs the `gpio` feature; overrides the pan-tilt config's led_gpio).
    #[arg(long, value_name = "CHIP:LINE")]
    led: Option<String>,
    /// Threads for tract's matrix products.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Start the source over at its end.
    #[arg(long = "loop")]
    looped: bool,
    /// Process at most this many frames per second (pace a folder like a camera).
    #[arg(long)]
    fps: Option<f64>,
    /// Stop after this many frames.
    #[arg(long)]
    max_frames: Option<u64>,
    /// Search scales per frame.
    #[arg(long, default_value_t = 3)]
    scales: usize,
    /// Confidence below which frames count towards "lost".
    #[arg(long, default_value_t = 0.25)]
    lost_threshold: f32,
}

fn parse_rect(s: &str) -> Result<Rect> {
    let v: Vec<f32> = s
        .split(',')
        .map(|p| p.trim().parse::<f32>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("--init '{s}': expected four numbers x,y,w,h"))?;
    if v.len() != 4 {
        bail!(
            "--init '{s}': expected four numbers x,y,w,h, got {}",
            v.len()
        );
    }
    Ok([v[0], v[1], v[2], v[3]])
}

fn params(a: &TrackArgs) -> Result<TrackerParams> {
    if a.scales == 0 || a.scales.is_multiple_of(2) {
        bail!("--scales {}: use an odd number (1, 3, 5)", a.scales);
    }
    Ok(TrackerParams {
        scales: a.scales,
        lost_threshold: a.lost_threshold,
        ..TrackerParams::default()
    })
}

fn parse_size(s: &str) -> std::result::Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("'{s}': expected WxH, e.g. 640x480"))?;
    let n = |v: &str| v.trim().parse::<u32>().map_err(|e| format!("'{s}': {e}"));
    match (n(w)?, n(h)?) {
        (0, _) | (_, 0) => Err(format!("'{s}': width and height must be positive")),
        size => Ok(size),
    }
}

#[cfg(all(feature = "camera", target_os = "linux", target_pointer_width = "64"))]
fn open_camera(path: &Path, (w, h): (u32, u32)) -> Result<Box<dyn FrameSource>> {
    use edgeslim_runtime::io::camera::Camera;
    use edgeslim_runtime::io::reconnect::Reconnecting;
    let first = Camera::open(path, w, h)?;
    // Unplugged mid-run: keep the loop (and the page) going and reopen once a second.
    let path = path.to_path_buf();
    Ok(Box::new(Reconnecting::new(
        first,
        move || Camera::open(&path, w, h),
        Duration::from_secs(1),
    )))
}

#[cfg(not(all(feature = "camera", target_os = "linux", target_pointer_width = "64")))]
fn open_camera(path: &Path, _size: (u32, u32)) -> Result<Box<dyn FrameSource>> {
    bail!(
        "--source {}: this edgeslim-rt has no camera capture (V4L2 needs the `camera` feature on \
         64-bit Linux; 32-bit ARM builds have none); record a clip (ffmpeg -f v4l2 -i {0} -t 30 \
         clip.mp4) and pass it, or a folder of frames",
        path.display()
    )
}

/// A source and, for OTB folders, the first ground-truth box.
fn open_source(
    spec: &str,
    looped: bool,
    camera_size: (u32, u32),
) -> Result<(Box<dyn FrameSource>, Option<Rect>)> {
    let p = Path::new(spec);
    if let Some(seed) = spec.strip_prefix("synthetic:") {
        let seed: u64 = seed
            .parse()
            .with_context(|| format!("--source {spec}: expected synthetic:SEED with a number"))?;
        if looped {
            bail!("--loop works with folders of frames; a synthetic source runs for 100000 frames");
        }
        let mut s = edgeslim_runtime::track::synthetic::Synthetic::new(seed, 100_000)?;
        // Render frame 0 to learn the first box, then start over so frame 0 is tracked too.
        let _ = s.next_frame();
        let first = s.rect();
        let s = edgeslim_runtime::track::synthetic::Synthetic::new(seed, 100_000)?;
        return Ok((Box::new(s), Some(first)));
    }
    if spec.starts_with("/dev/video") {
        if looped {
            bail!("--loop works with folders of frames, not a camera");
        }
        return Ok((open_camera(p, camera_size)?, None));
    }
    if p.is_dir() && p.join("groundtruth_rect.txt").is_file() {
        let seq = OtbSequence::open(p)?;
        let first = seq.truth[0];
        return Ok((
            Box::new(ImageFiles::open(&p.join("img"), looped)?),
            Some(first),
        ));
    }
    let is_video = p
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| {
            matches!(
                e.to_ascii_lowercase().as_str(),
                "mp4" | "mkv" | "avi" | "mov" | "webm" | "mjpeg" | "mjpg" | "h264"
            )
        })
        .unwrap_or(false);
    if is_video {
        if looped {
            bail!("--loop works with folders of frames, not video files");
        }
        return Ok((
            Box::new(edgeslim_runtime::track::video::VideoFile::open(p)?),
            None,
        ));
    }
    Ok((Box::new(ImageFiles::open(p, looped)?), None))
}

#[cfg(feature = "gpio")]
type Led = edgeslim_runtime::io::gpio::OutputLine;
#[cfg(not(feature = "gpio"))]
type Led = edgeslim_runtime::track::pantilt::NoLed;

type Head = PanTilt<SysfsPwm, SysfsPwm, Led>;

/// The status LED's line: `--led CHIP:LINE`, else the pan-tilt config's `led_gpio`
/// (a line of gpiochip0).
fn led_line(
    a: &TrackArgs,
    cfg: Option<&PanTiltConfig>,
) -> Result<Option<(String, u32, &'static str)>> {
    if let Some(spec) = &a.led {
        let (chip, line) = edgeslim_runtime::io::reject::parse_pin_spec(spec)
            .map_err(|e| anyhow::anyhow!(e.replace("--reject-pin", "--led")))?;
        return Ok(Some((chip, line, "--led")));
    }
    Ok(cfg
        .and_then(|c| c.led_gpio)
        .map(|l| ("/dev/gpiochip0".to_string(), l, "--pan-tilt led_gpio")))
}

#[cfg(feature = "gpio")]
fn open_led(a: &TrackArgs, cfg: Option<&PanTiltConfig>) -> Result<Option<Led>> {
    match led_line(a, cfg)? {
        Some((chip, line, flag)) => Ok(Some(edgeslim_runtime::io::gpio::output_line(
            &chip,
            line,
            0,
            "edgeslim-track-led",
            flag,
        )?)),
        None => Ok(None),
    }
}

#[cfg(not(feature = "gpio"))]
fn open_led(a: &TrackArgs, cfg: Option<&PanTiltConfig>) -> Result<Option<Led>> {
    match led_line(a, cfg)? {
        Some((_, _, flag)) => bail!(
            "{flag}: the status LED needs a build with the `gpio` feature (cargo build -p edgeslim-runtime --features gpio)"
        ),
        None => Ok(None),
    }
}

fn open_head(a: &TrackArgs, path: &Path) -> Result<Head> {
    let cfg = PanTiltConfig::load(path).map_err(anyhow::Error::msg)?;
    let led = open_led(a, Some(&cfg))?;
    let pan = SysfsPwm::open(cfg.pan.chip, cfg.pan.channel, cfg.period_us)?;
    let tilt = SysfsPwm::open(cfg.tilt.chip, cfg.tilt.channel, cfg.period_us)?;
    Ok(PanTilt::new(pan, tilt, led, cfg)?)
}

#[cfg(feature = "serve")]
fn start_view(a: &TrackArgs) -> Result<Option<TrackView>> {
    let Some(spec) = &a.serve else {
        return Ok(None);
    };
    // A viewer closing its connection must not kill the pipeline.
    // SAFETY: changing a signal disposition; no handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let addr = edgeslim_runtime::serve::parse_addr(spec).map_err(anyhow::Error::msg)?;
    let view = TrackView::start(addr, "edgeslim track", a.token.clone())?;
    eprintln!("live view: http://{}/", view.local_addr());
    Ok(Some(view))
}

/// Without the `serve` feature there is no view to start.
#[cfg(not(feature = "serve"))]
enum TrackView {}

#[cfg(not(feature = "serve"))]
impl View for TrackView {
    fn has_viewers(&self) -> bool {
        match *self {}
    }
    fn publish_jpeg(&self, _: Vec<u8>) {
        match *self {}
    }
    fn set_state(&self, _: serde_json::Value) {
        match *self {}
    }
    fn next_action(&self) -> Option<(String, serde_json::Value)> {
        match *self {}
    }
}

#[cfg(not(feature = "serve"))]
fn start_view(a: &TrackArgs) -> Result<Option<TrackView>> {
    if a.serve.is_some() {
        bail!("--serve needs a build with the `serve` feature (on by default)");
    }
    Ok(None)
}

fn eval(a: &TrackArgs, tracker: &Path, dir: &Path) -> Result<()> {
    let p = params(a)?;
    let r = otb::evaluate(tracker, dir, &p, a.threads, !quiet_lines(a))?;
    if !edgeslim_runtime::json_out::emit(&a.json.dest, &r)? {
        print!("{}", otb::render(&r));
    }
    Ok(())
}

pub fn run(a: &TrackArgs) -> Result<()> {
    if a.jsonl && edgeslim_runtime::json_out::to_stdout(&a.json.dest) {
        anyhow::bail!("--jsonl and a bare --json both write to stdout: give --json FILE.json");
    }
    if a.jsonl && a.eval.is_some() {
        anyhow::bail!("--jsonl streams a live run (--source); --eval reports with --json");
    }
    let tracker = a.model()?;
    if let Some(d) = &a.eval {
        return eval(a, &tracker, d);
    }
    let p = params(a)?;
    let spec = a.source.as_deref().context("--source is required")?;
    let model = TrackerModel::load(&tracker, p.scales, a.threads)?;
    let (mut source, gt_init) = open_source(spec, a.looped, a.camera_size)?;
    let init = match &a.init {
        Some(s) => Some(parse_rect(s)?),
        None => gt_init,
    };
    let view = start_view(a)?;
    if init.is_none() && view.is_none() {
        bail!("no target: give --init x,y,w,h, an OTB folder with groundtruth_rect.txt, or --serve to drag a box");
    }
    let head = a.pan_tilt.as_deref().map(|p| open_head(a, p)).transpose()?;
    // Without a head, the LED alone.
    let led = match head {
        Some(_) => None,
        None => open_led(a, None)?.map(StatusLed::new).transpose()?,
    };
    let mut actuators = (head.is_some() || led.is_some()).then_some(Actuators { head, led });
    if let Some(r) = &a.record {
        std::fs::create_dir_all(r.join("img"))
            .with_context(|| format!("creating {}", r.display()))?;
    }
    if !quiet_lines(a) {
        eprintln!(
            "{}: template {}, search {} ×{} scales, response {}×{}, stride {}; source {}",
            tracker.display(),
            model.template_size,
            model.search_size,
            model.batch,
            model.response_size,
            model.response_size,
            model.stride,
            source.describe()
        );
    }
    let cfg = LiveConfig {
        max_frames: a.max_frames,
        pace: a
            .fps
            .filter(|f| *f > 0.0)
            .map(|f| Duration::from_secs_f64(1.0 / f)),
        record: a.record.clone(),
        keep_boxes: a.record.is_some() || a.json.dest.is_some(),
        strict_init: a.init.is_some(),
    };
    let mut tracker = Tracker::new(&model, p);
    let out = live::run(
        &mut tracker,
        source.as_mut(),
        init,
        &cfg,
        view.as_ref().map(|v| v as &dyn View),
        actuators.as_mut().map(|x| x as &mut dyn Follower),
        |ev| {
            if let (true, Some(r)) = (a.jsonl, ev.result) {
                let rec = serde_json::json!({
                    "frame": ev.number,
                    "label": ev.label,
                    "box": ev.rect,
                    "confidence": r.confidence,
                    "state": format!("{:?}", r.state),
                    "search_ms": r.search_ms,
                });
                println!("{rec}");
            } else if let (false, Some(r)) = (quiet_lines(a), ev.result) {
                println!(
                    "{:>5} {:<24} {:>7.1} {:>7.1} {:>6.1} {:>6.1}  conf {:.3}  {:?}  search {:.1} ms",
                    ev.number, ev.label, ev.rect[0], ev.rect[1], ev.rect[2], ev.rect[3],
                    r.confidence, r.state, r.search_ms
                );
            }
        },
    )?;
    let sum = &out.summary;
    if a.jsonl {
        println!("{}", serde_json::json!({ "summary": sum }));
    } else if !edgeslim_runtime::json_out::to_stdout(&a.json.dest) {
        println!(
            "{} frames ({} corrupt, {} lost): {:.1} fps tracking loop, search {:.2} ms/frame, template {:.2} ms/init, {} re-inits",
            sum.frames, sum.corrupt_frames, sum.lost_frames, sum.fps, sum.mean_search_ms, sum.mean_template_ms, sum.reinits
        );
    }
    if let Some(dir) = &a.record {
        let f = dir.join("boxes.txt");
        edgeslim_runtime::fsutil::write_atomic(&f, sum.otb_boxes().as_bytes())
            .with_context(|| format!("writing {}", f.display()))?;
    }
    edgeslim_runtime::json_out::emit(&a.json.dest, sum)?;
    // Serving: the source ended, keep the page up (and answer re-inits on the last frame)
    // until interrupted.
    if let (Some(v), Some(img)) = (&view, &out.last_frame) {
        #[cfg(feature = "serve")]
        eprintln!(
            "source ended; still serving http://{}/ (Ctrl-C to stop)",
            v.local_addr()
        );
        live::linger(&mut tracker, v, img, sum);
    }
    Ok(())
}

/// No per-frame lines with -q, nor when JSON (or JSON Lines) goes to stdout.
fn quiet_lines(a: &TrackArgs) -> bool {
    edgeslim_runtime::process::quiet()
        || a.jsonl
        || edgeslim_runtime::json_out::to_stdout(&a.json.dest)
}

impl TrackArgs {
    /// The tracker folder, positional or by the deprecated `--model`.
    fn model(&self) -> Result<PathBuf> {
        edgeslim_runtime::process::current_or_deprecated(
            &self.model_arg,
            &self.model_flag,
            "--model DIR",
            "the positional TRACKER_DIR",
        )
        .ok_or_else(|| anyhow::anyhow!("no tracker folder given"))
    }
}
