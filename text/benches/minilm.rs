//! MiniLM-shaped BERT (6 layers, hidden 384, 12 heads, randomly initialised) on a batch of 64 x 32
//! tokens: the eval forward pass, and a training step (dropout on, forward, mean over tokens,
//! squared mean, backward). The same work as `python3 bench/pytorch/torch_ref.py bert` and
//! `... bert_train` (transformers' BertModel), to run in one sitting; XLM-RoBERTa-base's eval
//! forward pass on the same batch (`... xlmr`); MPNet-base's forward pass and training step
//! (`... mpnet`); and the whole SimCSE optimiser step of the `simcse` example.
//!
//!     cargo bench -p contrastive-text --bench minilm
#![allow(missing_docs)] // criterion_group! generates an undocumented function

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use candle_core::{DType, Device, Tensor};
use contrastive_core::nn::{InitScheme, ParamStore};
use contrastive_core::optim::{clip_grad_norm, Optimizer, OptimizerConfig};
use contrastive_core::train::Objective;
use contrastive_text::{Bert, BertConfig, SentenceBatch, SimCse, SimCseConfig, SimCsePooling, TokenBatch};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn bench(c: &mut Criterion) {
    contrastive_core::alloc::keep_freed_memory();
    contrastive_core::candle_pool::configure_candle_pool(0);
    let config = BertConfig::minilm_l6();
    let store = ParamStore::new(0, InitScheme::Normal { std: 0.02 });
    let bert = Bert::new(&config, store.var_builder(DType::F32, &Device::Cpu), 0).unwrap();
    let ids: Vec<u32> = (0..64 * 32).map(|i| 100 + (i * 7919 % 30000) as u32).collect();
    let ids = Tensor::from_vec(ids, (64, 32), &Device::Cpu).unwrap();
    let (types, mask) = (ids.zeros_like().unwrap(), ids.ones_like().unwrap());
    let mut group = c.benchmark_group("minilm_b64_s32");
    group.throughput(Throughput::Elements(64 * 32));
    group.sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(15));
    group.bench_function("forward_eval", |b| b.iter(|| bert.forward_t(&ids, &types, &mask, false).unwrap()));
    group.bench_function("train_step", |b| {
        b.iter(|| {
            let h = bert.forward_t(&ids, &types, &mask, true).unwrap();
            h.mean(1).unwrap().sqr().unwrap().mean_all().unwrap().backward().unwrap()
        })
    });
    group.finish();

    // XLM-RoBERTa-base (12 layers, hidden 768, 250,002 tokens), the eval forward pass on the
    // same batch shape: `python3 bench/pytorch/torch_ref.py xlmr` (transformers' XLMRobertaModel).
    let xlmr_config = BertConfig {
        vocab_size: 250_002,
        hidden_size: 768,
        num_hidden_layers: 12,
        num_attention_heads: 12,
        intermediate_size: 3072,
        max_position_embeddings: 514,
        type_vocab_size: 1,
        layer_norm_eps: 1e-5,
        model_type: contrastive_text::ModelType::XlmRoberta,
        pad_token_id: Some(1),
        ..BertConfig::minilm_l6()
    };
    let xlmr_store = ParamStore::new(0, InitScheme::Normal { std: 0.02 });
    let xlmr = Bert::new(&xlmr_config, xlmr_store.var_builder(DType::F32, &Device::Cpu), 0).unwrap();
    let mut group = c.benchmark_group("xlmr_base_b64_s32");
    group.throughput(Throughput::Elements(64 * 32));
    group.sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(15));
    group.bench_function("forward_eval", |b| b.iter(|| xlmr.forward_inference(&ids, &types, &mask).unwrap()));
    group.finish();
    drop((xlmr, xlmr_store));

    // MPNet-base (all-mpnet-base-v2's shape: 12 layers, hidden 768, a relative position bias on
    // every layer's scores), the eval forward pass and a training step as MiniLM's above:
    // `python3 bench/pytorch/torch_ref.py mpnet` (transformers' MPNetModel).
    let mpnet_config = BertConfig {
        vocab_size: 30_527,
        type_vocab_size: 0,
        model_type: contrastive_text::ModelType::Mpnet,
        layer_norm_eps: 1e-5,
        ..xlmr_config
    };
    let mpnet_store = ParamStore::new(0, InitScheme::Normal { std: 0.02 });
    let mpnet = Bert::new(&mpnet_config, mpnet_store.var_builder(DType::F32, &Device::Cpu), 0).unwrap();
    let mut group = c.benchmark_group("mpnet_base_b64_s32");
    group.throughput(Throughput::Elements(64 * 32));
    group.sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(20));
    group.bench_function("forward_eval", |b| b.iter(|| mpnet.forward_inference(&ids, &types, &mask).unwrap()));
    group.bench_function("train_step", |b| {
        b.iter(|| {
            let h = mpnet.forward_t(&ids, &types, &mask, true).unwrap();
            h.mean(1).unwrap().sqr().unwrap().mean_all().unwrap().backward().unwrap()
        })
    });
    group.finish();
    drop((mpnet, mpnet_store));

    // The whole SimCSE optimiser step of the example (64 sentences of 32 tokens through the
    // encoder twice, InfoNCE, backward, clipping at 1.0, AdamW), as sentence-transformers' step in
    // `bench/pytorch/simcse_st.py` (which reports steps per second).
    let mut model =
        SimCse::new(SimCseConfig { temperature: 0.05, pooling: SimCsePooling::Mean }, &config, 0, &Device::Cpu)
            .unwrap();
    let tokens = TokenBatch { type_ids: types.clone(), attention_mask: mask.clone(), ids: ids.clone() };
    let batch = SentenceBatch { anchors: tokens, positives: None, hard_negatives: None };
    let params = model.params().trainable();
    let vars: Vec<_> = params.iter().map(|(_, v)| v.clone()).collect();
    let adamw = OptimizerConfig::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 };
    let mut optimizer = Optimizer::new(adamw, params).unwrap();
    let mut group = c.benchmark_group("simcse_minilm_b64_s32");
    group.throughput(Throughput::Elements(64));
    group.sample_size(10).warm_up_time(Duration::from_secs(4)).measurement_time(Duration::from_secs(20));
    group.bench_function("optimizer_step", |b| {
        b.iter(|| {
            let mut grads = model.loss(&batch).unwrap().backward().unwrap();
            clip_grad_norm(&mut grads, &vars, 1.0).unwrap();
            optimizer.step(&grads, 3e-5).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
