//! Synthetic datasets of any size, for tests and benchmarks at scale: image files of random
//! sizes in class folders, and large text corpora.
//!
//!     cargo run --release -p contrastive-examples --bin synth_data -- images --out data/synth --images 20000
//!     cargo run --release -p contrastive-examples --bin synth_data -- text --out data/corpus.txt --megabytes 1024

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use clap::{Parser, Subcommand, ValueEnum};
use contrastive_core::rng::keyed_rng;
use contrastive_core::{Error, Result};
use contrastive_examples::flags::at_least_one;
use contrastive_examples::report::finish;
use rand::{Rng, RngCore};
use rayon::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes synthetic datasets; the same seed writes the same files.
#[derive(Parser, Debug)]
#[command(about)]
struct Cli {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand, Debug)]
enum What {
    /// `OUT/<class>/<n>.<ext>`: each class a pattern of stripes at its own angle, in random
    /// colours, frequencies and phases, with noise; sides drawn uniformly between the bounds.
    Images {
        /// Folder to write (created; files already there are overwritten).
        #[arg(long)]
        out: PathBuf,
        /// Number of images.
        #[arg(long, value_parser = at_least_one())]
        images: usize,
        /// Number of classes.
        #[arg(long, default_value_t = 10, value_parser = at_least_one())]
        classes: usize,
        /// Smallest side in pixels.
        #[arg(long, default_value_t = 64, value_parser = at_least_one())]
        min_side: usize,
        /// Largest side in pixels.
        #[arg(long, default_value_t = 512, value_parser = at_least_one())]
        max_side: usize,
        /// File format.
        #[arg(long, value_enum, default_value = "jpeg")]
        format: Format,
        /// Seed of every draw.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// A corpus of about `megabytes` MB: sentences of 6 to 30 words from a Zipf-distributed
    /// vocabulary of 50,000 made-up words, a sentence a line (or one JSON object a line with the
    /// sentence in `text`).
    Text {
        /// File to write.
        #[arg(long)]
        out: PathBuf,
        /// Size to reach, in MB (10^6 bytes).
        #[arg(long, value_parser = at_least_one())]
        megabytes: usize,
        /// Lines of text, or JSON lines with a `text` field.
        #[arg(long)]
        jsonl: bool,
        /// Seed of every draw.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// Image file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// JPEG at quality 90.
    Jpeg,
    /// PNG.
    Png,
    /// WebP (lossless).
    Webp,
}

/// Image `index` of class `class`: oriented stripes in two random colours, plus noise.
fn draw_image(class: usize, classes: usize, sides: (usize, usize), rng: &mut impl RngCore) -> image::RgbImage {
    let (min, max) = sides;
    let (w, h) = (rng.random_range(min..=max) as u32, rng.random_range(min..=max) as u32);
    let angle = std::f32::consts::PI * class as f32 / classes as f32;
    let (dx, dy) = (angle.cos(), angle.sin());
    let period = rng.random_range(6.0f32..24.0) * (w.min(h) as f32 / 64.0).max(1.0);
    let phase = rng.random_range(0.0f32..std::f32::consts::TAU);
    let a: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.0f32..255.0));
    let b: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.0f32..255.0));
    let mut img = image::RgbImage::new(w, h);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let t = 0.5 + 0.5 * ((x as f32 * dx + y as f32 * dy) / period * std::f32::consts::TAU + phase).sin();
        let noise = rng.random_range(-12.0f32..12.0);
        *px = image::Rgb(std::array::from_fn(|c| (a[c] * t + b[c] * (1.0 - t) + noise).clamp(0.0, 255.0) as u8));
    }
    img
}

fn write_image(img: &image::RgbImage, path: &Path, format: Format) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut out = std::io::BufWriter::new(file);
    let encoded = match format {
        Format::Jpeg => img.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)),
        Format::Png => img.write_with_encoder(image::codecs::png::PngEncoder::new(&mut out)),
        Format::Webp => img.write_with_encoder(image::codecs::webp::WebPEncoder::new_lossless(&mut out)),
    };
    encoded.map_err(|e| Error::in_file(path, None, format!("cannot encode: {e}")))?;
    out.flush().map_err(|e| Error::io(path, e))
}

