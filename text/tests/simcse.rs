//! SimCSE on a tiny BERT with a WordPiece vocabulary: the unsupervised loss falls, a resumed run
//! equals an uninterrupted one (dropout positions restored), the supervised loss counts the hard
//! negatives, and errors name their cause.

use candle_core::{Device, Tensor};
use contrastive_core::augment::Identity;
use contrastive_core::data::{Loader, LoaderConfig};
use contrastive_core::loss::info_nce;
use contrastive_core::nn::check_gradients;
use contrastive_core::optim::{OptimizerConfig, Schedule};
use contrastive_core::train::{read_history, Objective, Trainer, TrainerConfig};
use contrastive_text::*;
use std::path::Path;
use std::sync::Arc;

const WORDS: [&str; 24] = [
    "the", "a", "cat", "dog", "bird", "fish", "runs", "sleeps", "eats", "sings", "swims", "red", "blue", "green",
    "small", "big", "house", "tree", "river", "sky", "quickly", "slowly", "today", "again",
];

fn tokenizer(dir: &Path) -> Arc<Tokenizer> {
    let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .chain(WORDS.iter())
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("vocab.txt"), vocab).unwrap();
    Arc::new(Tokenizer::from_vocab(&dir.join("vocab.txt"), 16).unwrap())
}

fn tiny_bert(dropout: f64) -> BertConfig {
    BertConfig {
        vocab_size: WORDS.len() + 5,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        hidden_act: Activation::Gelu,
        hidden_dropout_prob: dropout,
        attention_probs_dropout_prob: dropout,
        max_position_embeddings: 16,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        model_type: Default::default(),
        pad_token_id: None,
        relative_attention_num_buckets: 32,
    }
}

/// 64 distinct sentences of four words.
fn corpus() -> Vec<String> {
    (0..64)
        .map(|i| format!("{} {} {} {}", WORDS[i % 5], WORDS[2 + i % 7], WORDS[6 + (i / 7) % 9], WORDS[15 + i % 9]))
        .collect()
}

fn config(epochs: usize) -> TrainerConfig {
    TrainerConfig {
        epochs,
        // From BERT's N(0, 0.02) initialisation every sentence starts at nearly the same vector;
        // a large step gets the tiny model out of that within the run.
        lr: 1e-2,
        schedule: Schedule::Constant,
        optimizer: OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 },
        checkpoint_every: None,
        progress: false,
        ..TrainerConfig::default()
    }
}

#[test]
fn the_sentence_loader_keeps_copies_of_a_sentence_out_of_one_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path());
    // 16 distinct sentences, one of them 6 times and another 4 times: 24 in all, 6 batches of 4.
    let mut sentences: Vec<String> = corpus()[..16].to_vec();
    sentences.extend(std::iter::repeat_n(corpus()[0].clone(), 5));
    sentences.extend(std::iter::repeat_n(corpus()[1].clone(), 3));
    let collate = CollateSentences { tokenizer: Arc::clone(&tok), device: Device::Cpu };
    let lc = LoaderConfig { batch_size: 4, seed: 5, shuffle: true, drop_last: true, threads: 1 };
    let loader = sentence_loader(sentences.clone(), collate, lc).unwrap();
    for epoch in 0..5 {
        let order = loader.order(epoch);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..24).collect::<Vec<_>>(), "every sentence once per epoch");
        for batch in order.chunks(4) {
            let texts: std::collections::BTreeSet<&str> = batch.iter().map(|&i| sentences[i].as_str()).collect();
            assert_eq!(texts.len(), 4, "epoch {epoch}: a sentence twice in {batch:?}");
        }
    }
    // Its batches are the sentence itself, tokenized once (the positive is a second dropout pass).
    let batch = loader.epoch(0).next().unwrap().unwrap();
    assert_eq!(batch.anchors.ids.dims()[0], 4);
    assert!(batch.positives.is_none() && batch.hard_negatives.is_none());
}

