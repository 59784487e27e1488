//! XLM-RoBERTa (RoBERTa's encoder: positions numbered after the padding id, one token type)
//! against transformers' XLMRobertaModel, on a small random model that tests/golden/tiny_xlmr.py
//! saved with save_pretrained (torch 2.15.0, transformers 5.25.0), with its outputs and
//! gradients for three rows of right-padded token ids.

use candle_core::{DType, Device, Tensor};
use contrastive_core::nn::{InitScheme, ParamStore};
use contrastive_text::{Bert, BertConfig, ModelType};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod support;
use support::max_diff;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_xlmr")
}

/// The hidden states and gradients of the fixture's golden ids.
fn run(config: &BertConfig) -> (Tensor, HashMap<String, Tensor>) {
    support::hidden_and_gradients(&fixture(), config, false)
}

#[test]
fn xlm_roberta_matches_transformers_in_values_and_gradients() {
    let config = BertConfig::from_file(&fixture().join("config.json")).unwrap();
    assert_eq!((config.model_type, config.padding_id(), config.max_tokens()), (ModelType::XlmRoberta, 1, 38));
    let golden = candle_core::safetensors::load(fixture().join("golden.safetensors"), &Device::Cpu).unwrap();
    let (hidden, grads) = run(&config);
    let d = max_diff(&hidden, &golden["hidden"]);
    assert!(d < 1e-4, "hidden states differ by {d}");
    for name in [
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "encoder.layer.0.attention.self.query.weight",
        "encoder.layer.1.output.dense.weight",
    ] {
        let d = max_diff(&grads[name], &golden[&format!("grad.{name}")]);
        assert!(d < 1e-4, "{name}: gradient differs by {d}");
    }
    // BERT's numbering of the same weights gives other states: the positions are what is tested.
    let as_bert = BertConfig { model_type: ModelType::Bert, ..config.clone() };
    assert!(max_diff(&run(&as_bert).0, &golden["hidden"]) > 1e-2);
}

#[test]
fn a_family_this_crate_does_not_run_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture().join("config.json")).unwrap().replace("xlm-roberta", "deberta-v2");
    std::fs::write(dir.path().join("config.json"), text).unwrap();
    let e = BertConfig::from_file(&dir.path().join("config.json")).unwrap_err().to_string();
    assert!(e.contains("deberta-v2") && e.contains("config.json"), "{e}");
    // Too many tokens for RoBERTa's positions (40 - 2) is an error naming the limit.
    let config = BertConfig::from_file(&fixture().join("config.json")).unwrap();
    let store = ParamStore::new(0, InitScheme::Normal { std: 0.02 });
    let bert = Bert::new(&config, store.var_builder(DType::F32, &Device::Cpu), 0).unwrap();
    let ids = Tensor::ones((1, 39), DType::U32, &Device::Cpu).unwrap();
    let e = bert.forward_t(&ids, &ids.zeros_like().unwrap(), &ids, false).unwrap_err().to_string();
    assert!(e.contains("at most 38"), "{e}");
}

/// A whole XLM-R folder (config.json, model.safetensors, a Unigram tokenizer.json whose padding
/// token is <pad> = 1) loads as a sentence encoder: batches are padded with <pad>, and a
/// sentence's vector does not depend on the batch it is padded in.
#[test]
fn an_xlm_roberta_folder_encodes_sentences_padded_with_its_own_pad_token() {
    use contrastive_text::{SentenceEncoder, Tokenizer};
    let tok = Tokenizer::from_file(&fixture().join("tokenizer.json"), 16).unwrap();
    let batch = tok.encode(&["alpha river stone", "cloud"], &Device::Cpu).unwrap();
    assert_eq!(batch.ids.to_vec2::<u32>().unwrap(), vec![vec![0, 4, 8, 9, 2], vec![0, 11, 2, 1, 1]]);
    assert_eq!(batch.attention_mask.to_vec2::<u32>().unwrap()[1], vec![1, 1, 1, 0, 0]);
    let encoder = SentenceEncoder::from_folder(&fixture(), &Device::Cpu).unwrap();
    let alone = encoder.encode(&["cloud"]).unwrap();
    let padded = encoder.encode(&["alpha river stone", "cloud"]).unwrap().narrow(0, 1, 1).unwrap();
    assert!(max_diff(&alone, &padded) < 1e-5, "{}", max_diff(&alone, &padded));
}
