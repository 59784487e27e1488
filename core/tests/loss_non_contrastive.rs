//! Golden values for the non-contrastive losses from lightly 1.6.0's implementations
//! (`NegativeCosineSimilarity`, `BarlowTwinsLoss`, `VICRegLoss`, `DINOLoss`), computed in f64 by
//! `core/tests/golden/non_contrastive.py`: each loss and its gradient with respect to the first
//! input (every student view for DINO), to 1e-10 in f64 and 1e-5 in f32. The lines that produce
//! each value are quoted above its test.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{golden_fixture, scalar, tensor, Rows};
use contrastive_core::collective::Local;
use contrastive_core::loss::*;

const N: usize = 6;
const D: usize = 5;

/// The closed-form inputs of `non_contrastive.py`, `fixture()` (those of `losses.py`).
fn fixture() -> (Rows, Rows) {
    let (z1, z2, _) = golden_fixture();
    (z1, z2)
}

/// The loss of `f(z1 as a variable, z2)` and its gradient, checked against `(loss, gradient)`.
fn check(golden: &(f64, [f64; N * D]), f: impl Fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>) {
    let (z1, z2) = fixture();
    for dtype in [DType::F64, DType::F32] {
        let tol = if dtype == DType::F64 { 1e-10 } else { 1e-5 };
        let x = Var::from_tensor(&tensor(&z1, dtype)).unwrap();
        let loss = f(x.as_tensor(), &tensor(&z2, dtype)).unwrap();
        let got = scalar(&loss);
        assert!((got - golden.0).abs() <= tol * golden.0.abs().max(1.0), "{dtype:?}: loss {got}, golden {}", golden.0);
        let grad = loss.backward().unwrap().get(x.as_tensor()).unwrap().to_dtype(DType::F64).unwrap();
        let grad = grad.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for (i, (g, want)) in grad.iter().zip(&golden.1).enumerate() {
            assert!((g - want).abs() <= tol, "{dtype:?}: gradient {i}: {g}, golden {want}");
        }
    }
}

// z1, z2 = fixture(); x = z1.clone().requires_grad_(True)
// show("negative_cosine", NegativeCosineSimilarity()(x, z2), x)   # lightly.loss
const NEGATIVE_COSINE: (f64, [f64; 30]) = (
    -0.2069915854242292,
    [
        -0.056966697548068136,
        -0.042996601090014804,
        -0.01756958414900431,
        0.015831714593935092,
        0.0515593008891453,
        -0.020283158602270063,
        0.006714625171590223,
        0.013437709567176728,
        0.0065047129112612775,
        0.002723485248551552,
        -0.036941738227609405,
        -0.042574828937048864,
        -0.05480566745507018,
        -0.04384370320472035,
        0.004469509323363381,
        -0.055051173529016166,
        -0.05657150388398992,
        -0.047686958047294614,
        -0.030006525271482794,
        -0.0035115329137921296,
        -0.04734153071989175,
        -0.06233060753305722,
        -0.0579112937432013,
        -0.03888184833599798,
        -0.020457118549836756,
        -0.0452912046923459,
        -0.047646789799983436,
        -0.0642167703856704,
        -0.05122220348620163,
        -0.02736346656555062,
    ],
);

#[test]
fn negative_cosine_matches_lightly() {
    check(&NEGATIVE_COSINE, negative_cosine);
}

