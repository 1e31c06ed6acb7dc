//! The live-view HTTP server shared by the board pipelines (`inspect`, `track`).
//!
//! A page with a live MJPEG stream (`multipart/x-mixed-replace`), a JSON state endpoint and
//! POST endpoints for user actions. Design rules:
//! - Binds 127.0.0.1 unless the caller asks for another address (`--serve 0.0.0.0:8080`).
//! - The producer never waits for a viewer: [`LiveServer::publish_jpeg`] replaces the frame in
//!   each viewer's one-slot mailbox and returns. A viewer that reads slowly sees the newest
//!   frame and misses the ones in between (counted per viewer); nothing queues without bound.
//! - Each stream is written by its own thread; a viewer that stops reading blocks only that
//!   thread, and only until the socket's send timeout ([`ServeConfig::write_timeout`]) drops it.
//! - Actions (`POST /action/<name>` with a JSON body) go into a bounded queue the pipeline
//!   drains when it likes; when the queue is full the client gets 503 instead of the pipeline
//!   getting a backlog.
//!
//! - Requests are read by [`http`], a small parser bounded in every dimension (head size,
//!   body size from its declared length, an overall deadline), so no request can make the
//!   board allocate or wait without limit. Actions are checked against cross-site requests
//!   (JSON content type, Origin = Host), an optional `--token`, and the pipeline's own
//!   validator ([`ServeConfig::validate`]: a box inside the frame, a threshold in range)
//!   before they are queued; a refused action gets 4xx and never reaches the pipeline.

pub mod http;
mod page;
pub mod validate;
mod viewer;

pub use page::default_page;

use serde::Serialize;
use std::collections::VecDeque;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use viewer::{Frame, Mailbox, Registry};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--serve {addr}: {reason}")]
    Bind { addr: String, reason: String },
}

#[derive(Clone)]
pub struct ServeConfig {
    /// Where to listen. Callers default to 127.0.0.1; 0.0.0.0 exposes the view to the LAN.
    pub addr: SocketAddr,
    /// Page title (the pipeline's name).
    pub title: String,
    /// HTML inserted under the stream on the default page (controls that POST actions).
    pub controls_html: String,
    /// A complete page replacing the default one (the tracker's drag-to-select page).
    pub page: Option<String>,
    /// Streams served at once; more get 503.
    pub max_viewers: usize,
    /// A viewer whose socket accepts no bytes for this long is dropped.
    pub write_timeout: Duration,
    /// Queued actions the pipeline has not taken yet; more get 503.
    pub action_queue: usize,
    /// A secret every action must carry (`X-Edgeslim-Token`); for binds beyond loopback.
    pub token: Option<String>,
    /// The pipeline's check of an action's values (400 with its message when it fails).
    pub validate: Option<Validator>,
}

/// Checks an action before it is queued: `Err(why)` answers 400 with `why`.
pub type Validator = Arc<dyn Fn(&Action) -> Result<(), String> + Send + Sync>;

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("addr", &self.addr)
            .field("title", &self.title)
            .field("max_viewers", &self.max_viewers)
            .field("write_timeout", &self.write_timeout)
            .field("action_queue", &self.action_queue)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .field("validate", &self.validate.is_some())
            .finish_non_exhaustive()
    }
}

impl ServeConfig {
    pub fn new(addr: SocketAddr, title: &str) -> ServeConfig {
        ServeConfig {
            addr,
            title: title.to_string(),
            controls_html: String::new(),
            page: None,
            max_viewers: 16,
            write_timeout: Duration::from_secs(10),
            action_queue: 64,
            token: None,
            validate: None,
        }
    }
}

/// Parse `--serve` values: `PORT`, `HOST:PORT`, or `:PORT` (127.0.0.1 unless a host is given).
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let full = if let Ok(port) = s.parse::<u16>() {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = s.strip_prefix(':') {
        format!("127.0.0.1:{port}")
    } else {
        s.to_string()
    };
    full.parse::<SocketAddr>().map_err(|_| {
        format!("'{s}' is not an address: use PORT, 127.0.0.1:PORT or 0.0.0.0:PORT (LAN)")
    })
}

/// A user action posted by a viewer: `POST /action/<name>` with a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub name: String,
    pub body: serde_json::Value,
}

/// Counters for logs, the state endpoint and tests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerStats {
    pub viewers: usize,
    pub frames_published: u64,
    /// Frames replaced in a viewer's mailbox before that viewer took them, over all viewers.
    pub frames_dropped: u64,
    pub frames_sent: u64,
    pub viewers_refused: u64,
    /// Delivery latency over the last frames sent: from the frame's capture (or publication)
    /// to its last byte handed to the viewer's socket. The browser's decode and paint come on
    /// top; on the board the JPEG encoding is inside, as the pipelines pass the capture time.
    pub delivery_ms: Option<Delivery>,
}

