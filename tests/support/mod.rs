//! An IIIF-like image server on 127.0.0.1 for tests and benchmarks.
//!
//! It speaks just enough HTTP/1.1 (keep-alive, Content-Length) to be driven by a real
//! client, serves generated JPEGs for `{identifier}/{region}/{size}/{rotation}/{quality}.{format}`
//! paths, counts requests in flight, and injects faults on demand. It is written on raw
//! sockets so that a fault can break the protocol exactly as a misbehaving server would
//! (a body shorter than its Content-Length, a body that stalls halfway).
//!
//! One `Fixture` is one simulated host (its own port): a client's per-host limit keys on
//! host:port, so separate ports keep the per-host counts honest. `FixtureHosts` starts
//! one per real KaoKore host and builds the matching `--rewrite` rules.
#![allow(dead_code)]

pub mod images;
pub mod metadata;
pub mod tree;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use images::{Renderer, corrupt_jpeg, parse_iiif, pixel_bomb};

/// A misbehaviour the fixture can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// An error status with a short text body (404, 410, 500, ...).
    Status(u16),
    /// A status (429 or 503) with `Retry-After: secs`.
    RetryAfter { status: u16, secs: u64 },
    /// Content-Length of the full image, but only half of it is sent before closing.
    Truncated,
    /// An HTML error page served with status 200.
    Html200,
    /// Status 200 with a JPEG header followed by garbage.
    CorruptJpeg,
    /// Headers and half the body, then silence for this long, then the connection closes.
    Stall(Duration),
    /// Serve the image, but in grayscale (not a failure).
    Gray,
    /// 302 to the same path on `127.0.0.1:port` (another fixture: another host).
    RedirectToPort(u16),
    /// 302 to this absolute URL.
    RedirectToUrl(&'static str),
    /// 302 to the same path with `?moved` appended, on this host.
    RedirectSameHost,
    /// Status 200 with a valid PNG of `width` x `height` 16-bit RGBA (all zero): a small
    /// file with many pixels, a decompression bomb when large.
    PixelBomb { width: u32, height: u32 },
    /// The image, followed by this many bytes (as editors and servers append).
    TrailingBytes(usize),
}

/// Applies `fault` to the next `times` requests whose path contains `pattern`.
#[derive(Debug, Clone)]
pub struct FaultRule {
    pub pattern: String,
    pub fault: Fault,
    pub times: u32,
}

#[derive(Debug, Clone, Default)]
pub struct FixtureConfig {
    /// Delay before every response starts.
    pub latency: Duration,
    pub faults: Vec<FaultRule>,
    /// Serve one identifier in this many as grayscale (0: none).
    pub gray_one_in: u64,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub path: String,
    pub arrived: Instant,
    pub status: u16,
    pub fault: Option<Fault>,
    /// Requests in flight at its arrival, itself included.
    pub in_flight: usize,
}

/// Request counts as the server saw them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub total: usize,
    pub in_flight: usize,
    pub max_in_flight: usize,
}

