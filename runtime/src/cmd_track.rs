//! `edgeslim-rt track`: follow an object with a Siamese tracker, live or on a data set.

use anyhow::{bail, Context, Result};
use clap::Args;
use edgeslim_runtime::error::RuntimeError;
use edgeslim_runtime::io::source::{FrameSource, ImageFiles};
use edgeslim_runtime::track::draw::draw_rect;
use edgeslim_runtime::track::otb::{self, OtbSequence};
use edgeslim_runtime::track::pantilt::{PanTilt, PanTiltConfig, StatusLed, SysfsPwm};
use edgeslim_runtime::track::{Rect, TrackState, Tracker, TrackerModel, TrackerParams};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct TrackArgs {
    /// The tracker: a folder with template.onnx and search.onnx (e.g. models/siamese-tracker).
    #[arg(long)]
    model: PathBuf,
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
    /// Write the evaluation (or the live run's summary) here as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
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
    /// Print only the summary.
    #[arg(short, long)]
    quiet: bool,
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
    if a.scales == 0 || a.scales % 2 == 0 {
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

fn jpeg(img: &image::RgbImage) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 80)
        .encode_image(img)
        .context("encoding a JPEG frame")?;
    Ok(buf)
}

#[derive(Serialize, Default)]
struct Summary {
    frames: u64,
    corrupt_frames: u64,
    /// Times the device went away (and was waited for) during the run.
    source_interruptions: u64,
    tracked_frames: u64,
    lost_frames: u64,
    reinits: u64,
    fps: f64,
    mean_search_ms: f64,
    mean_template_ms: f64,
    mean_loop_ms: f64,
    boxes: Vec<Rect>,
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
type Server = edgeslim_runtime::serve::LiveServer;
#[cfg(not(feature = "serve"))]
type Server = ();

#[cfg(feature = "serve")]
fn start_view(a: &TrackArgs) -> Result<Option<Server>> {
    use edgeslim_runtime::serve::{parse_addr, LiveServer, ServeConfig};
    let Some(spec) = &a.serve else {
        return Ok(None);
    };
    // A viewer closing its connection must not kill the pipeline.
    // SAFETY: changing a signal disposition; no handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let addr = parse_addr(spec).map_err(anyhow::Error::msg)?;
    let mut cfg = ServeConfig::new(addr, "edgeslim track");
    cfg.page = Some(edgeslim_runtime::track::page::tracker_page(
        "edgeslim track",
    ));
    cfg.token = a.token.clone();
    cfg.validate = Some(edgeslim_runtime::serve::validate::tracker_init(
        view_frame_size().clone(),
    ));
    let srv = LiveServer::start(cfg)?;
    eprintln!("live view: http://{}/", srv.local_addr());
    Ok(Some(srv))
}

/// The size of the frame the live view shows, for the `init` validator.
#[cfg(feature = "serve")]
fn view_frame_size() -> &'static std::sync::Arc<edgeslim_runtime::serve::validate::FrameSize> {
    static SIZE: std::sync::OnceLock<std::sync::Arc<edgeslim_runtime::serve::validate::FrameSize>> =
        std::sync::OnceLock::new();
    SIZE.get_or_init(Default::default)
}

#[cfg(not(feature = "serve"))]
fn start_view(a: &TrackArgs) -> Result<Option<Server>> {
    if a.serve.is_some() {
        bail!("--serve needs a build with the `serve` feature (on by default)");
    }
    Ok(None)
}

/// An `init` action's box, if it is one.
#[cfg(feature = "serve")]
fn next_init(server: &Option<Server>) -> Option<Rect> {
    let s = server.as_ref()?;
    let mut last = None;
    while let Some(a) = s.try_action() {
        if a.name == "init" {
            let f = |k: &str| a.body.get(k).and_then(|v| v.as_f64()).map(|v| v as f32);
            match (f("x"), f("y"), f("w"), f("h")) {
                (Some(x), Some(y), Some(w), Some(h)) => last = Some([x, y, w, h]),
                _ => log::warn!("init action without numbers x, y, w, h: {}", a.body),
            }
        }
    }
    last
}

#[cfg(not(feature = "serve"))]
fn next_init(_: &Option<Server>) -> Option<Rect> {
    None
}

