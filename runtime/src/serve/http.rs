//! A deliberately small HTTP/1.1 layer for the live view, bounded in every dimension.
//!
//! The live view needs GET of a few fixed paths, a POST with a small JSON body and an endless
//! MJPEG response. A general server library reads what the client declares (tiny_http drained a
//! declared `Content-Length` of 10¹² bytes and aborted the process, read a 400 MB request line
//! whole, and panicked its threads on connection resets), so this layer reads only what fits
//! in fixed limits and never trusts a declared size:
//! - the request head (request line and headers) is at most [`Limits::max_head`] bytes, read
//!   under an overall deadline (a client sending one byte every few seconds is cut off);
//! - a body longer than [`Limits::max_body`] is refused from its declared length, unread;
//!   chunked request bodies are refused (no endpoint needs them);
//! - every response closes the connection (no keep-alive state to bound);
//! - nothing here panics on any input: parse errors are values mapped to 4xx answers.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Bounds on what one request may make the server read and how long it may take.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Request line plus headers, bytes.
    pub max_head: usize,
    /// Largest request body accepted, bytes.
    pub max_body: usize,
    /// Most header lines.
    pub max_headers: usize,
    /// The whole request (head and body) must arrive within this time.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head: 16 * 1024,
            max_body: 64 * 1024,
            max_headers: 64,
            deadline: Duration::from_secs(10),
        }
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub query: String,
    /// Header names lower-cased, values trimmed, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be read; `status()` is the answer to send, if any.
#[derive(Debug, PartialEq)]
pub enum HttpError {
    /// The connection failed, timed out or closed early: nothing to answer.
    Gone,
    /// Answer with this status and message, then close.
    Refuse(u16, String),
}

impl HttpError {
    fn refuse(code: u16, msg: impl Into<String>) -> HttpError {
        HttpError::Refuse(code, msg.into())
    }
}

