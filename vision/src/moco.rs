//! MoCo v2: "Improved Baselines with Momentum Contrastive Learning", Chen, Fan, Girshick and He,
//! 2020, arXiv:2003.04297 (MoCo: He et al. 2020, arXiv:1911.05722).
//!
//! Implemented: a query encoder and head trained by InfoNCE against the key of the other view and
//! a queue of the last K keys; a key encoder and head that get no gradient and follow the query
//! network as k ← m·k + (1 - m)·q after every step; temperature 0.2; an optional symmetric loss
//! (both views as queries, the mean of the two losses, both views' keys enqueued).
//!
//! Shuffle-BN, in a single process: MoCo shuffles the key batch across GPUs so that BatchNorm's
//! batch statistics cannot leak which query and key belong together (a query and its key
//! normalised over the same set of samples let the model find the positive through the
//! statistics, and it learns little). One process has no GPUs to shuffle across, so this does
//! what shuffle-BN amounts to ("split BatchNorm"): both networks normalise in `bn_groups` groups,
//! the queries in contiguous groups of rows and the keys in groups of a random permutation (put
//! back in order afterwards), so the samples that share a query's statistics are not those that
//! share its key's. The permutation is drawn from the run's seed and the step, so runs
//! repeat. With `bn_groups = 1` the groups and the shuffle are off.
//!
//! On several processes ([`MoCo::with_collective`]) it is MoCo's own shuffle-BN: every process
//! normalises its batch in `bn_groups` groups (so the global batch in `bn_groups x world_size`),
//! the key batch is gathered from every process, permuted, and each process computes the keys of
//! its slice of the permutation; the keys and queries are gathered, every process computes the
//! global batch's loss (back-propagating into its own queries), and every process's keys join
//! the queue, in the global batch's order. N processes of batch B with
//! `bn_groups` g train as one process of batch N x B with N x g groups. `shuffle_bn: false`
//! computes each process's keys on its own rows, in the queries' groups.

use crate::batch::ViewBatch;
use crate::encoder::{Encoder, EncoderConfig};
use candle_core::{DType, Device, Tensor};
use contrastive_core::collective::{gather_rows, Collective, GlobalRows, Local};
use contrastive_core::grad_cache::InBatch;
use contrastive_core::loss::info_nce;
use contrastive_core::nn::{InitScheme, Momentum, ParamStore, ProjectionHead, ProjectionHeadConfig, TargetNetwork};
use contrastive_core::rng::keyed_rng;
use contrastive_core::sampling::MemoryQueue;
use contrastive_core::train::{ExtraState, Objective, Progress};
use contrastive_core::{Backbone, Error, Result};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// MoCo v2's settings for any encoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MoCoSettings {
    /// The projection head (its `input_dim` must be the encoder's width).
    pub head: ProjectionHeadConfig,
    /// Keys in the queue (MoCo: 65,536).
    pub queue_size: usize,
    /// InfoNCE temperature (MoCo v2: 0.2).
    pub temperature: f64,
    /// Momentum of the key network.
    pub momentum: f64,
    /// Both views as queries.
    pub symmetric: bool,
    /// Groups BatchNorm normalises in (per process), the key batch shuffled across them (1 on
    /// one process: off).
    pub bn_groups: usize,
    /// Shuffle the key batch across the BatchNorm groups (shuffle-BN); off, keys are normalised
    /// in the queries' groups.
    #[serde(default = "shuffle_bn_default")]
    pub shuffle_bn: bool,
}

fn shuffle_bn_default() -> bool {
    true
}

impl Default for MoCoSettings {
    /// MoCo v2's head shape (hidden 2048, output 128) on a 256-wide encoder, queue 65,536,
    /// temperature 0.2, momentum 0.99, one-directional loss, 4 BatchNorm groups, shuffle-BN.
    fn default() -> Self {
        Self {
            head: ProjectionHeadConfig::moco_v2(256),
            queue_size: 65536,
            temperature: 0.2,
            momentum: 0.99,
            symmetric: false,
            bn_groups: 4,
            shuffle_bn: true,
        }
    }
}