fn eval(a: &TrackArgs, dir: &Path) -> Result<()> {
    let p = params(a)?;
    let r = otb::evaluate(&a.model, dir, &p, a.threads, !a.quiet)?;
    print!("{}", otb::render(&r));
    if let Some(j) = &a.json {
        let bytes = serde_json::to_vec_pretty(&r)?;
        edgeslim_runtime::fsutil::write_atomic(j, &bytes)
            .with_context(|| format!("writing {}", j.display()))?;
    }
    Ok(())
}

pub fn run(a: &TrackArgs) -> Result<()> {
    if let Some(d) = &a.eval {
        return eval(a, d);
    }
    let p = params(a)?;
    let spec = a.source.as_deref().context("--source is required")?;
    let model = TrackerModel::load(&a.model, p.scales, a.threads)?;
    let (mut source, gt_init) = open_source(spec, a.looped, a.camera_size)?;
    let mut pending = match &a.init {
        Some(s) => Some(parse_rect(s)?),
        None => gt_init,
    };
    let server = start_view(a)?;
    if pending.is_none() && server.is_none() {
        bail!("no target: give --init x,y,w,h, an OTB folder with groundtruth_rect.txt, or --serve to drag a box");
    }
    let mut head = a.pan_tilt.as_deref().map(|p| open_head(a, p)).transpose()?;
    // Without a head, the LED alone.
    let mut led = match head {
        Some(_) => None,
        None => open_led(a, None)?.map(StatusLed::new).transpose()?,
    };
    if let Some(r) = &a.record {
        std::fs::create_dir_all(r.join("img"))
            .with_context(|| format!("creating {}", r.display()))?;
    }
    if !a.quiet {
        eprintln!(
            "{}: template {}, search {} ×{} scales, response {}×{}, stride {}; source {}",
            a.model.display(),
            model.template_size,
            model.search_size,
            model.batch,
            model.response_size,
            model.response_size,
            model.stride,
            source.describe()
        );
    }
    let mut tracker = Tracker::new(&model, p);
    let mut sum = Summary::default();
    let (mut search_total, mut template_total, mut template_n, mut loop_total) =
        (0.0, 0.0, 0u64, 0.0);
    let started = Instant::now();
    let mut last_tick = Instant::now();
    let mut fps_ema = 0.0f64;
    let mut last_frame: Option<image::RgbImage> = None;
    let mut source_lost = false;
    let pace = a
        .fps
        .filter(|f| *f > 0.0)
        .map(|f| Duration::from_secs_f64(1.0 / f));
    loop {
        if a.max_frames.is_some_and(|m| sum.frames >= m) {
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
                #[cfg(feature = "serve")]
                if let Some(s) = &server {
                    s.set_state(serde_json::json!({
                        "frame": sum.frames,
                        "source": source.describe(),
                        "source_state": source.health().name(),
                        "source_error": why,
                        "state": tracker.state(),
                        "reinits": sum.reinits,
                        "viewers": s.stats().viewers,
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
        #[cfg(feature = "serve")]
        view_frame_size().set(img.width(), img.height());
        if let Some(r) = next_init(&server) {
            pending = Some(r);
            sum.reinits += 1;
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
                    eprintln!("edgeslim-rt: {e}");
                    if a.init.is_some() && sum.frames == 0 && server.is_none() {
                        bail!("--init: {e}");
                    }
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
        if a.record.is_some() || a.json.is_some() {
            sum.boxes.push(rect);
        }
        let dt = last_tick.elapsed().as_secs_f64();
        last_tick = Instant::now();
        fps_ema = if fps_ema == 0.0 {
            1.0 / dt.max(1e-6)
        } else {
            0.9 * fps_ema + 0.1 / dt.max(1e-6)
        };
        if let Some(l) = led.as_mut() {
            let locked = result
                .as_ref()
                .is_some_and(|r| r.state == TrackState::Tracking);
            if let Err(e) = l.set(locked) {
                log::warn!("{e}");
            }
        }
        if let (Some(h), Some(r)) = (head.as_mut(), &result) {
            let locked = r.state == TrackState::Tracking;
            h.update(
                rect[0] + rect[2] / 2.0,
                rect[1] + rect[3] / 2.0,
                img.width() as f32,
                img.height() as f32,
                locked,
                dt as f32,
            )?;
        }
        let want_view = server.as_ref().is_some_and(view_wanted);
        if want_view || a.record.is_some() {
            let mut shown = img.clone();
            let colour = match result.as_ref().map(|r| r.state) {
                Some(TrackState::Tracking) => [0, 230, 0],
                Some(TrackState::Lost) => [230, 0, 0],
                _ => [230, 230, 0],
            };
            draw_rect(&mut shown, &rect, colour);
            let bytes = jpeg(&shown)?;
            if let Some(dir) = &a.record {
                let f = dir.join(format!("img/{:04}.jpg", sum.frames));
                edgeslim_runtime::fsutil::write_atomic(&f, &bytes)
                    .with_context(|| format!("writing {}", f.display()))?;
            }
            #[cfg(feature = "serve")]
            if let Some(s) = &server {
                // Timed from the frame's arrival: tracking, drawing and encoding are inside.
                s.publish_jpeg_since(bytes, t0);
            }
        }
        #[cfg(feature = "serve")]
        if let Some(s) = &server {
            let st = serde_json::json!({
                "frame": sum.frames,
                "source": frame.label,
                "source_state": source.health().name(),
                "state": result.as_ref().map(|r| r.state).unwrap_or(tracker.state()),
                "box": rect.iter().map(|v| if v.is_finite() { serde_json::json!(v) } else { serde_json::Value::Null }).collect::<Vec<_>>(),
                "confidence": result.as_ref().map(|r| r.confidence),
                "fps": fps_ema,
                "search_ms": result.as_ref().map(|r| r.search_ms),
                "template_ms": if template_n > 0 { Some(template_total / template_n as f64) } else { None },
                "loop_ms": loop_ms,
                "reinits": sum.reinits,
                "viewers": s.stats().viewers,
                "frames_dropped": s.stats().frames_dropped,
                "delivery_ms": s.stats().delivery_ms,
                "published_at_ms": started.elapsed().as_secs_f64() * 1e3,
            });
            s.set_state(st);
        }
        if !a.quiet {
            if let Some(r) = &result {
                println!(
                    "{:>5} {:<24} {:>7.1} {:>7.1} {:>6.1} {:>6.1}  conf {:.3}  {:?}  search {:.1} ms",
                    sum.frames,
                    frame.label,
                    rect[0],
                    rect[1],
                    rect[2],
                    rect[3],
                    r.confidence,
                    r.state,
                    r.search_ms
                );
            }
        }
        last_frame = Some(img);
        if let Some(p) = pace {
            let spent = tick.elapsed();
            if spent < p {
                std::thread::sleep(p - spent);
            }
        }
    }
    if let Some(l) = led.as_mut() {
        let _ = l.set(false);
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
    println!(
        "{} frames ({} corrupt, {} lost): {:.1} fps tracking loop, search {:.2} ms/frame, template {:.2} ms/init, {} re-inits",
        sum.frames, sum.corrupt_frames, sum.lost_frames, sum.fps, sum.mean_search_ms, sum.mean_template_ms, sum.reinits
    );
    if let Some(dir) = &a.record {
        let text: String = sum
            .boxes
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
            .collect();
        let f = dir.join("boxes.txt");
        edgeslim_runtime::fsutil::write_atomic(&f, text.as_bytes())
            .with_context(|| format!("writing {}", f.display()))?;
    }
    if let Some(j) = &a.json {
        let bytes = serde_json::to_vec_pretty(&sum)?;
        edgeslim_runtime::fsutil::write_atomic(j, &bytes)
            .with_context(|| format!("writing {}", j.display()))?;
    }
    // Serving: the source ended, keep the page up (and answer re-inits on the last frame)
    // until interrupted.
    #[cfg(feature = "serve")]
    if let (Some(s), Some(img)) = (&server, last_frame) {
        eprintln!(
            "source ended; still serving http://{}/ (Ctrl-C to stop)",
            s.local_addr()
        );
        loop {
            if let Some(r) = next_init(&server) {
                if let Ok(res) = tracker.init(&img, r) {
                    let mut shown = img.clone();
                    draw_rect(&mut shown, &res.rect, [230, 230, 0]);
                    s.publish_jpeg(jpeg(&shown)?);
                    s.set_state(serde_json::json!({"frame": sum.frames, "state": "ended", "box": res.rect, "reinits": sum.reinits + 1}));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    #[cfg(not(feature = "serve"))]
    let _ = last_frame;
    Ok(())
}

/// Encode JPEGs only while someone watches the stream.
#[cfg(feature = "serve")]
fn view_wanted(s: &Server) -> bool {
    s.has_viewers()
}

#[cfg(not(feature = "serve"))]
fn view_wanted(_: &Server) -> bool {
    false
}
