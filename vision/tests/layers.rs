//! The convolution, BatchNorm, max-pool and residual add-ReLU kernels against candle's own ops and naive references,
//! in value and gradient; gradient flow through every encoder.

use candle_core::{DType, Device, Module, ModuleT, Tensor, Var};
use contrastive_core::nn::{check_gradients, InitScheme, ParamStore};
use contrastive_vision::{
    add_relu, batch_norm, conv2d, conv2d_forward, conv2d_forward_channels_last, Activation, ConvBn, ConvGeometry,
    ConvNet, ConvNetConfig, MaxPool2d, ResNet, ResNetConfig, Stem,
};
use rand::{Rng, SeedableRng};

fn random(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

const GEOMETRIES: [(usize, usize, usize, usize, usize, usize); 6] = [
    // (in, out, kernel, stride, padding, side)
    (3, 5, 3, 1, 1, 9),
    (4, 6, 3, 2, 1, 8),
    (2, 3, 1, 1, 0, 5),
    (4, 8, 1, 2, 0, 7),
    (3, 4, 7, 2, 3, 11),
    (1, 2, 5, 3, 0, 10),
];

#[test]
fn conv_matches_candle_forward_and_finite_differences() {
    for (i, &(cin, cout, k, s, p, side)) in GEOMETRIES.iter().enumerate() {
        let g = ConvGeometry { in_channels: cin, out_channels: cout, kernel: k, stride: s, padding: p };
        let x = Var::from_tensor(&random(&[3, cin, side, side + 1], i as u64, DType::F64)).unwrap();
        let w = Var::from_tensor(&random(&[cout, cin, k, k], 100 + i as u64, DType::F64)).unwrap();
        let ours = conv2d_forward(x.as_tensor(), w.as_tensor(), g).unwrap();
        let theirs = x.as_tensor().conv2d(w.as_tensor(), p, s, 1, 1).unwrap();
        assert!(max_abs_diff(&ours, &theirs) < 1e-12, "forward {g:?}");
        // A loss that weighs every output differently, so each gradient entry is tested. The loss
        // is linear in each argument, so central differences are exact up to rounding. (candle's
        // own conv2d gradient is not a reference: it has the wrong shape when the stride does not
        // divide the padded input, e.g. 9 columns at stride 2.)
        let weights = random(ours.dims(), 200 + i as u64, DType::F64);
        let loss = |x: &Tensor, w: &Tensor| {
            (conv2d_forward(x, w, g).unwrap() * &weights).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
        };
        let grads = (ours * &weights).unwrap().sum_all().unwrap().backward().unwrap();
        for (which, v) in [(0, &x), (1, &w)] {
            let analytic = grads.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let flat = v.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
            for j in (0..flat.len()).step_by(3) {
                let at = |d: f64| {
                    let mut p = flat.clone();
                    p[j] += d;
                    let t = Tensor::from_vec(p, v.dims(), &Device::Cpu).unwrap();
                    if which == 0 {
                        loss(&t, w.as_tensor())
                    } else {
                        loss(x.as_tensor(), &t)
                    }
                };
                let numeric = (at(0.5) - at(-0.5)) / 1.0;
                assert!(
                    (numeric - analytic[j]).abs() < 1e-9,
                    "{g:?} arg {which} entry {j}: {numeric} vs {}",
                    analytic[j]
                );
            }
        }
    }
}

/// NCHW to NHWC and back.
fn to_channels_last(x: &Tensor) -> Tensor {
    x.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap()
}
fn to_channels_first(x: &Tensor) -> Tensor {
    x.permute((0, 3, 1, 2)).unwrap().contiguous().unwrap()
}

#[test]
fn channels_last_conv_matches_channels_first_in_value_and_gradient() {
    // The channels-first op is checked against candle and finite differences above; the
    // channels-last op (its own im2row, gemm and row2im; a 1x1 kernel at stride 1 reads the
    // images in place, and (8, 4, 1, 1, 0, 40) spreads the batch over two tasks) must agree with
    // it, permuted. The 3x3 kernels at stride 1 and padding 1 with 64 channels or more, over a
    // batch large enough, run as Winograd's F(4x4, 3x3): on 6x7 (whose last tiles reach past the
    // map), 3x4 (one tile per image, rows and columns past the map), 10x11, 64x65 (three tasks of
    // images) and 5x6 with 64 channels; 3x4 at batch 3 saves too little and runs direct.
    let winograd = [
        ((128, 136, 3, 1, 1, 6), 20),
        ((136, 128, 3, 1, 1, 3), 40),
        ((128, 136, 3, 1, 1, 3), 3),
        ((136, 128, 3, 1, 1, 10), 7),
        ((128, 128, 3, 1, 1, 64), 3),
        ((64, 72, 3, 1, 1, 5), 16),
    ];
    let direct =
        GEOMETRIES.iter().chain(&[(16, 8, 3, 2, 1, 7), (12, 5, 3, 1, 1, 6), (8, 4, 1, 1, 0, 40)]).map(|&g| (g, 3));
    for (i, ((cin, cout, k, s, p, side), batch)) in direct.chain(winograd).enumerate() {
        let g = ConvGeometry { in_channels: cin, out_channels: cout, kernel: k, stride: s, padding: p };
        let x = Var::from_tensor(&random(&[batch, cin, side, side + 1], i as u64, DType::F64)).unwrap();
        let w = Var::from_tensor(&random(&[cout, cin, k, k], 100 + i as u64, DType::F64)).unwrap();
        let first = conv2d_forward(x.as_tensor(), w.as_tensor(), g).unwrap();
        let last = conv2d_forward_channels_last(&to_channels_last(x.as_tensor()), w.as_tensor(), g).unwrap();
        assert_eq!(last.dims(), to_channels_last(&first).dims(), "{g:?}");
        assert!(max_abs_diff(&to_channels_first(&last), &first) < 1e-12, "forward {g:?}");
        let weights = random(first.dims(), 200 + i as u64, DType::F64);
        let g1 = (first * &weights).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (last * to_channels_last(&weights)).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &w] {
            let (a, b) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
            // Relative: Winograd's transforms (1/6, 1/24) round in f64 too, and a kernel gradient
            // sums thousands of products up to about 100.
            let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap().max(1.0);
            assert!(max_abs_diff(a, b) < 1e-12 * scale, "gradient {g:?} of {:?}", v.dims());
        }
    }
}