impl MoCoSettings {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(Error::config("moco.temperature", format!("must be positive, got {}", self.temperature)));
        }
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(Error::config("moco.momentum", format!("must be in [0, 1], got {}", self.momentum)));
        }
        if self.queue_size == 0 || self.bn_groups == 0 {
            return Err(Error::config("moco", "queue_size and bn_groups must be positive"));
        }
        self.head.validate()
    }
}

/// MoCo v2 with one of this crate's encoders (the settings are flattened beside `encoder` in
/// JSON).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct MoCoConfig {
    /// The encoder.
    pub encoder: EncoderConfig,
    /// Everything else.
    #[serde(flatten)]
    pub moco: MoCoSettings,
}

/// An encoder and its head: the query network, and (as a [`TargetNetwork`]) the key network.
struct Network<B> {
    encoder: B,
    head: ProjectionHead,
}

impl<B: Backbone<Input = Tensor>> Network<B> {
    fn new(
        build: &impl Fn(candle_nn::VarBuilder) -> Result<B>,
        head: &ProjectionHeadConfig,
        vb: candle_nn::VarBuilder,
    ) -> Result<Self> {
        let encoder = build(vb.pp("encoder"))?;
        if head.input_dim != encoder.dim() {
            return Err(Error::config(
                "moco.head.input_dim",
                format!("is {}, the encoder's output is {} wide", head.input_dim, encoder.dim()),
            ));
        }
        let head = ProjectionHead::new(head, vb.pp("head"))?;
        Ok(Self { encoder, head })
    }

    /// Projections of `x` in training mode, BatchNorm computed per group of rows.
    fn project(&self, x: &Tensor, groups: usize) -> candle_core::Result<Tensor> {
        let n = x.dim(0)?;
        let groups = groups.clamp(1, n.max(1));
        let size = n.div_ceil(groups);
        let mut parts = Vec::with_capacity(groups);
        for start in (0..n).step_by(size) {
            let chunk = x.narrow(0, start, size.min(n - start))?;
            parts.push(self.head.forward_t(&self.encoder.encode(&chunk, true)?, true)?);
        }
        Tensor::cat(&parts, 0)
    }
}

/// The MoCo v2 objective. Its trainable store is the query network (`encoder.*`, `head.*`); the
/// key network and the queue travel in the checkpoint's extra state.
pub struct MoCo<B: Backbone<Input = Tensor> = Encoder> {
    config: MoCoSettings,
    /// The encoder's configuration or [`Backbone::describe`], saved with every checkpoint.
    encoder_config: serde_json::Value,
    store: ParamStore,
    query: Network<B>,
    key: TargetNetwork<Network<B>>,
    queue: MemoryQueue,
    /// This step's keys, for the queue after the optimiser step (set by the loss, which gradient
    /// caching calls through a shared reference).
    pending: Mutex<Option<Tensor>>,
    seed: u64,
    steps: u64,
    collective: Arc<dyn Collective>,
}

impl MoCo<Encoder> {
    /// Builds both networks on one of this crate's encoders (the key network a copy of the query
    /// network) and an empty queue.
    pub fn new(config: MoCoConfig, seed: u64, device: &Device) -> Result<Self> {
        let described =
            serde_json::to_value(&config.encoder).map_err(|e| Error::config("moco.encoder", e.to_string()))?;
        let mut model = Self::with_backbone(|vb| Encoder::new(&config.encoder, vb), config.moco, seed, device)?;
        model.encoder_config = described;
        Ok(model)
    }
}

impl<B: Backbone<Input = Tensor>> MoCo<B> {
    /// MoCo v2 on a user's own encoder: `build` makes it (twice: the query and the key network)
    /// under the `VarBuilder` it is given.
    pub fn with_backbone(
        build: impl Fn(candle_nn::VarBuilder) -> Result<B>,
        config: MoCoSettings,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let store = ParamStore::new(seed, InitScheme::PyTorch);
        let query = Network::new(&build, &config.head, store.var_builder(DType::F32, device))?;
        let momentum = Momentum::Constant(config.momentum);
        let key =
            TargetNetwork::new(&store, |vb| Network::new(&build, &config.head, vb), momentum, DType::F32, device)?;
        let queue = MemoryQueue::new(config.queue_size, config.head.output_dim)?;
        let encoder_config = query.encoder.describe();
        Ok(Self {
            config,
            encoder_config,
            store,
            query,
            key,
            queue,
            pending: Mutex::new(None),
            seed,
            steps: 0,
            collective: Arc::new(Local),
        })
    }

