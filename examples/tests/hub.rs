//! `--init` from the Hugging Face Hub, for real: the test serves a model repository in the Hub's
//! URL layout on a loopback port, and hf-hub's own client downloads from it into a temporary
//! cache; a second resolution works offline from that cache. Nothing reaches the internet.
//!
//!     cargo test -p contrastive-examples --features hub --test hub
#![cfg(feature = "hub")]

use contrastive_examples::pretrained::resolve_init;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A std-only server for `GET`/`HEAD /{owner}/{name}/resolve/{revision}/{path}` with the headers
/// hf-hub needs (ETag, X-Repo-Commit, Content-Length; 206 and Content-Range for a Range request).
struct HubServer {
    port: u16,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
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
    fn start(files: HashMap<String, Vec<u8>>) -> Self {
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

#[test]
fn init_downloads_from_the_hub_layout_then_works_offline() {
    let weights: Vec<u8> = (0..5000u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let server =
        HubServer::start(HashMap::from([("acme/digits-convnet/model.safetensors".to_string(), weights.clone())]));
    let cache = tempfile::tempdir().unwrap();
    // One process-wide environment, set once: this binary holds this one test.
    std::env::set_var("HF_HOME", cache.path());
    std::env::set_var("HF_ENDPOINT", format!("http://127.0.0.1:{}", server.port));

    let path = resolve_init("acme/digits-convnet").unwrap();
    assert!(path.starts_with(cache.path()), "{} is not in the cache", path.display());
    assert_eq!(std::fs::read(&path).unwrap(), weights);
    assert!(server.requests.load(Ordering::SeqCst) >= 1);
    // A pinned revision resolves too.
    let pinned = resolve_init(&format!("acme/digits-convnet@{COMMIT}")).unwrap();
    assert_eq!(std::fs::read(&pinned).unwrap(), weights);
    // A repository without the file is an error naming it.
    let err = resolve_init("acme/missing").unwrap_err().to_string();
    assert!(err.contains("acme/missing") && err.contains("model.safetensors"), "{err}");

    // Offline, with the server gone: the cached file is found, a missing one is reported.
    drop(server);
    std::env::set_var("HF_HUB_OFFLINE", "1");
    assert_eq!(std::fs::read(resolve_init("acme/digits-convnet").unwrap()).unwrap(), weights);
    let err = resolve_init("acme/other").unwrap_err().to_string();
    assert!(err.contains("HF_HUB_OFFLINE") && err.contains("not in the cache"), "{err}");
}