/// Percentiles of [`ServerStats::delivery_ms`].
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Delivery {
    pub samples: usize,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

/// A frame and when it was captured, so delivery can be timed end to end.
pub struct Published {
    jpeg: Vec<u8>,
    since: Instant,
}

/// The last `DELIVERY_WINDOW` delivery times.
const DELIVERY_WINDOW: usize = 512;

fn summarize(window: &VecDeque<f64>) -> Option<Delivery> {
    if window.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = window.iter().copied().collect();
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Some(Delivery {
        samples: v.len(),
        p50: at(0.5),
        p95: at(0.95),
        max: v[v.len() - 1],
    })
}

struct Shared {
    config: ServeConfig,
    registry: Registry,
    latest: Mutex<Option<Frame>>,
    delivery: Mutex<VecDeque<f64>>,
    state: Mutex<serde_json::Value>,
    actions: SyncSender<Action>,
    published: AtomicU64,
    refused: AtomicU64,
    stopping: AtomicBool,
    /// Non-stream requests being handled, to cap the threads a flood of clients can start.
    busy: AtomicUsize,
}

/// A running server. Dropping it stops accepting and ends every stream.
pub struct LiveServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    actions: Mutex<Receiver<Action>>,
    accept: Option<JoinHandle<()>>,
}