    /// The query encoder (the representation to evaluate).
    pub fn encoder(&self) -> &B {
        &self.query.encoder
    }

    /// The key network's variables.
    pub fn key_params(&self) -> &ParamStore {
        self.key.params()
    }

    /// Makes the key network a copy of the query network again (after loading weights into it).
    pub fn sync_key_network(&self) -> Result<()> {
        self.key.sync(&self.store)
    }

    /// The queue of keys.
    pub fn queue(&self) -> &MemoryQueue {
        &self.queue
    }

    /// Trains over `collective`'s processes with shuffle-BN across them, the queue filled with
    /// every process's keys (the module documentation says how). Pair it with
    /// [`Trainer::with_collective`](contrastive_core::train::Trainer::with_collective) on the same
    /// collective and a loader's [`Shard`](contrastive_core::data::Shard).
    pub fn with_collective(mut self, collective: Arc<dyn Collective>) -> Self {
        self.collective = collective;
        self
    }

    /// The global batch's keys in order (detached), given this process's rows `x`. With
    /// shuffle-BN, the key network runs on this process's slice of the global batch permuted, in
    /// `bn_groups` groups, and the keys are put back in order.
    fn keys(&self, x: &Tensor, view: u64) -> candle_core::Result<Tensor> {
        let c = self.collective.as_ref();
        let wrap = candle_core::Error::wrap;
        let groups = self.config.bn_groups;
        if !self.config.shuffle_bn || groups * c.world_size() <= 1 {
            let own = self.key.network().project(x, groups)?.detach();
            return gather_rows(&own, c).map_err(wrap);
        }
        let rows = GlobalRows::of(x.dim(0)?, c).map_err(wrap)?;
        let everyone = gather_rows(&x.detach(), c).map_err(wrap)?;
        let mut order: Vec<u32> = (0..rows.total as u32).collect();
        order.shuffle(&mut keyed_rng(self.seed, &[0x6d6f636f, self.steps, view]));
        let mut inverse = vec![0u32; rows.total];
        for (pos, &i) in order.iter().enumerate() {
            inverse[i as usize] = pos as u32;
        }
        let dev = x.device();
        let slice = &order[rows.first..rows.first + rows.rows];
        let shuffled = everyone.index_select(&Tensor::new(slice, dev)?, 0)?;
        let k = self.key.network().project(&shuffled, groups)?.detach();
        gather_rows(&k, c).map_err(wrap)?.index_select(&Tensor::new(inverse.as_slice(), dev)?, 0)
    }

    fn direction(&self, q: &Tensor, k: &Tensor) -> candle_core::Result<Tensor> {
        info_nce(q, k, self.queue.keys(), self.config.temperature)
    }
}

/// Gradient caching ([`GradCache`](contrastive_core::grad_cache::GradCache)): the queries go
/// through the query network a chunk at a time (their `bn_groups` groups within each chunk); the
/// keys, which carry no gradient, are computed once a step over the whole batch, with shuffle-BN
/// as without caching. The negatives are the queue's and the batch's other keys, as always.
impl<B: Backbone<Input = Tensor>> InBatch for MoCo<B> {
    fn rows(&self, batch: &ViewBatch) -> Result<usize> {
        Ok(batch.first.dim(0)?)
    }

    /// This process's queries of rows `rows`: of the first view, and of the second too when the
    /// loss is symmetric.
    fn embed_rows(&self, batch: &ViewBatch, rows: Range<usize>) -> candle_core::Result<Vec<Tensor>> {
        let groups = self.config.bn_groups;
        let take = |x: &Tensor| x.narrow(0, rows.start, rows.len());
        let mut queries = vec![self.query.project(&take(&batch.first)?, groups)?];
        if self.config.symmetric {
            queries.push(self.query.project(&take(&batch.second)?, groups)?);
        }
        Ok(queries)
    }

    /// The query encoder's own state (a dropout stream): what its chunks replay. The key network
    /// and the queue are left alone between chunks.
    fn forward_state(&self) -> Result<ExtraState> {
        self.query.encoder.extra_state()
    }