#[test]
fn unsupervised_simcse_learns_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path());
    let loader = || {
        let collate = CollateSentences { tokenizer: Arc::clone(&tok), device: Device::Cpu };
        let lc = LoaderConfig { batch_size: 32, seed: 1, shuffle: true, drop_last: true, threads: 1 };
        Loader::new(corpus(), Identity, collate, lc).unwrap()
    };
    let run = |dir: &Path, epochs: usize, resume: bool| {
        let model =
            SimCse::new(SimCseConfig { temperature: 0.1, ..SimCseConfig::default() }, &tiny_bert(0.1), 3, &Device::Cpu)
                .unwrap();
        let mut t = Trainer::new(config(epochs), model).unwrap().with_run_dir(dir);
        if resume {
            assert!(t.resume().unwrap());
        }
        t.fit(&loader()).unwrap();
        read_history(&dir.join("history.jsonl")).unwrap().iter().filter_map(|r| r.loss).collect::<Vec<f64>>()
    };
    let (full, split) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let all = run(full.path(), 20, false);
    run(split.path(), 7, false);
    let resumed = run(split.path(), 20, true);
    assert_eq!(all, resumed, "a resumed run must draw the same dropout masks");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (first, last) = (mean(&all[..4]), mean(&all[all.len() - 4..]));
    assert!(last < first - 0.5, "loss did not fall: {first:.3} -> {last:.3}");
}

/// A sentence encoder of the test's own: the mean of word vectors over real tokens, then a
/// linear map. No BERT: SimCSE trains it all the same.
struct WordBag {
    words: candle_nn::Embedding,
    out: candle_nn::Linear,
}

impl contrastive_core::Backbone for WordBag {
    type Input = TokenBatch;
    fn encode(&self, t: &TokenBatch, _train: bool) -> candle_core::Result<Tensor> {
        use candle_core::Module;
        let mask = t.attention_mask.to_dtype(candle_core::DType::F32)?.unsqueeze(2)?;
        let summed = self.words.forward(&t.ids)?.broadcast_mul(&mask)?.sum(1)?;
        self.out.forward(&summed.broadcast_div(&mask.sum(1)?)?)
    }
    fn dim(&self) -> usize {
        8
    }
}

#[test]
fn simcse_trains_a_sentence_backbone_defined_in_the_test() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path());
    let collate = CollateSentences { tokenizer: Arc::clone(&tok), device: Device::Cpu };
    let lc = LoaderConfig { batch_size: 32, seed: 1, shuffle: true, drop_last: true, threads: 1 };
    let loader = Loader::new(corpus(), Identity, collate, lc).unwrap();
    let build = |vb: candle_nn::VarBuilder| {
        Ok(WordBag {
            words: candle_nn::embedding(WORDS.len() + 5, 16, vb.pp("words"))?,
            out: candle_nn::linear(16, 8, vb.pp("out"))?,
        })
    };
    let model =
        SimCse::with_backbone(build, SimCseConfig { temperature: 0.1, ..SimCseConfig::default() }, 3, &Device::Cpu)
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::new(config(10), model).unwrap().with_run_dir(dir.path());
    t.fit(&loader).unwrap();
    let losses: Vec<f64> =
        read_history(&dir.path().join("history.jsonl")).unwrap().iter().filter_map(|r| r.loss).collect();
    assert_eq!(losses.len(), 20);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (first, last) = (mean(&losses[..4]), mean(&losses[16..]));
    assert!(last < first - 0.3, "loss did not fall: {first:.3} -> {last:.3}");
    let names: Vec<String> = t.objective().params().all().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"words.weight".to_string()) && names.contains(&"out.bias".to_string()), "{names:?}");
}

#[test]
fn supervised_simcse_uses_the_hard_negatives() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path());
    let sentences = corpus();
    let triples: Vec<Triple> =
        (0..8).map(|i| (sentences[i].clone(), sentences[i + 8].clone(), sentences[i + 16].clone())).collect();
    let collate = CollateSentences { tokenizer: Arc::clone(&tok), device: Device::Cpu };
    let pairs = triples
        .iter()
        .enumerate()
        .map(|(i, t)| contrastive_core::data::ViewPair { index: i, first: t.clone(), second: t.clone() })
        .collect();
    let batch = contrastive_core::data::Collate::collate(&collate, pairs).unwrap();
    // Without dropout and with mean pooling the embeddings are deterministic, so the objective's
    // loss can be recomputed: anchors against 8 positives and 8 hard negatives.
    let mut model =
        SimCse::new(SimCseConfig { temperature: 0.05, pooling: SimCsePooling::Mean }, &tiny_bert(0.0), 4, &Device::Cpu)
            .unwrap();
    let loss = model.loss(&batch).unwrap();
    let e = |t: &TokenBatch| model.embed(t, false).unwrap();
    let want = info_nce(
        &e(&batch.anchors),
        &e(batch.positives.as_ref().unwrap()),
        Some(&e(batch.hard_negatives.as_ref().unwrap())),
        0.05,
    )
    .unwrap();
    let without = info_nce(&e(&batch.anchors), &e(batch.positives.as_ref().unwrap()), None, 0.05).unwrap();
    let (l, w, wo) =
        (loss.to_scalar::<f32>().unwrap(), want.to_scalar::<f32>().unwrap(), without.to_scalar::<f32>().unwrap());
    assert!((l - w).abs() < 1e-5, "{l} vs {w}");
    assert!(l > wo, "hard negatives must add to the denominator: {l} vs {wo}");
    check_gradients(model.params(), &loss.backward().unwrap()).unwrap();
}