#[test]
fn fused_conv_batch_norm_matches_the_separate_layers() {
    for activation in [Activation::Relu, Activation::Identity] {
        fused_conv_batch_norm_case(activation);
    }
}

fn fused_conv_batch_norm_case(activation: Activation) {
    // Two stores from one seed: the same initial variables, separate running statistics.
    let (cin, cout) = (6, 10);
    let g = ConvGeometry { in_channels: cin, out_channels: cout, kernel: 3, stride: 2, padding: 1 };
    let build = || {
        let store = ParamStore::new(5, InitScheme::PyTorch);
        let vb = store.var_builder(DType::F64, &Device::Cpu);
        let conv = conv2d(g, false, vb.pp("conv")).unwrap();
        let block = ConvBn::new(conv, batch_norm(cout, vb.pp("bn")).unwrap(), activation);
        (store, block)
    };
    let ((fused_store, fused), (plain_store, plain)) = (build(), build());
    let relu = activation == Activation::Relu;
    // The separate layers: channels-last convolution, BatchNorm (-ReLU) over (N·H·W, C) rows.
    let separate = |x: &Tensor, train: bool| {
        let y = plain.conv().forward_channels_last(x).unwrap();
        let (n, oh, ow, o) = y.dims4().unwrap();
        let rows = y.reshape((n * oh * ow, o)).unwrap();
        let out = if relu { plain.bn().forward_relu_t(&rows, train) } else { plain.bn().forward_t(&rows, train) };
        out.unwrap().reshape((n, oh, ow, o)).unwrap()
    };
    let x = Var::from_tensor(&random(&[4, 7, 9, cin], 1, DType::F64)).unwrap();
    let out = fused.forward_t(x.as_tensor(), true).unwrap();
    let reference = separate(x.as_tensor(), true);
    assert!(max_abs_diff(&out, &reference) < 1e-12, "{activation:?}");
    let min = out.flatten_all().unwrap().min(0).unwrap().to_scalar::<f64>().unwrap();
    assert_eq!(min == 0.0, relu, "{activation:?}: minimum {min}");
    let weights = random(out.dims(), 2, DType::F64);
    let g1 = (out * &weights).unwrap().sum_all().unwrap().backward().unwrap();
    let g2 = (reference * &weights).unwrap().sum_all().unwrap().backward().unwrap();
    let dx = |grads: &candle_core::backprop::GradStore| grads.get(x.as_tensor()).unwrap().clone();
    let (d1, d2) = (dx(&g1), dx(&g2));
    assert!(max_abs_diff(&d1, &d2) < 1e-12, "input gradient, {activation:?}");
    let (fv, pv) = (fused_store.trainable(), plain_store.trainable());
    assert_eq!(fv.len(), 3, "conv weight, γ, β");
    for ((name, a), (_, b)) in fv.iter().zip(&pv) {
        let (ga, gb) = (g1.get(a.as_tensor()).unwrap(), g2.get(b.as_tensor()).unwrap());
        assert!(max_abs_diff(ga, gb) < 1e-12, "gradient of {name}");
    }
    for (a, b) in
        [(fused.bn().running_mean(), plain.bn().running_mean()), (fused.bn().running_var(), plain.bn().running_var())]
    {
        assert!(max_abs_diff(a, b) < 1e-12, "running statistics");
        assert!(max_abs_diff(a, &a.zeros_like().unwrap()) > 1e-3, "running statistics moved");
    }
    // On running statistics (eval mode, and frozen BatchNorm in training) the BatchNorm is folded
    // into the convolution: the same values and the same gradients of x, W, γ and β as the
    // separate layers, which normalise by the running statistics.
    let frozen = |train: bool, block: &dyn Fn(&Tensor, bool) -> Tensor| {
        contrastive_core::nn::with_running_statistics(|| block(x.as_tensor(), train))
    };
    for train in [false, true] {
        let folded = frozen(train, &|x, train| fused.forward_t(x, train).unwrap());
        let reference = frozen(train, &|x, train| separate(x, train));
        assert!(max_abs_diff(&folded, &reference) < 1e-12, "folded, train {train}, {activation:?}");
        let min = folded.flatten_all().unwrap().min(0).unwrap().to_scalar::<f64>().unwrap();
        assert_eq!(min == 0.0, relu, "folded, {activation:?}: minimum {min}");
        let g1 = (folded * &weights).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (reference * &weights).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_abs_diff(&dx(&g1), &dx(&g2)) < 1e-12, "folded input gradient, {activation:?}");
        for ((name, a), (_, b)) in fv.iter().zip(&pv) {
            let (ga, gb) = (g1.get(a.as_tensor()).unwrap(), g2.get(b.as_tensor()).unwrap());
            assert!(max_abs_diff(ga, gb) < 1e-12, "folded gradient of {name}, train {train}");
            assert!(max_abs_diff(ga, &ga.zeros_like().unwrap()) > 1e-6, "{name} gets a gradient");
        }
    }
    // The running statistics stayed as they were.
    assert!(max_abs_diff(fused.bn().running_mean(), plain.bn().running_mean()) < 1e-12);
}