fn images(out: &Path, n: usize, classes: usize, sides: (usize, usize), format: Format, seed: u64) -> Result<usize> {
    if sides.0 > sides.1 {
        return Err(Error::config("--min-side", format!("{} is larger than --max-side {}", sides.0, sides.1)));
    }
    let ext = match format {
        Format::Jpeg => "jpg",
        Format::Png => "png",
        Format::Webp => "webp",
    };
    let width = classes.to_string().len();
    for c in 0..classes {
        let dir = out.join(format!("class{c:0width$}"));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    (0..n).into_par_iter().try_for_each(|i| {
        let class = i % classes;
        let img = draw_image(class, classes, sides, &mut keyed_rng(seed, &[40, i as u64]));
        write_image(&img, &out.join(format!("class{class:0width$}/{i:08}.{ext}")), format)
    })?;
    Ok(n)
}

/// A made-up word of 2 to 10 letters for vocabulary entry `i`.
fn word(i: usize, seed: u64) -> String {
    let mut rng = keyed_rng(seed, &[41, i as u64]);
    let len = rng.random_range(2..=10);
    (0..len).map(|_| (b'a' + rng.random_range(0..26u8)) as char).collect()
}

fn text(out: &Path, megabytes: usize, jsonl: bool, seed: u64) -> Result<usize> {
    let vocabulary: Vec<String> = (0..50_000).map(|i| word(i, seed)).collect();
    // Zipf with exponent 1: the rank's weight 1/r, drawn by inverting the cumulative sum.
    let mut cumulative = Vec::with_capacity(vocabulary.len());
    let mut total = 0.0f64;
    for r in 1..=vocabulary.len() {
        total += 1.0 / r as f64;
        cumulative.push(total);
    }
    let target = megabytes * 1_000_000;
    // Chunks of lines written in parallel, in order.
    let chunk_bytes = 4 << 20;
    let chunks = target.div_ceil(chunk_bytes);
    let file = std::fs::File::create(out).map_err(|e| Error::io(out, e))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut lines = 0usize;
    for group in (0..chunks).collect::<Vec<_>>().chunks(16) {
        let parts: Vec<(String, usize)> = group
            .par_iter()
            .map(|&chunk| {
                let mut rng = keyed_rng(seed, &[42, chunk as u64]);
                let (mut s, mut count) = (String::with_capacity(chunk_bytes + 512), 0);
                while s.len() < chunk_bytes.min(target - chunk * chunk_bytes) {
                    let words = rng.random_range(6..=30);
                    let mut sentence = String::new();
                    for k in 0..words {
                        let u = rng.random_range(0.0..total);
                        let w = &vocabulary[cumulative.partition_point(|&c| c < u).min(vocabulary.len() - 1)];
                        if k > 0 {
                            sentence.push(' ');
                        }
                        sentence.push_str(w);
                    }
                    sentence.push('.');
                    if jsonl {
                        s.push_str(&serde_json::json!({ "text": sentence }).to_string());
                    } else {
                        s.push_str(&sentence);
                    }
                    s.push('\n');
                    count += 1;
                }
                (s, count)
            })
            .collect();
        for (s, count) in parts {
            writer.write_all(s.as_bytes()).map_err(|e| Error::io(out, e))?;
            lines += count;
        }
    }
    writer.flush().map_err(|e| Error::io(out, e))?;
    Ok(lines)
}

fn run(cli: Cli) -> Result<serde_json::Value> {
    let started = std::time::Instant::now();
    let (path, count, unit) = match cli.what {
        What::Images { out, images: n, classes, min_side, max_side, format, seed } => {
            let written = images(&out, n, classes, (min_side, max_side), format, seed)?;
            (out, written, "images")
        }
        What::Text { out, megabytes, jsonl, seed } => {
            let written = text(&out, megabytes, jsonl, seed)?;
            (out, written, "lines")
        }
    };
    eprintln!("wrote {count} {unit} to {} in {:.1} s", path.display(), started.elapsed().as_secs_f64());
    Ok(serde_json::json!({ "path": path.display().to_string(), unit: count }))
}

fn main() {
    // Under mpirun the first process writes the files; the others would only write them again.
    if !contrastive_examples::processes::first_launched() {
        return;
    }
    finish(run(Cli::parse()));
}
