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

    // Skip: broken.png is listed (it is not empty) and, when read, gives its place to the next
    // readable file, wrapping round to ant/a.png.
    let skipping = ImageFolder::open(dir.path(), ColorMode::Grayscale, Unreadable::Skip).unwrap();
    assert_eq!(skipping.len(), 3);
    let (gray, label) = skipping.get(1).unwrap();
    assert_eq!((gray.channels, gray.height, label), (1, 4, 1));
    assert!(gray.data.iter().all(|&v| (v - 128.0 / 255.0).abs() < 0.02)); // JPEG is lossy
    let empty = tempfile::tempdir().unwrap();
    let e = err(ImageFolder::open(empty.path(), ColorMode::Rgb, Unreadable::Fail));
    assert!(e.contains("no .png, .jpg, .jpeg or .webp file"), "{e}");

    // Into memory: every image at the first one's size (1 x 2), or at a given size, labels kept.
    let in_memory = skipping.to_memory(None).unwrap();
    assert_eq!(
        (in_memory.channels, in_memory.height, in_memory.width, in_memory.labels.clone()),
        (1, 1, 2, vec![0, 1, 0])
    );
    // The 4x4 image of 128 resized to 1 x 2 stays 128 (bilinear of a constant), after ant/a.png.
    assert!(in_memory.pixels[2..4].iter().all(|&v| (v - 128.0 / 255.0).abs() < 0.02), "{:?}", in_memory.pixels);
    assert_eq!(in_memory.pixels[4..], in_memory.pixels[..2]);
    assert_eq!(skipping.skipped(), vec![dir.path().join("cat/broken.png")]);
    let sized = skipping.to_memory(Some((3, 3))).unwrap();
    assert_eq!((sized.height, sized.width, sized.pixels.len()), (3, 3, 27));
    assert_eq!(skipping.labels(), vec![0, 1, 1]);
}

#[test]
fn image_split_reads_each_layout() {
    // IDX files: the standard split, in memory.
    let idx = tempfile::tempdir().unwrap();
    std::fs::write(idx.path().join("train-images-idx3-ubyte"), idx_images(2, 1, 1, &[0, 255], 0x0803)).unwrap();
    std::fs::write(idx.path().join("train-labels-idx1-ubyte"), idx_labels(&[0, 1])).unwrap();
    std::fs::write(idx.path().join("t10k-images-idx3-ubyte.gz"), gz(&idx_images(1, 1, 1, &[9], 0x0803))).unwrap();
    std::fs::write(idx.path().join("t10k-labels-idx1-ubyte"), idx_labels(&[1])).unwrap();
    let s = ImageSplit::open(idx.path(), Unreadable::Fail).unwrap();
    assert_eq!((s.train.labels(), s.test.labels()), (vec![0, 1], vec![1]));
    assert!(matches!(s.train, ImageSet::Memory(_)) && s.train.size() == Some((1, 1)));
    assert!(s.source.starts_with("IDX files"), "{}", s.source);

    // train/ and test/ class folders: files read lazily, each at its own size.
    let tt = tempfile::tempdir().unwrap();
    let png = |path: std::path::PathBuf, w: u32, h: u32| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30])).save(path).unwrap();
    };
    png(tt.path().join("train/a/1.png"), 4, 2);
    png(tt.path().join("train/b/2.png"), 8, 8);
    png(tt.path().join("test/a/3.png"), 3, 3);
    let s = ImageSplit::open(tt.path(), Unreadable::Fail).unwrap();
    assert_eq!((s.train.channels(), s.train.size(), s.train.labels()), (3, None, vec![0, 1]));
    assert_eq!((s.train.get(1).unwrap().0.height, s.test.get(0).unwrap().0.width), (8, 3));
    // Into memory at one size: the whole image resized.
    let m = s.test.to_memory(Some((2, 4))).unwrap();
    assert_eq!((m.height, m.width, m.pixels.len(), m.labels), (2, 4, 24, vec![0]));

    // One folder of class folders: 4:1 with each class in proportion (10 and 5 images -> 2 and 1
    // held out), the two parts disjoint and together the whole.
    let one = tempfile::tempdir().unwrap();
    for i in 0..15 {
        png(one.path().join(format!("{}/{i:02}.png", if i < 10 { "x" } else { "y" })), 2, 2);
    }
    let s = ImageSplit::open(one.path(), Unreadable::Fail).unwrap();
    let count = |labels: &[u32], c: u32| labels.iter().filter(|&&l| l == c).count();
    let (train, test) = (s.train.labels(), s.test.labels());
    assert_eq!((count(&test, 0), count(&test, 1)), (2, 1));
    assert_eq!((count(&train, 0), count(&train, 1)), (8, 4));
    let files = |set: &ImageSet| match set {
        ImageSet::Files(f) => f.files().iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
        ImageSet::Memory(_) => panic!("files expected"),
    };
    let mut all = [files(&s.train), files(&s.test)].concat();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 15);
    assert_eq!(s.train.head(3).labels(), train[..3].to_vec());
    assert_eq!(s.train.head(100).len(), 12);

    // A flat folder has no labels: all for training, no test set.
    let flat = tempfile::tempdir().unwrap();
    for i in 0..3 {
        png(flat.path().join(format!("{i}.png")), 5, 1 + i);
    }
    let s = ImageSplit::open(flat.path(), Unreadable::Fail).unwrap();
    assert!(!s.train.labelled() && s.test.is_empty() && s.source.contains("no labels"), "{}", s.source);
    assert_eq!((s.train.len(), s.train.get(2).unwrap().0.height), (3, 3));

    // A list file with labels: split 4:1 like a folder of classes.
    let list = one.path().join("list.txt");
    let lines: Vec<String> =
        (0..15).map(|i| format!("{}/{i:02}.png {}", if i < 10 { "x" } else { "y" }, i / 10)).collect();
    std::fs::write(&list, lines.join("\n")).unwrap();
    let s = ImageSplit::open(&list, Unreadable::Fail).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (12, 3));
    assert!(s.source.starts_with("image list"), "{}", s.source);

    // A path that is neither a folder nor a list is named.
    let e = err(ImageSplit::open(&one.path().join("nothing"), Unreadable::Fail));
    assert!(e.contains("nothing") && e.contains("no such folder"), "{e}");
}