#[test]
fn conv_f32_matches_f64() {
    let g = ConvGeometry { in_channels: 16, out_channels: 32, kernel: 3, stride: 2, padding: 1 };
    let x = random(&[20, 16, 12, 12], 1, DType::F64);
    let w = random(&[32, 16, 3, 3], 2, DType::F64);
    let y64 = conv2d_forward(&x, &w, g).unwrap();
    let y32 = conv2d_forward(&x.to_dtype(DType::F32).unwrap(), &w.to_dtype(DType::F32).unwrap(), g).unwrap();
    assert!(max_abs_diff(&y64, &y32) < 1e-4);
}

#[test]
fn winograd_conv_f32_matches_f64() {
    // F(4x4, 3x3) (64 channels or more, 3x3 at stride 1, a batch large enough) adds the
    // transforms' roundings to the products' (its coefficients reach 8 and 1/24); in f32 the
    // values and both gradients stay within 1e-5 of the largest value of the f64 ones.
    let g = ConvGeometry { in_channels: 128, out_channels: 144, kernel: 3, stride: 1, padding: 1 };
    let run = |dtype: DType| {
        let x = random(&[12, 128, 9, 8], 1, DType::F64).to_dtype(dtype).unwrap();
        let x = Var::from_tensor(&to_channels_last(&x)).unwrap();
        let w = Var::from_tensor(&random(&[144, 128, 3, 3], 2, DType::F64).to_dtype(dtype).unwrap()).unwrap();
        let weights = random(&[12, 9, 8, 144], 3, DType::F64).to_dtype(dtype).unwrap();
        let y = conv2d_forward_channels_last(x.as_tensor(), w.as_tensor(), g).unwrap();
        let grads = (&y * weights).unwrap().sum_all().unwrap().backward().unwrap();
        let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        [f64_of(&y), f64_of(grads.get(x.as_tensor()).unwrap()), f64_of(grads.get(w.as_tensor()).unwrap())]
    };
    let (single, double) = (run(DType::F32), run(DType::F64));
    for (what, (a, b)) in ["values", "input gradient", "kernel gradient"].iter().zip(single.iter().zip(&double)) {
        let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
        let err = max_abs_diff(a, b);
        assert!(err < 1e-5 * scale.max(1.0), "{what}: {err} against values up to {scale}");
    }
}

