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
//! tiny_http parses requests; the MJPEG stream is written through its raw response writer
//! (`Request::into_writer`) because its own body encoders buffer (chunked) or read the whole
//! body first (HTTP/1.0), neither of which works for an endless stream that must flush each
//! frame.

mod page;
mod viewer;

pub use page::default_page;

use serde::Serialize;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
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

#[derive(Debug, Clone)]
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
    server: Arc<tiny_http::Server>,
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
        let listener = TcpListener::bind(config.addr).map_err(|e| bind_err(e.to_string()))?;
        set_send_timeout(&listener, config.write_timeout).map_err(|e| bind_err(e.to_string()))?;
        let addr = listener.local_addr().map_err(|e| bind_err(e.to_string()))?;
        let server = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| bind_err(e.to_string()))?;
        let server = Arc::new(server);
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
            let server = server.clone();
            std::thread::Builder::new()
                .name("serve-accept".into())
                .spawn(move || accept_loop(&server, &shared))
                .map_err(|e| bind_err(e.to_string()))?
        };
        log::info!("live view on http://{addr}/");
        Ok(LiveServer {
            shared,
            server,
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
        self.server.unblock();
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Set SO_SNDTIMEO on the listening socket: Linux copies it to every accepted socket, which
/// is the only way to bound writes to a stalled viewer through tiny_http (it does not expose
/// the accepted streams).
fn set_send_timeout(listener: &TcpListener, timeout: Duration) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid socket descriptor and a properly sized timeval.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Requests other than streams are cheap, but each gets a thread so a client that sends a
/// slow body cannot hold up the others; at most this many at once.
const MAX_BUSY: usize = 16;

fn accept_loop(server: &tiny_http::Server, shared: &Arc<Shared>) {
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let request = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                log::debug!("serve: {e}");
                if shared.stopping.load(Ordering::SeqCst) {
                    return;
                }
                continue;
            }
        };
        let path = request.url().split('?').next().unwrap_or("").to_string();
        let is_stream = request.method() == &tiny_http::Method::Get && path == "/stream.mjpg";
        if is_stream {
            match shared.registry.join(shared.config.max_viewers) {
                Some(mailbox) => {
                    let shared = shared.clone();
                    let spawned = std::thread::Builder::new()
                        .name("serve-viewer".into())
                        .spawn(move || stream(request, mailbox, &shared));
                    if let Err(e) = spawned {
                        log::warn!("serve: no thread for a viewer: {e}");
                    }
                }
                None => {
                    shared.refused.fetch_add(1, Ordering::Relaxed);
                    let _ = request.respond(text(503, "too many viewers"));
                }
            }
            continue;
        }
        if shared.busy.fetch_add(1, Ordering::SeqCst) >= MAX_BUSY {
            shared.busy.fetch_sub(1, Ordering::SeqCst);
            let _ = request.respond(text(503, "busy"));
            continue;
        }
        let shared2 = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("serve-request".into())
            .spawn(move || {
                handle(request, &path, &shared2);
                shared2.busy.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            shared.busy.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("static header names and values are valid")
}

fn text(code: u16, body: &str) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    tiny_http::Response::from_string(body)
        .with_status_code(code)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

fn json(code: u16, v: &serde_json::Value) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    tiny_http::Response::from_string(v.to_string())
        .with_status_code(code)
        .with_header(header("Content-Type", "application/json"))
        .with_header(header("Cache-Control", "no-store"))
}

/// Largest action body accepted.
const MAX_ACTION_BYTES: u64 = 64 * 1024;

fn handle(mut request: tiny_http::Request, path: &str, shared: &Shared) {
    use tiny_http::Method;
    let method = request.method().clone();
    let response = match (&method, path) {
        (Method::Get, "/") | (Method::Get, "/index.html") => {
            let html = match &shared.config.page {
                Some(p) => p.clone(),
                None => default_page(&shared.config.title, &shared.config.controls_html),
            };
            tiny_http::Response::from_string(html)
                .with_header(header("Content-Type", "text/html; charset=utf-8"))
        }
        (Method::Get, "/state.json") => {
            let state = shared
                .state
                .lock()
                .map(|s| s.clone())
                .unwrap_or(serde_json::Value::Null);
            json(200, &state)
        }
        (Method::Get, "/frame.jpg") => {
            let latest = shared.latest.lock().ok().and_then(|l| l.clone());
            match latest {
                Some(f) => tiny_http::Response::from_data(f.jpeg.clone())
                    .with_header(header("Content-Type", "image/jpeg"))
                    .with_header(header("Cache-Control", "no-store")),
                None => text(503, "no frame yet"),
            }
        }
        (Method::Post, p) if p.starts_with("/action/") => {
            let name = &p["/action/".len()..];
            let mut body = String::new();
            let read = request
                .as_reader()
                .take(MAX_ACTION_BYTES + 1)
                .read_to_string(&mut body);
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                text(400, "action names are letters, digits, - and _")
            } else if read.is_err() || body.len() as u64 > MAX_ACTION_BYTES {
                text(413, "action body too large or unreadable")
            } else {
                let body = if body.trim().is_empty() {
                    Ok(serde_json::Value::Null)
                } else {
                    serde_json::from_str(&body)
                };
                match body {
                    Err(e) => text(400, &format!("action body is not JSON: {e}")),
                    Ok(body) => match shared.actions.try_send(Action {
                        name: name.to_string(),
                        body,
                    }) {
                        Ok(()) => json(202, &serde_json::json!({"queued": name})),
                        Err(TrySendError::Full(_)) => text(503, "action queue full"),
                        Err(TrySendError::Disconnected(_)) => text(503, "pipeline stopped"),
                    },
                }
            }
        }
        _ => text(
            404,
            "not found: try / , /stream.mjpg, /frame.jpg, /state.json",
        ),
    };
    let _ = request.respond(response);
}

/// Boundary of the multipart stream.
const BOUNDARY: &str = "edgeslimframe";

/// Write the stream head, then each frame the mailbox hands over, flushing per frame, until
/// the viewer goes away, a write times out, or the server stops.
fn stream(request: tiny_http::Request, mailbox: Arc<Mailbox>, shared: &Shared) {
    let mut w = request.into_writer();
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
    while ok {
        let Some(frame) = mailbox.take(Duration::from_millis(500)) else {
            if mailbox.is_closed() {
                break;
            }
            continue;
        };
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