#[test]
fn list_files_name_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sub dir")).unwrap();
    for name in ["a.png", "b.png", "sub dir/c d.png"] {
        image::RgbImage::from_pixel(2, 3, image::Rgb([1, 2, 3])).save(dir.path().join(name)).unwrap();
    }
    let write = |text: &str| {
        let p = dir.path().join("list.txt");
        std::fs::write(&p, text).unwrap();
        p
    };
    // Class names are numbered in sorted order; a tab allows spaces in the path; comments and
    // blank lines are skipped; relative paths are from the list's folder; an absolute one is kept.
    let abs = dir.path().join("a.png");
    let l = write(&format!("# files\nb.png dog\n\nsub dir/c d.png\tcat\n{} dog\n", abs.display()));
    let f = ImageFolder::from_list(&l, ColorMode::Rgb, Unreadable::Fail).unwrap();
    assert_eq!(f.classes(), &["cat".to_string(), "dog".to_string()]);
    assert_eq!(f.labels(), vec![1, 0, 1]);
    assert_eq!(f.files()[0].0, dir.path().join("b.png"));
    assert_eq!(f.get(1).unwrap().0.height, 3);
    // Numeric labels are the class indices.
    let f = ImageFolder::from_list(&write("a.png 3\nb.png 1\n"), ColorMode::Grayscale, Unreadable::Fail).unwrap();
    assert_eq!((f.labels(), f.classes().len(), f.get(0).unwrap().0.channels), (vec![3, 1], 4, 1));
    // No labels at all.
    let f = ImageFolder::from_list(&write("a.png\nb.png\n"), ColorMode::Rgb, Unreadable::Fail).unwrap();
    assert!(!f.labelled() && f.labels() == vec![0, 0]);
    // Some lines with a label, some without: the line is named.
    let e = ImageFolder::from_list(&write("a.png 1\nb.png\n"), ColorMode::Rgb, Unreadable::Fail).unwrap_err();
    assert!(matches!(&e, contrastive_core::Error::File { line: Some(2), .. }), "{e}");
    // A missing file: named with its line, or left out with Skip.
    let l = write("a.png\nmissing.png\nb.png\n");
    let e = ImageFolder::from_list(&l, ColorMode::Rgb, Unreadable::Fail).unwrap_err();
    assert!(matches!(&e, contrastive_core::Error::File { line: Some(2), .. }) && e.to_string().contains("missing.png"));
    assert_eq!(ImageFolder::from_list(&l, ColorMode::Rgb, Unreadable::Skip).unwrap().len(), 2);
    // An empty list.
    let e = err(ImageFolder::from_list(&write("# nothing\n\n"), ColorMode::Rgb, Unreadable::Fail));
    assert!(e.contains("names no image"), "{e}");
}

