//! A loopback server that speaks the Hugging Face Hub's download protocol, for tests of the real
//! hf-hub client (DESIGN.md, "The Hub protocol"). Shared by the `hub` tests of core, text and
//! examples through `#[path]`; std only, started on port 0, never reaching the internet.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The commit every response names; a revision of `main` or this commit is served.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A std-only server for `GET`/`HEAD /{owner}/{name}/resolve/{revision}/{path}` with the headers
/// hf-hub needs (ETag, X-Repo-Commit, Content-Length; 206 and Content-Range for a Range request).
pub struct HubServer {
    /// The loopback port; the endpoint is `http://127.0.0.1:{port}`.
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// How many requests were answered.
    pub requests: Arc<AtomicUsize>,
}

/// A stable ETag for a body (FNV-1a and the length; hf-hub only needs it stable and unique).
fn etag(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}{:016x}", bytes.len())
}

fn respond(mut stream: TcpStream, files: &HashMap<String, Vec<u8>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = v.trim().strip_prefix("bytes=").map(str::to_string);
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    // /{owner}/{name}/resolve/{revision}/{file}
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    let body = match segments.as_slice() {
        [owner, name, "resolve", rev, file] if *rev == "main" || *rev == COMMIT => {
            files.get(&format!("{owner}/{name}/{file}"))
        }
        _ => None,
    };
    let Some(body) = body else {
        return stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    let size = body.len();
    let (status, slice, content_range) = match range {
        Some(r) => {
            let (a, b) = r.split_once('-').unwrap_or((&r, ""));
            let start: usize = a.parse().unwrap_or(0);
            let end: usize = b.parse().unwrap_or(size - 1).min(size - 1);
            ("206 Partial Content", &body[start..=end], Some(format!("bytes {start}-{end}/{size}")))
        }
        None => ("200 OK", &body[..], None),
    };
    let mut head = format!(
        "HTTP/1.1 {status}\r\nETag: \"{}\"\r\nX-Repo-Commit: {COMMIT}\r\nContent-Length: {}\r\nConnection: close\r\n",
        etag(body),
        slice.len()
    );
    if let Some(cr) = content_range {
        head.push_str(&format!("Content-Range: {cr}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        stream.write_all(slice)?;
    }
    stream.flush()
}

impl HubServer {
    /// `http://127.0.0.1:{port}`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Serves `files` (keys `owner/name/path/in/repo`) until dropped.
    pub fn start(files: HashMap<String, Vec<u8>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let (s, n) = (Arc::clone(&stop), Arc::clone(&requests));
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        n.fetch_add(1, Ordering::SeqCst);
                        let _ = respond(stream, &files);
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        Self { port, stop, requests }
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
