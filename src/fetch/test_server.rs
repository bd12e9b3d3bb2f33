//! A bare HTTP server on 127.0.0.1 for the unit tests of this stage: it answers every
//! request with fixed bytes, so each test can produce exactly the failure it is about
//! (a status, a cut body, a stall, a peer that is no HTTP server at all).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// What the server does with each connection.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    /// Written once the request has arrived (or at once, for a peer that sends no
    /// HTTP request: a TLS handshake).
    pub bytes: Vec<u8>,
    /// How long the connection then stays open, silent, before it is closed.
    pub hold: Duration,
}

impl Reply {
    /// A whole response: `status`, the body and its length.
    pub(crate) fn status(status: u16, body: &[u8]) -> Reply {
        let mut bytes = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(body);
        Reply {
            bytes,
            hold: Duration::ZERO,
        }
    }

    /// Status 200 announcing `length` bytes of body, of which only `body` is sent.
    pub(crate) fn cut(length: usize, body: &[u8]) -> Reply {
        let mut bytes = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n").into_bytes();
        bytes.extend_from_slice(body);
        Reply {
            bytes,
            hold: Duration::ZERO,
        }
    }

    pub(crate) fn then_hold(mut self, hold: Duration) -> Reply {
        self.hold = hold;
        self
    }
}

/// Serve `reply` on a fresh port until the process ends; the base URL (`http://ip:port`).
pub(crate) fn serve(reply: Reply) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let reply = reply.clone();
            std::thread::spawn(move || answer(stream, &reply));
        }
    });
    format!("http://{addr}")
}

fn answer(mut stream: TcpStream, reply: &Reply) {
    // Read the request head first: closing a socket with unread bytes resets it, and a
    // reset is a failure of its own.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        // Not HTTP (a TLS client hello): answer whatever came.
        if !seen[0].is_ascii_alphabetic() {
            break;
        }
    }
    let _ = stream.write_all(&reply.bytes);
    let _ = stream.flush();
    std::thread::sleep(reply.hold);
}

/// A port on 127.0.0.1 that nothing listens on: connections to it are refused.
pub(crate) fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    listener.local_addr().expect("local address").port()
}
