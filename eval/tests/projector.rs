//! TensorBoard's projector files, read back through TensorBoard's own projector plugin
//! (tests/golden/read_projector.py, tensorboard 2.21.0 from PyPI): the tensor to the bit, the
//! metadata a row per item under its header, the sprite's grid.

use candle_core::{Device, Tensor};
use contrastive_eval::{write_projector, Content, Items, ProjectorEmbedding, Thumbnails, PROJECTOR_CONFIG};
use serde_json::Value;
use std::path::Path;

/// What TensorBoard's projector serves for `dir`, or None when python3 has no tensorboard and
/// CONTRASTIVE_REQUIRE_TENSORBOARD is not 1 (CI sets it and installs tensorboard).
fn served(dir: &Path) -> Option<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/read_projector.py");
    let out = std::process::Command::new("python3").arg(script).arg(dir).output();
    let required = std::env::var("CONTRASTIVE_REQUIRE_TENSORBOARD").is_ok_and(|v| v == "1");
    match out {
        Ok(o) if o.status.success() => Some(serde_json::from_slice(&o.stdout).unwrap()),
        Ok(o) if o.status.code() == Some(3) && !required => {
            eprintln!("skipped: python3 has no tensorboard (pip install tensorboard)");
            None
        }
        Ok(o) => panic!("read_projector.py: {}\n{}", o.status, String::from_utf8_lossy(&o.stderr)),
        Err(e) => panic!("python3: {e}"),
    }
}

fn thumbnails(n: usize) -> Thumbnails {
    // Picture i is filled with (10 i, 20 + i, 255 - i), except its top-left pixel, black.
    let (height, width) = (3, 4);
    let mut pixels = Vec::new();
    for i in 0..n {
        for p in 0..height * width {
            pixels.extend(if p == 0 { [0, 0, 0] } else { [10 * i as u8, 20 + i as u8, 255 - i as u8] });
        }
    }
    Thumbnails { height, width, channels: 3, pixels }
}