#[test]
fn unreadable_files_are_skipped_lazily_or_stop_the_read() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("c");
    std::fs::create_dir_all(&class).unwrap();
    // 0.png fine, 1.jpg truncated, 2.png zero bytes, 3.webp fine (lossless WebP), 4.png fine.
    image::RgbImage::from_pixel(3, 2, image::Rgb([255, 0, 0])).save(class.join("0.png")).unwrap();
    let mut jpeg = Vec::new();
    image::RgbImage::from_pixel(64, 64, image::Rgb([9, 9, 9]))
        .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
        .unwrap();
    std::fs::write(class.join("1.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    std::fs::write(class.join("2.png"), b"").unwrap();
    let mut webp = Vec::new();
    image::RgbImage::from_pixel(5, 4, image::Rgb([0, 255, 0]))
        .write_with_encoder(image::codecs::webp::WebPEncoder::new_lossless(&mut webp))
        .unwrap();
    std::fs::write(class.join("3.webp"), webp).unwrap();
    image::RgbImage::from_pixel(1, 1, image::Rgb([0, 0, 255])).save(class.join("4.png")).unwrap();

    // Fail: the empty file stops the opening, naming it.
    let e = err(ImageFolder::open(dir.path(), ColorMode::Rgb, Unreadable::Fail));
    assert!(e.contains("2.png") && e.contains("0 bytes"), "{e}");

    // Skip: the empty file is left out at once; the truncated one when it is first read, its
    // place taken by the next readable file.
    let f = ImageFolder::open(dir.path(), ColorMode::Rgb, Unreadable::Skip).unwrap();
    assert_eq!(f.len(), 4);
    assert_eq!(f.skipped(), vec![class.join("2.png")]);
    let (webp_img, _) = f.get(2).unwrap();
    assert_eq!((webp_img.height, webp_img.width), (4, 5));
    assert_eq!(webp_img.data[..20], [0.0; 20]); // red plane
    assert_eq!(webp_img.data[20..40], [1.0; 20]); // green plane
    let (instead, _) = f.get(1).unwrap();
    assert_eq!(instead, webp_img);
    assert_eq!(f.skipped(), vec![class.join("1.jpg"), class.join("2.png")]);
    // A subset shares the record; reading again warns no more and records nothing new.
    let sub = f.select(&[1, 3]).unwrap();
    assert_eq!(sub.get(0).unwrap().0.width, 1); // 1.jpg -> the next in the subset, 4.png
    assert_eq!(f.skipped().len(), 2);

    // Fail at read time names the file and why.
    let strict = ImageFolder::from_list(
        &{
            let l = dir.path().join("l.txt");
            std::fs::write(&l, "c/0.png\nc/1.jpg\n").unwrap();
            l
        },
        ColorMode::Rgb,
        Unreadable::Fail,
    )
    .unwrap();
    let e = err(strict.get(1));
    assert!(e.contains("1.jpg") && e.contains("cannot decode"), "{e}");
    // A JPEG cut inside its scan, which the decoder would fill with gray, is refused too.
    let noisy = image::RgbImage::from_fn(48, 48, |x, y| image::Rgb([(x * 37 % 251) as u8, (y * 91 % 253) as u8, 7]));
    let mut full = Vec::new();
    noisy.write_to(&mut std::io::Cursor::new(&mut full), image::ImageFormat::Jpeg).unwrap();
    std::fs::write(class.join("1.jpg"), &full[..full.len() * 9 / 10]).unwrap();
    let e = err(strict.get(1));
    assert!(e.contains("1.jpg") && e.contains("truncated JPEG"), "{e}");
    std::fs::write(class.join("1.jpg"), &full).unwrap();
    assert_eq!(strict.get(1).unwrap().0.width, 48);

    // A set in which nothing decodes says so.
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join("x.png"), b"junk").unwrap();
    let f = ImageFolder::open(bad.path(), ColorMode::Rgb, Unreadable::Skip).unwrap();
    assert!(err(f.get(0)).contains("no file of the set can be decoded"));
}

#[test]
fn resized_reads_every_image_at_one_size() {
    let dir = tempfile::tempdir().unwrap();
    image::RgbImage::from_pixel(7, 3, image::Rgb([51, 102, 153])).save(dir.path().join("a.png")).unwrap();
    image::RgbImage::from_pixel(2, 9, image::Rgb([51, 102, 153])).save(dir.path().join("b.png")).unwrap();
    let f = ImageFolder::open(dir.path(), ColorMode::Rgb, Unreadable::Fail).unwrap();
    let r = Resized { images: &f, size: (4, 4) };
    for i in 0..2 {
        let (img, _) = r.get(i).unwrap();
        assert_eq!((img.height, img.width), (4, 4));
        // A constant image stays constant under bilinear resizing.
        assert!((img.data[0] - 0.2).abs() < 1e-6 && (img.data[47] - 0.6).abs() < 1e-6);
    }
}