impl LiveServer {
    pub fn start(config: ServeConfig) -> Result<LiveServer, ServeError> {
        let addr_text = config.addr.to_string();
        let bind_err = |reason: String| ServeError::Bind {
            addr: addr_text.clone(),
            reason,
        };
        if !config.addr.ip().is_loopback() && config.token.is_none() {
            log::warn!(
                "--serve {}: the live view's actions are open to anyone on this network; \
                 pass --token to require a secret",
                config.addr
            );
        }
        let listener = TcpListener::bind(config.addr).map_err(|e| bind_err(e.to_string()))?;
        let addr = listener.local_addr().map_err(|e| bind_err(e.to_string()))?;
        let (tx, rx) = sync_channel(config.action_queue.max(1));
        let shared = Arc::new(Shared {
            config,
            registry: Registry::default(),
            latest: Mutex::new(None),
            delivery: Mutex::new(VecDeque::with_capacity(DELIVERY_WINDOW)),
            state: Mutex::new(serde_json::json!({})),
            actions: tx,
            published: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("serve-accept".into())
                .spawn(move || accept_loop(&listener, &shared))
                .map_err(|e| bind_err(e.to_string()))?
        };
        log::info!("live view on http://{addr}/");
        Ok(LiveServer {
            shared,
            addr,
            actions: Mutex::new(rx),
            accept: Some(accept),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// True when at least one stream is open: callers skip JPEG encoding otherwise.
    pub fn has_viewers(&self) -> bool {
        self.shared.registry.len() > 0
    }

    /// Hand a JPEG frame to every viewer. Never blocks on a viewer.
    pub fn publish_jpeg(&self, jpeg: Vec<u8>) {
        self.publish_jpeg_since(jpeg, Instant::now());
    }

    /// As [`Self::publish_jpeg`], for a frame captured at `captured`: delivery is timed from
    /// then ([`ServerStats::delivery_ms`]).
    pub fn publish_jpeg_since(&self, jpeg: Vec<u8>, captured: Instant) {
        let frame = Arc::new(Published {
            jpeg,
            since: captured,
        });
        if let Ok(mut latest) = self.shared.latest.lock() {
            *latest = Some(frame.clone());
        }
        self.shared.published.fetch_add(1, Ordering::Relaxed);
        self.shared.registry.offer(&frame);
    }

    /// Replace the JSON state served at `/state.json`.
    pub fn set_state(&self, state: serde_json::Value) {
        if let Ok(mut s) = self.shared.state.lock() {
            *s = state;
        }
    }

    /// The next queued action, if any (non-blocking).
    pub fn try_action(&self) -> Option<Action> {
        self.actions.lock().ok()?.try_recv().ok()
    }

    pub fn stats(&self) -> ServerStats {
        let (sent, dropped) = self.shared.registry.totals();
        ServerStats {
            viewers: self.shared.registry.len(),
            frames_published: self.shared.published.load(Ordering::Relaxed),
            frames_dropped: dropped,
            frames_sent: sent,
            viewers_refused: self.shared.refused.load(Ordering::Relaxed),
            delivery_ms: self.shared.delivery.lock().ok().and_then(|w| summarize(&w)),
        }
    }
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.registry.close_all();
        // Wake the blocking accept with a connection of our own.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Connections being read or answered (streams excluded, they count as viewers): a flood of
/// clients gets 503 instead of a thread each.
const MAX_BUSY: usize = 32;
/// Each read of a request waits at most this long (the whole request has a deadline too).
const READ_TIMEOUT: Duration = Duration::from_secs(5);

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors or a reset before accept: wait a little, go on.
                log::debug!("serve: accept: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let configured = conn
            .set_read_timeout(Some(READ_TIMEOUT))
            .and_then(|_| conn.set_write_timeout(Some(shared.config.write_timeout)));
        if configured.is_err() {
            continue;
        }
        let _ = conn.set_nodelay(true);
        if shared.busy.fetch_add(1, Ordering::SeqCst) >= MAX_BUSY {
            shared.busy.fetch_sub(1, Ordering::SeqCst);
            let _ = http::respond(&mut conn, 503, TEXT, &[], b"busy");
            continue;
        }
        let shared2 = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("serve-conn".into())
            .spawn(move || {
                // The last line of defence: a bug in a handler ends its connection, not the
                // process (the binaries are built with panic=unwind for the host, abort for
                // boards, where this is moot and the parser is panic-free by construction).
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    connection(conn, &shared2)
                }));
                if outcome.is_err() {
                    log::warn!("serve: a connection handler panicked");
                }
            });
        if spawned.is_err() {
            shared.busy.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Read one request and answer it; a stream leaves the busy count once its head is sent.
fn connection(mut conn: TcpStream, shared: &Arc<Shared>) {
    let limits = http::Limits {
        max_body: MAX_ACTION_BYTES,
        ..http::Limits::default()
    };
    let request = match http::read_request(&mut conn, &limits) {
        Ok(r) => r,
        Err(http::HttpError::Gone) => {
            shared.busy.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        Err(http::HttpError::Refuse(code, msg)) => {
            let _ = http::respond(&mut conn, code, TEXT, &[], msg.as_bytes());
            linger(&mut conn);
            shared.busy.fetch_sub(1, Ordering::SeqCst);
            return;
        }
    };
    if request.method == "GET" && request.path == "/stream.mjpg" {
        shared.busy.fetch_sub(1, Ordering::SeqCst);
        match shared.registry.join(shared.config.max_viewers) {
            Some(mailbox) => stream(conn, mailbox, shared),
            None => {
                shared.refused.fetch_add(1, Ordering::Relaxed);
                let _ = http::respond(&mut conn, 503, TEXT, &[], b"too many viewers");
            }
        }
        return;
    }
    let (code, content_type, body) = handle(&request, shared);
    let headers: &[(&str, &str)] = &[("Cache-Control", "no-store")];
    let _ = http::respond(&mut conn, code, content_type, headers, &body);
    shared.busy.fetch_sub(1, Ordering::SeqCst);
}

/// After refusing a request whose rest is unread: stop writing, then read and discard a
/// bounded amount for a moment, so the kernel does not answer the unread bytes with a reset
/// that would destroy our answer before the client reads it. Bounded in bytes and time,
/// never the declared length.
fn linger(conn: &mut TcpStream) {
    use std::io::Read;
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
    let start = Instant::now();
    let mut left = 256usize * 1024;
    let mut buf = [0u8; 4096];
    while left > 0 && start.elapsed() < Duration::from_secs(1) {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

/// Largest action body accepted.
const MAX_ACTION_BYTES: usize = 64 * 1024;

/// The header a page sends with the `--token` secret.
pub const TOKEN_HEADER: &str = "x-edgeslim-token";

/// Why a state-changing request is refused, if it is: cross-site requests and missing tokens.
///
/// A browser page from another site can POST to a LAN address, but only "simple" requests
/// without a preflight: requiring `Content-Type: application/json` (which forces a CORS
/// preflight this server never approves) stops those; an `Origin` header, when the browser
/// sends one, must name this server's own `Host`. With `--token`, the secret must come in the
/// `X-Edgeslim-Token` header (the page reads it from its own URL, `/?token=...`).
fn refuse_action(request: &http::Request, shared: &Shared) -> Option<(u16, String)> {
    let content_type = request.header("content-type").unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case(JSON) {
        return Some((
            415,
            "actions are JSON: send Content-Type: application/json".into(),
        ));
    }
    if let Some(origin) = request.header("origin") {
        let host = request.header("host").unwrap_or("");
        let same = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(host));
        if !same {
            return Some((
                403,
                format!("cross-origin action refused (Origin {origin})"),
            ));
        }
    }
    if let Some(token) = &shared.config.token {
        let given = request.header(TOKEN_HEADER).unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return Some((
                403,
                "missing or wrong token (open the page as /?token=...)".into(),
            ));
        }
    }
    None
}

/// Compare secrets without an early exit that would leak their common prefix through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn text(code: u16, msg: &str) -> (u16, &'static str, Vec<u8>) {
    (code, TEXT, msg.as_bytes().to_vec())
}

fn json(code: u16, v: &serde_json::Value) -> (u16, &'static str, Vec<u8>) {
    (code, JSON, v.to_string().into_bytes())
}

fn handle(request: &http::Request, shared: &Shared) -> (u16, &'static str, Vec<u8>) {
    let path = request.path.as_str();
    match (request.method.as_str(), path) {
        ("GET", "/") | ("GET", "/index.html") => {
            let html = match &shared.config.page {
                Some(p) => p.clone(),
                None => default_page(&shared.config.title, &shared.config.controls_html),
            };
            (200, "text/html; charset=utf-8", html.into_bytes())
        }
        ("GET", "/state.json") => {
            let state = shared
                .state
                .lock()
                .map(|s| s.clone())
                .unwrap_or(serde_json::Value::Null);
            json(200, &state)
        }
        ("GET", "/frame.jpg") => {
            let latest = shared.latest.lock().ok().and_then(|l| l.clone());
            match latest {
                Some(f) => (200, "image/jpeg", f.jpeg.clone()),
                None => text(503, "no frame yet"),
            }
        }
        ("POST", p) if p.starts_with("/action/") => {
            let name = &p["/action/".len()..];
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return text(400, "action names are letters, digits, - and _");
            }
            if let Some((code, why)) = refuse_action(request, shared) {
                return text(code, &why);
            }
            let body = match std::str::from_utf8(&request.body) {
                Ok(b) if b.trim().is_empty() => Ok(serde_json::Value::Null),
                Ok(b) => serde_json::from_str(b).map_err(|e| e.to_string()),
                Err(_) => Err("not UTF-8".to_string()),
            };
            let body = match body {
                Err(e) => return text(400, &format!("action body is not JSON: {e}")),
                Ok(b) => b,
            };
            let action = Action {
                name: name.to_string(),
                body,
            };
            if let Some(validate) = &shared.config.validate {
                if let Err(why) = validate(&action) {
                    return text(400, &format!("action '{name}' refused: {why}"));
                }
            }
            match shared.actions.try_send(action) {
                Ok(()) => json(202, &serde_json::json!({"queued": name})),
                Err(TrySendError::Full(_)) => text(503, "action queue full"),
                Err(TrySendError::Disconnected(_)) => text(503, "pipeline stopped"),
            }
        }
        ("GET", _) | ("POST", _) => text(
            404,
            "not found: try / , /stream.mjpg, /frame.jpg, /state.json",
        ),
        _ => text(405, "only GET and POST"),
    }
}

/// Boundary of the multipart stream.
const BOUNDARY: &str = "edgeslimframe";

/// Write the stream head, then each frame the mailbox hands over, flushing per frame, until
/// the viewer goes away, a write times out, or the server stops.
fn stream(conn: TcpStream, mailbox: Arc<Mailbox>, shared: &Shared) {
    let mut w = std::io::BufWriter::new(conn);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\n\
         Cache-Control: no-store\r\nPragma: no-cache\r\nConnection: close\r\n\r\n"
    );
    let mut ok = w.write_all(head.as_bytes()).and_then(|_| w.flush()).is_ok();
    // A new viewer starts with the current frame rather than waiting for the next one (that
    // replay is not timed: it was captured before the viewer came).
    let replayed = shared.latest.lock().ok().and_then(|l| l.clone());
    if let Some(f) = &replayed {
        mailbox.put(f.clone());
    }
    // `publish` sets `latest` before it offers the frame to the mailboxes, so a viewer whose
    // replay read that frame can be offered it again right after: never send a frame twice.
    let mut last_sent: Option<Frame> = None;
    while ok {
        let Some(frame) = mailbox.take(Duration::from_millis(500)) else {
            if mailbox.is_closed() {
                break;
            }
            continue;
        };
        if last_sent.as_ref().is_some_and(|l| Arc::ptr_eq(l, &frame)) {
            continue;
        }
        let part = format!(
            "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            frame.jpeg.len()
        );
        ok = w
            .write_all(part.as_bytes())
            .and_then(|_| w.write_all(&frame.jpeg))
            .and_then(|_| w.write_all(b"\r\n"))
            .and_then(|_| w.flush())
            .is_ok();
        if ok {
            last_sent = Some(frame.clone());
            mailbox.sent();
            let is_replay = replayed.as_ref().is_some_and(|r| Arc::ptr_eq(r, &frame));
            if !is_replay {
                if let Ok(mut d) = shared.delivery.lock() {
                    if d.len() == DELIVERY_WINDOW {
                        d.pop_front();
                    }
                    d.push_back(frame.since.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
    }
    shared.registry.leave(&mailbox);
}

#[cfg(test)]
mod tests;
