//! LayerNorm, dropout, seeded initialisation, projection head, momentum update, gradient check.

mod common;

use candle_core::{DType, Device, Module, Tensor, Var, D};
use common::{finite_differences, max_abs_diff, random_rows, rows_of, scalar, tensor};
use contrastive_core::collective::GlobalRows;
use contrastive_core::kernel::OpPath;
use contrastive_core::nn::*;

fn ln_from(w: &[f64], b: &[f64], dtype: DType) -> (Var, Var, LayerNorm) {
    let dev = Device::Cpu;
    let wv = Var::from_tensor(&Tensor::new(w, &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
    let bv = Var::from_tensor(&Tensor::new(b, &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
    let ln = LayerNorm::new(wv.as_tensor().clone(), bv.as_tensor().clone(), 1e-5);
    (wv, bv, ln)
}

/// A loss that weights every output differently, so every gradient entry matters.
fn weighted_sum(y: &Tensor) -> Tensor {
    let n = y.elem_count();
    let w = Tensor::arange(0.0, n as f64, y.device()).unwrap().reshape(y.shape()).unwrap().sin().unwrap();
    (y * w.to_dtype(y.dtype()).unwrap()).unwrap().sum_all().unwrap()
}

#[test]
fn layer_norm_fused_matches_composite_in_f32_forward_and_backward() {
    let x = random_rows(1, 37, 24, 3.0);
    let w: Vec<f64> = (0..24).map(|i| 0.5 + 0.05 * i as f64).collect();
    let b: Vec<f64> = (0..24).map(|i| 0.1 * i as f64 - 1.0).collect();
    let run = |fused: bool| {
        let (wv, bv, ln) = ln_from(&w, &b, DType::F32);
        let xv =
            Var::from_tensor(&tensor(&x, DType::F32).reshape((37, 2, 12)).unwrap().reshape((37, 24)).unwrap()).unwrap();
        let y = if fused { ln.forward(xv.as_tensor()).unwrap() } else { ln.forward_composite(xv.as_tensor()).unwrap() };
        let g = weighted_sum(&y).backward().unwrap();
        (
            rows_of(&y),
            rows_of(g.get(&xv).unwrap()),
            rows_of(&g.get(&wv).unwrap().unsqueeze(0).unwrap()),
            rows_of(&g.get(&bv).unwrap().unsqueeze(0).unwrap()),
        )
    };
    let (yf, dxf, dwf, dbf) = run(true);
    let (yc, dxc, dwc, dbc) = run(false);
    assert!(max_abs_diff(&yf, &yc) < 1e-5);
    assert!(max_abs_diff(&dxf, &dxc) < 1e-5);
    assert!(max_abs_diff(&dwf, &dwc) < 1e-4);
    assert!(max_abs_diff(&dbf, &dbc) < 1e-4);
}

#[test]
fn layer_norm_gradients_match_finite_differences_in_f64() {
    let x = random_rows(2, 5, 7, 2.0);
    let w: Vec<f64> = (0..7).map(|i| 1.0 + 0.1 * i as f64).collect();
    let b: Vec<f64> = (0..7).map(|i| 0.2 * i as f64).collect();
    let loss = |x: &common::Rows, w: &[f64], b: &[f64]| {
        let (_, _, ln) = ln_from(w, b, DType::F64);
        scalar(&weighted_sum(&ln.forward(&tensor(x, DType::F64)).unwrap()))
    };
    let (wv, bv, ln) = ln_from(&w, &b, DType::F64);
    let xv = Var::from_tensor(&tensor(&x, DType::F64)).unwrap();
    let g = weighted_sum(&ln.forward(xv.as_tensor()).unwrap()).backward().unwrap();
    let dx = finite_differences(&x, 1e-6, |x| loss(x, &w, &b));
    assert!(max_abs_diff(&rows_of(g.get(&xv).unwrap()), &dx) < 1e-7);
    let dw = finite_differences(&vec![w.clone()], 1e-6, |w| loss(&x, &w[0], &b));
    assert!(max_abs_diff(&rows_of(&g.get(&wv).unwrap().unsqueeze(0).unwrap()), &dw) < 1e-7);
    let db = finite_differences(&vec![b.clone()], 1e-6, |b| loss(&x, &w, &b[0]));
    assert!(max_abs_diff(&rows_of(&g.get(&bv).unwrap().unsqueeze(0).unwrap()), &db) < 1e-7);
}

#[test]
fn gradient_check_catches_candle_nn_layer_norm_and_passes_ours() {
    let dev = Device::Cpu;
    let x = tensor(&random_rows(3, 8, 6, 1.0), DType::F32);
    // candle-nn's LayerNorm: its fused path has no backward, so its weight gets no gradient.
    let store = ParamStore::new(0, InitScheme::PyTorch);
    let vb = store.var_builder(DType::F32, &dev);
    let theirs = candle_nn::layer_norm(6, 1e-5, vb.pp("theirs")).unwrap();
    let g = weighted_sum(&theirs.forward(&x).unwrap()).backward().unwrap();
    let e = check_gradients(&store, &g).unwrap_err().to_string();
    assert!(e.contains("theirs.weight"), "{e}");
    // Ours.
    let store = ParamStore::new(0, InitScheme::PyTorch);
    let ours = layer_norm(6, 1e-5, store.var_builder(DType::F32, &dev).pp("ours")).unwrap();
    let g = weighted_sum(&ours.forward(&x).unwrap()).backward().unwrap();
    check_gradients(&store, &g).unwrap();
}

#[test]
fn seeded_dropout_repeats_scales_and_resumes() {
    let x = Tensor::ones((64, 64), DType::F32, &Device::Cpu).unwrap();
    let a = SeededDropout::new(0.25, 7, "enc.dropout").unwrap();
    let b = SeededDropout::new(0.25, 7, "enc.dropout").unwrap();
    let ya = a.forward_t(&x, true).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(ya, b.forward_t(&x, true).unwrap().to_vec2::<f32>().unwrap());
    let kept = ya.iter().flatten().filter(|&&v| v != 0.0).count() as f64 / 4096.0;
    assert!((kept - 0.75).abs() < 0.03, "kept {kept}");
    assert!(ya.iter().flatten().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    // The next call draws a new mask; eval is the identity.
    assert_ne!(ya, a.forward_t(&x, true).unwrap().to_vec2::<f32>().unwrap());
    assert_eq!(a.forward_t(&x, false).unwrap().to_vec2::<f32>().unwrap(), x.to_vec2::<f32>().unwrap());
    // Another layer name draws another mask.
    let c = SeededDropout::new(0.25, 7, "head.dropout").unwrap();
    assert_ne!(ya, c.forward_t(&x, true).unwrap().to_vec2::<f32>().unwrap());
    // Saving and restoring the position replays the masks.
    let pos = a.position();
    let next = a.forward_t(&x, true).unwrap().to_vec2::<f32>().unwrap();
    let d = SeededDropout::new(0.25, 7, "enc.dropout").unwrap();
    d.set_position(pos);
    assert_eq!(next, d.forward_t(&x, true).unwrap().to_vec2::<f32>().unwrap());
    assert!(SeededDropout::new(1.0, 0, "x").is_err());
    // Gradients flow through the kept entries.
    let v = Var::from_tensor(&x).unwrap();
    let g = a.forward_t(v.as_tensor(), true).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(g.get(&v).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
}

/// A mask longer than one parallel block of the draw (2^16 words) is the stream's words in order,
/// as one sequential draw from the layer's named stream gives them, call after call.
#[test]
fn seeded_dropout_masks_are_the_streams_words_in_order() {
    use rand::RngCore as _;
    let n = 3 * 70_001;
    let x = Tensor::ones(n, DType::F32, &Device::Cpu).unwrap();
    let layer = SeededDropout::new(0.25, 5, "enc.layer.0").unwrap();
    let mut stream = contrastive_core::rng::named_rng(5, "enc.layer.0");
    let threshold = (0.75f64 * 4_294_967_296.0).round() as u32;
    for _call in 0..2 {
        let y = layer.forward_t(&x, true).unwrap().to_vec1::<f32>().unwrap();
        let expected: Vec<bool> = (0..n).map(|_| stream.next_u32() < threshold).collect();
        assert_eq!(y.iter().map(|&v| v != 0.0).collect::<Vec<_>>(), expected);
    }
    assert_eq!(layer.position(), 2 * n as u128);
}

/// Under data parallelism each process draws its rows' masks of the global batch: the three
/// processes' outputs, stacked, are the single process's, call after call, and every stream ends
/// where the single one does (so checkpoints of any world size agree).
#[test]
fn seeded_dropout_in_a_global_batch_draws_the_whole_batch_masks() {
    let x = Tensor::arange(0f32, 7.0 * 3.0 * 5.0, &Device::Cpu).unwrap().reshape((7, 3, 5)).unwrap();
    let whole = SeededDropout::new(0.5, 11, "layer").unwrap();
    let counts = [2usize, 4, 1];
    let parts: Vec<SeededDropout> = counts.iter().map(|_| SeededDropout::new(0.5, 11, "layer").unwrap()).collect();
    for _call in 0..3 {
        let expected = whole.forward_t(&x, true).unwrap().to_vec3::<f32>().unwrap();
        let mut stacked = vec![];
        for (rank, d) in parts.iter().enumerate() {
            let rows = GlobalRows::from_counts(&counts, rank).unwrap();
            let mine = x.narrow(0, rows.first, rows.rows).unwrap();
            let y = in_global_batch(rows, || d.forward_t(&mine, true)).unwrap();
            stacked.extend(y.to_vec3::<f32>().unwrap());
        }
        assert_eq!(stacked, expected);
        assert!(parts.iter().all(|d| d.position() == whole.position()));
    }
    // Outside the scope a layer draws for its own rows again; inside, a tensor that is not the
    // stated rows is refused.
    let alone = SeededDropout::new(0.5, 11, "layer").unwrap();
    let first_two = alone.forward_t(&x.narrow(0, 0, 2).unwrap(), true).unwrap();
    let fresh = SeededDropout::new(0.5, 11, "layer").unwrap();
    let rows = GlobalRows::from_counts(&counts, 0).unwrap();
    let scoped = in_global_batch(rows, || fresh.forward_t(&x.narrow(0, 0, 2).unwrap(), true)).unwrap();
    assert_eq!(first_two.to_vec3::<f32>().unwrap(), scoped.to_vec3::<f32>().unwrap());
    assert_ne!(alone.position(), fresh.position());
    let wrong = GlobalRows { first: 0, rows: 4, total: 7 };
    assert!(in_global_batch(wrong, || fresh.forward_t(&x.narrow(0, 0, 3).unwrap(), true)).is_err());
    assert!(GlobalRows::from_counts(&counts, 3).is_err());
}

fn build(store: &ParamStore, reversed: bool) {
    let vb = store.var_builder(DType::F32, &Device::Cpu);
    let mut order = vec!["a", "b"];
    if reversed {
        order.reverse();
    }
    for name in order {
        candle_nn::linear(16, 8, vb.pp(name)).unwrap();
        candle_nn::conv2d(3, 4, 3, Default::default(), vb.pp(format!("{name}_conv"))).unwrap();
    }
}

#[test]
fn seeded_init_is_keyed_by_path_and_follows_pytorch_defaults() {
    let (s1, s2, s3) = (
        ParamStore::new(5, InitScheme::PyTorch),
        ParamStore::new(5, InitScheme::PyTorch),
        ParamStore::new(6, InitScheme::PyTorch),
    );
    build(&s1, false);
    build(&s2, true);
    build(&s3, false);
    for ((n1, v1), (n2, v2)) in s1.all().iter().zip(s2.all()) {
        assert_eq!(n1, &n2);
        assert_eq!(
            v1.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            v2.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }
    let w = |s: &ParamStore, n: &str| s.get(n).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_ne!(w(&s1, "a.weight"), w(&s3, "a.weight"));
    assert_ne!(w(&s1, "a.weight")[..8], w(&s1, "b.weight")[..8]);
    // Linear(16 -> 8): U(±1/4); Conv(3 -> 4, 3x3): fan_in 27, U(±1/√27); variance of U(±b) is b²/3.
    for (name, bound, _n) in [("a.weight", 0.25f32, 128), ("a_conv.weight", 1.0 / 27f32.sqrt(), 108)] {
        let v = w(&s1, name);
        assert!(v.iter().all(|x| x.abs() <= bound), "{name}");
        let var = v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32;
        assert!((var / (bound * bound / 3.0) - 1.0).abs() < 0.35, "{name}: variance {var}");
    }
    assert!(w(&s1, "a.bias").iter().all(|x| x.abs() <= 0.25));
    // Transformer scheme: N(0, 0.02) weights, zero biases.
    let t = ParamStore::new(1, InitScheme::Normal { std: 0.02 });
    candle_nn::linear(256, 256, t.var_builder(DType::F32, &Device::Cpu).pp("l")).unwrap();
    let v = w(&t, "l.weight");
    let std = (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
    assert!((std - 0.02).abs() < 0.001, "std {std}");
    assert!(w(&t, "l.bias").iter().all(|&x| x == 0.0));
}

#[test]
fn params_save_load_and_reject_mismatches() {
    let dir = tempfile::tempdir().unwrap();
    let s1 = ParamStore::new(1, InitScheme::PyTorch);
    build(&s1, false);
    let path = dir.path().join("model.safetensors");
    s1.save(&path).unwrap();
    let s2 = ParamStore::new(2, InitScheme::PyTorch);
    build(&s2, false);
    s2.load(&path).unwrap();
    assert_eq!(
        s1.get("b.weight").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        s2.get("b.weight").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    // A model of another shape.
    let other = ParamStore::new(1, InitScheme::PyTorch);
    candle_nn::linear(16, 9, other.var_builder(DType::F32, &Device::Cpu).pp("a")).unwrap();
    let e = other.load(&path).unwrap_err().to_string();
    assert!(e.contains("model.safetensors") && e.contains("is not a variable"), "{e}");
    let bigger = ParamStore::new(1, InitScheme::PyTorch);
    build(&bigger, false);
    candle_nn::linear(4, 4, bigger.var_builder(DType::F32, &Device::Cpu).pp("c")).unwrap();
    let e = bigger.load(&path).unwrap_err().to_string();
    assert!(e.contains("tensor `c.bias` is missing"), "{e}");
    let wrong = ParamStore::new(1, InitScheme::PyTorch);
    let vb = wrong.var_builder(DType::F32, &Device::Cpu);
    for name in ["a", "b"] {
        candle_nn::linear(16, 7, vb.pp(name)).unwrap();
        candle_nn::conv2d(3, 4, 3, Default::default(), vb.pp(format!("{name}_conv"))).unwrap();
    }
    let e = wrong.load(&path).unwrap_err().to_string();
    assert!(e.contains("tensor `a.bias` has shape [8], the model expects [7]"), "{e}");
    // A truncated file.
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = s2.load(&cut).unwrap_err().to_string();
    assert!(e.contains("cut.safetensors") && e.contains("cannot read"), "{e}");
}

#[test]
fn projection_heads_have_the_published_shapes_and_every_parameter_learns() {
    let dev = Device::Cpu;
    let x = tensor(&random_rows(4, 16, 32, 1.0), DType::F32);
    for (config, vars) in [
        (ProjectionHeadConfig::simclr_v1(32), 4),
        (ProjectionHeadConfig::simclr_v2(32), 3 + 3 * 2),
        (ProjectionHeadConfig::moco_v2(32), 4),
    ] {
        let store = ParamStore::new(0, InitScheme::PyTorch);
        let head = ProjectionHead::new(&config, store.var_builder(DType::F32, &dev)).unwrap();
        let z = head.forward_t(&x, true).unwrap();
        assert_eq!(z.dims(), &[16, 128]);
        assert_eq!(store.trainable().len(), vars, "{config:?}");
        let g = weighted_sum(&z).backward().unwrap();
        check_gradients(&store, &g).unwrap();
        // Evaluation mode runs too (BatchNorm running statistics).
        assert_eq!(head.forward_t(&x, false).unwrap().dims(), &[16, 128]);
    }
    let bad = ProjectionHeadConfig { layers: 0, ..ProjectionHeadConfig::simclr_v1(4) };
    assert!(ProjectionHead::new(&bad, ParamStore::new(0, InitScheme::PyTorch).var_builder(DType::F32, &dev))
        .unwrap_err()
        .to_string()
        .contains("projection_head.layers"));
}

#[test]
fn momentum_update_and_schedule() {
    let dev = Device::Cpu;
    let online = ParamStore::new(1, InitScheme::PyTorch);
    let target = ParamStore::new(2, InitScheme::PyTorch);
    for s in [&online, &target] {
        let vb = s.var_builder(DType::F32, &dev);
        candle_nn::linear(3, 2, vb.pp("l")).unwrap();
        candle_nn::batch_norm(2, candle_nn::BatchNormConfig::default(), vb.pp("bn")).unwrap();
    }
    let before = target.get("l.weight").unwrap().as_tensor().copy().unwrap();
    momentum_update(&target, &online, 0.9).unwrap();
    let want = ((before * 0.9).unwrap() + (online.get("l.weight").unwrap().as_tensor() * 0.1).unwrap()).unwrap();
    let got = target.get("l.weight").unwrap().as_tensor().copy().unwrap();
    assert!(
        got.sub(&want).unwrap().abs().unwrap().max(D::Minus1).unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
            < 1e-7
    );
    copy_params(&target, &online).unwrap();
    assert_eq!(
        target.get("l.bias").unwrap().to_vec1::<f32>().unwrap(),
        online.get("l.bias").unwrap().to_vec1::<f32>().unwrap()
    );
    // BYOL: 1 - (1 - m0)(cos(πk/K) + 1)/2
    assert_eq!(cosine_momentum(0.996, 0, 100), 0.996);
    assert!((cosine_momentum(0.996, 50, 100) - 0.998).abs() < 1e-12);
    assert_eq!(cosine_momentum(0.996, 100, 100), 1.0);
    assert!(momentum_update(&target, &online, 1.5).is_err());
}

/// Value and input gradient of `weighted_sum(f(x))` for a (rows, width) input.
fn value_and_grad(x: &common::Rows, dtype: DType, f: impl Fn(&Tensor) -> Tensor) -> (common::Rows, common::Rows) {
    let xv = Var::from_tensor(&tensor(x, dtype)).unwrap();
    let y = f(xv.as_tensor());
    let g = weighted_sum(&y).backward().unwrap();
    (rows_of(&y.flatten_to(D::Minus2).unwrap()), rows_of(g.get(&xv).unwrap()))
}

#[test]
fn fused_gelu_and_softmax_match_candle_and_finite_differences() {
    // Forward and backward against candle's own composite forms in f32 (whose GELU derivative
    // rounds 1/sqrt(2 pi) to 0.398942, hence 1e-5), then against finite differences in f64.
    let x = random_rows(4, 33, 19, 4.0);
    let (y, dx) = value_and_grad(&x, DType::F32, |t| gelu_erf(t).unwrap());
    let (yc, dxc) = value_and_grad(&x, DType::F32, |t| t.gelu_erf().unwrap());
    assert!(max_abs_diff(&y, &yc) < 1e-5 && max_abs_diff(&dx, &dxc) < 1e-5, "gelu");
    let (y, dx) = value_and_grad(&x, DType::F32, |t| softmax_last_dim(t).unwrap());
    let (yc, dxc) = value_and_grad(&x, DType::F32, |t| candle_nn::ops::softmax(t, D::Minus1).unwrap());
    assert!(max_abs_diff(&y, &yc) < 1e-6 && max_abs_diff(&dx, &dxc) < 1e-6, "softmax");
    // Large logits: no overflow, rows sum to one.
    let big = vec![vec![1000.0, 999.0, -1000.0], vec![-5e3, -5e3, -5e3]];
    let (p, _) = value_and_grad(&big, DType::F32, |t| softmax_last_dim(t).unwrap());
    assert!(p.iter().all(|r| (r.iter().sum::<f64>() - 1.0).abs() < 1e-6 && r.iter().all(|v| v.is_finite())));
    assert!((p[1][0] - 1.0 / 3.0).abs() < 1e-6);

    let x = random_rows(5, 6, 5, 3.0);
    for (name, f) in [
        ("gelu", &(|t: &Tensor| gelu_erf(t).unwrap()) as &dyn Fn(&Tensor) -> Tensor),
        ("softmax", &|t: &Tensor| softmax_last_dim(t).unwrap()),
    ] {
        let (_, dx) = value_and_grad(&x, DType::F64, f);
        let fd = finite_differences(&x, 1e-6, |x| scalar(&weighted_sum(&f(&tensor(x, DType::F64)))));
        assert!(max_abs_diff(&dx, &fd) < 1e-8, "{name}: {}", max_abs_diff(&dx, &fd));
    }
}

#[test]
fn f32_gelu_stays_within_its_erf_approximation_of_f64_over_the_whole_range() {
    // The f32 kernel (Abramowitz-Stegun erf, polynomial exp, vectorised in chunks of 16 with a
    // scalar tail) against libm's erf in f64: value and derivative within 2e-6 of the largest
    // of 1 and |x| (A-S's erf error is 1.5e-7 absolute), large |x| included; +inf gives +inf and
    // a NaN stays NaN, value and gradient.
    let dev = Device::Cpu;
    let mut xs: Vec<f64> = (0..4001).map(|i| -20.0 + 40.0 * i as f64 / 4000.0).collect();
    xs.extend([-1e4, 1e4, -88.0, 88.0, 1e-30, -0.0]);
    let run = |dtype: DType, xs: &[f64]| {
        let xv = Var::from_tensor(&Tensor::new(xs, &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
        let y = gelu_erf(xv.as_tensor()).unwrap();
        let dx = y.sum_all().unwrap().backward().unwrap().get(&xv).unwrap().clone();
        let v = |t: &Tensor| t.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
        (v(&y), v(&dx))
    };
    let ((y32, d32), (y64, d64)) = (run(DType::F32, &xs), run(DType::F64, &xs));
    for i in 0..xs.len() {
        let scale = xs[i].abs().max(1.0);
        assert!((y32[i] - y64[i]).abs() <= 2e-6 * scale, "gelu({}) = {} vs {}", xs[i], y32[i], y64[i]);
        assert!((d32[i] - d64[i]).abs() <= 2e-6 * scale, "gelu'({}) = {} vs {}", xs[i], d32[i], d64[i]);
    }
    let (y, d) = run(DType::F32, &[f64::INFINITY, f64::NAN, 1.0]);
    assert_eq!(y[0], f64::INFINITY);
    assert!(y[1].is_nan() && d[1].is_nan() && y[2].is_finite() && d[2].is_finite(), "{y:?} {d:?}");
}

#[test]
fn linear_matches_candle_nn_and_its_gradients_are_exact() {
    // The same variables through candle-nn's Linear and ours, on a 3-D input (the bias gradient
    // sums over two leading dimensions): equal outputs and gradients in f32, and gradients equal
    // to finite differences in f64.
    let dev = Device::Cpu;
    let w = random_rows(6, 5, 7, 1.0);
    let b = random_rows(7, 1, 5, 1.0);
    let x = random_rows(8, 3 * 4, 7, 2.0);
    let run = |dtype: DType, ours: bool| {
        let wv = Var::from_tensor(&tensor(&w, dtype)).unwrap();
        let bv = Var::from_tensor(&tensor(&b, dtype).squeeze(0).unwrap()).unwrap();
        let xv = Var::from_tensor(&tensor(&x, dtype).reshape((3, 4, 7)).unwrap()).unwrap();
        let y = if ours {
            Linear::new(wv.as_tensor().clone(), Some(bv.as_tensor().clone())).forward(xv.as_tensor()).unwrap()
        } else {
            candle_nn::Linear::new(wv.as_tensor().clone(), Some(bv.as_tensor().clone()))
                .forward(xv.as_tensor())
                .unwrap()
        };
        assert_eq!(y.dims(), [3, 4, 5]);
        let g = weighted_sum(&y).backward().unwrap();
        let flat = |t: &Tensor| rows_of(&t.flatten_all().unwrap().unsqueeze(0).unwrap())[0].clone();
        (flat(&y), flat(g.get(&xv).unwrap()), flat(g.get(&wv).unwrap()), flat(g.get(&bv).unwrap()))
    };
    let (a, b32) = (run(DType::F32, true), run(DType::F32, false));
    for (ours, theirs) in [(&a.0, &b32.0), (&a.1, &b32.1), (&a.2, &b32.2), (&a.3, &b32.3)] {
        assert!(max_abs_diff(&vec![ours.clone()], &vec![theirs.clone()]) < 1e-5);
    }
    let (_, dx, dw, db) = run(DType::F64, true);
    let loss = |x: &common::Rows, w: &common::Rows, b: &common::Rows| {
        let lin = Linear::new(tensor(w, DType::F64), Some(tensor(b, DType::F64).squeeze(0).unwrap()));
        scalar(&weighted_sum(&lin.forward(&tensor(x, DType::F64).reshape((3, 4, 7)).unwrap()).unwrap()))
    };
    let flat = |r: common::Rows| vec![r.into_iter().flatten().collect::<Vec<f64>>()];
    assert!(max_abs_diff(&vec![dx], &flat(finite_differences(&x, 1e-6, |x| loss(x, &w, &b)))) < 1e-7);
    assert!(max_abs_diff(&vec![dw], &flat(finite_differences(&w, 1e-6, |w| loss(&x, w, &b)))) < 1e-7);
    assert!(max_abs_diff(&vec![db], &flat(finite_differences(&b, 1e-6, |b| loss(&x, &w, b)))) < 1e-7);
    // Without a bias (the product alone): candle-nn's outputs and gradients.
    let no_bias = |ours: bool| {
        let wv = Var::from_tensor(&tensor(&w, DType::F32)).unwrap();
        let xv = Var::from_tensor(&tensor(&x, DType::F32).reshape((3, 4, 7)).unwrap()).unwrap();
        let y = if ours {
            Linear::new(wv.as_tensor().clone(), None).forward(xv.as_tensor()).unwrap()
        } else {
            candle_nn::Linear::new(wv.as_tensor().clone(), None).forward(xv.as_tensor()).unwrap()
        };
        let g = weighted_sum(&y).backward().unwrap();
        let flat = |t: &Tensor| rows_of(&t.flatten_all().unwrap().unsqueeze(0).unwrap());
        [flat(&y), flat(g.get(&xv).unwrap()), flat(g.get(&wv).unwrap())]
    };
    for (ours, theirs) in no_bias(true).iter().zip(no_bias(false).iter()) {
        assert!(max_abs_diff(ours, theirs) < 1e-5);
    }
    // A wrong input width is an error naming both shapes.
    let lin = linear(7, 5, candle_nn::VarBuilder::zeros(DType::F32, &dev)).unwrap();
    let err = lin.forward(&Tensor::zeros((2, 6), DType::F32, &dev).unwrap()).unwrap_err().to_string();
    assert!(err.contains("[2, 6]") && err.contains("[5, 7]"), "{err}");
}

/// `forward_gelu` (product, bias and GELU in one op keeping the pre-activation) against GELU
/// applied to the layer's output as a separate op: values and the gradients of x, W and b, on a
/// 3-D input, in f64 to 1e-12 and in f32 to 1e-5; without variables (nothing kept) the same
/// values.
#[test]
fn linear_with_fused_gelu_matches_gelu_of_the_layer() {
    let w = random_rows(16, 9, 7, 1.0);
    let b = random_rows(17, 1, 9, 1.0);
    let x = random_rows(18, 3 * 5, 7, 1.5);
    for (dtype, tolerance) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
        let run = |fused: bool| {
            let wv = Var::from_tensor(&tensor(&w, dtype)).unwrap();
            let bv = Var::from_tensor(&tensor(&b, dtype).squeeze(0).unwrap()).unwrap();
            let xv = Var::from_tensor(&tensor(&x, dtype).reshape((3, 5, 7)).unwrap()).unwrap();
            let lin = Linear::new(wv.as_tensor().clone(), Some(bv.as_tensor().clone()));
            let y = if fused {
                lin.forward_gelu(xv.as_tensor()).unwrap()
            } else {
                gelu_erf(&lin.forward(xv.as_tensor()).unwrap()).unwrap()
            };
            assert_eq!(y.dims(), [3, 5, 9]);
            let g = weighted_sum(&y).backward().unwrap();
            let flat = |t: &Tensor| rows_of(&t.flatten_all().unwrap().unsqueeze(0).unwrap());
            [flat(&y), flat(g.get(&xv).unwrap()), flat(g.get(&wv).unwrap()), flat(g.get(&bv).unwrap())]
        };
        for (part, (ours, theirs)) in run(true).iter().zip(run(false).iter()).enumerate() {
            assert!(max_abs_diff(ours, theirs) < tolerance, "{dtype:?} part {part}: {}", max_abs_diff(ours, theirs));
        }
        let lin = Linear::new(tensor(&w, dtype), Some(tensor(&b, dtype).squeeze(0).unwrap()));
        let plain = tensor(&x, dtype);
        let y = rows_of(&lin.forward_gelu(&plain).unwrap());
        assert!(max_abs_diff(&y, &rows_of(&gelu_erf(&lin.forward(&plain).unwrap()).unwrap())) < tolerance);
    }
}

#[test]
fn a_linear_layer_without_inputs_or_outputs_is_an_error_naming_it() {
    let store = ParamStore::new(0, InitScheme::PyTorch);
    let vb = store.var_builder(DType::F32, &Device::Cpu);
    for (i, o) in [(0, 4), (4, 0), (0, 0)] {
        let e = linear(i, o, vb.pp("proj")).unwrap_err().to_string();
        assert!(e.contains("Linear proj") && e.contains(&format!("{i} inputs and {o} outputs")), "{e}");
        let e = linear_no_bias(i, o, vb.pp("head")).unwrap_err().to_string();
        assert!(e.contains("Linear head"), "{e}");
    }
}

#[test]
fn weights_with_a_non_finite_value_are_refused_naming_the_tensor() {
    use contrastive_core::nn::{InitScheme, ParamStore};
    let store = ParamStore::new(0, InitScheme::PyTorch);
    let _ = contrastive_core::nn::linear(3, 2, store.var_builder(DType::F32, &Device::Cpu).pp("fc")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    store.save(&path).unwrap();
    store.load(&path).unwrap();
    // fc.weight with one element made infinite, as a flipped exponent bit would.
    let mut tensors = store.tensors();
    let w = tensors["fc.weight"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut bad = w.clone();
    bad[4] = f32::INFINITY;
    tensors.insert("fc.weight".into(), Tensor::from_vec(bad, (2, 3), &Device::Cpu).unwrap());
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let e = store.load(&path).unwrap_err().to_string();
    assert!(
        e.contains("fc.weight") && e.contains("inf") && e.contains("element 4") && e.contains("model.safetensors"),
        "{e}"
    );
    // The store kept its weights.
    assert_eq!(store.tensors()["fc.weight"].flatten_all().unwrap().to_vec1::<f32>().unwrap(), w);
}

#[test]
fn a_target_network_starts_as_a_copy_and_follows_by_its_schedule() {
    use contrastive_core::nn::{momentum_update, InitScheme, Momentum, ParamStore, TargetNetwork};
    let dev = Device::Cpu;
    let online = ParamStore::new(1, InitScheme::PyTorch);
    let _net = contrastive_core::nn::linear(4, 3, online.var_builder(DType::F64, &dev).pp("fc")).unwrap();
    let build = |vb: candle_nn::VarBuilder| Ok(contrastive_core::nn::linear(4, 3, vb.pp("fc"))?);
    let target = TargetNetwork::new(&online, build, Momentum::Cosine { base: 0.9 }, DType::F64, &dev).unwrap();
    assert_eq!(
        target.params().tensors()["fc.weight"].to_vec2::<f64>().unwrap(),
        online.tensors()["fc.weight"].to_vec2::<f64>().unwrap()
    );
    // Move the online weights, then update at step 0 of 10 (m = 0.9) and at the last (m = 1).
    let w = online.get("fc.weight").unwrap();
    w.set(&(w.as_tensor() + 1.0).unwrap()).unwrap();
    let before = target.params().tensors()["fc.weight"].to_vec2::<f64>().unwrap();
    assert_eq!(target.update(&online, 0, 10).unwrap(), 0.9);
    let after = target.params().tensors()["fc.weight"].to_vec2::<f64>().unwrap();
    for (a, b) in after.iter().flatten().zip(before.iter().flatten()) {
        assert!((a - (b + 0.1)).abs() < 1e-12, "{a} vs {b} + 0.1");
    }
    assert_eq!(target.update(&online, 10, 10).unwrap(), 1.0);
    assert_eq!(target.params().tensors()["fc.weight"].to_vec2::<f64>().unwrap(), after);
    // The same as momentum_update by hand on a plain copy.
    let by_hand = ParamStore::new(1, InitScheme::PyTorch);
    let _ = contrastive_core::nn::linear(4, 3, by_hand.var_builder(DType::F64, &dev).pp("fc")).unwrap();
    by_hand.set_all(&target.state(""), std::path::Path::new("-")).unwrap();
    momentum_update(&by_hand, &online, Momentum::Cosine { base: 0.9 }.at(3, 10)).unwrap();
    target.update(&online, 3, 10).unwrap();
    assert_eq!(
        by_hand.tensors()["fc.weight"].to_vec2::<f64>().unwrap(),
        target.params().tensors()["fc.weight"].to_vec2::<f64>().unwrap()
    );
    // A build that does not make the online variables is refused by name; so is a bad momentum.
    let other = |vb: candle_nn::VarBuilder| Ok(contrastive_core::nn::linear(4, 3, vb.pp("other"))?);
    let e = TargetNetwork::new(&online, other, Momentum::Constant(0.99), DType::F64, &dev).err().unwrap().to_string();
    assert!(e.contains("other.weight") || e.contains("other.bias"), "{e}");
    let e = TargetNetwork::new(&online, build, Momentum::Constant(1.5), DType::F64, &dev).err().unwrap().to_string();
    assert!(e.contains("momentum"), "{e}");
}

/// The kernel and generic paths of `f` agree within `tol` in value and in every gradient (f64;
/// the issue asks 1e-5, f64 allows far less).
fn kernels_against_generic(what: &str, vars: &[&Var], f: impl Fn() -> Tensor, tol: f64) {
    let (y, grads) = contrastive_core::kernel::path_differences(vars, |_| Ok(f())).unwrap();
    assert!(y < tol, "{what}: outputs differ by {y}");
    for (i, d) in grads.iter().enumerate() {
        assert!(*d < tol, "{what}: gradient of input {i} differs by {d}");
    }
    // The switch does switch.
    let paths = [false, true].map(|g| contrastive_core::kernel::with_generic_ops(g, || OpPath::on(&Device::Cpu)));
    assert_eq!(paths, [OpPath::Kernels, OpPath::Generic]);
}

#[test]
fn every_op_gives_the_same_values_and_gradients_on_the_generic_path() {
    let x = Var::from_tensor(&tensor(&random_rows(3, 12, 20, 2.0), DType::F64)).unwrap();
    kernels_against_generic("softmax", &[&x], || softmax_last_dim(x.as_tensor()).unwrap(), 1e-12);
    kernels_against_generic("GELU", &[&x], || gelu_erf(x.as_tensor()).unwrap(), 1e-12);
    let w: Vec<f64> = (0..20).map(|i| 0.5 + 0.05 * i as f64).collect();
    let b: Vec<f64> = (0..20).map(|i| 0.1 * i as f64 - 1.0).collect();
    let (wv, bv, ln) = ln_from(&w, &b, DType::F64);
    kernels_against_generic("LayerNorm", &[&x, &wv, &bv], || ln.forward(x.as_tensor()).unwrap(), 1e-10);
    let weight = Var::from_tensor(&tensor(&random_rows(4, 7, 20, 1.0), DType::F64)).unwrap();
    let bias = Var::from_tensor(&tensor(&random_rows(5, 1, 7, 1.0), DType::F64).squeeze(0).unwrap()).unwrap();
    let lin = Linear::new(weight.as_tensor().clone(), Some(bias.as_tensor().clone()));
    kernels_against_generic("Linear", &[&x, &weight, &bias], || lin.forward(x.as_tensor()).unwrap(), 1e-10);
    // BatchNorm in training (batch statistics) with its fused ReLU, scale and shift not trivial.
    let store = ParamStore::new(3, InitScheme::PyTorch);
    let bn = contrastive_core::nn::batch_norm(20, store.var_builder(DType::F64, &Device::Cpu)).unwrap();
    let (gamma, beta) = (store.get("weight").unwrap(), store.get("bias").unwrap());
    gamma.set(&tensor(&random_rows(9, 1, 20, 1.0), DType::F64).squeeze(0).unwrap().affine(1.0, 1.5).unwrap()).unwrap();
    beta.set(&tensor(&random_rows(10, 1, 20, 1.0), DType::F64).squeeze(0).unwrap()).unwrap();
    kernels_against_generic(
        "BatchNorm",
        &[&x, &gamma, &beta],
        || bn.forward_relu_t(x.as_tensor(), true).unwrap(),
        1e-10,
    );
    // The InfoNCE family: NT-Xent (one shared set), and one-directional InfoNCE with negatives.
    let z1 = Var::from_tensor(&tensor(&random_rows(6, 8, 5, 1.0), DType::F64)).unwrap();
    let z2 = Var::from_tensor(&tensor(&random_rows(7, 8, 5, 1.0), DType::F64)).unwrap();
    let queue = Var::from_tensor(&tensor(&random_rows(8, 11, 5, 1.0), DType::F64)).unwrap();
    kernels_against_generic(
        "NT-Xent",
        &[&z1, &z2],
        || contrastive_core::loss::nt_xent(z1.as_tensor(), z2.as_tensor(), 0.5).unwrap(),
        1e-10,
    );
    kernels_against_generic(
        "InfoNCE with a queue",
        &[&z1, &z2, &queue],
        || contrastive_core::loss::info_nce(z1.as_tensor(), z2.as_tensor(), Some(queue.as_tensor()), 0.2).unwrap(),
        1e-10,
    );
}

/// Dropout's fused kernel and its tensor-op form draw the same mask and give the same bits, in
/// value and gradient; a NaN input stays NaN where it is dropped, as a product does.
#[test]
fn seeded_dropout_kernel_gives_the_tensor_ops_bits() {
    let x = Var::from_tensor(&tensor(&random_rows(21, 9, 13, 2.0), DType::F64)).unwrap();
    let layers = [SeededDropout::new(0.3, 5, "d").unwrap(), SeededDropout::new(0.3, 5, "d").unwrap()];
    for _call in 0..2 {
        let (y, g) = contrastive_core::kernel::path_differences(&[&x], |generic| {
            layers[usize::from(generic)].forward_t(x.as_tensor(), true)
        })
        .unwrap();
        assert_eq!((y, g[0]), (0.0, 0.0));
    }
    let nan = Tensor::new(&[f32::NAN; 64], &Device::Cpu).unwrap();
    let y = SeededDropout::new(0.5, 1, "d").unwrap().forward_t(&nan, true).unwrap().to_vec1::<f32>().unwrap();
    assert!(y.iter().all(|v| v.is_nan()));
}

/// softmax(q kᵀ / √d + bias [+ position bias of the head]) v for each head, written as loops (f64).
fn attention_by_loops(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    bias: &[f64],
    position: Option<&[f64]>,
    (b, l, h, heads): (usize, usize, usize, usize),
) -> Vec<f64> {
    let d = h / heads;
    let mut out = vec![0.0; b * l * h];
    for r in 0..b {
        for hd in 0..heads {
            for i in 0..l {
                let at = |t: usize, c: usize| r * l * h + t * h + hd * d + c;
                let scores: Vec<f64> = (0..l)
                    .map(|j| {
                        (0..d).map(|c| q[at(i, c)] * k[at(j, c)]).sum::<f64>() / (d as f64).sqrt()
                            + bias[r * l + j]
                            + position.map_or(0.0, |p| p[(hd * l + i) * l + j])
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let total: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                for j in 0..l {
                    let p = (scores[j] - max).exp() / total;
                    for c in 0..d {
                        out[at(i, c)] += p * v[at(j, c)];
                    }
                }
            }
        }
    }
    out
}

/// How far the attention kernel and its tensor-op form are apart (values; gradients of q, k, v),
/// each path with its own dropout layer of one seed, which must end at the same position.
fn attention_paths(qkv: [&Var; 3], bias: &Tensor, heads: usize, train: bool) -> (f64, Vec<f64>) {
    let layers = [SeededDropout::new(0.3, 5, "p").unwrap(), SeededDropout::new(0.3, 5, "p").unwrap()];
    let [q, k, v] = qkv.map(|t| t.as_tensor());
    let differences = contrastive_core::kernel::path_differences(&qkv, |generic| {
        multi_head_attention(q, k, v, bias, heads, &layers[usize::from(generic)], train)
    })
    .unwrap();
    assert_eq!(layers[0].position(), layers[1].position());
    differences
}

/// The fused attention kernel against the tensor ops it replaces (values and the gradients of
/// queries, keys and values; with dropout drawing the same masks, and without), against loops,
/// and its shape errors.
#[test]
fn multi_head_attention_kernel_matches_the_tensor_ops_and_the_definition() {
    let (b, l, heads, h) = (3, 5, 2, 8);
    let dev = Device::Cpu;
    let qkv: Vec<Vec<f64>> = (0..3).map(|s| random_rows(30 + s, b * l, h, 1.5).concat()).collect();
    let var = |x: &Vec<f64>| Var::from_tensor(&Tensor::from_vec(x.clone(), (b, l, h), &dev).unwrap()).unwrap();
    let (q, k, v) = (var(&qkv[0]), var(&qkv[1]), var(&qkv[2]));
    // Row 1 has two padded keys, row 2 one.
    let bias: Vec<f64> =
        (0..b * l).map(|i| if (i / l == 1 && i % l >= 3) || i == 2 * l + 4 { -1e4 } else { 0.0 }).collect();
    let bias_t = Tensor::from_vec(bias.clone(), (b, l), &dev).unwrap();
    for train in [false, true] {
        let (y, g) = attention_paths([&q, &k, &v], &bias_t, heads, train);
        assert!(y < 1e-12 && g.iter().all(|&d| d < 1e-12), "train {train}: {y} {g:?}");
    }
    let off = SeededDropout::new(0.3, 5, "p").unwrap();
    let eval = multi_head_attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &bias_t, heads, &off, false).unwrap();
    let expected = attention_by_loops(&qkv[0], &qkv[1], &qkv[2], &bias, None, (b, l, h, heads));
    let got = eval.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let worst = got.iter().zip(&expected).map(|(a, e)| (a - e).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-12, "against loops: {worst}");
    let trained =
        multi_head_attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &bias_t, heads, &off, true).unwrap();
    assert!(
        max_abs_diff(&rows_of(&trained.reshape((b * l, h)).unwrap()), &rows_of(&eval.reshape((b * l, h)).unwrap()))
            > 0.1
    );
    // f32: the kernel within 1e-5 of the tensor ops.
    let [q32, k32, v32] = [&q, &k, &v].map(|t| Var::from_tensor(&t.as_tensor().to_dtype(DType::F32).unwrap()).unwrap());
    let bias32 = bias_t.to_dtype(DType::F32).unwrap();
    let (y, g) = attention_paths([&q32, &k32, &v32], &bias32, heads, true);
    assert!(y < 1e-5 && g.iter().all(|&d| d < 1e-5), "f32: {y} {g:?}");
    // An empty batch is an empty context.
    let none = Tensor::zeros((0, l, h), DType::F64, &dev).unwrap();
    let empty = multi_head_attention(&none, &none, &none, &bias_t.narrow(0, 0, 0).unwrap(), heads, &off, true).unwrap();
    assert_eq!(empty.dims(), &[0, l, h]);
    // Shapes that do not fit are named.
    let e = multi_head_attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &bias_t, 3, &off, false).unwrap_err();
    assert!(e.to_string().contains("does not split into 3 heads"), "{e}");
    let short = bias_t.narrow(1, 0, 4).unwrap();
    let e = multi_head_attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &short, heads, &off, false).unwrap_err();
    assert!(e.to_string().contains("key bias of [3, 4]"), "{e}");
}

/// The fused attention with a per-head position bias (MPNet's) against its tensor-op form (values,
/// and the gradients of queries, keys, values and the bias; with dropout drawing the same masks,
/// and without) and against loops; its bias gradient the same bits on 1 and 3 threads; shapes.
#[test]
fn attention_with_position_bias_kernel_matches_the_tensor_ops_and_the_definition() {
    let (b, l, heads, h) = (5, 6, 3, 12);
    let dev = Device::Cpu;
    let qkv: Vec<Vec<f64>> = (0..3).map(|s| random_rows(40 + s, b * l, h, 1.5).concat()).collect();
    let position: Vec<f64> = random_rows(44, heads * l, l, 2.0).concat();
    let var =
        |x: &Vec<f64>, dims: &[usize]| Var::from_tensor(&Tensor::from_vec(x.clone(), dims, &dev).unwrap()).unwrap();
    let (q, k, v) = (var(&qkv[0], &[b, l, h]), var(&qkv[1], &[b, l, h]), var(&qkv[2], &[b, l, h]));
    let pos = var(&position, &[heads, l, l]);
    let bias: Vec<f64> = (0..b * l).map(|i| if i / l == 1 && i % l >= 4 { -1e4 } else { 0.0 }).collect();
    let bias_t = Tensor::from_vec(bias.clone(), (b, l), &dev).unwrap();
    let paths = |vars: [&Var; 4], key_bias: &Tensor, train: bool| {
        let layers = [SeededDropout::new(0.3, 7, "p").unwrap(), SeededDropout::new(0.3, 7, "p").unwrap()];
        let [q, k, v, p] = vars.map(|t| t.as_tensor());
        let differences = contrastive_core::kernel::path_differences(&vars, |generic| {
            multi_head_attention_with_position_bias(q, k, v, key_bias, p, heads, &layers[usize::from(generic)], train)
        })
        .unwrap();
        assert_eq!(layers[0].position(), layers[1].position());
        differences
    };
    for train in [false, true] {
        let (y, g) = paths([&q, &k, &v, &pos], &bias_t, train);
        assert!(y < 1e-12 && g.len() == 4 && g.iter().all(|&d| d < 1e-12), "train {train}: {y} {g:?}");
    }
    let off = SeededDropout::new(0.3, 7, "p").unwrap();
    let attend = |p: &Tensor, train: bool| {
        multi_head_attention_with_position_bias(
            q.as_tensor(),
            k.as_tensor(),
            v.as_tensor(),
            &bias_t,
            p,
            heads,
            &off,
            train,
        )
    };
    let got = attend(pos.as_tensor(), false).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let expected = attention_by_loops(&qkv[0], &qkv[1], &qkv[2], &bias, Some(&position), (b, l, h, heads));
    let worst = got.iter().zip(&expected).map(|(a, e)| (a - e).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-12, "against loops: {worst}");
    // The bias matters: without it the loops give another context.
    let plain = attention_by_loops(&qkv[0], &qkv[1], &qkv[2], &bias, None, (b, l, h, heads));
    assert!(got.iter().zip(&plain).map(|(a, e)| (a - e).abs()).fold(0.0, f64::max) > 0.1);
    // f32: within 1e-5 of the tensor ops; the bias's gradient, summed over the batch, the same
    // bits whatever the thread count.
    let [q32, k32, v32, p32] =
        [&q, &k, &v, &pos].map(|t| Var::from_tensor(&t.as_tensor().to_dtype(DType::F32).unwrap()).unwrap());
    let bias32 = bias_t.to_dtype(DType::F32).unwrap();
    let (y, g) = paths([&q32, &k32, &v32, &p32], &bias32, true);
    assert!(y < 1e-5 && g.iter().all(|&d| d < 1e-5), "f32: {y} {g:?}");
    let bias_gradient = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let dropout = SeededDropout::new(0.3, 7, "p").unwrap();
            let [q, k, v, p] = [&q32, &k32, &v32, &p32].map(|t| t.as_tensor());
            let y = multi_head_attention_with_position_bias(q, k, v, &bias32, p, heads, &dropout, true).unwrap();
            let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            grads.get(p).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
        })
    };
    let (one, three) = (bias_gradient(1), bias_gradient(3));
    assert!(one.iter().any(|&x| x != 0.0));
    assert_eq!(
        one.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        three.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
    // A bias of the wrong shape is named.
    let e = attend(&pos.as_tensor().narrow(2, 0, 5).unwrap(), false).unwrap_err();
    assert!(e.to_string().contains("position bias of [3, 6, 5]"), "{e}");
}

/// Column sums over many blocks of rows (narrow: 1024-row blocks) and over one block (wide)
/// equal a plain row-by-row sum in f64, and run in one order on one thread and on four.
#[test]
fn column_sums_match_a_plain_sum_on_any_thread_count() {
    use contrastive_core::kernel::column_sums;
    for (rows, width) in [(5000usize, 64usize), (3, 70_000), (0, 8)] {
        let g: Vec<f32> = (0..rows * width).map(|i| ((i * 7919 % 1009) as f32 - 504.0) / 97.0).collect();
        let mut plain = vec![0f64; width];
        for row in g.chunks(width) {
            for (p, &v) in plain.iter_mut().zip(row) {
                *p += v as f64;
            }
        }
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| column_sums(&g, width))
        };
        let (one, four) = (on(1), on(4));
        assert_eq!(one, four, "{rows} x {width}: the thread count changed the sums");
        for (j, (&s, &p)) in one.iter().zip(&plain).enumerate() {
            assert!((s as f64 - p).abs() <= 1e-3 * (1.0 + p.abs()), "{rows} x {width}, column {j}: {s} vs {p}");
        }
    }
}

/// Moments gathered block by block (blocks of uneven sizes, one empty) and merged equal the
/// two-pass mean and biased variance of all the rows in f64, in f32 data far from zero too
/// (where one-pass sums about zero would cancel).
#[test]
fn partial_moments_merge_to_the_two_pass_moments() {
    use contrastive_core::nn::batch_norm_kernel::PartialMoments;
    let c = 3;
    let rows: Vec<f32> =
        (0..1000 * c).map(|i| 1e4 + ((i * 37 % 101) as f32 - 50.0) / 7.0 * (1 + i % c) as f32).collect();
    let (mut mean, mut var) = (vec![0f64; c], vec![0f64; c]);
    for ch in 0..c {
        let values: Vec<f64> = rows.iter().skip(ch).step_by(c).map(|&v| v as f64).collect();
        mean[ch] = values.iter().sum::<f64>() / values.len() as f64;
        var[ch] = values.iter().map(|v| (v - mean[ch]).powi(2)).sum::<f64>() / values.len() as f64;
    }
    let mut merged = PartialMoments::empty(c);
    for (start, end) in [(0, 1), (1, 300), (300, 300), (300, 1000)] {
        merged.merge(&PartialMoments::of_rows(&rows[start * c..end * c], c));
    }
    let m = merged.moments();
    assert_eq!(m.count, 1000);
    for ch in 0..c {
        assert!((m.mean[ch] - mean[ch]).abs() < 1e-6 * mean[ch].abs(), "mean {ch}: {} vs {}", m.mean[ch], mean[ch]);
        assert!((m.var[ch] - var[ch]).abs() < 1e-4 * var[ch], "var {ch}: {} vs {}", m.var[ch], var[ch]);
    }
}

/// A product into an uninitialised destination never reads it: a destination full of NaN (what
/// freed memory may hold) comes back as the plain product, for shapes on gemm's matrix, vector
/// and tiny paths.
#[test]
fn gemm_into_uninit_writes_the_whole_destination_without_reading_it() {
    use contrastive_core::kernel::{gemm_into_uninit, Strided, Threads};
    use std::mem::MaybeUninit;
    for (m, n, k) in [(37usize, 19usize, 23usize), (1, 9, 5), (8, 1, 3), (3, 4, 0)] {
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.21).cos()).collect();
        let mut dst = vec![MaybeUninit::new(f32::NAN); m * n];
        let got = gemm_into_uninit(
            &mut dst,
            (m, n, k),
            Strided::new(&a, (k, 1)),
            Strided::new(&b, (n, 1)),
            2.0,
            Threads::Pool,
        );
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 2.0 * (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum::<f32>();
                assert!((got[i * n + j] - want).abs() < 1e-4, "{m}x{n}x{k} ({i}, {j}): {} vs {want}", got[i * n + j]);
            }
        }
    }
}
