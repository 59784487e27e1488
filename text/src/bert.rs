//! A trainable BERT (Devlin et al. 2019, arXiv:1810.04805) that loads Hugging Face weights.
//!
//! Its layout and variable names follow Hugging Face's `BertModel` (and candle-transformers'
//! port of it), so the same `model.safetensors` loads. Unlike candle-transformers' BERT, whose
//! dropout is a no-op and whose LayerNorm passes no gradient, this one has seeded dropout on the
//! embeddings, the attention probabilities and every hidden state in training, and the core's
//! LayerNorm with its fused backward: SimCSE, whose only augmentation is dropout, needs both.

use crate::config::{Activation, BertConfig, ModelType};
use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{embedding, Embedding, VarBuilder};
use contrastive_core::nn::{layer_norm, LayerNorm, SeededDropout};
use contrastive_core::nn::{linear, Linear};

struct SelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    heads: usize,
    dropout: SeededDropout,
}

struct Layer {
    attention: SelfAttention,
    attention_output: Linear,
    attention_norm: LayerNorm,
    attention_dropout: SeededDropout,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    output_dropout: SeededDropout,
}

/// BERT's encoder: token ids (B, L) to hidden states (B, L, H).
pub struct Bert {
    config: BertConfig,
    word: Embedding,
    position: Embedding,
    /// Token type embeddings (none for MPNet).
    token_type: Option<Embedding>,
    /// MPNet's relative position bias: (buckets, heads).
    relative_bias: Option<Embedding>,
    embedding_norm: LayerNorm,
    embedding_dropout: SeededDropout,
    layers: Vec<Layer>,
}

fn dropout(p: f64, seed: u64, name: &str) -> Result<SeededDropout> {
    SeededDropout::new(p, seed, name).map_err(|e| candle_core::Error::Msg(e.to_string()))
}

