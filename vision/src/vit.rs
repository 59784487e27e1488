//! A trainable Vision Transformer (Dosovitskiy et al. 2021, arXiv:2010.11929) in timm's layout
//! and names (`patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.{i}.norm1`, `attn.qkv`,
//! `attn.proj`, `norm2`, `mlp.fc1`, `mlp.fc2`, `norm`), so timm's `vit_tiny/small/base_patch16_*`
//! weights load: pre-norm blocks, a class token whose final state is the feature, learnt position
//! embeddings resampled to the input's grid as timm resamples them (bicubic with antialiasing, in
//! PyTorch's arithmetic), and stochastic depth (drop path) rising linearly over the blocks.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use contrastive_core::nn::{layer_norm, linear, LayerNorm, Linear, SeededDropout};
use serde::{Deserialize, Serialize};

/// A ViT's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    /// Side of the square patches, in pixels.
    pub patch_size: usize,
    /// Side of the images the position embeddings are laid out for (other sizes resample them).
    pub image_size: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Token width.
    pub dim: usize,
    /// Transformer blocks.
    pub depth: usize,
    /// Attention heads (must divide `dim`).
    pub heads: usize,
    /// The MLP's hidden width.
    pub mlp_dim: usize,
    /// Stochastic depth of the last block (0 in the first, rising linearly): timm's
    /// `drop_path_rate`.
    pub drop_path: f64,
    /// The seed of the drop path streams when built as an [`Encoder`](crate::Encoder) (the run's
    /// seed in the examples).
    #[serde(default)]
    pub seed: u64,
}

impl VitConfig {
    /// timm's `vit_tiny_patch{patch}_{image}`: width 192, 12 blocks, 3 heads.
    pub fn tiny(patch_size: usize, image_size: usize) -> Self {
        Self::with_width(192, 3, patch_size, image_size)
    }

    /// timm's `vit_small_patch{patch}_{image}` (DINO's ViT-S): width 384, 12 blocks, 6 heads.
    pub fn small(patch_size: usize, image_size: usize) -> Self {
        Self::with_width(384, 6, patch_size, image_size)
    }

    /// timm's `vit_base_patch{patch}_{image}`: width 768, 12 blocks, 12 heads.
    pub fn base(patch_size: usize, image_size: usize) -> Self {
        Self::with_width(768, 12, patch_size, image_size)
    }

    fn with_width(dim: usize, heads: usize, patch_size: usize, image_size: usize) -> Self {
        Self {
            patch_size,
            image_size,
            in_channels: 3,
            dim,
            depth: 12,
            heads,
            mlp_dim: 4 * dim,
            drop_path: 0.0,
            seed: 0,
        }
    }

    /// Patches a side of the position embeddings' grid.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Checks the sizes, naming the field.
    pub fn validate(&self) -> contrastive_core::Result<()> {
        use contrastive_core::Error;
        for (field, v) in [
            ("patch_size", self.patch_size),
            ("in_channels", self.in_channels),
            ("dim", self.dim),
            ("depth", self.depth),
            ("heads", self.heads),
            ("mlp_dim", self.mlp_dim),
        ] {
            if v == 0 {
                return Err(Error::config(format!("vit.{field}"), "must be positive"));
            }
        }
        if self.image_size < self.patch_size || self.image_size % self.patch_size != 0 {
            return Err(Error::config(
                "vit.image_size",
                format!("{} is not a multiple of the patch size {}", self.image_size, self.patch_size),
            ));
        }
        if self.dim % self.heads != 0 {
            return Err(Error::config(
                "vit.heads",
                format!("{} heads do not divide the width {}", self.heads, self.dim),
            ));
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return Err(Error::config("vit.drop_path", format!("must be in [0, 1), got {}", self.drop_path)));
        }
        Ok(())
    }
}

struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    /// Drop path of the attention and of the MLP branch.
    drop_paths: [SeededDropout; 2],
}

/// A Vision Transformer: images (B, C, H, W), H and W multiples of the patch size, to the class
/// token's final state (B, dim).
#[derive(Clone)]
pub struct Vit {
    config: VitConfig,
    patch_weight: Tensor,
    patch_bias: Tensor,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: std::sync::Arc<Vec<Block>>,
    norm: LayerNorm,
    /// No dropout on attention probabilities (timm's default).
    no_dropout: std::sync::Arc<SeededDropout>,
}

impl std::fmt::Debug for Vit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vit").field("config", &self.config).finish_non_exhaustive()
    }
}

fn seeded(p: f64, seed: u64, name: &str) -> Result<SeededDropout> {
    SeededDropout::new(p, seed, name).map_err(|e| candle_core::Error::Msg(e.to_string()))
}