#[test]
fn the_projector_serves_our_tensor_metadata_and_sprite() {
    let dir = tempfile::tempdir().unwrap();
    // Values that a decimal round trip must keep to the bit: tiny, huge, negative zero, thirds.
    let values: Vec<f32> = vec![
        0.1,
        -1.0 / 3.0,
        1e-30,
        -3.402_823e38,
        -0.0,
        7.0,
        2.5e-7,
        123_456.79,
        0.3,
        -0.2,
        1.0,
        4.0,
        1.0 / 7.0,
        9.0,
        -8.5,
    ];
    let sentences = Tensor::from_vec(values.clone(), (5, 3), &Device::Cpu).unwrap();
    let sentence_items = Items {
        labels: Some(vec![0, 1, 1, 0, 2]),
        class_names: vec!["news".into(), "sport".into(), "tab\there".into()],
        content: Content::Sentences(vec![
            "A plain sentence.".into(),
            "Two\tcolumns\nand two lines\r\nhere".into(),
            "Ünïcödé — 漢字 \"quoted\" </script>".into(),
            String::new(),
            "last".into(),
        ]),
    };
    let pictures = Tensor::from_vec((0..10).map(|v| v as f32).collect::<Vec<_>>(), (5, 2), &Device::Cpu).unwrap();
    let picture_items = Items { labels: None, class_names: vec![], content: Content::Thumbnails(thumbnails(5)) };
    let files = write_projector(
        dir.path(),
        &[
            ProjectorEmbedding { name: "sentences", embeddings: &sentences, items: &sentence_items },
            ProjectorEmbedding { name: "images-1", embeddings: &pictures, items: &picture_items },
        ],
    )
    .unwrap();
    assert_eq!(files.len(), 6);
    assert!(files.iter().all(|f| f.exists()));
    assert!(dir.path().join(PROJECTOR_CONFIG).exists());

    // The sprite: 5 pictures on a 3-per-row grid of 4x3 pictures, 12x6 pixels.
    let sprite = image::open(dir.path().join("projector/images-1_sprite.png")).unwrap().to_rgb8();
    assert_eq!(sprite.dimensions(), (12, 6));
    for i in 0..5u32 {
        let (x0, y0) = ((i % 3) * 4, (i / 3) * 3);
        assert_eq!(sprite.get_pixel(x0, y0).0, [0, 0, 0]);
        assert_eq!(sprite.get_pixel(x0 + 3, y0 + 2).0, [10 * i as u8, 20 + i as u8, 255 - i as u8]);
    }

    let Some(served) = served(dir.path()) else { return };
    assert_eq!(served["runs"], serde_json::json!(["."]));
    let run = &served["."];
    let s = &run["sentences"];
    assert_eq!(s["shape"], serde_json::json!([5, 3]));
    let tensor: Vec<f32> = s["tensor"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().clone())
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(
        tensor.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        values.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    let metadata = s["metadata"].as_str().unwrap();
    assert_eq!(
        metadata.lines().collect::<Vec<_>>(),
        vec![
            "index\tlabel\tclass\tsentence",
            "0\t0\tnews\tA plain sentence.",
            "1\t1\tsport\tTwo columns and two lines  here",
            "2\t1\tsport\tÜnïcödé — 漢字 \"quoted\" </script>",
            "3\t0\tnews\t",
            "4\t2\ttab here\tlast",
        ]
    );
    let p = &run["images-1"];
    assert_eq!(p["shape"], serde_json::json!([5, 2]));
    assert_eq!(p["sprite"]["dims"], serde_json::json!([4, 3]));
    // Without labels or text each row still has two columns: TensorBoard reads the header.
    assert_eq!(p["metadata"].as_str().unwrap().lines().next(), Some("index\tlabel"));
    assert_eq!(p["metadata"].as_str().unwrap().lines().count(), 6);
    let served_png = base64_decode(p["sprite"]["png_base64"].as_str().unwrap());
    assert_eq!(served_png, std::fs::read(dir.path().join("projector/images-1_sprite.png")).unwrap());
}

#[test]
fn projector_inputs_that_do_not_fit_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let x = Tensor::zeros((3, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    let labelled = Items::labelled(&[0, 1]);
    let err = |name: &str, x: &Tensor, items: &Items| {
        write_projector(dir.path(), &[ProjectorEmbedding { name, embeddings: x, items }]).unwrap_err().to_string()
    };
    assert!(err("ok", &x, &labelled).contains("labels"), "{}", err("ok", &x, &labelled));
    assert!(err("a b", &x, &Items::default()).contains("`a b`"));
    let nan = Tensor::new(&[[0f32, f32::NAN]], &Device::Cpu).unwrap();
    assert!(err("nan", &nan, &Items::default()).contains("non-finite"));
    let big = Items { content: Content::Thumbnails(thumbnails(3)), ..Items::default() };
    let few = err("pictures", &x.narrow(0, 0, 2).unwrap(), &big);
    assert!(few.contains("content"), "{few}");
    // 10,000 pictures of 100 x 100 would make a sprite past TensorBoard's 8192 pixels a side.
    let huge = Thumbnails { height: 100, width: 100, channels: 1, pixels: vec![0; 100 * 100 * 10_000] };
    assert!(huge.sprite_png().unwrap_err().to_string().contains("8192"));
    let twice = [
        ProjectorEmbedding { name: "a", embeddings: &x, items: &Items::default() },
        ProjectorEmbedding { name: "a", embeddings: &x, items: &Items::default() },
    ];
    assert!(write_projector(dir.path(), &twice).unwrap_err().to_string().contains("twice"));
}

/// Standard base64 (RFC 4648) back to bytes.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let digits: Vec<u8> = chunk.iter().filter(|&&c| c != b'=').map(|&c| value(c)).collect();
        let n = digits.iter().enumerate().fold(0u32, |n, (i, &d)| n | (d as u32) << (18 - 6 * i));
        out.extend(&[(n >> 16) as u8, (n >> 8) as u8, n as u8][..digits.len() - 1]);
    }
    out
}
