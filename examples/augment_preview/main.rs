//! A PNG grid of images and their augmented views: look before you train.
//!
//!     cargo run --release -p contrastive-examples --bin augment_preview -- --out runs/preview

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use clap::Parser;
use contrastive_core::augment::Augment;
use contrastive_core::data::Dataset;
use contrastive_core::rng::sample_rng;
use contrastive_core::{Error, Result};
use contrastive_examples::flags::{at_least_one, CommonFlags};
use contrastive_examples::image_data::{load_image_data, sample_of};
use contrastive_examples::recipe::Recipe;
use contrastive_examples::report::finish;
use contrastive_vision::augment::Normalize;
use contrastive_vision::{uci_digits, Image, InMemoryImages, Unreadable};
use serde_json::json;
use std::path::PathBuf;

/// Each row: an image, then `--views` views of it from the recipe, scaled up `--zoom` times. Reads
/// `--data` as the simclr example does, or the built-in digits without it.
#[derive(Parser, Debug)]
#[command(about)]
struct Cli {
    #[command(flatten)]
    common: CommonFlags,
    /// The augmentation recipe.
    #[arg(long, value_enum, default_value = "simclr")]
    recipe: Recipe,
    /// Images (rows).
    #[arg(long, default_value_t = 6, value_parser = at_least_one())]
    images: usize,
    /// Views per image.
    #[arg(long, default_value_t = 8, value_parser = at_least_one())]
    views: usize,
    /// Pixels per image pixel.
    #[arg(long, default_value_t = 0)]
    zoom: usize,
}

/// The largest canvas side, in pixels.
const MAX_SIDE: usize = 16_384;

/// Paints `img` (values in [0, 1]) into an RGB canvas at (x, y), each pixel a `zoom` square.
fn paint(canvas: &mut image::RgbImage, img: &Image, x0: usize, y0: usize, zoom: usize) {
    let plane = img.height * img.width;
    for y in 0..img.height * zoom {
        for x in 0..img.width * zoom {
            let i = (y / zoom) * img.width + x / zoom;
            let channel =
                |c: usize| (img.data[c.min(img.channels - 1) * plane + i].clamp(0.0, 1.0) * 255.0).round() as u8;
            canvas.put_pixel((x0 + x) as u32, (y0 + y) as u32, image::Rgb([channel(0), channel(1), channel(2)]));
        }
    }
}

fn run(cli: Cli) -> Result<serde_json::Value> {
    cli.common.setup()?;
    let images: InMemoryImages = match &cli.common.data {
        // Only the images shown are decoded; files of any size are resized to the first one's.
        Some(path) => {
            sample_of(&load_image_data(Some(path), Unreadable::Skip)?.train, cli.images.max(1))?.to_memory(None)?
        }
        None => uci_digits()?,
    };
    let (h, w) = (images.height, images.width);
    // Views are shown before normalisation, so the recipe ends with the identity.
    let identity = Normalize { mean: vec![0.0], std: vec![1.0] };
    let augmentation = cli.recipe.build((h, w), identity);
    let zoom = if cli.zoom > 0 { cli.zoom } else { (96 / h.max(w)).max(1) };
    let rows = cli.images.min(images.len()).max(1);
    // The canvas is checked before it is allocated (in u128: the flags can overflow usize).
    let side = |cells: usize, pixels: usize| (cells as u128) * (pixels as u128 * zoom as u128 + 4);
    let (canvas_w, canvas_h) = (side(cli.views + 1, w), side(rows, h));
    if canvas_w > MAX_SIDE as u128 || canvas_h > MAX_SIDE as u128 {
        return Err(Error::config(
            "--zoom",
            format!(
                "{zoom} with {h}x{w} images, {rows} rows and {} views makes a {canvas_w} x {canvas_h} canvas; \
                 at most {MAX_SIDE} pixels a side: lower --zoom, --views or --images",
                cli.views
            ),
        ));
    }
    let (cell_h, cell_w) = (h * zoom + 4, w * zoom + 4);
    let mut canvas = image::RgbImage::from_pixel(
        (cell_w * (cli.views + 1)) as u32,
        (cell_h * rows) as u32,
        image::Rgb([255, 255, 255]),
    );
    for r in 0..rows {
        let (img, _) = images.get(r)?;
        paint(&mut canvas, &img, 2, r * cell_h + 2, zoom);
        for v in 0..cli.views {
            let view = augmentation.apply(img.clone(), &mut sample_rng(cli.common.seed, v, r))?;
            paint(&mut canvas, &view, (v + 1) * cell_w + 2, r * cell_h + 2, zoom);
        }
    }
    let dir = cli.common.out.clone().unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join("augment_preview.png");
    contrastive_core::atomic::write_atomically(&path, |tmp| {
        canvas.save(tmp).map_err(|e| Error::io(&path, std::io::Error::other(format!("cannot write the PNG: {e}"))))
    })?;
    eprintln!("wrote {} ({} images, {} views each, recipe {:?})", path.display(), rows, cli.views, cli.recipe);
    Ok(json!({ "example": "augment_preview", "png": path.display().to_string(), "images": rows, "views": cli.views }))
}

fn main() {
    // Under mpirun the first process writes the files; the others would only write them again.
    if !contrastive_examples::processes::first_launched() {
        return;
    }
    finish(run(Cli::parse()));
}
