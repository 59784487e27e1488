//! `--init` from the Hugging Face Hub, for real: the test serves a model repository in the Hub's
//! URL layout on a loopback port, and hf-hub's own client downloads from it into a temporary
//! cache; a second resolution works offline from that cache. Nothing reaches the internet.
//!
//!     cargo test -p contrastive-examples --test hub   (the feature `hub` is on by default)
#![cfg(feature = "hub")]

#[path = "../../core/tests/support/hub_server.rs"]
mod hub_server;

use contrastive_examples::pretrained::resolve_init;
use hub_server::{HubServer, COMMIT};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

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