#[test]
fn bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path());
    assert!(tok.encode(&[], &Device::Cpu).unwrap_err().to_string().contains("no sentence"));
    // Longer than the maximum: truncated to 16 tokens, not an error.
    let long = vec!["cat"; 40].join(" ");
    let b = tok.encode(&[&long], &Device::Cpu).unwrap();
    assert_eq!(b.ids.dims(), [1, 16]);
    let bad = BertConfig { num_attention_heads: 5, ..tiny_bert(0.1) };
    let err = SimCse::new(SimCseConfig::default(), &bad, 0, &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("num_attention_heads") && err.contains("32"), "{err}");
    std::fs::write(tmp.path().join("config.json"), "{\"hidden_size\": 32}").unwrap();
    let err = BertConfig::from_file(&tmp.path().join("config.json")).unwrap_err().to_string();
    assert!(err.contains("config.json") && err.contains("vocab_size"), "{err}");
    // Weights that do not fit the config name the tensor and both shapes.
    let model = SimCse::new(SimCseConfig::default(), &tiny_bert(0.1), 0, &Device::Cpu).unwrap();
    let mut w = model.params().tensors();
    w.insert(
        "embeddings.word_embeddings.weight".into(),
        Tensor::zeros((10, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&w, tmp.path().join("model.safetensors")).unwrap();
    let err =
        load_bert_weights(model.params(), &tmp.path().join("model.safetensors"), &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("word_embeddings") && err.contains("[10, 32]") && err.contains("[29, 32]"), "{err}");
    // Weights of two layers under a config of one: refused, not half loaded. A pooler beside
    // them is another module's and does not count.
    let mut w = model.params().tensors();
    w.insert("pooler.dense.bias".into(), Tensor::zeros(32, candle_core::DType::F32, &Device::Cpu).unwrap());
    candle_core::safetensors::save(&w, tmp.path().join("two.safetensors")).unwrap();
    let one_layer =
        SimCse::new(SimCseConfig::default(), &BertConfig { num_hidden_layers: 1, ..tiny_bert(0.1) }, 0, &Device::Cpu)
            .unwrap();
    let err = load_bert_weights(one_layer.params(), &tmp.path().join("two.safetensors"), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("two.safetensors") && err.contains("encoder.layer.1."), "{err}");
    assert!(err.contains("num_hidden_layers"), "{err}");
    // The same file loads into the config it was written for.
    load_bert_weights(model.params(), &tmp.path().join("two.safetensors"), &Device::Cpu).unwrap();
}

#[test]
fn bert_gradients_match_finite_differences() {
    use candle_core::DType;
    use contrastive_core::nn::{InitScheme, ParamStore};
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path());
    let batch = tok.encode(&["the cat runs", "a dog sleeps today", "big tree"], &Device::Cpu).unwrap();
    let store = ParamStore::new(5, InitScheme::Normal { std: 0.3 });
    let bert = Bert::new(&tiny_bert(0.0), store.var_builder(DType::F64, &Device::Cpu), 5).unwrap();
    let weights = Tensor::arange(0f64, 3.0 * 32.0, &Device::Cpu).unwrap().reshape((3, 32)).unwrap().sin().unwrap();
    let loss = || {
        let states = bert.forward_t(&batch.ids, &batch.type_ids, &batch.attention_mask, false).unwrap();
        let pooled = Pooling::Mean.forward_t(&states, &batch.attention_mask, false).unwrap();
        (pooled * &weights).unwrap().sum_all().unwrap()
    };
    let grads = loss().backward().unwrap();
    for name in [
        "embeddings.word_embeddings.weight",
        "encoder.layer.0.attention.self.query.weight",
        "encoder.layer.1.intermediate.dense.weight",
        "encoder.layer.1.output.LayerNorm.weight",
        "embeddings.LayerNorm.bias",
    ] {
        let var = store.get(name).unwrap();
        let g = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let base = var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for j in (0..base.len()).step_by(base.len() / 7 + 1) {
            let at = |d: f64| {
                let mut v = base.clone();
                v[j] += d;
                var.set(&Tensor::from_vec(v, var.dims(), &Device::Cpu).unwrap()).unwrap();
                loss().to_scalar::<f64>().unwrap()
            };
            let numeric = (at(1e-6) - at(-1e-6)) / 2e-6;
            var.set(&Tensor::from_vec(base.clone(), var.dims(), &Device::Cpu).unwrap()).unwrap();
            assert!((numeric - g[j]).abs() < 1e-5 * (1.0 + numeric.abs()), "{name}[{j}]: {numeric} vs {}", g[j]);
        }
    }
}