impl Vit {
    /// Builds the model under `vb` (timm's names); drop path draws from streams of `seed`.
    /// Initialised as timm: position embeddings and the class token normal with std 0.02 and
    /// 1e-6, linear layers by the store's Kaiming default.
    pub fn new(config: &VitConfig, vb: VarBuilder, seed: u64) -> contrastive_core::Result<Self> {
        config.validate()?;
        let (d, p, c) = (config.dim, config.patch_size, config.in_channels);
        let patch = vb.pp("patch_embed.proj");
        let fan_in = (c * p * p) as f64;
        let patch_weight = patch.get_with_hints((d, c, p, p), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        let patch_bias =
            patch.get_with_hints(d, "bias", Init::Uniform { lo: -1.0 / fan_in.sqrt(), up: 1.0 / fan_in.sqrt() })?;
        let cls_token = vb.get_with_hints((1, 1, d), "cls_token", Init::Randn { mean: 0.0, stdev: 1e-6 })?;
        let tokens = 1 + config.grid() * config.grid();
        let pos_embed = vb.get_with_hints((1, tokens, d), "pos_embed", Init::Randn { mean: 0.0, stdev: 0.02 })?;
        let mut blocks = Vec::with_capacity(config.depth);
        for i in 0..config.depth {
            let b = vb.pp(format!("blocks.{i}"));
            let rate = if config.depth > 1 { config.drop_path * i as f64 / (config.depth - 1) as f64 } else { 0.0 };
            blocks.push(Block {
                norm1: layer_norm(d, 1e-6, b.pp("norm1"))?,
                qkv: linear(d, 3 * d, b.pp("attn.qkv"))?,
                proj: linear(d, d, b.pp("attn.proj"))?,
                norm2: layer_norm(d, 1e-6, b.pp("norm2"))?,
                fc1: linear(d, config.mlp_dim, b.pp("mlp.fc1"))?,
                fc2: linear(config.mlp_dim, d, b.pp("mlp.fc2"))?,
                drop_paths: [
                    seeded(rate, seed, &format!("blocks.{i}.drop_path1"))?,
                    seeded(rate, seed, &format!("blocks.{i}.drop_path2"))?,
                ],
            });
        }
        Ok(Self {
            config: config.clone(),
            patch_weight,
            patch_bias,
            cls_token,
            pos_embed,
            blocks: std::sync::Arc::new(blocks),
            norm: layer_norm(d, 1e-6, vb.pp("norm"))?,
            no_dropout: std::sync::Arc::new(seeded(0.0, seed, "attn_drop")?),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VitConfig {
        &self.config
    }

    /// Width of the features.
    pub fn dim(&self) -> usize {
        self.config.dim
    }

    /// Every drop path stream, for checkpoints (their positions make a resumed run repeat).
    pub fn drop_paths(&self) -> Vec<&SeededDropout> {
        self.blocks.iter().flat_map(|b| b.drop_paths.iter()).collect()
    }

    /// The class token's final state (B, dim) of images `x` (B, C, H, W); drop path on when
    /// `train`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let p = self.config.patch_size;
        if c != self.config.in_channels || h % p != 0 || w % p != 0 || h == 0 || w == 0 {
            candle_core::bail!(
                "ViT: images of {:?}; it takes (B, {}, H, W) with H and W multiples of the patch size {p}",
                x.dims(),
                self.config.in_channels
            );
        }
        let (gh, gw) = (h / p, w / p);
        let d = self.config.dim;
        // The patch embedding (a P x P convolution of stride P) as one product over the patches.
        let patches =
            x.reshape((b, c, gh, p, gw, p))?.permute((0, 2, 4, 1, 3, 5))?.reshape((b * gh * gw, c * p * p))?;
        let weight = self.patch_weight.reshape((d, c * p * p))?;
        let tokens = patches.matmul(&weight.t()?)?.broadcast_add(&self.patch_bias)?.reshape((b, gh * gw, d))?;
        let cls = self.cls_token.broadcast_as((b, 1, d))?;
        let mut x = Tensor::cat(&[&cls, &tokens], 1)?.broadcast_add(&self.position_embeddings(gh, gw)?)?;
        let key_bias = Tensor::zeros((b, 1 + gh * gw), x.dtype(), x.device())?;
        for block in self.blocks.iter() {
            x = block.forward(&x, &key_bias, self, train)?;
        }
        self.norm.forward(&x)?.narrow(1, 0, 1)?.squeeze(1)
    }

    /// The position embeddings (1, 1 + gh gw, dim) for a grid of gh x gw patches: the learnt
    /// ones, their patch part resampled when the grid differs (gradients flow through).
    fn position_embeddings(&self, gh: usize, gw: usize) -> Result<Tensor> {
        let g = self.config.grid();
        if (gh, gw) == (g, g) {
            return Ok(self.pos_embed.clone());
        }
        let d = self.config.dim;
        let grid = self.pos_embed.narrow(1, 1, g * g)?.reshape((g * g, d))?;
        let m = resampling_matrix((g, g), (gh, gw), grid.device())?.to_dtype(grid.dtype())?;
        let resampled = m.matmul(&grid)?.unsqueeze(0)?;
        Tensor::cat(&[&self.pos_embed.narrow(1, 0, 1)?, &resampled], 1)
    }
}

impl Block {
    fn forward(&self, x: &Tensor, key_bias: &Tensor, vit: &Vit, train: bool) -> Result<Tensor> {
        let d = vit.config.dim;
        let qkv = self.qkv.forward(&self.norm1.forward(x)?)?;
        let (q, k, v) = (qkv.narrow(D::Minus1, 0, d)?, qkv.narrow(D::Minus1, d, d)?, qkv.narrow(D::Minus1, 2 * d, d)?);
        let a =
            contrastive_core::nn::multi_head_attention(&q, &k, &v, key_bias, vit.config.heads, &vit.no_dropout, train)?;
        let x = (x + drop_path(&self.proj.forward(&a)?, &self.drop_paths[0], train)?)?;
        let m = self.fc2.forward(&self.fc1.forward_gelu(&self.norm2.forward(&x)?)?)?;
        x + drop_path(&m, &self.drop_paths[1], train)?
    }
}

/// Position embeddings (1, 1 + g x g, D) with a class token first, resampled to (1, tokens, D)
/// (tokens - 1 a square): timm's `resample_abs_pos_embed` when a checkpoint meets a model of
/// another image size.
pub fn resample_position_embeddings(pos: &Tensor, tokens: usize) -> contrastive_core::Result<Tensor> {
    let (_, n, d) = pos.dims3()?;
    let square = |t: usize| {
        let s = ((t.saturating_sub(1)) as f64).sqrt().round() as usize;
        (s * s + 1 == t && s > 0).then_some(s)
    };
    let (Some(from), Some(to)) = (square(n), square(tokens)) else {
        return Err(contrastive_core::Error::shape(
            "position embeddings",
            format!("(1, 1 + g x g, D) to resample into {tokens} tokens"),
            pos.dims(),
        ));
    };
    let grid = pos.narrow(1, 1, from * from)?.reshape((from * from, d))?.to_dtype(DType::F32)?;
    let m = resampling_matrix((from, from), (to, to), pos.device())?;
    let resampled = m.matmul(&grid)?.unsqueeze(0)?.to_dtype(pos.dtype())?;
    Ok(Tensor::cat(&[&pos.narrow(1, 0, 1)?, &resampled], 1)?)
}

/// The (gh gw, h w) f32 matrix that resamples an h x w grid, flattened row by row, to gh x gw:
/// entry ((i, j), (k, l)) is wy[i][k] wx[j][l], the separable antialiased bicubic weights.
fn resampling_matrix((h, w): (usize, usize), (gh, gw): (usize, usize), device: &candle_core::Device) -> Result<Tensor> {
    let (wy, wx) = (antialiased_bicubic_weights(h, gh), antialiased_bicubic_weights(w, gw));
    let mut m = vec![0f32; gh * gw * h * w];
    for i in 0..gh {
        for j in 0..gw {
            for k in 0..h {
                for l in 0..w {
                    m[((i * gw + j) * h + k) * w + l] = (wy[i][k] * wx[j][l]) as f32;
                }
            }
        }
    }
    Tensor::from_vec(m, (gh * gw, h * w), device)
}

/// Stochastic depth: each sample's branch `x` (B, ...) kept with probability 1 - p and scaled by
/// 1 / (1 - p), or dropped whole.
fn drop_path(x: &Tensor, dropout: &SeededDropout, train: bool) -> Result<Tensor> {
    if !train || dropout.p() == 0.0 {
        return Ok(x.clone());
    }
    let mut shape = vec![1; x.rank()];
    shape[0] = x.dim(0)?;
    let keep = dropout.forward_t(&Tensor::ones(shape, DType::F32, x.device())?, true)?.to_dtype(x.dtype())?;
    x.broadcast_mul(&keep)
}

/// PyTorch's weights for resizing `input` samples to `output` by `interpolate(mode="bicubic",
/// align_corners=False, antialias=True)` (timm's `resample_abs_pos_embed`): row i holds each input
/// sample's weight in output sample i. The antialiased kernel is Keys' cubic with a = -0.5,
/// stretched by the scale when shrinking, and each row normalised to sum 1.
pub fn antialiased_bicubic_weights(input: usize, output: usize) -> Vec<Vec<f64>> {
    let cubic = |x: f64| {
        let (a, x) = (-0.5, x.abs());
        if x < 1.0 {
            ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            (((x - 5.0) * x + 8.0) * x - 4.0) * a
        } else {
            0.0
        }
    };
    let scale = input as f64 / output as f64;
    let (support, invscale) = if scale >= 1.0 { (2.0 * scale, 1.0 / scale) } else { (2.0, 1.0) };
    (0..output)
        .map(|i| {
            let center = scale * (i as f64 + 0.5);
            // C++'s truncating casts, as PyTorch computes the span.
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let mut row = vec![0.0; input];
            for (j, w) in row.iter_mut().enumerate().take(hi).skip(lo) {
                *w = cubic((j as f64 - center + 0.5) * invscale);
            }
            let total: f64 = row.iter().sum();
            if total != 0.0 {
                row.iter_mut().for_each(|w| *w /= total);
            }
            row
        })
        .collect()
}