// show("barlow_twins", BarlowTwinsLoss()(x, z2), x)
// show("barlow_twins_l02", BarlowTwinsLoss(lambda_param=0.2)(x, z2), x)
const BARLOW_TWINS: (f64, [f64; 30]) = (
    8.43706255790434,
    [
        -0.0041521172264751514,
        0.9336074094972794,
        0.7830546434169745,
        0.7529719607139886,
        0.5654049030359733,
        -0.002829918118238716,
        -0.1802381744469426,
        0.3301051363423532,
        0.4854625147176049,
        0.7830452919746407,
        -0.0007767145805302594,
        -0.5535500236576895,
        0.2839339337671032,
        0.23007622062368346,
        0.36439156489364005,
        0.0010106302965523313,
        -0.3502993701063649,
        0.11443978998767289,
        -0.18202986141547914,
        -0.5463568478269692,
        0.002436451798313634,
        0.007738840277281763,
        -0.4546582446061318,
        -0.5646944955272563,
        -0.4943403100745291,
        0.0043116678303781585,
        0.14274131843643612,
        -1.056875258907972,
        -0.7217863391125416,
        -0.6721446020027558,
    ],
);
const BARLOW_TWINS_L02: (f64, [f64; 30]) = (
    9.363284818724045,
    [
        -0.20271956895234566,
        1.1018570631187798,
        0.9492152113872205,
        0.8612645112334673,
        0.6836160188198506,
        -0.1250085573282486,
        -0.23647080240837995,
        0.30894805929455776,
        0.5186790384735757,
        0.9001879743364771,
        -0.04379402143359363,
        -0.6512337918625338,
        0.2946276103265819,
        0.24035360563462208,
        0.39818333447317983,
        0.04173766571935482,
        -0.36660460718447324,
        0.1526661847737413,
        -0.251359612620266,
        -0.6548174329624924,
        0.12709055464834906,
        0.051704908952671595,
        -0.5134610624628134,
        -0.6668579928909087,
        -0.5777272308533435,
        0.20269392734648406,
        0.1007472293839357,
        -1.191996003319288,
        -0.70207954983049,
        -0.7494426638136716,
    ],
);

#[test]
fn barlow_twins_matches_lightly() {
    check(&BARLOW_TWINS, |a, b| barlow_twins(a, b, BARLOW_TWINS_LAMBDA));
    check(&BARLOW_TWINS_L02, |a, b| barlow_twins(a, b, 0.2));
}

// show("vicreg", VICRegLoss()(x, z2), x)
// show("vicreg_5_3_2", VICRegLoss(lambda_param=5.0, mu_param=3.0, nu_param=2.0, eps=1e-2)(x, z2), x)
const VICREG: (f64, [f64; 30]) = (
    36.31498934421271,
    [
        -0.2098223179056231,
        -0.2223917905930356,
        0.7015695377022116,
        1.6958863074981687,
        2.429029008869098,
        -0.4188066399336673,
        -0.20536325767363622,
        0.09732745127185843,
        0.1995768575794936,
        0.2974306439881678,
        -0.4937577226349609,
        -0.8326416301990498,
        -1.5144309077402618,
        -1.3907319577715098,
        -0.08992870066050246,
        -0.5034352549297227,
        -1.8647488983228901,
        -2.5064239669087613,
        -0.8392904891238216,
        0.9640518120922615,
        -0.4360367208482099,
        -2.72276076167967,
        -1.974064998076148,
        -0.23078869475393082,
        -0.8710145086958021,
        -0.2309737135240859,
        -2.801856607779238,
        -1.0232878923490554,
        -1.564416232859536,
        -1.9952994604054208,
    ],
);
const VICREG_5_3_2: (f64, [f64; 30]) = (
    6.553968982821724,
    [
        -0.1518209132201967,
        0.003868747466749447,
        0.21328283859472444,
        0.4746589485741338,
        0.568932668416892,
        -0.0919558952738065,
        0.013243019445871626,
        0.10779749049294629,
        -0.015824733204252636,
        0.022038480478063463,
        0.01709007525480786,
        -0.11505292640042028,
        -0.3626812696183016,
        -0.43558193315583477,
        -0.071539048018131,
        0.008220153761052108,
        -0.37853323408492195,
        -0.6468573080230673,
        -0.17173048915919337,
        0.28396170583439745,
        -0.09554029616087606,
        -0.6480064775005024,
        -0.3952107354395592,
        0.0004270239460878317,
        -0.13813978954670875,
        -0.14455959831623455,
        -0.6054717181762803,
        -0.16019317122677396,
        -0.2779016588871681,
        -0.5184002581269528,
    ],
);

#[test]
fn vicreg_matches_lightly() {
    check(&VICREG, |a, b| vicreg(a, b, &VicRegWeights::default()));
    let weights = VicRegWeights { invariance: 5.0, variance: 3.0, covariance: 2.0, eps: 1e-2 };
    check(&VICREG_5_3_2, |a, b| vicreg(a, b, &weights));
}

