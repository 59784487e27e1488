//! DINO: "Emerging Properties in Self-Supervised Vision Transformers", Caron et al. 2021,
//! arXiv:2104.14294.
//!
//! Implemented: self-distillation without labels. A student (encoder and [`DinoHead`]) sees every
//! multi-crop view of a sample (2 global, N local); a teacher (the same network, a
//! [`TargetNetwork`] following the student by momentum, cosine from 0.996 to 1) sees the global
//! views; [`DinoLoss`] matches the student's softmax over the prototypes to the teacher's,
//! centred and sharpened, for every pair of different views. The centre moves after each loss
//! (as lightly's `DINOLoss`), the teacher temperature warms up over the first epochs, and the
//! head's last layer is frozen for the first `freeze_last_layer_epochs` epochs (the paper's trick
//! for a stable start; the optimiser skips it). Every view goes through the networks on its own
//! (global and local views differ in size). Defaults: the paper's head (2048 hidden, 256
//! bottleneck, 65,536 prototypes, [`DinoConfig::paper`]).

use super::CropViews;
use crate::collective::{Collective, Local};
use crate::error::{Error, Result};
use crate::loss::{DinoLoss, DinoLossConfig};
use crate::nn::{linear_no_bias, InitScheme, Linear, Momentum, ParamStore, TargetNetwork};
use crate::similarity::l2_normalize;
use crate::train::{ExtraState, Objective, Progress};
use crate::Backbone;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::sync::Arc;

/// The shape of DINO's head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DinoHeadConfig {
    /// Width of the encoder output.
    pub input_dim: usize,
    /// Width of the hidden layers.
    pub hidden_dim: usize,
    /// Width of the l2-normalised bottleneck before the last layer.
    pub bottleneck_dim: usize,
    /// Prototypes: the width of the output the loss sees.
    pub output_dim: usize,
}