struct Shared {
    latency: Duration,
    gray_one_in: u64,
    rules: Mutex<Vec<FaultRule>>,
    log: Mutex<Vec<LogEntry>>,
    total: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// Counts a request in flight from its arrival until its last byte is written (or the
/// connection drops).
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn new(s: &'a Shared) -> (Self, usize) {
        let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        s.max_in_flight.fetch_max(now, Ordering::SeqCst);
        s.total.fetch_add(1, Ordering::SeqCst);
        (InFlight(s), now)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running fixture server; stops when dropped.
pub struct Fixture {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fixture {
    /// Bind 127.0.0.1:0 and serve on a runtime of its own thread.
    pub fn start(config: FixtureConfig) -> Fixture {
        let shared = Arc::new(Shared {
            latency: config.latency,
            gray_one_in: config.gray_one_in,
            rules: Mutex::new(config.faults),
            log: Mutex::new(Vec::new()),
            total: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("iiif-fixture-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("fixture runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    loop {
                        tokio::select! {
                            _ = &mut stop_rx => break,
                            accepted = listener.accept() => {
                                if let Ok((stream, _)) = accepted {
                                    let _ = stream.set_nodelay(true);
                                    tokio::spawn(serve_connection(stream, server_shared.clone()));
                                }
                            }
                        }
                    }
                });
                rt.shutdown_background();
            })
            .expect("spawn fixture thread");
        Fixture {
            addr,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn add_fault(&self, pattern: &str, fault: Fault, times: u32) {
        self.shared.rules.lock().unwrap().push(FaultRule {
            pattern: pattern.to_string(),
            fault,
            times,
        });
    }

    pub fn clear_faults(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    pub fn stats(&self) -> Stats {
        Stats {
            total: self.shared.total.load(Ordering::SeqCst),
            in_flight: self.shared.in_flight.load(Ordering::SeqCst),
            max_in_flight: self.shared.max_in_flight.load(Ordering::SeqCst),
        }
    }

    /// Forget counts and the log (faults stay).
    pub fn reset_stats(&self) {
        self.shared.total.store(0, Ordering::SeqCst);
        self.shared.max_in_flight.store(0, Ordering::SeqCst);
        self.shared.log.lock().unwrap().clear();
    }

    pub fn log(&self) -> Vec<LogEntry> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The logged requests whose path contains `pattern`, in arrival order.
    pub fn requests_matching(&self, pattern: &str) -> Vec<LogEntry> {
        self.log()
            .into_iter()
            .filter(|e| e.path.contains(pattern))
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The upstream URL prefixes of the KaoKore hosts, by simulated host.
pub const CODH: &str = "http://codh.rois.ac.jp";
pub const KEIO: [&str; 2] = ["https://iiif.lib.keio.ac.jp", "http://iiif.lib.keio.ac.jp"];
pub const KYOTO: &str = "https://rmda.kulib.kyoto-u.ac.jp";

/// One fixture per real KaoKore host.
pub struct FixtureHosts {
    pub codh: Fixture,
    pub keio: Fixture,
    pub kyoto: Fixture,
}

impl FixtureHosts {
    pub fn start(config: FixtureConfig) -> FixtureHosts {
        FixtureHosts {
            codh: Fixture::start(config.clone()),
            keio: Fixture::start(config.clone()),
            kyoto: Fixture::start(config),
        }
    }

    /// `(FROM, TO)` prefix pairs mapping every real host onto its fixture.
    pub fn rewrite_pairs(&self) -> Vec<(String, String)> {
        let mut v = vec![(CODH.to_string(), self.codh.base_url())];
        for k in KEIO {
            v.push((k.to_string(), self.keio.base_url()));
        }
        v.push((KYOTO.to_string(), self.kyoto.base_url()));
        v
    }

    /// The same as `--rewrite FROM=TO` command-line arguments.
    pub fn rewrite_args(&self) -> Vec<String> {
        self.rewrite_pairs()
            .into_iter()
            .flat_map(|(f, t)| ["--rewrite".to_string(), format!("{f}={t}")])
            .collect()
    }

    pub fn all(&self) -> [&Fixture; 3] {
        [&self.codh, &self.keio, &self.kyoto]
    }

    pub fn total_requests(&self) -> usize {
        self.all().iter().map(|f| f.stats().total).sum()
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut close = false;
        loop {
            let mut header = String::new();
            match reader.read_line(&mut header).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = header.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':')
                && name.eq_ignore_ascii_case("connection")
                && value.trim().eq_ignore_ascii_case("close")
            {
                close = true;
            }
        }
        let mut words = request_line.split_whitespace();
        let method = words.next().unwrap_or("").to_string();
        let path = words.next().unwrap_or("/").to_string();
        let keep = respond(&shared, &method, &path, &mut write).await;
        if close || !keep {
            let _ = write.shutdown().await;
            return;
        }
    }
}

/// Write one response; false when the connection must close afterwards.
async fn respond(
    shared: &Shared,
    method: &str,
    path: &str,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
) -> bool {
    // Counted until just before the last write: the client cannot have seen the end of
    // the response (and started another request) while the server still counts it.
    let (in_flight, in_flight_at_arrival) = InFlight::new(shared);
    let arrived = Instant::now();
    let fault = {
        let mut rules = shared.rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|r| r.times > 0 && path.contains(&r.pattern))
            .map(|r| {
                r.times -= 1;
                r.fault
            })
    };
    if !shared.latency.is_zero() {
        tokio::time::sleep(shared.latency).await;
    }
    let parsed = parse_iiif(path);
    let (status, fault) = match (method, &parsed, fault) {
        ("GET", _, Some(Fault::Status(s))) => (s, fault),
        ("GET", _, Some(Fault::RetryAfter { status, .. })) => (status, fault),
        (
            "GET",
            _,
            Some(Fault::RedirectToPort(_) | Fault::RedirectToUrl(_) | Fault::RedirectSameHost),
        ) => (302, fault),
        ("GET", Some(_), f) => (200, f),
        ("GET", None, _) => (400, None),
        _ => (405, None),
    };
    shared.log.lock().unwrap().push(LogEntry {
        path: path.to_string(),
        arrived,
        status,
        fault,
        in_flight: in_flight_at_arrival,
    });
    let text = |status: u16, extra: &str| {
        let body = format!("{status}\n");
        format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}\r\n{body}",
            reason(status),
            body.len()
        )
        .into_bytes()
    };
    let (identifier, mut rendition) = match parsed {
        Some(p) if status == 200 => p,
        _ => {
            let extra = match fault {
                Some(Fault::RetryAfter { secs, .. }) => format!("Retry-After: {secs}\r\n"),
                Some(Fault::RedirectToPort(port)) => {
                    format!("Location: http://127.0.0.1:{port}{path}\r\n")
                }
                Some(Fault::RedirectToUrl(url)) => format!("Location: {url}\r\n"),
                Some(Fault::RedirectSameHost) => {
                    let sep = if path.contains('?') { '&' } else { '?' };
                    format!("Location: {path}{sep}moved\r\n")
                }
                _ => String::new(),
            };
            drop(in_flight);
            return write.write_all(&text(status, &extra)).await.is_ok();
        }
    };
    if fault == Some(Fault::Gray)
        || (shared.gray_one_in > 0
            && images::fnv1a(identifier.as_bytes()).is_multiple_of(shared.gray_one_in))
    {
        rendition.gray = true;
    }
    // Encoding is CPU work: keep it off the connection-serving threads.
    let image = match Renderer::shared().get(rendition) {
        Some(image) => image,
        None => {
            let encode = tokio::task::spawn_blocking(move || Renderer::shared().render(rendition));
            let Ok(image) = encode.await else {
                return false;
            };
            image
        }
    };
    let ctype = if rendition.png {
        "image/png"
    } else {
        "image/jpeg"
    };
    let head = |len: usize, ctype: &str| {
        format!("HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\n\r\n")
            .into_bytes()
    };
    match fault {
        Some(Fault::Html200) => {
            let body = b"<!DOCTYPE html><html><head><title>Service Unavailable</title></head>\
                <body><h1>The image server is under maintenance</h1></body></html>\n";
            let mut out = head(body.len(), "text/html; charset=utf-8");
            out.extend_from_slice(body);
            drop(in_flight);
            write.write_all(&out).await.is_ok()
        }
        Some(Fault::PixelBomb { width, height }) => {
            let body = tokio::task::spawn_blocking(move || pixel_bomb(width, height))
                .await
                .expect("bomb encode");
            let mut out = head(body.len(), "image/png");
            out.extend_from_slice(&body);
            drop(in_flight);
            write.write_all(&out).await.is_ok()
        }
        Some(Fault::TrailingBytes(n)) => {
            let mut out = head(image.len() + n, ctype);
            out.extend_from_slice(&image);
            out.extend(trailer(n));
            drop(in_flight);
            write.write_all(&out).await.is_ok()
        }
        Some(Fault::CorruptJpeg) => {
            let body = corrupt_jpeg(&image);
            let mut out = head(body.len(), "image/jpeg");
            out.extend_from_slice(&body);
            drop(in_flight);
            write.write_all(&out).await.is_ok()
        }
        Some(Fault::Truncated) => {
            let mut out = head(image.len(), ctype);
            out.extend_from_slice(&image[..image.len() / 2]);
            drop(in_flight);
            let _ = write.write_all(&out).await;
            let _ = write.flush().await;
            false
        }
        Some(Fault::Stall(d)) => {
            let mut out = head(image.len(), ctype);
            out.extend_from_slice(&image[..image.len() / 2]);
            let _ = write.write_all(&out).await;
            let _ = write.flush().await;
            tokio::time::sleep(d).await;
            drop(in_flight);
            false
        }
        _ => {
            let mut out = head(image.len(), ctype);
            out.extend_from_slice(&image);
            drop(in_flight);
            write.write_all(&out).await.is_ok()
        }
    }
}

/// The `n` bytes `Fault::TrailingBytes(n)` appends: text with end-of-image markers in it.
pub fn trailer(n: usize) -> Vec<u8> {
    let text = b"\xFF\xD9 appended by an editor\n";
    (0..n).map(|i| text[i % text.len()]).collect()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
