//! RoBERTa and its byte-level BPE tokenizer.json against transformers' RobertaModel and the
//! tokenizers library, on a small random model and tokenizer that tests/golden/tiny_roberta.py
//! saved (torch 2.15.0, transformers 5.25.0): the tokenizer's ids for four sentences (accents,
//! a dash, CJK, an emoji: byte-level BPE splits them into bytes), padded with <pad> = 1, the
//! hidden states for those ids and the gradients of four weights.

use candle_core::{DType, Device, Tensor};
use contrastive_text::{BertConfig, ModelType, SentenceEncoder, Tokenizer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod support;
use support::max_diff;

/// The sentences tiny_roberta.py encoded, in its order.
const SENTENCES: [&str; 4] = ["The river runs north.", "Café naïve — 東京 😀", "stone", "the  cold river, colder"];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_roberta")
}

fn golden() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture().join("golden.safetensors"), &Device::Cpu).unwrap()
}

#[test]
fn the_bpe_tokenizer_gives_the_ids_of_the_tokenizers_library() {
    let tok = Tokenizer::from_file(&fixture().join("tokenizer.json"), 64).unwrap();
    let batch = tok.encode(&SENTENCES, &Device::Cpu).unwrap();
    let want = golden()["ids"].to_dtype(DType::U32).unwrap().to_vec2::<u32>().unwrap();
    let got = batch.ids.to_vec2::<u32>().unwrap();
    assert_eq!(got, want);
    // The emoji and the CJK characters are several byte tokens each; "stone" ends with </s> and
    // is padded with <pad>.
    assert!(got[1].iter().filter(|&&t| t != 1).count() > 12, "{:?}", got[1]);
    let end = got[2].iter().position(|&t| t == 2).unwrap();
    assert!(end < 6 && got[2][end + 1..].iter().all(|&t| t == 1), "{:?}", got[2]);
    // Truncation keeps <s> and </s>.
    let short = Tokenizer::from_file(&fixture().join("tokenizer.json"), 4).unwrap();
    let cut = short.encode(&SENTENCES[..1], &Device::Cpu).unwrap().ids.to_vec2::<u32>().unwrap();
    assert_eq!((cut[0].len(), cut[0][0], cut[0][3]), (4, 0, 2));
}

#[test]
fn roberta_matches_transformers_in_values_and_gradients() {
    let config = BertConfig::from_file(&fixture().join("config.json")).unwrap();
    assert_eq!((config.model_type, config.padding_id()), (ModelType::Roberta, 1));
    let golden = golden();
    let (hidden, grads) = support::hidden_and_gradients(&fixture(), &config, false);
    let d = max_diff(&hidden, &golden["hidden"]);
    assert!(d < 1e-4, "hidden states differ by {d}");
    for name in [
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "encoder.layer.0.attention.self.key.weight",
        "encoder.layer.1.intermediate.dense.weight",
    ] {
        let d = max_diff(&grads[name], &golden[&format!("grad.{name}")]);
        assert!(d < 1e-4, "{name}: gradient differs by {d}");
    }
}

/// The folder loads as a sentence encoder: a sentence's vector does not depend on the batch it is
/// padded in, and the non-ASCII sentence embeds to finite values.
#[test]
fn a_roberta_folder_encodes_sentences() {
    let encoder = SentenceEncoder::from_folder(&fixture(), &Device::Cpu).unwrap();
    let all = encoder.encode(&SENTENCES).unwrap();
    let alone = encoder.encode(&SENTENCES[2..3]).unwrap();
    let d = max_diff(&alone, &all.narrow(0, 2, 1).unwrap());
    assert!(d < 1e-5, "{d}");
    let v = all.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(v.iter().all(|x| x.is_finite()));
    // Saved, it names the tokens its tokenizer.json wraps and pads with (byte-level BPE has no
    // unknown token).
    let out = tempfile::tempdir().unwrap();
    encoder.save(out.path()).unwrap();
    let tokens: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("tokenizer_config.json")).unwrap()).unwrap();
    assert_eq!(
        (&tokens["cls_token"], &tokens["sep_token"], &tokens["pad_token"]),
        (&"<s>".into(), &"</s>".into(), &"<pad>".into())
    );
    assert!(tokens.get("unk_token").is_none(), "{tokens}");
    let again = SentenceEncoder::from_folder(out.path(), &Device::Cpu).unwrap();
    assert!(max_diff(&again.encode(&SENTENCES).unwrap(), &all) < 1e-6);
}