#[test]
fn conv_gradient_does_not_depend_on_thread_count() {
    // The weight gradient sums over images in fixed groups, so 1, 3 and 4 threads agree bit for
    // bit; with fewer groups than threads (37 images of 8x8 make two) the products themselves run
    // on the pool, which splits them by output blocks only: values and input gradients agree too.
    // With 128 channels, channels-last, the convolution runs as Winograd's F(4x4, 3x3).
    for (channels_last, c) in [(false, 32), (true, 32), (true, 128)] {
        let g = ConvGeometry { in_channels: c, out_channels: 2 * c, kernel: 3, stride: 1, padding: 1 };
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let x = Var::from_tensor(&random(&[37, c, 8, 8], 3, DType::F32)).unwrap();
                let w = Var::from_tensor(&random(&[2 * c, c, 3, 3], 4, DType::F32)).unwrap();
                let y = if channels_last {
                    conv2d_forward_channels_last(&to_channels_last(x.as_tensor()), w.as_tensor(), g).unwrap()
                } else {
                    conv2d_forward(x.as_tensor(), w.as_tensor(), g).unwrap()
                };
                let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                let bits = |t: &Tensor| -> Vec<u32> {
                    t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
                };
                [bits(&y), bits(grads.get(x.as_tensor()).unwrap()), bits(grads.get(w.as_tensor()).unwrap())]
            })
        };
        let one = run(1);
        assert_eq!(one, run(3), "channels last: {channels_last}, {c} channels");
        assert_eq!(one, run(4), "channels last: {channels_last}, {c} channels");
    }
}

