//! The readers on good and broken files.

use contrastive_core::data::Dataset;
use contrastive_vision::*;
use std::io::Write;
use std::path::Path;

fn idx_images(n: u32, rows: u32, cols: u32, pixels: &[u8], magic: u32) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [magic, n, rows, cols] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(pixels);
    b
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0x0801u32.to_be_bytes());
    b.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    b.extend_from_slice(labels);
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_raw_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..2 * 2 * 3).map(|i| (i * 20) as u8).collect();
    std::fs::write(dir.path().join("train-images-idx3-ubyte.gz"), gz(&idx_images(2, 2, 3, &pixels, 0x0803))).unwrap();
    std::fs::write(dir.path().join("train-labels-idx1-ubyte"), idx_labels(&[7, 3])).unwrap();
    std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), idx_images(1, 2, 3, &pixels[..6], 0x0803)).unwrap();
    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte.gz"), gz(&idx_labels(&[1]))).unwrap();
    let (train, test) = load_idx_folder(dir.path()).unwrap();
    assert_eq!((train.channels, train.height, train.width, train.labels.clone()), (1, 2, 3, vec![7, 3]));
    assert_eq!(train.pixels[7], 140.0 / 255.0);
    let (img, label) = train.get(1).unwrap();
    assert_eq!((img.data.len(), label), (6, 3));
    assert_eq!(test.len(), 1);
}

fn err<T: std::fmt::Debug>(r: contrastive_core::Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn idx_errors_name_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    std::fs::write(p("bad-magic"), idx_images(1, 1, 1, &[0], 0x0801)).unwrap();
    let e = err(read_idx_images(&p("bad-magic")));
    assert!(e.contains("bad-magic") && e.contains("field magic: 0x00000801, expected 0x00000803"), "{e}");
    std::fs::write(p("short"), idx_images(3, 2, 2, &[0; 10], 0x0803)).unwrap();
    let e = err(read_idx_images(&p("short")));
    assert!(e.contains("short") && e.contains("3 x 2 x 2 = 12 pixels, the file holds 10"), "{e}");
    std::fs::write(p("tiny"), [0u8; 5]).unwrap();
    assert!(err(read_idx_labels(&p("tiny"))).contains("too short for the IDX header"));
    std::fs::write(p("labels"), idx_labels(&[1, 2])).unwrap();
    std::fs::write(p("images"), idx_images(3, 1, 1, &[0, 0, 0], 0x0803)).unwrap();
    let e = err(load_idx(&p("images"), &p("labels")));
    assert!(e.contains("labels: 2 labels, but") && e.contains("images holds 3 images"), "{e}");
    let mut bad_gz = gz(&idx_labels(&[1]));
    bad_gz.truncate(bad_gz.len() / 2);
    std::fs::write(p("cut.gz"), bad_gz).unwrap();
    assert!(err(read_idx_labels(&p("cut.gz"))).contains("cut.gz"));
    assert!(err(load_idx_folder(dir.path())).contains("no train-images-idx3-ubyte"));
}

#[test]
fn idx_headers_that_declare_impossible_sizes_are_errors_before_any_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    // 4 x 2^31 x 2^31 wraps to 0 in 64 bits: with no body it must not pass the length check.
    std::fs::write(p("wraps"), idx_images(4, 1 << 31, 1 << 31, &[], 0x0803)).unwrap();
    let e = err(read_idx_images(&p("wraps")));
    assert!(e.contains("wraps") && e.contains("4 x 2147483648 x 2147483648 overflow"), "{e}");
    // A header that declares 100000 x 100000 x 100000 pixels over a body of 10 bytes.
    std::fs::write(p("huge.gz"), gz(&idx_images(100_000, 100_000, 100_000, &[0; 10], 0x0803))).unwrap();
    let e = err(read_idx_images(&p("huge.gz")));
    assert!(e.contains("huge.gz") && e.contains("the file holds 10"), "{e}");
    for (n, rows, cols) in [(0, 0, 0), (0, 28, 28), (5, 0, 28), (5, 28, 0)] {
        std::fs::write(p("empty"), idx_images(n, rows, cols, &[], 0x0803)).unwrap();
        let e = err(read_idx_images(&p("empty")));
        assert!(e.contains("empty") && e.contains("no pixels"), "{e}");
    }
    std::fs::write(p("long"), idx_images(1, 2, 2, &[0; 5], 0x0803)).unwrap();
    let e = err(read_idx_images(&p("long")));
    assert!(e.contains("= 4 pixels, the file holds more"), "{e}");
    std::fs::write(p("labels"), &idx_labels(&[1, 2])[..9]).unwrap();
    let e = err(read_idx_labels(&p("labels")));
    assert!(e.contains("field count is 2 labels, the file holds 1"), "{e}");
}

