//! `SentenceEncoder::from_hub` for real: a sentence-transformers folder written by `save` is served
//! in the Hub's URL layout on a loopback port, hf-hub downloads it into a temporary cache, and the
//! loaded encoder gives the saved one's vectors; a second load works offline from the cache.
//!
//!     cargo test -p contrastive-text --features hub --test hub
#![cfg(feature = "hub")]

#[path = "../../core/tests/support/hub_server.rs"]
mod hub_server;

use candle_core::{DType, Device};
use contrastive_core::hub::HubRepo;
use contrastive_core::nn::{InitScheme, ParamStore};
use contrastive_text::*;
use hub_server::{HubServer, COMMIT};
use std::collections::HashMap;
use std::path::Path;

const SENTENCES: [&str; 3] = ["the cat sleeps", "a dog runs quickly", "birds sing"];

/// A small random sentence encoder saved as a sentence-transformers folder.
fn saved_encoder(dir: &Path) -> Vec<f32> {
    let words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "a", "cat", "dog", "sleeps", "runs", "quickly", "sing"];
    std::fs::write(dir.join("vocab.txt"), words.join("\n")).unwrap();
    let tokenizer = Tokenizer::from_vocab(&dir.join("vocab.txt"), 12).unwrap();
    std::fs::remove_file(dir.join("vocab.txt")).unwrap();
    let config = BertConfig {
        vocab_size: words.len(),
        hidden_size: 16,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 32,
        hidden_act: Activation::Gelu,
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
        max_position_embeddings: 12,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        model_type: Default::default(),
        pad_token_id: None,
        relative_attention_num_buckets: 32,
    };
    let store = ParamStore::new(7, InitScheme::Normal { std: 0.5 });
    let bert = Bert::new(&config, store.var_builder(DType::F32, &Device::Cpu), 0).unwrap();
    let encoder = SentenceEncoder::new(bert, store, tokenizer, SentencePooling::Cls, true, &Device::Cpu);
    encoder.save(dir).unwrap();
    encoder.encode(&SENTENCES).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

/// Every file under `dir`, keyed `acme/tiny-st/{relative path}` as the server wants.
fn repository(dir: &Path) -> HashMap<String, Vec<u8>> {
    let mut files = HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/");
                files.insert(format!("acme/tiny-st/{rel}"), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn from_hub_downloads_a_sentence_transformers_repository_then_loads_offline() {
    let folder = tempfile::tempdir().unwrap();
    let expected = saved_encoder(folder.path());
    let files = repository(folder.path());
    assert!(
        files.contains_key("acme/tiny-st/1_Pooling/config.json") && files.contains_key("acme/tiny-st/modules.json")
    );
    let server = HubServer::start(files);
    let cache = tempfile::tempdir().unwrap();
    let repo =
        |spec: &str| HubRepo::parse(spec).unwrap().with_endpoint(&server.endpoint()).with_cache_dir(cache.path());

    let encode = |e: &SentenceEncoder| e.encode(&SENTENCES).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let loaded = SentenceEncoder::from_hub(&repo("acme/tiny-st").offline(false), &Device::Cpu).unwrap();
    // CLS pooling and normalisation came from 1_Pooling/config.json and modules.json.
    assert_eq!(encode(&loaded), expected);
    let pinned =
        SentenceEncoder::from_hub(&repo(&format!("acme/tiny-st@{COMMIT}")).offline(false), &Device::Cpu).unwrap();
    assert_eq!(encode(&pinned), expected);

    // A repository without weights or without a tokenizer is an error that says which.
    let err = SentenceEncoder::from_hub(&repo("acme/empty").offline(false), &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("acme/empty@main") && err.contains("config.json"), "{err}");

    // Offline with the server gone: the cache serves the same model; an uncached one is named.
    drop(server);
    let offline = |spec: &str| HubRepo::parse(spec).unwrap().with_cache_dir(cache.path()).offline(true);
    let again = SentenceEncoder::from_hub(&offline("acme/tiny-st"), &Device::Cpu).unwrap();
    assert_eq!(encode(&again), expected);
    let err = SentenceEncoder::from_hub(&offline("acme/other"), &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("HF_HUB_OFFLINE") && err.contains("acme/other") && err.contains("config.json"), "{err}");
}

#[test]
fn a_repository_without_weights_names_both_files() {
    let folder = tempfile::tempdir().unwrap();
    saved_encoder(folder.path());
    let mut files = repository(folder.path());
    files.remove("acme/tiny-st/model.safetensors");
    let server = HubServer::start(files);
    let cache = tempfile::tempdir().unwrap();
    let repo = HubRepo::parse("acme/tiny-st")
        .unwrap()
        .with_endpoint(&server.endpoint())
        .with_cache_dir(cache.path())
        .offline(false);
    let err = SentenceEncoder::from_hub(&repo, &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("model.safetensors") && err.contains("pytorch_model.bin"), "{err}");
}
