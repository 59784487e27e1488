//! `HubRepo` against a loopback server in the Hub's URL layout: the real hf-hub client downloads
//! into a temporary cache, a missing file is told apart from a failure, and offline reads use the
//! cache only. Nothing reaches the internet.
//!
//!     cargo test -p contrastive-core --features hub --test hub
#![cfg(feature = "hub")]

#[path = "support/hub_server.rs"]
mod hub_server;

use contrastive_core::hub::HubRepo;
use hub_server::{HubServer, COMMIT};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

#[test]
fn downloads_once_pins_revisions_and_reads_the_cache_offline() {
    let weights: Vec<u8> = (0..3000u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let pooling = br#"{"pooling_mode_mean_tokens": true}"#.to_vec();
    let server = HubServer::start(HashMap::from([
        ("acme/model/model.safetensors".to_string(), weights.clone()),
        ("acme/model/1_Pooling/config.json".to_string(), pooling.clone()),
    ]));
    let cache = tempfile::tempdir().unwrap();
    let repo = HubRepo::parse("acme/model")
        .unwrap()
        .with_endpoint(&server.endpoint())
        .with_cache_dir(cache.path())
        .offline(false);

    let path = repo.get("model.safetensors").unwrap();
    assert!(path.starts_with(cache.path()), "{} is not in the cache", path.display());
    assert_eq!(std::fs::read(&path).unwrap(), weights);
    // A file in a subfolder keeps the repository's layout next to the others.
    let nested = repo.get("1_Pooling/config.json").unwrap();
    assert_eq!(std::fs::read(&nested).unwrap(), pooling);
    assert_eq!(nested.parent().unwrap().parent(), path.parent());

    // The second time comes from the cache: no request.
    let before = server.requests.load(Ordering::SeqCst);
    assert_eq!(repo.get("model.safetensors").unwrap(), path);
    assert_eq!(server.requests.load(Ordering::SeqCst), before);

    // A 404 is "no such file", not a failure; `get` names the repository, revision and file.
    assert!(repo.get_optional("modules.json").unwrap().is_none());
    let err = repo.get("modules.json").unwrap_err().to_string();
    assert!(err.contains("acme/model@main") && err.contains("modules.json"), "{err}");

    // A pinned commit.
    let pinned = HubRepo::parse(&format!("acme/model@{COMMIT}"))
        .unwrap()
        .with_endpoint(&server.endpoint())
        .with_cache_dir(cache.path())
        .offline(false);
    assert_eq!(std::fs::read(pinned.get("model.safetensors").unwrap()).unwrap(), weights);

    // Offline, with the server gone: cached files are found, a missing one is reported as such.
    let endpoint = server.endpoint();
    drop(server);
    let offline = HubRepo::parse("acme/model").unwrap().with_cache_dir(cache.path()).offline(true);
    assert_eq!(offline.get("model.safetensors").unwrap(), path);
    let err = offline.get("tokenizer.json").unwrap_err().to_string();
    assert!(
        err.contains("HF_HUB_OFFLINE") && err.contains("not in the cache") && err.contains("tokenizer.json"),
        "{err}"
    );

    // Online with the server gone: a network failure is an error, not "no such file".
    let online =
        HubRepo::parse("acme/model").unwrap().with_endpoint(&endpoint).with_cache_dir(cache.path()).offline(false);
    let err = online.get_optional("tokenizer.json").unwrap_err().to_string();
    assert!(err.contains("cannot download tokenizer.json"), "{err}");
}

#[test]
fn repository_ids_are_checked() {
    for bad in ["model", "a/b/c", "/b", "a/", "a/b@"] {
        let err = HubRepo::parse(bad).unwrap_err().to_string();
        assert!(err.contains("not a repository id") && err.contains(bad), "{bad}: {err}");
    }
    assert_eq!(HubRepo::parse("a/b@v1.0").unwrap().name(), "a/b@v1.0");
    assert_eq!(HubRepo::parse("a/b").unwrap().name(), "a/b@main");
}