#[test]
fn the_uci_digits_load_with_their_class_counts() {
    let digits =
        load_pixel_csv(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv.gz")), 8, 8, 16.0).unwrap();
    assert_eq!((digits.len(), digits.height, digits.width, digits.classes()), (1797, 8, 8, 10));
    let counts: Vec<usize> = (0..10).map(|c| digits.labels.iter().filter(|&&l| l == c).count()).collect();
    // scikit-learn: np.bincount(load_digits().target).tolist()
    assert_eq!(counts, vec![178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    assert!(digits.pixels.iter().all(|&p| (0.0..=1.0).contains(&p)));
    // The first image's second row, from the file: 0,0,13,15,10,15,5,0 (scaled by 16).
    let (first, label) = digits.get(0).unwrap();
    assert_eq!(label, 0);
    assert_eq!(&first.data[8..16], &[0.0, 0.0, 13.0 / 16.0, 15.0 / 16.0, 10.0 / 16.0, 15.0 / 16.0, 5.0 / 16.0, 0.0]);
    let split = digits.select(&[0, 5, 9]).unwrap();
    assert_eq!(split.labels, vec![digits.labels[0], digits.labels[5], digits.labels[9]]);
}

#[test]
fn pixel_csv_errors_name_line_and_field() {
    assert!(err(parse_pixel_csv("1,2,3,4,0\n1,2,3\n", "f.csv", 2, 2, 16.0)).contains("f.csv:2: 3 fields, expected 5"));
    assert!(err(parse_pixel_csv("1,x,3,4,0\n", "f.csv", 2, 2, 16.0)).contains("f.csv:1: field 2: `x` is not a number"));
    assert!(
        err(parse_pixel_csv("1,2,30,4,0\n", "f.csv", 2, 2, 16.0)).contains("f.csv:1: field 3: 30 is outside 0..=16")
    );
    assert!(err(parse_pixel_csv("1,2,3,4,-1\n", "f.csv", 2, 2, 16.0)).contains("field 5 (label)"));
    assert!(err(parse_pixel_csv("\n", "f.csv", 2, 2, 16.0)).contains("no image"));
}

#[test]
fn image_folder_decodes_lazily_and_handles_unreadable_files() {
    let dir = tempfile::tempdir().unwrap();
    for class in ["cat", "ant"] {
        std::fs::create_dir_all(dir.path().join(class)).unwrap();
    }
    // ant/a.png: 2x1 RGB, red then blue; cat/b.jpg: 4x4 gray; cat/broken.png: not an image.
    let mut png = image::RgbImage::new(2, 1);
    png.put_pixel(0, 0, image::Rgb([255, 0, 0]));
    png.put_pixel(1, 0, image::Rgb([0, 0, 255]));
    png.save(dir.path().join("ant/a.png")).unwrap();
    image::GrayImage::from_pixel(4, 4, image::Luma([128])).save(dir.path().join("cat/b.jpg")).unwrap();
    std::fs::write(dir.path().join("cat/broken.png"), b"not a png").unwrap();
    std::fs::write(dir.path().join("cat/notes.txt"), b"ignored").unwrap();

    let folder = ImageFolder::open(dir.path(), ColorMode::Rgb, Unreadable::Fail).unwrap();
    assert_eq!(folder.classes(), &["ant".to_string(), "cat".to_string()]);
    assert_eq!(folder.len(), 3);
    let (img, label) = folder.get(0).unwrap();
    assert_eq!((img.channels, img.height, img.width, label), (3, 1, 2, 0));
    // Channel-first: red plane [1, 0], green [0, 0], blue [0, 1].
    assert_eq!(img.data, vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
    let broken = folder.files().iter().position(|(p, _)| p.ends_with("broken.png")).unwrap();
    let e = err(folder.get(broken));
    assert!(e.contains("broken.png") && e.contains("cannot decode"), "{e}");

    let skipping = ImageFolder::open(dir.path(), ColorMode::Grayscale, Unreadable::Skip).unwrap();
    assert_eq!(skipping.len(), 2);
    let (gray, label) = skipping.get(1).unwrap();
    assert_eq!((gray.channels, gray.height, label), (1, 4, 1));
    assert!(gray.data.iter().all(|&v| (v - 128.0 / 255.0).abs() < 0.02)); // JPEG is lossy
    let empty = tempfile::tempdir().unwrap();
    assert!(err(ImageFolder::open(empty.path(), ColorMode::Rgb, Unreadable::Fail)).contains("no class folders"));

    // Into memory: every image at the first one's size (1 x 2), or at a given size, labels kept.
    let in_memory = skipping.to_memory(None).unwrap();
    assert_eq!(
        (in_memory.channels, in_memory.height, in_memory.width, in_memory.labels.clone()),
        (1, 1, 2, vec![0, 1])
    );
    // The 4x4 image of 128 resized to 1 x 2 stays 128 (bilinear of a constant), after ant/a.png.
    assert!(in_memory.pixels[2..].iter().all(|&v| (v - 128.0 / 255.0).abs() < 0.02), "{:?}", in_memory.pixels);
    let sized = skipping.to_memory(Some((3, 3))).unwrap();
    assert_eq!((sized.height, sized.width, sized.pixels.len()), (3, 3, 18));
    assert_eq!(skipping.labels(), vec![0, 1]);
}

#[test]
fn image_split_reads_each_layout() {
    // IDX files: the standard split.
    let idx = tempfile::tempdir().unwrap();
    std::fs::write(idx.path().join("train-images-idx3-ubyte"), idx_images(2, 1, 1, &[0, 255], 0x0803)).unwrap();
    std::fs::write(idx.path().join("train-labels-idx1-ubyte"), idx_labels(&[0, 1])).unwrap();
    std::fs::write(idx.path().join("t10k-images-idx3-ubyte.gz"), gz(&idx_images(1, 1, 1, &[9], 0x0803))).unwrap();
    std::fs::write(idx.path().join("t10k-labels-idx1-ubyte"), idx_labels(&[1])).unwrap();
    let s = ImageSplit::open(idx.path()).unwrap();
    assert_eq!((s.train.labels.clone(), s.test.labels.clone()), (vec![0, 1], vec![1]));
    assert!(s.source.starts_with("IDX files"), "{}", s.source);

    // train/ and test/ class folders: the test images take the training images' size.
    let tt = tempfile::tempdir().unwrap();
    let png = |path: std::path::PathBuf, w: u32, h: u32| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30])).save(path).unwrap();
    };
    png(tt.path().join("train/a/1.png"), 4, 2);
    png(tt.path().join("train/b/2.png"), 8, 8);
    png(tt.path().join("test/a/3.png"), 3, 3);
    let s = ImageSplit::open(tt.path()).unwrap();
    assert_eq!((s.train.channels, s.train.height, s.train.width, s.train.labels.clone()), (3, 2, 4, vec![0, 1]));
    assert_eq!((s.test.height, s.test.width, s.test.labels.clone()), (2, 4, vec![0]));

    // One folder of class folders: 4:1 with each class in proportion (10 and 5 images -> 2 and 1
    // held out), the two parts disjoint and together the whole.
    let one = tempfile::tempdir().unwrap();
    for i in 0..15 {
        png(one.path().join(format!("{}/{i:02}.png", if i < 10 { "x" } else { "y" })), 2, 2);
    }
    let s = ImageSplit::open(one.path()).unwrap();
    let count = |labels: &[u32], c: u32| labels.iter().filter(|&&l| l == c).count();
    assert_eq!((count(&s.test.labels, 0), count(&s.test.labels, 1)), (2, 1));
    assert_eq!((count(&s.train.labels, 0), count(&s.train.labels, 1)), (8, 4));

    // A path that is not a folder is named.
    let e = err(ImageSplit::open(&one.path().join("x/00.png")));
    assert!(e.contains("00.png") && e.contains("not a folder"), "{e}");
    assert_eq!(s.train.head(3).labels, s.train.labels[..3].to_vec());
    assert_eq!(s.train.head(100).labels.len(), 12);
}
