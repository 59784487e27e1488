//! GIN: "How Powerful are Graph Neural Networks?", Xu, Hu, Leskovec and Jegelka, 2019,
//! arXiv:1810.00826. h_i ← MLP((1 + ε)·h_i + Σ_{j ∈ N(i)} h_j), message passing by
//! `index_select` and `index_add` (both with gradients in candle), then ReLU and BatchNorm (the
//! order of GraphCL's encoder); a readout per layer, concatenated as GraphCL does.

use crate::batch::GraphBatch;
use candle_core::{DType, Module, ModuleT, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use contrastive_core::nn::{batch_norm, BatchNorm};
use contrastive_core::nn::{linear, Linear};
use serde::{Deserialize, Serialize};

/// GIN's ε.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Epsilon {
    /// A constant (GraphCL: 0).
    Fixed(f64),
    /// One learned scalar per layer, starting at 0 (GIN-ε).
    Learnable,
}

/// How node states become a graph embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Readout {
    /// Σ over the graph's nodes (GraphCL).
    Sum,
    /// Mean over the graph's nodes.
    Mean,
    /// Elementwise maximum over the graph's nodes.
    Max,
}

/// Shape of a [`Gin`] encoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GinConfig {
    /// Node-feature width.
    pub input_dim: usize,
    /// Width of every layer.
    pub hidden_dim: usize,
    /// GIN layers.
    pub layers: usize,
    /// ε.
    pub epsilon: Epsilon,
    /// Readout.
    pub readout: Readout,
    /// Concatenate every layer's readout (GraphCL) instead of the last layer's only.
    pub concat_layers: bool,
}

impl GinConfig {
    /// GraphCL's unsupervised TU encoder: 3 layers of 32, ε = 0, sum readout, concatenated.
    pub fn graphcl(input_dim: usize) -> Self {
        Self {
            input_dim,
            hidden_dim: 32,
            layers: 3,
            epsilon: Epsilon::Fixed(0.0),
            readout: Readout::Sum,
            concat_layers: true,
        }
    }

    /// Width of the graph embedding.
    pub fn output_dim(&self) -> usize {
        if self.concat_layers {
            self.hidden_dim * self.layers
        } else {
            self.hidden_dim
        }
    }

    /// Checks the widths.
    pub fn validate(&self) -> contrastive_core::Result<()> {
        if self.input_dim == 0 || self.hidden_dim == 0 || self.layers == 0 {
            return Err(contrastive_core::Error::config("gin", "input_dim, hidden_dim and layers must be positive"));
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
struct GinLayer {
    lin1: Linear,
    lin2: Linear,
    bn: BatchNorm,
    eps: Option<Tensor>,
}

/// The encoder. Variables `mlps.{i}.0.*`, `mlps.{i}.2.*`, `bns.{i}.*` (and `eps.{i}` when
/// learnable), the names of GraphCL's PyTorch module.
#[derive(Clone, Debug)]
pub struct Gin {
    config: GinConfig,
    layers: Vec<GinLayer>,
    /// Where its weights live: the device batches are built on.
    device: candle_core::Device,
}

impl Gin {
    /// Builds the layers under `vb`.
    pub fn new(config: &GinConfig, vb: VarBuilder) -> contrastive_core::Result<Self> {
        config.validate()?;
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let d = if i == 0 { config.input_dim } else { config.hidden_dim };
            let mlp = vb.pp(format!("mlps.{i}"));
            let eps = match config.epsilon {
                Epsilon::Fixed(_) => None,
                Epsilon::Learnable => Some(vb.get_with_hints(1, &format!("eps.{i}"), Init::Const(0.0))?),
            };
            layers.push(GinLayer {
                lin1: linear(d, config.hidden_dim, mlp.pp("0"))?,
                lin2: linear(config.hidden_dim, config.hidden_dim, mlp.pp("2"))?,
                bn: batch_norm(config.hidden_dim, vb.pp(format!("bns.{i}")))?,
                eps,
            });
        }
        Ok(Self { config: config.clone(), layers, device: vb.device().clone() })
    }

    /// The configuration.
    pub fn config(&self) -> &GinConfig {
        &self.config
    }

    fn readout(&self, h: &Tensor, batch: &GraphBatch) -> Result<Tensor> {
        let b = batch.num_graphs();
        let sum = || Tensor::zeros((b, h.dim(1)?), h.dtype(), h.device())?.index_add(&batch.batch, h, 0);
        match self.config.readout {
            Readout::Sum => sum(),
            Readout::Mean => {
                let counts: Vec<f64> = batch.node_counts.iter().map(|&c| c as f64).collect();
                let counts = Tensor::from_vec(counts, (b, 1), h.device())?.to_dtype(h.dtype())?;
                sum()?.broadcast_div(&counts)
            }
            Readout::Max => {
                let mut rows = Vec::with_capacity(b);
                let mut start = 0;
                for &c in &batch.node_counts {
                    rows.push(h.narrow(0, start, c)?.max_keepdim(0)?);
                    start += c;
                }
                Tensor::cat(&rows, 0)
            }
        }
    }

    /// Graph embeddings (B, output_dim); BatchNorm on batch statistics when `train`.
    pub fn forward_t(&self, batch: &GraphBatch, train: bool) -> Result<Tensor> {
        let dtype = self.layers.first().map_or(DType::F32, |l| l.lin1.weight().dtype());
        let mut h = batch.x.to_dtype(dtype)?;
        let mut pooled = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let neighbours = h.zeros_like()?.index_add(&batch.dst, &h.index_select(&batch.src, 0)?, 0)?;
            let own = match (&layer.eps, self.config.epsilon) {
                (Some(eps), _) => h.broadcast_mul(&(eps + 1.0)?)?,
                (None, Epsilon::Fixed(e)) if e != 0.0 => h.affine(1.0 + e, 0.0)?,
                _ => h.clone(),
            };
            let z = layer.lin2.forward(&layer.lin1.forward(&(own + neighbours)?)?.relu()?)?;
            // Core's BatchNorm: PyTorch's running statistics, and SyncBatchNorm over every
            // process's nodes when `collective::set_sync_batch_norm` is set.
            h = layer.bn.forward_t(&z.relu()?, train)?.contiguous()?;
            if self.config.concat_layers {
                pooled.push(self.readout(&h, batch)?);
            }
        }
        if self.config.concat_layers {
            Tensor::cat(&pooled, 1)
        } else {
            self.readout(&h, batch)
        }
    }
}

/// Graphs to embeddings for `contrastive_core::embed`, in eval mode: `embed(&gin, &graphs, 512)`.
impl contrastive_core::Embed<crate::Graph> for Gin {
    fn embed_batch(&self, graphs: Vec<crate::Graph>) -> contrastive_core::Result<Tensor> {
        let refs: Vec<&crate::Graph> = graphs.iter().collect();
        let batch = GraphBatch::new(&refs, &self.device)?;
        Ok(self.forward_t(&batch, false)?)
    }
}

/// GIN as the encoder of GraphCL, CLIP's graph tower or any method over graph batches.
impl contrastive_core::Backbone for Gin {
    type Input = GraphBatch;
    fn encode(&self, batch: &GraphBatch, train: bool) -> Result<Tensor> {
        self.forward_t(batch, train)
    }
    fn dim(&self) -> usize {
        self.config.output_dim()
    }
    fn describe(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or(serde_json::Value::Null)
    }
}