    fn load_forward_state(&mut self, state: ExtraState) -> Result<()> {
        self.query.encoder.load_extra_state(state)
    }

    /// InfoNCE of every process's queries against the keys of the other view and the queue.
    /// Every process computes the loss of the global batch (its own queries back-propagate): the
    /// other queries' keys are negatives too, as on one process; the queue takes every process's
    /// keys.
    fn loss_of_embeddings(&self, batch: &ViewBatch, queries: &[Tensor]) -> candle_core::Result<Tensor> {
        let gather = |q: &Tensor| gather_rows(q, self.collective.as_ref()).map_err(candle_core::Error::wrap);
        let (loss, keys) = match (queries, self.config.symmetric) {
            ([q1], false) => {
                let k2 = self.keys(&batch.second, 2)?;
                (self.direction(&gather(q1)?, &k2)?, k2)
            }
            ([q1, q2], true) => {
                let k2 = self.keys(&batch.second, 2)?;
                let k1 = self.keys(&batch.first, 1)?;
                let loss = ((self.direction(&gather(q1)?, &k2)? + self.direction(&gather(q2)?, &k1)?)? * 0.5)?;
                (loss, Tensor::cat(&[k2, k1], 0)?)
            }
            (other, symmetric) => {
                candle_core::bail!("MoCo (symmetric: {symmetric}): {} query embeddings", other.len())
            }
        };
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(keys);
        Ok(loss)
    }
}

impl<B: Backbone<Input = Tensor>> Objective for MoCo<B> {
    type Batch = ViewBatch;

    fn loss(&mut self, batch: &ViewBatch) -> candle_core::Result<Tensor> {
        let rows = self.rows(batch).map_err(candle_core::Error::wrap)?;
        let queries = self.embed_rows(batch, 0..rows)?;
        self.loss_of_embeddings(batch, &queries)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    /// The (fixed) temperature, logged with each step beside the learnt ones of other methods.
    fn step_figures(&self) -> candle_core::Result<Vec<(&'static str, f64)>> {
        Ok(vec![("temperature", self.config.temperature)])
    }

    /// After the optimizer step: the key network follows the query network, and this batch's
    /// keys join the queue (MoCo's order: its next forward pass sees the updated key network).
    fn after_step(&mut self, progress: &Progress) -> candle_core::Result<()> {
        self.key
            .update(&self.store, progress.step, progress.total_steps)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let pending = self.pending.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(keys) = pending {
            let keys = contrastive_core::similarity::l2_normalize(&keys)?;
            self.queue.enqueue(&keys)?;
        }
        self.steps += 1;
        Ok(())
    }

    fn extra_state(&self) -> Result<ExtraState> {
        let mut tensors = self.key.state("key.");
        if let Some(keys) = self.queue.keys() {
            tensors.insert("queue".into(), keys.clone());
        }
        let mut state = ExtraState { tensors, json: serde_json::json!({ "steps": self.steps }) };
        // The backbones' own state (dropout streams), so a resume is exact.
        state.insert("query_encoder", self.query.encoder.extra_state()?);
        state.insert("key_encoder", self.key.network().encoder.extra_state()?);
        Ok(state)
    }

    fn load_extra_state(&mut self, state: ExtraState) -> Result<()> {
        let origin = std::path::Path::new("extra.safetensors");
        self.key.load_state(&state.tensors, "key.", origin)?;
        self.queue = MemoryQueue::new(self.config.queue_size, self.config.head.output_dim)?;
        if let Some(q) = state.tensors.get("queue") {
            self.queue.enqueue(q)?;
        }
        self.steps = state.json.get("steps").and_then(|v| v.as_u64()).unwrap_or(0);
        *self.pending.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
        self.query.encoder.load_extra_state(state.part("query_encoder"))?;
        self.key.network_mut().encoder.load_extra_state(state.part("key_encoder"))
    }

    fn config(&self) -> serde_json::Value {
        // The shape MoCoConfig serialises to, so checkpoints of either constructor compare.
        let mut moco = serde_json::to_value(&self.config).unwrap_or_default();
        if let Some(fields) = moco.as_object_mut() {
            fields.insert("encoder".into(), self.encoder_config.clone());
        }
        serde_json::json!({ "method": "moco_v2", "moco": moco })
    }
}
