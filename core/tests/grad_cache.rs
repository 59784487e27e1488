//! Gradient caching against the full batch: CLIP over two towers (a two-layer MLP and a linear
//! layer), 12 pairs in chunks of at most 5 (4 each): the same loss and the same gradient for every
//! variable, the learnable temperature included; SupCon over a user's own objective (labels
//! riding with the batch), 14 rows in chunks of at most 4.

use candle_core::{DType, Device, Module, Tensor};
use contrastive_core::cross_modal::{Clip, ClipBatch, ClipConfig, LOG_SCALE};
use contrastive_core::grad_cache::{GradCache, InBatch};
use contrastive_core::loss::supcon;
use contrastive_core::nn::{linear, InitScheme, Linear, ParamStore};
use contrastive_core::train::Objective;
use contrastive_core::Backbone;
use rand::{Rng, SeedableRng};

struct Mlp(Linear, Linear);

impl Backbone for Mlp {
    type Input = Tensor;
    fn encode(&self, x: &Tensor, _train: bool) -> candle_core::Result<Tensor> {
        self.1.forward(&self.0.forward(x)?.tanh()?)
    }
    fn dim(&self) -> usize {
        4
    }
}

fn clip() -> Clip<Mlp, Mlp> {
    let store = ParamStore::new(8, InitScheme::PyTorch);
    let vb = store.var_builder(DType::F32, &Device::Cpu);
    let a = Mlp(linear(6, 8, vb.pp("a.0")).unwrap(), linear(8, 4, vb.pp("a.1")).unwrap());
    let b = Mlp(linear(3, 5, vb.pp("b.0")).unwrap(), linear(5, 4, vb.pp("b.1")).unwrap());
    Clip::new(a, b, store, ClipConfig::default()).unwrap()
}

fn rows(n: usize, d: usize, seed: u64) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, (n, d), &Device::Cpu).unwrap()
}

fn gradients(model: &impl Objective, loss: &Tensor) -> Vec<(String, Vec<f32>)> {
    let grads = loss.backward().unwrap();
    let all = model.params().trainable();
    all.into_iter()
        .map(|(n, v)| (n, grads.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

#[test]
fn clip_with_gradient_caching_gives_the_full_batch_loss_and_gradients() {
    let batch = ClipBatch { a: rows(12, 6, 1), b: rows(12, 3, 2) };
    let mut plain = clip();
    let loss = plain.loss(&batch).unwrap();
    let expected = gradients(&plain, &loss);
    let mut cached = GradCache::new(clip(), 5).unwrap();
    let cached_loss = cached.loss(&batch).unwrap();
    let (x, y) = (loss.to_scalar::<f32>().unwrap(), cached_loss.to_scalar::<f32>().unwrap());
    assert!((x - y).abs() < 1e-6, "loss {x} whole, {y} cached");
    let got = gradients(&cached, &cached_loss);
    assert_eq!(expected.len(), got.len());
    assert!(expected.iter().any(|(n, _)| n == LOG_SCALE), "the temperature is trained");
    for ((name, u), (_, v)) in expected.iter().zip(&got) {
        for (p, q) in u.iter().zip(v) {
            assert!((p - q).abs() < 1e-5, "{name}: {p} whole, {q} cached");
        }
    }
    // Rows that do not pair up are refused, naming the second tower's input.
    let bad = ClipBatch { a: rows(12, 6, 1), b: rows(11, 3, 2) };
    let e = GradCache::new(clip(), 5).unwrap().loss(&bad).unwrap_err().to_string();
    assert!(e.contains("ClipBatch.b"), "{e}");
}

/// A user's SupCon objective: an MLP over rows with their class labels; the loss needs every
/// row's embedding and the labels of the whole batch.
struct SupConMlp {
    encoder: Mlp,
    store: ParamStore,
}

struct Labelled {
    x: Tensor,
    labels: Tensor,
}

impl Objective for SupConMlp {
    type Batch = Labelled;
    fn loss(&mut self, batch: &Labelled) -> candle_core::Result<Tensor> {
        supcon(&self.encoder.encode(&batch.x, true)?, &batch.labels, 0.2)
    }
    fn params(&self) -> &ParamStore {
        &self.store
    }
}

impl InBatch for SupConMlp {
    fn rows(&self, batch: &Labelled) -> contrastive_core::Result<usize> {
        Ok(batch.x.dim(0)?)
    }
    fn embed_rows(&self, batch: &Labelled, rows: std::ops::Range<usize>) -> candle_core::Result<Vec<Tensor>> {
        Ok(vec![self.encoder.encode(&batch.x.narrow(0, rows.start, rows.len())?, true)?])
    }
    fn loss_of_embeddings(&self, batch: &Labelled, embeddings: &[Tensor]) -> candle_core::Result<Tensor> {
        supcon(&embeddings[0], &batch.labels, 0.2)
    }
}

#[test]
fn supcon_with_gradient_caching_gives_the_full_batch_loss_and_gradients() {
    let model = || {
        let store = ParamStore::new(3, InitScheme::PyTorch);
        let vb = store.var_builder(DType::F32, &Device::Cpu);
        let encoder = Mlp(linear(6, 8, vb.pp("0")).unwrap(), linear(8, 4, vb.pp("1")).unwrap());
        SupConMlp { encoder, store }
    };
    let labels = Tensor::new(&[0u32, 1, 2, 0, 1, 2, 0, 1, 2, 0, 3, 1, 1, 2], &Device::Cpu).unwrap();
    let batch = Labelled { x: rows(14, 6, 5), labels };
    let mut plain = model();
    let loss = plain.loss(&batch).unwrap();
    let expected = gradients(&plain, &loss);
    let mut cached = GradCache::new(model(), 4).unwrap();
    let cached_loss = cached.loss(&batch).unwrap();
    let (x, y) = (loss.to_scalar::<f32>().unwrap(), cached_loss.to_scalar::<f32>().unwrap());
    assert!((x - y).abs() < 1e-6, "loss {x} whole, {y} cached");
    let got = gradients(&cached, &cached_loss);
    assert_eq!(expected.len(), 4);
    for ((name, u), (_, v)) in expected.iter().zip(&got) {
        assert!(u.iter().any(|g| g.abs() > 1e-4), "{name}: no gradient to compare");
        for (p, q) in u.iter().zip(v) {
            assert!((p - q).abs() < 1e-5, "{name}: {p} whole, {q} cached");
        }
    }
}
