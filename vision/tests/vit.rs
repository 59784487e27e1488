//! The Vision Transformer against timm's VisionTransformer, on a small random model that
//! tests/golden/tiny_vit.py saved (torch 2.15.0, timm 1.0.31): the class token's final state for
//! images at the position embeddings' own size and at another (embeddings resampled, bicubic with
//! antialiasing), the gradients of five weights through the resampling, and PyTorch's
//! antialiased bicubic weights.

use candle_core::{DType, Device, ModuleT, Tensor};
use contrastive_core::nn::{InitScheme, ParamStore};
use contrastive_vision::{antialiased_bicubic_weights, load_encoder_weights, Encoder, EncoderConfig, VitConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_vit")
}

fn golden() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture().join("golden.safetensors"), &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn config() -> VitConfig {
    VitConfig {
        patch_size: 8,
        image_size: 32,
        in_channels: 3,
        dim: 24,
        depth: 2,
        heads: 3,
        mlp_dim: 96,
        drop_path: 0.0,
        seed: 0,
    }
}

fn tiny(config: &VitConfig) -> (ParamStore, Encoder) {
    let store = ParamStore::new(0, InitScheme::Normal { std: 0.02 });
    let encoder =
        Encoder::new(&EncoderConfig::Vit(config.clone()), store.var_builder(DType::F32, &Device::Cpu).pp("encoder"))
            .unwrap();
    let report = load_encoder_weights(&store, &fixture().join("model.safetensors"), "encoder.").unwrap();
    assert_eq!((report.loaded, report.ignored.len()), (30, 0));
    (store, encoder)
}

#[test]
fn antialiased_bicubic_weights_match_pytorch() {
    let golden = golden();
    for (n_in, n_out) in [(4, 6), (4, 5), (7, 3), (5, 5)] {
        let want = golden[&format!("resize_{n_in}_{n_out}")].to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap();
        let ours = antialiased_bicubic_weights(n_in, n_out);
        for (a, b) in ours.iter().flatten().zip(want.iter().flatten()) {
            assert!((a - b).abs() < 1e-6, "{n_in} -> {n_out}: {ours:?} vs {want:?}");
        }
    }
}

#[test]
fn vit_matches_timm_at_its_size_and_resampled() {
    let golden = golden();
    let (store, encoder) = tiny(&config());
    let small = encoder.forward_t(&golden["small"], false).unwrap();
    let d = max_diff(&small, &golden["small_features"]);
    assert!(d < 1e-4, "32x32: features differ by {d}");
    let other = encoder.forward_t(&golden["other"], false).unwrap();
    let d = max_diff(&other, &golden["other_features"]);
    assert!(d < 1e-4, "48x40 (position embeddings resampled): features differ by {d}");
    let n = other.elem_count();
    let w = Tensor::arange(0f32, n as f32, &Device::Cpu).unwrap().sin().unwrap().reshape(other.shape()).unwrap();
    let grads = (&other * w).unwrap().sum_all().unwrap().backward().unwrap();
    let vars: HashMap<String, candle_core::Var> = store.all().into_iter().collect();
    for name in
        ["pos_embed", "cls_token", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.weight"]
    {
        let g = grads.get(&vars[&format!("encoder.{name}")]).unwrap();
        let d = max_diff(g, &golden[&format!("grad.{name}")]);
        assert!(d < 1e-4, "{name}: gradient differs by {d}");
    }
}

#[test]
fn drop_path_drops_whole_samples_in_training_only() {
    let golden = golden();
    let config = VitConfig { drop_path: 0.5, ..config() };
    let (_, encoder) = tiny(&config);
    let x = golden["small"].repeat((8, 1, 1, 1)).unwrap();
    let eval = encoder.forward_t(&x, false).unwrap();
    assert!(max_diff(&eval.narrow(0, 0, 2).unwrap(), &golden["small_features"]) < 1e-4);
    let train = encoder.forward_t(&x, true).unwrap();
    assert!(train.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|v| v.is_finite()));
    // Copies of one image differ in training (each sample drops its own branches)...
    let rows = train.to_vec2::<f32>().unwrap();
    assert!((2..16).step_by(2).any(|i| rows[i] != rows[0]));
    // ... and two passes draw other masks.
    assert!(max_diff(&encoder.forward_t(&x, true).unwrap(), &train) > 0.0);
    // The streams follow the config's seed: the same seed draws the same masks, another other ones.
    let same = tiny(&config).1.forward_t(&x, true).unwrap();
    assert_eq!(max_diff(&same, &train), 0.0);
    let other = tiny(&VitConfig { seed: 1, ..config.clone() }).1.forward_t(&x, true).unwrap();
    assert!(max_diff(&other, &train) > 0.0);
}

#[test]
fn bad_images_and_configs_are_named() {
    let (_, encoder) = tiny(&config());
    let e = encoder.forward_t(&Tensor::zeros((1, 3, 30, 32), DType::F32, &Device::Cpu).unwrap(), false).unwrap_err();
    assert!(e.to_string().contains("multiples of the patch size 8"), "{e}");
    let e = encoder.forward_t(&Tensor::zeros((1, 1, 32, 32), DType::F32, &Device::Cpu).unwrap(), false).unwrap_err();
    assert!(e.to_string().contains("(B, 3, H, W)"), "{e}");
    for (bad, field) in [
        (VitConfig { heads: 5, ..config() }, "vit.heads"),
        (VitConfig { image_size: 36, ..config() }, "vit.image_size"),
        (VitConfig { drop_path: 1.0, ..config() }, "vit.drop_path"),
    ] {
        assert!(bad.validate().unwrap_err().to_string().contains(field), "{field}");
    }
    // The presets are timm's.
    assert_eq!(
        (VitConfig::small(16, 224).dim, VitConfig::small(16, 224).heads, VitConfig::small(16, 224).grid()),
        (384, 6, 14)
    );
}

/// Weights for 32 pixel images load into a ViT laid out for 48 (the position embeddings resampled
/// at load, as timm does): it gives what resampling at each forward pass gives, which matches timm.
#[test]
fn weights_of_another_image_size_load_resampled() {
    let golden = golden();
    let (_, at_32) = tiny(&config());
    let (_, at_48) = tiny(&VitConfig { image_size: 48, ..config() });
    let x = golden["other"].narrow(3, 0, 40).unwrap().pad_with_zeros(3, 0, 8).unwrap();
    assert_eq!(x.dims(), [2, 3, 48, 48]);
    let d = max_diff(&at_32.forward_t(&x, false).unwrap(), &at_48.forward_t(&x, false).unwrap());
    assert!(d < 1e-5, "{d}");
    // Not a square grid: refused by name.
    let odd = Tensor::zeros((1, 18, 24), DType::F32, &Device::Cpu).unwrap();
    assert!(contrastive_vision::resample_position_embeddings(&odd, 37)
        .unwrap_err()
        .to_string()
        .contains("position embeddings"));
}