/// Read one request from `stream` within `limits`. The stream should have a read timeout set
/// (each read call returns within it); the overall deadline is checked between reads.
pub fn read_request(stream: &mut impl Read, limits: &Limits) -> Result<Request, HttpError> {
    let start = Instant::now();
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > limits.max_head {
            return Err(if find(&buf, b"\r\n").is_none() {
                HttpError::refuse(414, "request line too long")
            } else {
                HttpError::refuse(431, "request headers too large")
            });
        }
        if start.elapsed() > limits.deadline {
            return Err(HttpError::refuse(408, "request head too slow"));
        }
        // Never read past the head limit by more than one chunk.
        let want = chunk
            .len()
            .min(limits.max_head + 4 - buf.len().min(limits.max_head));
        match stream.read(&mut chunk[..want.max(1)]) {
            Ok(0) => return Err(HttpError::Gone),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(HttpError::Gone),
        }
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| HttpError::refuse(400, "request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::refuse(400, "malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::refuse(505, "only HTTP/1.x"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::refuse(400, "malformed method"));
    }
    if !target.starts_with('/') {
        return Err(HttpError::refuse(400, "the target must be a path"));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let mut headers = Vec::new();
    for line in lines {
        if headers.len() >= limits.max_headers {
            return Err(HttpError::refuse(431, "too many headers"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(HttpError::refuse(400, "malformed header line"));
        };
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(HttpError::refuse(400, "malformed header name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut request = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: Vec::new(),
    };
    if request.header("transfer-encoding").is_some() {
        return Err(HttpError::refuse(
            411,
            "send a Content-Length, not a chunked body",
        ));
    }
    let declared = match request.header("content-length") {
        None => 0,
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| HttpError::refuse(400, "Content-Length is not a number"))?,
    };
    if declared > limits.max_body as u64 {
        return Err(HttpError::refuse(
            413,
            format!("body of {declared} bytes; at most {}", limits.max_body),
        ));
    }
    let declared = declared as usize;
    let mut body = buf.split_off(head_end + 4);
    body.truncate(declared);
    while body.len() < declared {
        if start.elapsed() > limits.deadline {
            return Err(HttpError::refuse(408, "request body too slow"));
        }
        let want = (declared - body.len()).min(chunk.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(HttpError::Gone),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(HttpError::Gone),
        }
    }
    request.body = body;
    Ok(request)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Write a complete response and close semantics (`Connection: close`).
pub fn respond(
    w: &mut impl Write,
    code: u16,
    content_type: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\nX-Content-Type-Options: nosniff\r\n",
        reason(code),
        body.len()
    );
    for (n, v) in extra_headers {
        head.push_str(n);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Request, HttpError> {
        read_request(
            &mut std::io::Cursor::new(bytes.to_vec()),
            &Limits::default(),
        )
    }

    fn status(r: Result<Request, HttpError>) -> u16 {
        match r {
            Ok(_) => 200,
            Err(HttpError::Refuse(c, _)) => c,
            Err(HttpError::Gone) => 0,
        }
    }

    #[test]
    fn parses_a_post_with_its_body_and_headers() {
        let r = parse(
            b"POST /action/init?x=1 HTTP/1.1\r\nHost: pi:8080\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}trailing",
        )
        .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/action/init");
        assert_eq!(r.query, "x=1");
        assert_eq!(r.header("host"), Some("pi:8080"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body, b"{\"a\":1}");
    }

    #[test]
    fn declared_sizes_are_refused_unread() {
        // A body declared far beyond the limit is refused from the header alone: the reader
        // holds only the head (the cursor has no body at all).
        for len in [
            "1000000000000",
            "30000000000",
            "65537",
            "18446744073709551615",
        ] {
            let req = format!("POST /action/init HTTP/1.1\r\nContent-Length: {len}\r\n\r\n");
            assert_eq!(status(parse(req.as_bytes())), 413, "{len}");
        }
        let req = "POST /a HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(status(parse(req.as_bytes())), 400);
        let req = "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(status(parse(req.as_bytes())), 411);
    }

    #[test]
    fn oversized_heads_stop_at_the_limit() {
        // A 400 MB request line: the reader reads at most the limit plus one chunk.
        struct Endless(usize);
        impl Read for Endless {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                self.0 += b.len();
                b.fill(b'a');
                Ok(b.len())
            }
        }
        let mut src = Endless(0);
        let r = read_request(&mut src, &Limits::default());
        assert_eq!(status(r), 414);
        assert!(src.0 <= 16 * 1024 + 4096 + 4, "read {} bytes", src.0);
        let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(status(parse(req.as_bytes())), 431);
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "b".repeat(20_000));
        assert_eq!(status(parse(big.as_bytes())), 431);
    }

    #[test]
    fn malformed_requests_are_answered_not_panicked() {
        for bad in [
            &b"\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\n\xff\xfe: x\r\n\r\n",
        ] {
            let s = status(parse(bad));
            assert!(
                (400..=505).contains(&s),
                "{s} for {:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Early close, before the head or the body is complete: nothing to answer.
        assert_eq!(status(parse(b"GET / HTTP/1.1\r\nHost")), 0);
        assert_eq!(
            status(parse(b"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")),
            0
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small deterministic fuzz of the parser (the cargo-fuzz target runs it at length).
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seed = b"POST /action/init HTTP/1.1\r\nContent-Length: 4\r\nHost: h\r\n\r\nnull";
        for _ in 0..20_000 {
            let mut v = seed.to_vec();
            for _ in 0..(next() % 6) {
                let at = (next() as usize) % v.len();
                match next() % 3 {
                    0 => v[at] = next() as u8,
                    1 => {
                        v.remove(at);
                    }
                    _ => v.insert(at, b"\r\n: 0123456789"[(next() % 14) as usize]),
                }
            }
            let _ = parse(&v);
        }
    }
}