/// BatchNorm in training written as plain tensor ops (PyTorch's definition).
fn batch_norm_reference(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Tensor {
    let dims: &[usize] = if x.rank() == 4 { &[0, 2, 3] } else { &[0] };
    let view = |t: &Tensor| if x.rank() == 4 { t.reshape((1, (), 1, 1)).unwrap() } else { t.reshape((1, ())).unwrap() };
    let mean = x.mean_keepdim(dims).unwrap();
    let c = x.broadcast_sub(&mean).unwrap();
    let var = c.sqr().unwrap().mean_keepdim(dims).unwrap();
    c.broadcast_div(&(var + eps).unwrap().sqrt().unwrap())
        .unwrap()
        .broadcast_mul(&view(w))
        .unwrap()
        .broadcast_add(&view(b))
        .unwrap()
}

#[test]
fn batch_norm_matches_the_definition_in_value_and_gradient() {
    for (seed, shape) in [(1u64, vec![4, 3, 5, 6]), (2, vec![9, 7]), (3, vec![2, 1, 3, 3])] {
        let store = ParamStore::new(seed, InitScheme::PyTorch);
        let vb = store.var_builder(DType::F64, &Device::Cpu);
        let bn = batch_norm(shape[1], vb.pp("bn")).unwrap();
        // Non-trivial scale and shift.
        store.get("bn.weight").unwrap().set(&(random(&[shape[1]], seed + 10, DType::F64) + 1.5).unwrap()).unwrap();
        store.get("bn.bias").unwrap().set(&random(&[shape[1]], seed + 20, DType::F64)).unwrap();
        let (w, b) = (store.get("bn.weight").unwrap(), store.get("bn.bias").unwrap());
        let x = Var::from_tensor(&random(&shape, seed, DType::F64).affine(3.0, 0.7).unwrap()).unwrap();
        // Plain, and with the fused ReLU against ReLU after the definition.
        for relu in [false, true] {
            let ours = if relu {
                bn.forward_relu_t(x.as_tensor(), true).unwrap()
            } else {
                bn.forward_t(x.as_tensor(), true).unwrap()
            };
            let mut theirs = batch_norm_reference(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5);
            if relu {
                theirs = theirs.relu().unwrap();
            }
            assert!(max_abs_diff(&ours, &theirs) < 1e-12, "{shape:?} relu {relu}");
            let weights = random(&shape, seed + 30, DType::F64);
            let ga = (ours * &weights).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (theirs * &weights).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &w, &b] {
                let d = max_abs_diff(ga.get(v.as_tensor()).unwrap(), gb.get(v.as_tensor()).unwrap());
                assert!(d < 1e-11, "{shape:?} relu {relu}: gradient differs by {d}");
            }
        }
    }
}

#[test]
fn batch_norm_running_statistics_update_in_training_and_serve_in_eval() {
    let store = ParamStore::new(0, InitScheme::PyTorch);
    let bn = batch_norm(2, store.var_builder(DType::F32, &Device::Cpu)).unwrap();
    // Channel 0 holds 1, 2, 3, 4; channel 1 holds 10, 10, 30, 30 (N = 2, H·W = 2).
    let x = Tensor::new(&[[[1f32, 2.0], [10.0, 10.0]], [[3.0, 4.0], [30.0, 30.0]]], &Device::Cpu)
        .unwrap()
        .reshape((2, 2, 1, 2))
        .unwrap();
    bn.forward_t(&x, true).unwrap();
    // running = 0.9 · init + 0.1 · batch; the variance entering it is unbiased (n - 1 = 3).
    let rm = bn.running_mean().to_vec1::<f32>().unwrap();
    let rv = bn.running_var().to_vec1::<f32>().unwrap();
    let (var0, var1) = (5.0 / 3.0, 400.0 / 3.0);
    assert!((rm[0] - 0.25).abs() < 1e-6 && (rm[1] - 2.0).abs() < 1e-6, "{rm:?}");
    assert!((rv[0] - (0.9 + 0.1 * var0)).abs() < 1e-5 && (rv[1] - (0.9 + 0.1 * var1)).abs() < 1e-4, "{rv:?}");
    // Eval: (x - running_mean) / sqrt(running_var + eps), weight 1, bias 0.
    let y = bn.forward_t(&x, false).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let expect0 = (1.0 - rm[0]) / (rv[0] + 1e-5).sqrt();
    assert!((y[0] - expect0).abs() < 1e-5, "{} vs {expect0}", y[0]);
    // The running statistics are variables of the store, so they are saved with the model.
    assert_eq!(store.get("running_mean").unwrap().to_vec1::<f32>().unwrap(), rm);
    assert!(store.trainable().iter().all(|(k, _)| !k.starts_with("running")));
}

/// Max pooling by its definition, for any window.
fn max_pool_reference(x: &Tensor, pool: MaxPool2d) -> Vec<f64> {
    let (n, c, h, w) = x.dims4().unwrap();
    let v = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let o = |s: usize| (s + 2 * pool.padding - pool.kernel) / pool.stride + 1;
    let mut out = Vec::new();
    for plane in 0..n * c {
        for oy in 0..o(h) {
            for ox in 0..o(w) {
                let mut m = f64::NEG_INFINITY;
                for ky in 0..pool.kernel {
                    for kx in 0..pool.kernel {
                        let (iy, ix) = (
                            (oy * pool.stride + ky) as isize - pool.padding as isize,
                            (ox * pool.stride + kx) as isize - pool.padding as isize,
                        );
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            m = m.max(v[plane * h * w + iy as usize * w + ix as usize]);
                        }
                    }
                }
                out.push(m);
            }
        }
    }
    out
}