impl Bert {
    /// Builds the layers under `vb` (Hugging Face names: `embeddings.word_embeddings`,
    /// `encoder.layer.{i}.attention.self.query`, ...); each dropout draws from its own stream of
    /// `seed`.
    pub fn new(config: &BertConfig, vb: VarBuilder, seed: u64) -> contrastive_core::Result<Self> {
        config.validate()?;
        let (h, p) = (config.hidden_size, config.hidden_dropout_prob);
        let e = vb.pp("embeddings");
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        // MPNet names the attention's parts `attn.q`, `attn.k`, `attn.v`, `attn.o` and its
        // LayerNorm `attention.LayerNorm`; the dropout streams keep BERT's names.
        let mpnet = config.model_type == ModelType::Mpnet;
        let [query, key, value, out, norm] = if mpnet {
            ["attn.q", "attn.k", "attn.v", "attn.o", "LayerNorm"]
        } else {
            ["self.query", "self.key", "self.value", "output.dense", "output.LayerNorm"]
        };
        for i in 0..config.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            let name = |s: &str| format!("encoder.layer.{i}.{s}");
            layers.push(Layer {
                attention: SelfAttention {
                    query: linear(h, h, a.pp(query))?,
                    key: linear(h, h, a.pp(key))?,
                    value: linear(h, h, a.pp(value))?,
                    heads: config.num_attention_heads,
                    dropout: dropout(config.attention_probs_dropout_prob, seed, &name("attention.probs"))?,
                },
                attention_output: linear(h, h, a.pp(out))?,
                attention_norm: layer_norm(h, config.layer_norm_eps, a.pp(norm))?,
                attention_dropout: dropout(p, seed, &name("attention.output"))?,
                intermediate: linear(h, config.intermediate_size, l.pp("intermediate.dense"))?,
                output: linear(config.intermediate_size, h, l.pp("output.dense"))?,
                output_norm: layer_norm(h, config.layer_norm_eps, l.pp("output.LayerNorm"))?,
                output_dropout: dropout(p, seed, &name("output"))?,
            });
        }
        Ok(Self {
            config: config.clone(),
            word: embedding(config.vocab_size, h, e.pp("word_embeddings"))?,
            position: embedding(config.max_position_embeddings, h, e.pp("position_embeddings"))?,
            token_type: match config.model_type.has_token_types() {
                true => Some(embedding(config.type_vocab_size, h, e.pp("token_type_embeddings"))?),
                false => None,
            },
            relative_bias: match mpnet {
                true => Some(embedding(
                    config.relative_attention_num_buckets,
                    config.num_attention_heads,
                    vb.pp("encoder.relative_attention_bias"),
                )?),
                false => None,
            },
            embedding_norm: layer_norm(h, config.layer_norm_eps, e.pp("LayerNorm"))?,
            embedding_dropout: dropout(p, seed, "embeddings")?,
            layers,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Every dropout stream, for checkpoints (their positions make a resumed run repeat).
    pub fn dropouts(&self) -> Vec<&SeededDropout> {
        let mut all = vec![&self.embedding_dropout];
        for l in &self.layers {
            all.extend([&l.attention.dropout, &l.attention_dropout, &l.output_dropout]);
        }
        all
    }

    /// The dropout streams' positions as JSON (`{"dropout_positions": [...]}`), for a checkpoint's
    /// extra state: a resumed run then draws the masks an uninterrupted one would have.
    pub fn dropout_state(&self) -> serde_json::Value {
        contrastive_core::nn::stream_positions(&self.dropouts())
    }

    /// Restores what [`Bert::dropout_state`] returned; a count that does not match the layers is
    /// an error.
    pub fn load_dropout_state(&self, state: &serde_json::Value) -> contrastive_core::Result<()> {
        contrastive_core::nn::restore_stream_positions(&self.dropouts(), state)
    }

    /// The feed-forward layer's activation of `layer(x)` (the erf GELU fused into the layer).
    fn activated(&self, layer: &Linear, x: &Tensor) -> Result<Tensor> {
        match self.config.hidden_act {
            Activation::Gelu => layer.forward_gelu(x),
            Activation::GeluTanh => layer.forward(x)?.gelu(),
            Activation::Relu => layer.forward(x)?.relu(),
        }
    }

    /// Hidden states (B, L, H) of token ids (B, L) with their type ids and attention mask (1 for
    /// tokens, 0 for padding); dropout is on when `train`.
    pub fn forward_t(&self, ids: &Tensor, type_ids: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        self.run(ids, type_ids, mask, train, false)
    }

    /// Hidden states for inference (eval mode, no gradient): each layer's output is cut from the
    /// graph, so only one layer's activations are alive at a time. With trainable variables,
    /// `forward_t(.., false)` keeps every layer's until the result is dropped: 4.6 GB for 64
    /// sentences of 256 tokens through MiniLM, where this peaks at one layer's.
    pub fn forward_inference(&self, ids: &Tensor, type_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        self.run(ids, type_ids, mask, false, true)
    }

    /// [`Bert::forward_t`]'s hidden states (dropout on when `train`, drawing the same masks) cut
    /// from the graph layer by layer, as [`Bert::forward_inference`] does: gradient caching's
    /// first pass, which needs the values and not their gradient.
    pub fn forward_without_graph(&self, ids: &Tensor, type_ids: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        self.run(ids, type_ids, mask, train, true)
    }

    fn run(&self, ids: &Tensor, type_ids: &Tensor, mask: &Tensor, train: bool, detach: bool) -> Result<Tensor> {
        let cut = |t: Tensor| if detach { t.detach() } else { t };
        let (_, l) = ids.dims2()?;
        if l > self.config.max_tokens() {
            candle_core::bail!("BERT: {l} tokens, the model takes at most {}", self.config.max_tokens());
        }
        let positions = self.positions(ids)?;
        // As PyTorch's `padding_idx`: the padding rows of the word (and RoBERTa's position)
        // embeddings take part in the forward pass but receive no gradient.
        let pad = self.config.padding_id();
        let word = no_gradient_where(&self.word.forward(ids)?, ids, pad)?;
        let position = match self.config.model_type.positions_after_padding() {
            true => no_gradient_where(&self.position.forward(&positions)?, &positions, pad)?,
            false => self.position.forward(&positions)?,
        };
        let mut x = (word + position)?;
        if let Some(token_type) = &self.token_type {
            x = x.add(&token_type.forward(type_ids)?)?;
        }
        let mut h = cut(self.embedding_dropout.forward_t(&self.embedding_norm.forward(&x)?, train)?);
        // Padding gets a large negative score before the softmax (finite, so no NaN appears).
        let dtype = h.dtype();
        let bias = ((mask.to_dtype(dtype)? - 1.0)? * 1e4)?;
        let position_bias = match &self.relative_bias {
            Some(table) => Some(self.position_bias(table, l, ids.device())?),
            None => None,
        };
        for layer in &self.layers {
            h = cut(layer.forward(&h, &bias, position_bias.as_ref(), train, self)?);
        }
        Ok(h)
    }

    /// MPNet's relative position bias (heads, L, L): entry (h, i, j) is head h's learnt bias for
    /// the bucket of key j's offset from query i.
    fn position_bias(&self, table: &Embedding, len: usize, device: &Device) -> Result<Tensor> {
        let buckets = crate::config::MPNET_BUCKETS;
        let ids: Vec<u32> = (0..len)
            .flat_map(|i| (0..len).map(move |j| relative_position_bucket(j as i64 - i as i64, buckets, 128)))
            .collect();
        let ids = Tensor::from_vec(ids, (len, len), device)?;
        // (L, L, heads) -> (heads, L, L)
        table.forward(&ids)?.permute((2, 0, 1))?.contiguous()
    }

    /// Position ids (B, L): 0, 1, 2, ... for BERT; for RoBERTa, each token that is not padding
    /// numbered from the padding id + 1 on and padding at the padding id (Hugging Face's
    /// `create_position_ids_from_input_ids`).
    fn positions(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        if !self.config.model_type.positions_after_padding() {
            return Tensor::arange(0u32, l as u32, ids.device())?.unsqueeze(0)?.broadcast_as((b, l))?.contiguous();
        }
        let pad = self.config.padding_id();
        let rows = ids.to_dtype(candle_core::DType::U32)?.to_vec2::<u32>()?;
        let positions: Vec<u32> = rows
            .iter()
            .flat_map(|row| {
                let mut seen = 0;
                row.iter()
                    .map(move |&t| {
                        seen += u32::from(t != pad);
                        if t == pad {
                            pad
                        } else {
                            pad + seen
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        Tensor::from_vec(positions, (b, l), ids.device())
    }
}

/// `x` (B, L, H) whose rows at tokens `ids == pad` pass no gradient back.
fn no_gradient_where(x: &Tensor, ids: &Tensor, pad: u32) -> Result<Tensor> {
    let is_pad = ids.to_dtype(candle_core::DType::U32)?.eq(pad)?.unsqueeze(2)?.broadcast_as(x.shape())?;
    is_pad.where_cond(&x.detach(), x)
}

/// The bucket of a key's offset `relative` (key position minus query position) from its query,
/// as MPNet (after T5, Raffel et al. 2020) numbers them: half the buckets for keys before the
/// query, half for keys after; in each half, offsets below a quarter of the buckets have a
/// bucket each and larger ones share buckets spaced logarithmically up to `max_distance`.
pub fn relative_position_bucket(relative: i64, buckets: usize, max_distance: usize) -> u32 {
    let half = (buckets / 2) as i64;
    let n = -relative;
    let mut bucket = if n < 0 { half } else { 0 };
    let n = n.abs();
    let exact = half / 2;
    bucket += if n < exact {
        n
    } else {
        // In f32, as PyTorch computes it; truncated toward zero by `.to(torch.long)`.
        let log_ratio = (n as f32 / exact as f32).ln() / (max_distance as f64 / exact as f64).ln() as f32;
        (exact + (log_ratio * (half - exact) as f32) as i64).min(half - 1)
    };
    bucket as u32
}

impl Layer {
    fn forward(
        &self,
        x: &Tensor,
        bias: &Tensor,
        position_bias: Option<&Tensor>,
        train: bool,
        bert: &Bert,
    ) -> Result<Tensor> {
        let a = self.attention.forward(x, bias, position_bias, train)?;
        let a = self.attention_dropout.forward_t(&self.attention_output.forward(&a)?, train)?;
        let h = self.attention_norm.forward(&(a + x)?)?;
        let f = bert.activated(&self.intermediate, &h)?;
        let f = self.output_dropout.forward_t(&self.output.forward(&f)?, train)?;
        self.output_norm.forward(&(f + h)?)
    }
}

impl SelfAttention {
    /// `key_bias` (B, L): 0 for tokens, -10,000 for padding; `position_bias` (heads, L, L):
    /// MPNet's.
    fn forward(&self, x: &Tensor, key_bias: &Tensor, position_bias: Option<&Tensor>, train: bool) -> Result<Tensor> {
        let (q, k, v) = (self.query.forward(x)?, self.key.forward(x)?, self.value.forward(x)?);
        match position_bias {
            // The core's fused op: heads read in place, probabilities recomputed in the backward pass.
            None => contrastive_core::nn::multi_head_attention(&q, &k, &v, key_bias, self.heads, &self.dropout, train),
            Some(p) => contrastive_core::nn::multi_head_attention_with_position_bias(
                &q,
                &k,
                &v,
                key_bias,
                p,
                self.heads,
                &self.dropout,
                train,
            ),
        }
    }
}

/// Loads Hugging Face BERT (or RoBERTa, XLM-RoBERTa, MPNet) weights into the `embeddings.*` and
/// `encoder.*` variables of `store`: names with or without a `bert.` (`roberta.`, `mpnet.`) prefix,
/// LayerNorm `gamma`/`beta` as `weight`/`bias`; `pooler.*`, the `cls.*` and `lm_head.*` heads and
/// the `embeddings.position_ids` and `token_type_ids` buffers are left out. A missing tensor or a
/// shape that differs from the config is an error naming the tensor, both shapes and the file.
/// Reads `model.safetensors`, or a `pytorch_model.bin` (by its extension) through candle's pickle
/// reader.
pub fn load_bert_weights(
    store: &contrastive_core::nn::ParamStore,
    path: &std::path::Path,
    device: &Device,
) -> contrastive_core::Result<usize> {
    use contrastive_core::Error;
    let raw: Vec<(String, Tensor)> = if path.extension().is_some_and(|e| e == "bin") {
        candle_core::pickle::read_all(path)
            .map_err(|e| Error::checkpoint(path, format!("cannot read the PyTorch file: {e}")))?
    } else {
        candle_core::safetensors::load(path, device)
            .map_err(|e| Error::checkpoint(path, format!("cannot read safetensors: {e}")))?
            .into_iter()
            .collect()
    };
    let mut tensors = std::collections::HashMap::new();
    for (name, t) in raw {
        let name = name
            .strip_prefix("bert.")
            .or_else(|| name.strip_prefix("roberta."))
            .or_else(|| name.strip_prefix("mpnet."))
            .unwrap_or(&name)
            .replace("LayerNorm.gamma", "LayerNorm.weight")
            .replace("LayerNorm.beta", "LayerNorm.bias");
        tensors.insert(name, t);
    }
    let mut loaded = 0;
    // Only BERT's own variables: a pooler MLP or head in the same store is not in the file.
    for (name, var) in
        store.all().into_iter().filter(|(n, _)| n.starts_with("embeddings.") || n.starts_with("encoder."))
    {
        let t = tensors.get(&name).ok_or_else(|| Error::checkpoint(path, format!("tensor `{name}` is missing")))?;
        if t.dims() != var.dims() {
            return Err(Error::checkpoint(
                path,
                format!("tensor `{name}` has shape {:?}, the config asks for {:?}", t.dims(), var.dims()),
            ));
        }
        contrastive_core::nn::check_finite(&name, t, path)?;
        var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
        loaded += 1;
    }
    // Weights of the encoder that the model has no place for mean the config describes another
    // model (fewer layers, say): refused, not silently dropped. Buffers (`position_ids`) and other
    // modules (the pooler, heads) are not the encoder's weights.
    let names = store.all().into_iter().map(|(n, _)| n).collect::<std::collections::HashSet<_>>();
    let mut unused: Vec<&String> = tensors
        .keys()
        .filter(|n| (n.starts_with("embeddings.") || n.starts_with("encoder.")) && !n.ends_with("_ids"))
        .filter(|n| !names.contains(*n))
        .collect();
    unused.sort();
    if let Some(first) = unused.first() {
        return Err(Error::checkpoint(
            path,
            format!(
                "{} encoder tensors have no place in the model, e.g. `{first}`: the config (num_hidden_layers, \
                 sizes) describes another model than these weights",
                unused.len()
            ),
        ));
    }
    Ok(loaded)
}