impl DinoHeadConfig {
    /// Checks every width is positive.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("input_dim", self.input_dim),
            ("hidden_dim", self.hidden_dim),
            ("bottleneck_dim", self.bottleneck_dim),
            ("output_dim", self.output_dim),
        ] {
            if v == 0 {
                return Err(Error::config(format!("dino.head.{field}"), "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// DINO's head: Linear-GELU-Linear-GELU-Linear to the bottleneck, l2-normalised, then a
/// weight-normalised linear layer without bias to the prototypes (each prototype's weight vector
/// divided by its norm, the norm's scale fixed at 1, as the paper's `norm_last_layer`).
/// Variables: `{0,1,2}.weight`, `{0,1,2}.bias` (normal, std 0.02, and zero, as the paper's init)
/// and `last.weight`.
#[derive(Clone, Debug)]
pub struct DinoHead {
    layers: Vec<Linear>,
    last: Linear,
}

impl DinoHead {
    /// Builds the head under `vb`.
    pub fn new(config: &DinoHeadConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let c = config;
        let shapes = [(c.input_dim, c.hidden_dim), (c.hidden_dim, c.hidden_dim), (c.hidden_dim, c.bottleneck_dim)];
        let mut layers = Vec::with_capacity(3);
        for (i, (input, output)) in shapes.into_iter().enumerate() {
            let vb = vb.pp(i.to_string());
            let weight = vb.get_with_hints((output, input), "weight", Init::Randn { mean: 0.0, stdev: 0.02 })?;
            let bias = vb.get_with_hints(output, "bias", Init::Const(0.0))?;
            layers.push(Linear::new(weight, Some(bias)));
        }
        let last = linear_no_bias(c.bottleneck_dim, c.output_dim, vb.pp("last"))?;
        Ok(Self { layers, last })
    }

    /// The prototype scores of encoder outputs (N, input_dim); `freeze_last` cuts the last layer
    /// from the gradient (the optimiser then leaves it alone).
    pub fn forward(&self, x: &Tensor, freeze_last: bool) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = if i + 1 < self.layers.len() { layer.forward_gelu(&h)? } else { layer.forward(&h)? };
        }
        let h = l2_normalize(&h)?;
        let v = self.last.weight();
        let v = if freeze_last { v.detach() } else { v.clone() };
        let w = v.broadcast_div(&v.sqr()?.sum_keepdim(1)?.sqrt()?)?;
        h.matmul(&w.t()?)
    }
}

/// DINO's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DinoConfig {
    /// The head (its `input_dim` is the encoder's width; its `output_dim` the loss's).
    pub head: DinoHeadConfig,
    /// The loss: temperatures, warm-up, centre momentum.
    pub loss: DinoLossConfig,
    /// The teacher's momentum schedule.
    pub momentum: Momentum,
    /// Epochs at the start during which the head's last layer does not train.
    pub freeze_last_layer_epochs: usize,
}

impl DinoConfig {
    /// The paper's head on an encoder `width` wide (2048 hidden, 256 bottleneck, 65,536
    /// prototypes), its loss (teacher 0.04, student 0.1, centre momentum 0.9, 30 warm-up
    /// epochs), the momentum cosine from 0.996 and the last layer frozen for the first epoch.
    pub fn paper(width: usize) -> Self {
        Self::with_widths(width, 2048, 256, 65536)
    }

    /// The paper's settings with other widths (lightly's CIFAR-10 recipe: 512 hidden, 64
    /// bottleneck, 2048 prototypes).
    pub fn with_widths(width: usize, hidden: usize, bottleneck: usize, prototypes: usize) -> Self {
        Self {
            head: DinoHeadConfig {
                input_dim: width,
                hidden_dim: hidden,
                bottleneck_dim: bottleneck,
                output_dim: prototypes,
            },
            loss: DinoLossConfig { output_dim: prototypes, ..DinoLossConfig::default() },
            momentum: Momentum::Cosine { base: 0.996 },
            freeze_last_layer_epochs: 1,
        }
    }

    /// Checks the head, the momentum, and that the loss reads the head's width.
    pub fn validate(&self) -> Result<()> {
        self.head.validate()?;
        self.momentum.validate()?;
        if self.loss.output_dim != self.head.output_dim {
            return Err(Error::config(
                "dino.loss.output_dim",
                format!("is {}, the head's output is {} wide", self.loss.output_dim, self.head.output_dim),
            ));
        }
        Ok(())
    }
}

/// An encoder and DINO's head: the student, and (as a [`TargetNetwork`]) the teacher.
struct Network<B> {
    encoder: B,
    head: DinoHead,
}

impl<B: Backbone> Network<B> {
    fn new(build: &impl Fn(VarBuilder) -> Result<B>, head: &DinoHeadConfig, vb: VarBuilder) -> Result<Self> {
        let encoder = build(vb.pp("encoder"))?;
        if head.input_dim != encoder.dim() {
            return Err(Error::config(
                "dino.head.input_dim",
                format!("is {}, the encoder's output is {} wide", head.input_dim, encoder.dim()),
            ));
        }
        Ok(Self { encoder, head: DinoHead::new(head, vb.pp("head"))? })
    }

    /// The head's outputs for `views`, stacked along rows in their order. The encoder sees each
    /// view on its own (its BatchNorm takes a view's statistics, as lightly's recipe does); the
    /// head, row by row alike, runs once over them all.
    fn forward<'a>(&self, views: impl Iterator<Item = &'a B::Input>, freeze_last: bool) -> candle_core::Result<Tensor>
    where
        B::Input: 'a,
    {
        let features = views.map(|v| self.encoder.encode(v, true)).collect::<candle_core::Result<Vec<_>>>()?;
        let rows = |f: &Tensor| f.dims().first().copied().unwrap_or(0);
        if let Some((i, f)) = features.iter().enumerate().find(|(_, f)| rows(f) != rows(&features[0])) {
            candle_core::bail!(
                "dino: view {i} has {} rows and view 0 {}; every view must be the batch's",
                rows(f),
                rows(&features[0])
            );
        }
        let stacked = match features.as_slice() {
            [one] => one.clone(),
            _ => Tensor::cat(&features, 0)?,
        };
        self.head.forward(&stacked, freeze_last)
    }
}

/// The DINO objective over any [`Backbone`] and any batch of multi-crop views of its input
/// (`P`). Trainable: the student's `encoder.*` and `head.*`; the teacher and the loss's centre
/// travel in the checkpoint's extra state.
pub struct Dino<B: Backbone, P> {
    config: DinoConfig,
    encoder_config: serde_json::Value,
    store: ParamStore,
    student: Network<B>,
    teacher: TargetNetwork<Network<B>>,
    loss: DinoLoss,
    /// The epoch of the step under way (set before each step).
    epoch: usize,
    collective: Arc<dyn Collective>,
    batch: PhantomData<fn(&P)>,
}

