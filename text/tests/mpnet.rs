//! MPNet (RoBERTa's positions, no token types, a learnt relative position bias on every layer's
//! attention scores) against transformers' MPNetModel, on a small random model that
//! tests/golden/tiny_mpnet.py saved with save_pretrained (torch 2.15.0, transformers 5.25.0), with
//! its outputs and gradients for three rows of right-padded token ids, one of 150 tokens (offsets
//! past the exact buckets and past MPNet's 128), and MPNet's bucket of every offset -300..300.

use candle_core::{Device, Tensor};
use contrastive_text::{relative_position_bucket, BertConfig, ModelType, MPNET_BUCKETS};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod support;
use support::max_diff;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_mpnet")
}

fn golden() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture().join("golden.safetensors"), &Device::Cpu).unwrap()
}

/// The hidden states and gradients of the fixture's golden ids.
fn run(config: &BertConfig, train: bool) -> (Tensor, HashMap<String, Tensor>) {
    support::hidden_and_gradients(&fixture(), config, train)
}

#[test]
fn relative_position_buckets_match_mpnet() {
    let want = golden()["buckets"].to_vec1::<i64>().unwrap();
    let ours: Vec<i64> = (-300..=300).map(|r| relative_position_bucket(r, MPNET_BUCKETS, 128) as i64).collect();
    assert_eq!(ours, want);
    // Keys after the query take the upper half: offset +1 is bucket 17, -1 is bucket 1.
    assert_eq!((relative_position_bucket(1, 32, 128), relative_position_bucket(-1, 32, 128)), (17, 1));
}

#[test]
fn mpnet_matches_transformers_in_values_and_gradients() {
    let config = BertConfig::from_file(&fixture().join("config.json")).unwrap();
    assert_eq!((config.model_type, config.padding_id(), config.max_tokens()), (ModelType::Mpnet, 1, 158));
    let golden = golden();
    let (hidden, grads) = run(&config, false);
    let d = max_diff(&hidden, &golden["hidden"]);
    assert!(d < 1e-4, "hidden states differ by {d}");
    for name in [
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "encoder.relative_attention_bias.weight",
        "encoder.layer.0.attention.attn.q.weight",
        "encoder.layer.1.output.dense.weight",
    ] {
        let d = max_diff(&grads[name], &golden[&format!("grad.{name}")]);
        assert!(d < 1e-4, "{name}: gradient differs by {d}");
    }
    // No token type embeddings: the store holds exactly the file's encoder weights.
    assert!(!grads.keys().any(|n| n.contains("token_type")));
    // With dropout on, the states differ (real dropout in training) and stay finite.
    let (trained, _) = run(&config, true);
    assert!(max_diff(&trained, &golden["hidden"]) > 1e-3);
    assert!(trained.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|v| v.is_finite()));
}

#[test]
fn an_mpnet_config_with_too_few_buckets_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture().join("config.json"))
        .unwrap()
        .replace("\"relative_attention_num_buckets\": 32", "\"relative_attention_num_buckets\": 16");
    std::fs::write(dir.path().join("config.json"), text).unwrap();
    let e = BertConfig::from_file(&dir.path().join("config.json")).unwrap_err().to_string();
    assert!(e.contains("relative_attention_num_buckets") && e.contains("config.json"), "{e}");
}

/// A whole MPNet folder loads as a sentence encoder padded with the model's <pad> (1), not the
/// [PAD] its vocabulary also holds; a sentence's vector does not depend on its batch's padding;
/// the export declares the family and loads back to the same vectors.
#[test]
fn an_mpnet_folder_encodes_sentences_padded_with_the_models_pad_token() {
    use contrastive_text::SentenceEncoder;
    let encoder = SentenceEncoder::from_folder(&fixture(), &Device::Cpu).unwrap();
    let batch = encoder.tokenizer().encode(&["alpha river stone", "cloud"], &Device::Cpu).unwrap();
    assert_eq!(batch.ids.to_vec2::<u32>().unwrap(), vec![vec![0, 7, 11, 12, 2], vec![0, 14, 2, 1, 1]]);
    let alone = encoder.encode(&["cloud"]).unwrap();
    let padded = encoder.encode(&["alpha river stone", "cloud"]).unwrap().narrow(0, 1, 1).unwrap();
    assert!(max_diff(&alone, &padded) < 1e-5, "{}", max_diff(&alone, &padded));
    let out = tempfile::tempdir().unwrap();
    encoder.save(out.path()).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(
        (config["model_type"].as_str(), config["architectures"][0].as_str()),
        (Some("mpnet"), Some("MPNetModel"))
    );
    // The special tokens the tokenizer.json uses, so that transformers' MPNet tokenizer does not
    // put its class's [UNK] in place of the vocabulary's <unk> (tests/golden/family_roundtrip.py).
    let tokens: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("tokenizer_config.json")).unwrap()).unwrap();
    let token = |k: &str| tokens[k].as_str().unwrap_or("none").to_string();
    assert_eq!(
        [token("unk_token"), token("pad_token"), token("cls_token"), token("sep_token")],
        ["<unk>", "<pad>", "<s>", "</s>"]
    );
    assert_eq!(tokens["model_max_length"], encoder.tokenizer().max_length());
    let again = SentenceEncoder::from_folder(out.path(), &Device::Cpu).unwrap();
    assert!(
        max_diff(
            &again.encode(&["alpha river stone", "cloud"]).unwrap(),
            &encoder.encode(&["alpha river stone", "cloud"]).unwrap()
        ) < 1e-6
    );
}