/// Barlow Twins as the paper writes it: the (D, D) cross-correlation of the standardised views,
/// its diagonal pulled to 1 and the rest, weighted by λ, to 0.
fn barlow_twins_naive(a: &Tensor, b: &Tensor, lambda: f64) -> candle_core::Result<Tensor> {
    let n = a.dim(0)? as f64;
    let standardise = |z: &Tensor| -> candle_core::Result<Tensor> {
        let c = z.broadcast_sub(&z.mean_keepdim(0)?)?;
        c.broadcast_div(&(c.sqr()?.mean_keepdim(0)? + 1e-5)?.sqrt()?)
    };
    let c = (standardise(a)?.t()?.matmul(&standardise(b)?)? / n)?;
    let eye = Tensor::eye(c.dim(0)?, DType::F64, c.device())?;
    let on = ((&c * &eye)?.sum(1)? - 1.0)?.sqr()?.sum_all()?;
    let off = (&c - (&c * &eye)?)?.sqr()?.sum_all()?;
    on + (off * lambda)?
}

/// VICReg as the paper writes it, the (D, D) covariance of each view built whole.
fn vicreg_naive(a: &Tensor, b: &Tensor, w: &VicRegWeights) -> candle_core::Result<Tensor> {
    let (n, d) = a.dims2()?;
    let centred = |z: &Tensor| z.broadcast_sub(&z.mean_keepdim(0)?);
    let hinge = |z: &Tensor| -> candle_core::Result<Tensor> {
        let std = ((centred(z)?.sqr()?.sum(0)? / (n as f64 - 1.0))? + w.eps)?.sqrt()?;
        (1.0 - std)?.relu()?.mean_all()
    };
    let off_diagonal = |z: &Tensor| -> candle_core::Result<Tensor> {
        let c = centred(z)?;
        let cov = (c.t()?.matmul(&c)? / (n as f64 - 1.0))?;
        let eye = Tensor::eye(d, DType::F64, cov.device())?;
        (&cov - (&cov * &eye)?)?.sqr()?.sum_all()? / d as f64
    };
    let invariance = (a - b)?.sqr()?.mean_all()?;
    let variance = ((hinge(a)? + hinge(b)?)? * 0.5)?;
    let covariance = (off_diagonal(a)? + off_diagonal(b)?)?;
    (invariance * w.invariance)? + (variance * w.variance)? + (covariance * w.covariance)?
}

/// Wider embeddings than the batch (the usual case: 2048-d over 256 rows) take ‖C‖² through
/// the (N, N) Gram matrices instead of the (D, D) ones; the golden inputs above (6 x 5) take the
/// (D, D) path. Both must give the papers' loss and gradient, here to 1e-10 in f64 on both sides
/// of N = D.
#[test]
fn barlow_twins_and_vicreg_equal_the_d_by_d_form_at_any_width() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for (n, d) in [(4, 40), (8, 8), (9, 3), (16, 128)] {
        let mut random = || {
            let v: Vec<f64> = (0..n * d).map(|_| rng.random_range(-2.0..2.0)).collect();
            Tensor::from_vec(v, (n, d), &Device::Cpu).unwrap()
        };
        let (a, b) = (Var::from_tensor(&random()).unwrap(), random());
        let weights = VicRegWeights { invariance: 5.0, variance: 3.0, covariance: 2.0, eps: 1e-2 };
        let pairs: [(Tensor, Tensor); 2] = [
            (barlow_twins(&a, &b, 0.2).unwrap(), barlow_twins_naive(&a, &b, 0.2).unwrap()),
            (vicreg(&a, &b, &weights).unwrap(), vicreg_naive(&a, &b, &weights).unwrap()),
        ];
        for (which, (fast, naive)) in ["barlow_twins", "vicreg"].iter().zip(pairs) {
            let (f, g) = (scalar(&fast), scalar(&naive));
            assert!((f - g).abs() <= 1e-10 * g.abs().max(1.0), "{which} {n}x{d}: {f} against {g}");
            let grad = |l: Tensor| l.backward().unwrap().get(a.as_tensor()).unwrap().flatten_all().unwrap();
            let (gf, gn) = (grad(fast).to_vec1::<f64>().unwrap(), grad(naive).to_vec1::<f64>().unwrap());
            for (i, (x, y)) in gf.iter().zip(&gn).enumerate() {
                assert!((x - y).abs() <= 1e-10 * y.abs().max(1.0), "{which} {n}x{d} gradient {i}: {x} against {y}");
            }
        }
    }
}