#[test]
fn channels_last_max_pool_matches_channels_first_bit_for_bit() {
    // After a ReLU half the inputs are tied zeros; one NaN must win its windows in both layouts.
    for pool in [
        MaxPool2d { kernel: 3, stride: 2, padding: 1 },
        MaxPool2d { kernel: 2, stride: 2, padding: 0 },
        MaxPool2d { kernel: 3, stride: 1, padding: 0 },
    ] {
        let mut v =
            random(&[3, 6, 9, 8], 11, DType::F32).relu().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v[100] = f32::NAN;
        let x = Var::from_tensor(&Tensor::from_vec(v, (3, 6, 9, 8), &Device::Cpu).unwrap()).unwrap();
        let first = pool.forward(x.as_tensor()).unwrap();
        let last = pool.forward_channels_last(&to_channels_last(x.as_tensor())).unwrap();
        let bits = |t: &Tensor| -> Vec<u32> {
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
        };
        assert_eq!(bits(&to_channels_first(&last)), bits(&first), "{pool:?}");
        assert!(bits(&first).iter().any(|&b| f32::from_bits(b).is_nan()), "the NaN reaches the output");
        let weights = random(first.dims(), 12, DType::F32);
        let g1 = (first * &weights).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (last * to_channels_last(&weights)).unwrap().sum_all().unwrap().backward().unwrap();
        let (a, b) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
        assert_eq!(bits(a), bits(b), "gradient, {pool:?}");
    }
}