#[test]
fn pytorch_pickles_with_old_names_load_as_safetensors_do() {
    use candle_core::DType;
    use contrastive_core::nn::{InitScheme, ParamStore};
    // tests/golden/tiny_bert.py: one random BERT as a PyTorch pickle (`bert.` prefix, LayerNorm
    // gamma/beta, a pooler) and as safetensors (today's names).
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let config =
        BertConfig { vocab_size: 29, hidden_size: 8, intermediate_size: 16, num_attention_heads: 2, ..tiny_bert(0.0) };
    let out = |file: &str| {
        let store = ParamStore::new(0, InitScheme::Normal { std: 0.02 });
        let bert = Bert::new(&config, store.var_builder(DType::F32, &Device::Cpu), 0).unwrap();
        assert_eq!(load_bert_weights(&store, &fixtures.join(file), &Device::Cpu).unwrap(), 37);
        let ids = Tensor::new(&[[2u32, 7, 9, 3]], &Device::Cpu).unwrap();
        let ones = ids.ones_like().unwrap();
        bert.forward_t(&ids, &ids.zeros_like().unwrap(), &ones, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(out("tiny_bert.bin"), out("tiny_bert.safetensors"));
}

#[test]
fn inference_gives_the_eval_pass_without_a_graph() {
    use candle_core::DType;
    use contrastive_core::nn::{InitScheme, ParamStore};
    let config =
        BertConfig { vocab_size: 29, hidden_size: 8, intermediate_size: 16, num_attention_heads: 2, ..tiny_bert(0.1) };
    let store = ParamStore::new(3, InitScheme::Normal { std: 0.02 });
    let bert = Bert::new(&config, store.var_builder(DType::F32, &Device::Cpu), 0).unwrap();
    let ids = Tensor::new(&[[2u32, 7, 9, 3], [4, 5, 0, 0]], &Device::Cpu).unwrap();
    let mask = Tensor::new(&[[1u32, 1, 1, 1], [1, 1, 0, 0]], &Device::Cpu).unwrap();
    let types = ids.zeros_like().unwrap();
    let eval = bert.forward_t(&ids, &types, &mask, false).unwrap();
    let inference = bert.forward_inference(&ids, &types, &mask).unwrap();
    assert_eq!(eval.to_vec3::<f32>().unwrap(), inference.to_vec3::<f32>().unwrap());
    // The eval pass reaches the variables (a gradient flows); inference holds no graph.
    let vars = store.trainable();
    let grads = eval.sum_all().unwrap().backward().unwrap();
    assert!(vars.iter().any(|(_, v)| grads.get(v.as_tensor()).is_some()));
    let grads = inference.sum_all().unwrap().backward().unwrap();
    assert!(vars.iter().all(|(_, v)| grads.get(v.as_tensor()).is_none()));
}

/// Every trainable variable's gradient of `loss`, by name.
fn gradients(model: &impl Objective, loss: &Tensor) -> Vec<(String, Vec<f32>)> {
    let grads = loss.backward().unwrap();
    model
        .params()
        .trainable()
        .into_iter()
        .map(|(name, v)| {
            let g = grads.get(v.as_tensor()).map(|g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            (name, g.unwrap_or_default())
        })
        .collect()
}

/// Gradient caching gives the full batch's loss and gradients, dropout on: 16 sentences of
/// different lengths in chunks of 4 (unsupervised) and of at most 6 (supervised: 6, 5 and 5),
/// each chunk padded to the batch's longest and drawing the batch's masks for its rows; the
/// dropout streams end where the full step leaves them.
#[test]
fn grad_cache_gives_the_full_batch_loss_and_gradients() {
    use contrastive_core::grad_cache::GradCache;
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path());
    let words = |i: usize, n: usize| (0..n).map(|j| WORDS[(i * 5 + j * 3) % WORDS.len()]).collect::<Vec<_>>().join(" ");
    let sentences: Vec<String> = (0..16).map(|i| words(i, 1 + (i * 7) % 10)).collect();
    let refs = |offset: usize| sentences.iter().cycle().skip(offset).take(16).map(String::as_str).collect::<Vec<_>>();
    let unsupervised =
        SentenceBatch { anchors: tok.encode(&refs(0), &Device::Cpu).unwrap(), positives: None, hard_negatives: None };
    let supervised = SentenceBatch {
        anchors: tok.encode(&refs(0), &Device::Cpu).unwrap(),
        positives: Some(tok.encode(&refs(3), &Device::Cpu).unwrap()),
        hard_negatives: Some(tok.encode(&refs(9), &Device::Cpu).unwrap()),
    };
    for (batch, chunk) in [(&unsupervised, 4), (&supervised, 6)] {
        let model = || SimCse::new(SimCseConfig::default(), &tiny_bert(0.1), 3, &Device::Cpu).unwrap();
        let mut plain = model();
        let loss = plain.loss(batch).unwrap();
        let expected = gradients(&plain, &loss);
        let mut cached = GradCache::new(model(), chunk).unwrap();
        let cached_loss = cached.loss(batch).unwrap();
        let (a, b) = (loss.to_scalar::<f32>().unwrap(), cached_loss.to_scalar::<f32>().unwrap());
        assert!((a - b).abs() < 1e-6, "chunk {chunk}: loss {a} whole, {b} cached");
        let got = gradients(&cached, &cached_loss);
        let mut largest = 0.0f32;
        for ((name, x), (_, y)) in expected.iter().zip(&got) {
            assert_eq!(x.len(), y.len(), "{name}: a gradient on one side only");
            for (u, v) in x.iter().zip(y) {
                assert!((u - v).abs() < 1e-5, "chunk {chunk}: {name}: {u} whole, {v} cached");
                largest = largest.max((u - v).abs());
            }
        }
        assert!(expected.iter().any(|(_, g)| g.iter().any(|v| v.abs() > 1e-4)), "the gradients are not all zero");
        assert_eq!(plain.extra_state().unwrap().json, cached.extra_state().unwrap().json, "dropout streams");
        eprintln!("chunk {chunk}: loss {a}, largest gradient difference {largest:e}");
    }
    // A chunk of no rows is refused.
    assert!(GradCache::new(SimCse::new(SimCseConfig::default(), &tiny_bert(0.1), 3, &Device::Cpu).unwrap(), 0).is_err());
}

/// VICReg on sentences: the two views of a sentence are two passes through BERT with dropout on
/// (SimCSE's augmentation, [`SentenceBatch`] as `ViewPairs`). The loss falls, the sentence
/// vectors stay spread, and a resumed run draws the same dropout masks.
#[test]
fn vicreg_trains_a_bert_on_sentences_through_dropout_twice_and_resumes_exactly() {
    use contrastive_core::collapse::Spread;
    use contrastive_core::methods::{VicReg, VicRegConfig};
    use contrastive_core::Backbone;
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path());
    let loader = || {
        let collate = CollateSentences { tokenizer: Arc::clone(&tok), device: Device::Cpu };
        let lc = LoaderConfig { batch_size: 32, seed: 1, shuffle: true, drop_last: true, threads: 1 };
        Loader::new(corpus(), Identity, collate, lc).unwrap()
    };
    let build = |vb: candle_nn::VarBuilder| -> contrastive_core::Result<PooledBert> {
        Ok(PooledBert { bert: Bert::new(&tiny_bert(0.1), vb, 3)?, pooling: Pooling::Mean })
    };
    let run = |dir: &Path, epochs: usize, resume: bool| {
        let model: VicReg<PooledBert, SentenceBatch> =
            VicReg::new(build, VicRegConfig::with_widths(32, 64, 64), 3, &Device::Cpu).unwrap();
        let mut t = Trainer::new(TrainerConfig { lr: 1e-3, ..config(epochs) }, model).unwrap().with_run_dir(dir);
        if resume {
            assert!(t.resume().unwrap());
        }
        t.fit(&loader()).unwrap();
        let losses: Vec<f64> =
            read_history(&dir.join("history.jsonl")).unwrap().iter().filter_map(|r| r.loss).collect();
        (losses, t.into_objective())
    };
    let (full, split) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (all, model) = run(full.path(), 20, false);
    run(split.path(), 7, false);
    let (resumed, _) = run(split.path(), 20, true);
    assert_eq!(all, resumed, "a resumed run must draw the same dropout masks");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (first, last) = (mean(&all[..4]), mean(&all[all.len() - 4..]));
    assert!(last < 0.8 * first, "loss did not fall: {first:.3} -> {last:.3}");
    let sentences = corpus();
    let text: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let tokens = tok.encode(&text, &Device::Cpu).unwrap();
    let spread = Spread::of(&model.encoder().encode(&tokens, false).unwrap()).unwrap();
    assert!(spread.collapse().is_none(), "{spread:?}");
}