#[test]
fn non_contrastive_losses_name_bad_shapes() {
    let dev = Device::Cpu;
    let (a, b) = (Tensor::ones((4, 3), DType::F32, &dev).unwrap(), Tensor::ones((5, 3), DType::F32, &dev).unwrap());
    let one = Tensor::ones((1, 3), DType::F32, &dev).unwrap();
    let errors = [
        negative_cosine(&a, &b).unwrap_err().to_string(),
        barlow_twins(&a, &b, 5e-3).unwrap_err().to_string(),
        barlow_twins(&one, &one, 5e-3).unwrap_err().to_string(),
        barlow_twins(&a, &a, -1.0).unwrap_err().to_string(),
        vicreg(&a, &b, &VicRegWeights::default()).unwrap_err().to_string(),
        vicreg(&one, &one, &VicRegWeights::default()).unwrap_err().to_string(),
    ];
    for (e, want) in errors.iter().zip([
        "4 predictions and 5",
        "4 and 5 rows",
        "at least 2 rows",
        "lambda",
        "4 and 5 rows",
        "at least 2 rows",
    ]) {
        assert!(e.contains(want), "{e}");
    }
}

// B, K = 3, 5
// def view(v, scale):
//     return torch.tensor([[math.sin(0.3 * (v + 1) * (b + 1) + 0.7 * k) * scale for k in range(K)] for b in range(B)])
// teacher = [view(v, 2.0) for v in range(2)]
// student = [view(v + 7, 1.5).requires_grad_(True) for v in range(4)]
// loss = DINOLoss(output_dim=K, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=4,
//                 student_temp=0.1, center_momentum=0.9)
// first = loss(teacher, student, epoch=1)              # also moves loss.center
// second = loss([t * 0.5 for t in teacher], student, epoch=9)
// (the loss, then the gradient of every student view; then the centre after the first call)
const DINO_EPOCH1: (f64, [f64; 60]) = (
    10.775064470220448,
    [
        0.555514254488563,
        -0.49860456308104223,
        -0.05690969121404932,
        -2.3230909923999578e-10,
        3.883774829038773e-11,
        -0.20063071105450206,
        -0.354924832842132,
        6.71900211735115e-08,
        0.0016078077533951815,
        0.5539476689532177,
        -0.5315572674078658,
        0.5216919990198219,
        0.009864219664887947,
        1.0486768204040612e-06,
        4.633542282833786e-11,
        0.555535763625837,
        -0.00134332797176607,
        -0.5541906780492099,
        -1.7807466600024717e-06,
        2.3141798889264026e-08,
        -5.860059496680142e-08,
        -0.4986457894977602,
        -0.05656073257696726,
        0.27191895012366596,
        0.28328763055165646,
        0.553738263309485,
        -0.5537167477769799,
        -2.1515539933933548e-05,
        7.341724049615328e-12,
        8.718200558586716e-14,
        1.110937726149348,
        -0.4999616019131873,
        -0.6111002912370749,
        -1.6567663797557784e-06,
        0.00012582376729398242,
        -0.2006307636611503,
        -0.8533986667571648,
        0.2266530211834992,
        0.8248149686931894,
        0.002561440541626287,
        0.5554193940567448,
        -0.5553978720470837,
        -2.159245361022284e-05,
        7.622537450115375e-10,
        6.96816952935656e-08,
        0.6560820728262847,
        -0.4999267747833801,
        -0.6110982345877214,
        6.285392892100984e-05,
        0.4548800826158955,
        -0.20059306972065374,
        -0.7314105961856083,
        0.9246632853911333,
        0.0073398697424590644,
        5.107726696233413e-07,
        -0.555495213616855,
        -0.5554366897890715,
        -2.1509942598742437e-05,
        4.811583981107058e-05,
        1.1109052975087141,
    ],
);
const DINO_EPOCH9: (f64, [f64; 60]) = (
    10.962494246154575,
    [
        0.5537484361224494,
        -0.2977913930280394,
        -0.2547671364451809,
        -0.0011895283645279736,
        -3.782847010795177e-07,
        -0.3276809006531542,
        -0.22697894114307052,
        -0.0008953628418995135,
        0.0016075359713375254,
        0.5539476686667866,
        -0.5300892013267392,
        0.5202241623404745,
        0.009863990402343842,
        1.0485466229815207e-06,
        3.7297825695321374e-11,
        0.5555129404609358,
        -0.031430455568411425,
        -0.4991985884989024,
        -0.02486798373381833,
        -1.5912659803757386e-05,
        -0.0017658769667085023,
        -0.29783261944475736,
        -0.25441817780809883,
        0.27072942199144706,
        0.28328725222811757,
        0.5142133310002432,
        -0.4899053835381406,
        -0.024288280473825617,
        -1.9659570223952972e-05,
        -7.418053075331579e-09,
        1.1091490846183334,
        -0.3292355594568298,
        -0.753965646917899,
        -0.02605738788575696,
        0.00010950964215250798,
        -0.3294467716259159,
        -0.5246396050051007,
        0.02790014592044699,
        0.8236251687789129,
        0.0025610619316564264,
        0.5173625278286298,
        -0.4930543444875918,
        -0.02428858665004601,
        -1.965894550935455e-05,
        6.225451743909543e-08,
        0.6542934312952701,
        -0.3292007323270227,
        -0.7539635902685455,
        -0.02599287719045619,
        0.45486376849075405,
        -0.3294090776854193,
        -0.40265153443354423,
        0.7259104101280812,
        0.006150069828182535,
        1.321626997622607e-07,
        -0.5935520798449703,
        -0.4930931622295796,
        -0.024288504139034533,
        2.8456132047971024e-05,
        1.1109052900815366,
    ],
);
const DINO_CENTER: [f64; 5] =
    [0.13713395933081046, 0.1770977730158386, 0.1337697368224812, 0.027527703191715245, -0.09166103938234188];