#[test]
fn max_pool_matches_definition_and_finite_differences() {
    for pool in [
        MaxPool2d { kernel: 3, stride: 2, padding: 1 },
        MaxPool2d { kernel: 2, stride: 2, padding: 0 },
        MaxPool2d { kernel: 3, stride: 1, padding: 0 },
    ] {
        let x = random(&[2, 3, 7, 8], 5, DType::F64);
        let y = pool.forward(&x).unwrap();
        assert_eq!(y.flatten_all().unwrap().to_vec1::<f64>().unwrap(), max_pool_reference(&x, pool), "{pool:?}");
        if pool.kernel == pool.stride {
            let theirs = x.max_pool2d(pool.kernel).unwrap();
            assert!(max_abs_diff(&y, &theirs) == 0.0);
        }
        // Gradient against central differences (random inputs have no ties).
        let xv = Var::from_tensor(&x).unwrap();
        let weights = random(y.dims(), 6, DType::F64);
        let loss = |t: &Tensor| (pool.forward(t).unwrap() * &weights).unwrap().sum_all().unwrap();
        let grad = loss(xv.as_tensor())
            .backward()
            .unwrap()
            .get(xv.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let flat = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let eps = 1e-6;
        for i in (0..flat.len()).step_by(7) {
            let mut plus = flat.clone();
            plus[i] += eps;
            let mut minus = flat.clone();
            minus[i] -= eps;
            let f =
                |v: Vec<f64>| loss(&Tensor::from_vec(v, x.dims(), &Device::Cpu).unwrap()).to_scalar::<f64>().unwrap();
            let numeric = (f(plus) - f(minus)) / (2.0 * eps);
            assert!((numeric - grad[i]).abs() < 1e-6, "{pool:?} at {i}: {numeric} vs {}", grad[i]);
        }
    }
}

fn assert_every_variable_learns(store: &ParamStore, forward: impl Fn(&Tensor) -> Tensor, input: &[usize]) {
    let x = random(input, 9, DType::F32);
    let y = forward(&x);
    let weights = random(&[input[0], y.dim(1).unwrap()], 10, DType::F32);
    let loss = (y * weights).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    check_gradients(store, &grads).unwrap();
}

#[test]
fn every_encoder_variable_receives_a_gradient() {
    let store = ParamStore::new(1, InitScheme::PyTorch);
    let net = ConvNet::new(&ConvNetConfig::default(), store.var_builder(DType::F32, &Device::Cpu)).unwrap();
    assert_eq!(store.trainable().len(), 12);
    assert_every_variable_learns(&store, |x| net.forward_t(x, true).unwrap(), &[4, 1, 12, 12]);

    for (config, side, variables) in [
        (ResNetConfig::resnet18(Stem::Cifar), 8, 60),
        (ResNetConfig::resnet18(Stem::ImageNet), 32, 60),
        (ResNetConfig::resnet50(Stem::ImageNet), 32, 159),
    ] {
        let store = ParamStore::new(2, InitScheme::PyTorch);
        let net = ResNet::new(&config, store.var_builder(DType::F32, &Device::Cpu)).unwrap();
        // torchvision's model has these parameters, less fc.weight and fc.bias.
        assert_eq!(store.trainable().len(), variables, "{config:?}");
        assert_every_variable_learns(&store, |x| net.forward_t(x, true).unwrap(), &[2, 3, side, side]);
    }
}

#[test]
fn conv_layer_rejects_wrong_channels() {
    let store = ParamStore::new(1, InitScheme::PyTorch);
    let g = ConvGeometry { in_channels: 3, out_channels: 4, kernel: 3, stride: 1, padding: 1 };
    let conv = contrastive_vision::conv2d(g, true, store.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let err = conv.forward(&random(&[1, 2, 5, 5], 1, DType::F32)).unwrap_err().to_string();
    assert!(err.contains("2 channels") && err.contains("expects 3"), "{err}");
}

#[test]
fn fused_add_relu_matches_candle_in_value_and_both_gradients() {
    // relu(a + b) against candle's sum then ReLU, values and both gradients, in f32 and f64 (the
    // random sums stay away from the kink at 0, where the derivative is undefined).
    for (dtype, tolerance) in [(DType::F32, 1e-6), (DType::F64, 1e-12)] {
        let run = |fused: bool| {
            let (a, b) = (
                Var::from_tensor(&random(&[9, 13], 11, dtype)).unwrap(),
                Var::from_tensor(&random(&[9, 13], 12, dtype)).unwrap(),
            );
            let y = if fused {
                add_relu(a.as_tensor(), b.as_tensor()).unwrap()
            } else {
                (a.as_tensor() + b.as_tensor()).unwrap().relu().unwrap()
            };
            // A weighted sum, so every element's gradient differs.
            let w = random(&[9, 13], 13, dtype);
            let grads = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
            (y, grads.get(&a).unwrap().clone(), grads.get(&b).unwrap().clone())
        };
        let (ours, theirs) = (run(true), run(false));
        for (x, y) in [(&ours.0, &theirs.0), (&ours.1, &theirs.1), (&ours.2, &theirs.2)] {
            assert!(max_abs_diff(x, y) < tolerance, "{dtype:?}: {}", max_abs_diff(x, y));
        }
        let values: Vec<f64> = ours.0.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap();
        assert!(values.contains(&0.0) && values.iter().any(|&v| v > 0.0));
    }
    let (a, b) = (random(&[9, 13], 1, DType::F32), random(&[13, 9], 2, DType::F32));
    let err = add_relu(&a, &b).unwrap_err().to_string();
    assert!(err.contains("[9, 13]") && err.contains("[13, 9]"), "{err}");
}

/// The kernel and generic paths of `f` agree within `tol` in value and in every gradient.
fn kernels_against_generic(what: &str, vars: &[&Var], f: impl Fn(bool) -> Tensor, tol: f64) {
    let (y, grads) = contrastive_core::kernel::path_differences(vars, |generic| Ok(f(generic))).unwrap();
    assert!(y < tol, "{what}: outputs differ by {y}");
    for (i, d) in grads.iter().enumerate() {
        assert!(*d < tol, "{what}: gradient of input {i} differs by {d}");
    }
}

#[test]
fn every_layer_gives_the_same_values_and_gradients_on_the_generic_path() {
    for &(cin, cout, k, s, p, side) in &GEOMETRIES {
        let g = ConvGeometry { in_channels: cin, out_channels: cout, kernel: k, stride: s, padding: p };
        // One more column than rows: at stride 2 the stride does not divide the padded width.
        let x = Var::from_tensor(&random(&[2, cin, side, side + 1], 1, DType::F64)).unwrap();
        let w = Var::from_tensor(&random(&[cout, cin, k, k], 2, DType::F64)).unwrap();
        kernels_against_generic(
            &format!("conv {g:?}"),
            &[&x, &w],
            |_| conv2d_forward(x.as_tensor(), w.as_tensor(), g).unwrap(),
            1e-10,
        );
        let xl = Var::from_tensor(&to_channels_last(x.as_tensor())).unwrap();
        kernels_against_generic(
            &format!("channels-last conv {g:?}"),
            &[&xl, &w],
            |_| conv2d_forward_channels_last(xl.as_tensor(), w.as_tensor(), g).unwrap(),
            1e-10,
        );
    }
    // Conv + BatchNorm (+ ReLU) in training, and BatchNorm alone: one block per path, built from
    // one seed, so that both start from the same variables and running statistics.
    for activation in [Activation::Relu, Activation::Identity] {
        let g = ConvGeometry { in_channels: 3, out_channels: 5, kernel: 3, stride: 2, padding: 1 };
        let build = || {
            let store = ParamStore::new(5, InitScheme::PyTorch);
            let vb = store.var_builder(DType::F64, &Device::Cpu);
            let block =
                ConvBn::new(conv2d(g, false, vb.pp("conv")).unwrap(), batch_norm(5, vb.pp("bn")).unwrap(), activation);
            (store, block)
        };
        let (a, b) = (build(), build());
        let x = Var::from_tensor(&random(&[3, 8, 8, 3], 3, DType::F64)).unwrap();
        kernels_against_generic(
            &format!("conv-BatchNorm {activation:?}"),
            &[&x],
            |generic| if generic { &b.1 } else { &a.1 }.forward_t(x.as_tensor(), true).unwrap(),
            1e-10,
        );
        for (va, vb) in a.0.trainable().iter().zip(b.0.trainable().iter()) {
            assert_eq!(va.0, vb.0);
        }
        let (ra, rb) = (a.1.bn().running_var(), b.1.bn().running_var());
        assert!(max_abs_diff(ra, rb) < 1e-12, "running statistics of both paths");
    }
    for relu in [false, true] {
        let build = || {
            let store = ParamStore::new(6, InitScheme::PyTorch);
            batch_norm(4, store.var_builder(DType::F64, &Device::Cpu).pp("bn")).unwrap()
        };
        let (a, b) = (build(), build());
        let x = Var::from_tensor(&random(&[6, 4, 3, 3], 4, DType::F64).affine(2.0, 0.5).unwrap()).unwrap();
        kernels_against_generic(
            &format!("BatchNorm relu {relu}"),
            &[&x],
            |generic| {
                let bn = if generic { &b } else { &a };
                if relu { bn.forward_relu_t(x.as_tensor(), true) } else { bn.forward_t(x.as_tensor(), true) }.unwrap()
            },
            1e-10,
        );
    }
    let (a, b) = (
        Var::from_tensor(&random(&[4, 6, 5], 7, DType::F32)).unwrap(),
        Var::from_tensor(&random(&[4, 6, 5], 8, DType::F32)).unwrap(),
    );
    kernels_against_generic("add-ReLU", &[&a, &b], |_| add_relu(a.as_tensor(), b.as_tensor()).unwrap(), 1e-6);
    // Max pooling after a ReLU: windows full of tied zeros, whose gradient goes to the first.
    for pool in [
        MaxPool2d { kernel: 3, stride: 2, padding: 1 },
        MaxPool2d { kernel: 2, stride: 2, padding: 0 },
        MaxPool2d { kernel: 3, stride: 1, padding: 0 },
    ] {
        let x = Var::from_tensor(&random(&[2, 3, 9, 9], 9, DType::F32)).unwrap();
        kernels_against_generic(
            &format!("{pool:?}"),
            &[&x],
            |_| pool.forward(&x.as_tensor().relu().unwrap()).unwrap(),
            1e-6,
        );
        let x = Var::from_tensor(&random(&[2, 9, 9, 5], 10, DType::F32)).unwrap();
        kernels_against_generic(
            &format!("channels-last {pool:?}"),
            &[&x],
            |_| pool.forward_channels_last(&x.as_tensor().relu().unwrap()).unwrap(),
            1e-6,
        );
    }
}