impl<B: Backbone, P: CropViews<View = B::Input>> Dino<B, P> {
    /// DINO on the encoder `build` makes (twice: student and teacher) under the `VarBuilder` it
    /// is given, with seeded initialisation.
    pub fn new(
        build: impl Fn(VarBuilder) -> Result<B>,
        config: DinoConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let store = ParamStore::new(seed, InitScheme::PyTorch);
        let student = Network::new(&build, &config.head, store.var_builder(DType::F32, device))?;
        let teacher = TargetNetwork::new(
            &store,
            |vb| Network::new(&build, &config.head, vb),
            config.momentum,
            DType::F32,
            device,
        )?;
        let loss = DinoLoss::new(config.loss, DType::F32, device)?;
        let encoder_config = student.encoder.describe();
        Ok(Self {
            config,
            encoder_config,
            store,
            student,
            teacher,
            loss,
            epoch: 0,
            collective: Arc::new(Local),
            batch: PhantomData,
        })
    }

    /// Data-parallel: the centre is the mean of every process's teacher outputs.
    pub fn with_collective(mut self, collective: Arc<dyn Collective>) -> Self {
        self.collective = collective;
        self
    }

    /// The student's encoder (its output is the representation to evaluate).
    pub fn encoder(&self) -> &B {
        &self.student.encoder
    }

    /// The teacher's encoder (the paper evaluates it too).
    pub fn teacher_encoder(&self) -> &B {
        &self.teacher.network().encoder
    }

    /// Makes the teacher a copy of the student again (after loading weights into it).
    pub fn sync_teacher(&self) -> Result<()> {
        self.teacher.sync(&self.store)
    }

    /// The loss's centre (1, prototypes).
    pub fn center(&self) -> &Tensor {
        self.loss.center()
    }
}

impl<B: Backbone, P: CropViews<View = B::Input>> Objective for Dino<B, P> {
    type Batch = P;

    fn before_step(&mut self, progress: &Progress) -> candle_core::Result<()> {
        self.epoch = progress.epoch;
        Ok(())
    }

    fn loss(&mut self, batch: &P) -> candle_core::Result<Tensor> {
        let freeze = self.epoch < self.config.freeze_last_layer_epochs;
        let globals = batch.global_views();
        let teacher = self.teacher.network().forward(globals.iter(), false)?.detach();
        let student = self.student.forward(globals.iter().chain(batch.local_views()), freeze)?;
        let loss = self.loss.loss_stacked(&teacher, globals.len(), &student, self.epoch)?;
        self.loss.update_center(std::slice::from_ref(&teacher), self.collective.as_ref())?;
        Ok(loss)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    /// The teacher follows the student with the momentum of this step.
    fn after_step(&mut self, progress: &Progress) -> candle_core::Result<()> {
        self.teacher.update(&self.store, progress.step, progress.total_steps).map_err(candle_core::Error::wrap)?;
        Ok(())
    }

    /// The teacher's temperature of the step (it warms up over the first epochs).
    fn step_figures(&self) -> candle_core::Result<Vec<(&'static str, f64)>> {
        Ok(vec![("teacher_temperature", self.loss.teacher_temperature(self.epoch))])
    }

    fn extra_state(&self) -> Result<ExtraState> {
        let mut tensors = self.teacher.state("teacher.");
        tensors.insert("center".into(), self.loss.center().clone());
        let mut state = ExtraState { tensors, json: serde_json::json!({}) };
        state.insert("student_encoder", self.student.encoder.extra_state()?);
        state.insert("teacher_encoder", self.teacher.network().encoder.extra_state()?);
        Ok(state)
    }

    fn load_extra_state(&mut self, state: ExtraState) -> Result<()> {
        let origin = std::path::Path::new("extra.safetensors");
        self.teacher.load_state(&state.tensors, "teacher.", origin)?;
        let Some(center) = state.tensors.get("center") else {
            return Err(Error::checkpoint(origin, "DINO's loss centre `center` is missing"));
        };
        self.loss.set_center(center.clone())?;
        self.student.encoder.load_extra_state(state.part("student_encoder"))?;
        self.teacher.network_mut().encoder.load_extra_state(state.part("teacher_encoder"))
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "method": "dino", "dino": { "encoder": self.encoder_config, "settings": self.config } })
    }
}