fn dino_view(v: usize, scale: f64) -> Rows {
    (0..3)
        .map(|b| (0..5).map(|k| (0.3 * ((v + 1) * (b + 1)) as f64 + 0.7 * k as f64).sin() * scale).collect())
        .collect()
}

#[test]
fn dino_matches_lightly_with_its_centre_and_temperature_warm_up() {
    for dtype in [DType::F64, DType::F32] {
        let tol = if dtype == DType::F64 { 1e-10 } else { 1e-5 };
        let config = DinoLossConfig {
            output_dim: 5,
            warmup_teacher_temp: 0.04,
            teacher_temp: 0.07,
            warmup_teacher_temp_epochs: 4,
            student_temp: 0.1,
            center_momentum: 0.9,
        };
        let mut dino = DinoLoss::new(config, dtype, &Device::Cpu).unwrap();
        assert!((dino.teacher_temperature(1) - 0.05).abs() < 1e-15);
        assert_eq!(dino.teacher_temperature(3), 0.07);
        let teacher: Vec<Tensor> = (0..2).map(|v| tensor(&dino_view(v, 2.0), dtype)).collect();
        let student: Vec<Var> =
            (0..4).map(|v| Var::from_tensor(&tensor(&dino_view(v + 7, 1.5), dtype)).unwrap()).collect();
        let views: Vec<Tensor> = student.iter().map(|v| v.as_tensor().clone()).collect();
        let compare = |loss: &Tensor, golden: &(f64, [f64; 60]), what: &str| {
            let got = scalar(loss);
            assert!(
                (got - golden.0).abs() <= tol * golden.0.abs(),
                "{dtype:?} {what}: loss {got}, golden {}",
                golden.0
            );
            let grads = loss.backward().unwrap();
            let flat: Vec<f64> = student
                .iter()
                .flat_map(|v| {
                    let g = grads.get(v.as_tensor()).unwrap().to_dtype(DType::F64).unwrap();
                    g.flatten_all().unwrap().to_vec1::<f64>().unwrap()
                })
                .collect();
            for (i, (g, want)) in flat.iter().zip(&golden.1).enumerate() {
                assert!((g - want).abs() <= tol, "{dtype:?} {what}: gradient {i}: {g}, golden {want}");
            }
        };
        compare(&dino.loss(&teacher, &views, 1).unwrap(), &DINO_EPOCH1, "epoch 1");
        dino.update_center(&teacher, &Local).unwrap();
        let center = dino.center().to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for (c, want) in center.iter().zip(&DINO_CENTER) {
            assert!((c - want).abs() <= tol, "{dtype:?}: centre {c}, golden {want}");
        }
        let halved: Vec<Tensor> = teacher.iter().map(|t| (t * 0.5).unwrap()).collect();
        compare(&dino.loss(&halved, &views, 9).unwrap(), &DINO_EPOCH9, "epoch 9");
        // The teacher gets no gradient, whatever it is.
        let t = Var::from_tensor(&teacher[0]).unwrap();
        let grads = dino.loss(&[t.as_tensor().clone(), teacher[1].clone()], &views, 0).unwrap().backward().unwrap();
        assert!(grads.get(t.as_tensor()).is_none());
    }
}

