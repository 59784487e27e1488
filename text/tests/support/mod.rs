//! What the tests of the encoder families against transformers share: a small saved model run on
//! its golden token ids.

use candle_core::{DType, Device, Tensor};
use contrastive_core::nn::{InitScheme, ParamStore};
use contrastive_text::{load_bert_weights, Bert, BertConfig};
use std::collections::HashMap;
use std::path::Path;

/// The largest absolute difference of two tensors.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// The hidden states of the `fixture` folder's golden ids (padding 1, masked) through its
/// `model.safetensors` built as `config` (dropout on when `train`), and the gradients of
/// sum(hidden * sin(0..n)), by variable name.
pub fn hidden_and_gradients(fixture: &Path, config: &BertConfig, train: bool) -> (Tensor, HashMap<String, Tensor>) {
    let store = ParamStore::new(0, InitScheme::Normal { std: 0.02 });
    let bert = Bert::new(config, store.var_builder(DType::F32, &Device::Cpu), 0).unwrap();
    load_bert_weights(&store, &fixture.join("model.safetensors"), &Device::Cpu).unwrap();
    let golden = candle_core::safetensors::load(fixture.join("golden.safetensors"), &Device::Cpu).unwrap();
    let ids = golden["ids"].to_dtype(DType::U32).unwrap();
    let rows = ids.to_vec2::<u32>().unwrap();
    let mask: Vec<u32> = rows.iter().flatten().map(|&t| u32::from(t != 1)).collect();
    let mask = Tensor::from_vec(mask, ids.dims(), &Device::Cpu).unwrap();
    let hidden = bert.forward_t(&ids, &ids.zeros_like().unwrap(), &mask, train).unwrap();
    let n = hidden.elem_count();
    let w = Tensor::arange(0f32, n as f32, &Device::Cpu).unwrap().sin().unwrap().reshape(hidden.shape()).unwrap();
    let grads = (&hidden * w).unwrap().sum_all().unwrap().backward().unwrap();
    let by_name = store.all().into_iter().filter_map(|(name, v)| grads.get(&v).map(|g| (name, g.clone()))).collect();
    (hidden, by_name)
}