#[test]
fn dino_names_bad_views_and_settings() {
    let dev = Device::Cpu;
    let dino = DinoLoss::new(DinoLossConfig { output_dim: 4, ..DinoLossConfig::default() }, DType::F32, &dev).unwrap();
    let v = |b: usize, k: usize| Tensor::ones((b, k), DType::F32, &dev).unwrap();
    let e = dino.loss(&[v(3, 4)], &[v(3, 4), v(2, 4)], 0).unwrap_err().to_string();
    assert!(e.contains("view 1 has shape [2, 4]"), "{e}");
    let e = dino.loss(&[v(3, 5)], &[v(3, 5)], 0).unwrap_err().to_string();
    assert!(e.contains("(B, 4)"), "{e}");
    let e = dino.loss(&[v(3, 4)], &[v(3, 4)], 0).unwrap_err().to_string();
    assert!(e.contains("no pair"), "{e}");
    let e = dino.loss(&[], &[v(3, 4)], 0).unwrap_err().to_string();
    assert!(e.contains("no views"), "{e}");
    let bad = DinoLossConfig { student_temp: 0.0, ..DinoLossConfig::default() };
    assert!(DinoLoss::new(bad, DType::F32, &dev).unwrap_err().to_string().contains("student_temp"));
    let bad = DinoLossConfig { center_momentum: 1.5, ..DinoLossConfig::default() };
    assert!(DinoLoss::new(bad, DType::F32, &dev).unwrap_err().to_string().contains("center_momentum"));
}

/// The fused CPU cross-entropy against the tensor-op path, on stacked views of odd sizes, with
/// more student views than teacher views and fewer: values and student gradients agree, and
/// `loss` of the views apart equals `loss_stacked` of them stacked.
#[test]
fn dino_fused_cross_entropy_matches_the_tensor_ops() {
    use contrastive_core::kernel::path_differences;
    let dev = Device::Cpu;
    for (teacher_views, student_views, rows, dim) in [(2usize, 5usize, 7usize, 33usize), (3, 2, 4, 9), (1, 3, 1, 5)] {
        let config = DinoLossConfig { output_dim: dim, student_temp: 0.13, ..DinoLossConfig::default() };
        let mut dino = DinoLoss::new(config, DType::F64, &dev).unwrap();
        let values =
            |n: usize, seed: f64| -> Vec<f64> { (0..n).map(|i| ((i as f64 + seed) * 0.37).sin() * 3.0).collect() };
        let teacher =
            Tensor::from_vec(values(teacher_views * rows * dim, 0.5), (teacher_views * rows, dim), &dev).unwrap();
        dino.update_center(std::slice::from_ref(&teacher), &Local).unwrap();
        let student =
            Var::from_vec(values(student_views * rows * dim, 11.0), (student_views * rows, dim), &dev).unwrap();
        let (value, grads) =
            path_differences(&[&student], |_| dino.loss_stacked(&teacher, teacher_views, student.as_tensor(), 2))
                .unwrap();
        assert!(value < 1e-12 && grads[0] < 1e-12, "{teacher_views}/{student_views}: {value} {grads:?}");
        let apart = |x: &Tensor, views: usize| -> Vec<Tensor> { x.chunk(views, 0).unwrap() };
        let stacked = scalar(&dino.loss_stacked(&teacher, teacher_views, student.as_tensor(), 2).unwrap());
        let split =
            scalar(&dino.loss(&apart(&teacher, teacher_views), &apart(student.as_tensor(), student_views), 2).unwrap());
        assert!((stacked - split).abs() < 1e-12, "{stacked} vs {split}");
    }
    let dino = DinoLoss::new(DinoLossConfig { output_dim: 4, ..DinoLossConfig::default() }, DType::F32, &dev).unwrap();
    let v = |b: usize, k: usize| Tensor::ones((b, k), DType::F32, &dev).unwrap();
    let e = dino.loss_stacked(&v(6, 4), 4, &v(6, 4), 0).unwrap_err().to_string();
    assert!(e.contains("6 teacher rows do not split into 4 views"), "{e}");
    let e = dino.loss_stacked(&v(6, 4), 2, &v(7, 4), 0).unwrap_err().to_string();
    assert!(e.contains("7 student rows"), "{e}");
    let e = dino.loss_stacked(&v(6, 4), 2, &v(6, 5), 0).unwrap_err().to_string();
    assert!(e.contains("(views x B, 4)"), "{e}");
}
