//! Image files to training batches: JPEGs of mixed sizes decoded, made into two views by the
//! SimCLR recipe at 96x96 and 224x224 (RandomResizedCrop from each file's own size), and stacked
//! into batches of 256 by the core loader with 2 threads; images per second. The same work as
//! `python3 bench/pytorch/imagefolder_torch.py` (torchvision's `ImageFolder` and a `DataLoader`
//! with 2 workers) on the same files.
//!
//! The files: `IMAGE_DIR`, default `target/bench-images`, made when missing by
//!
//!     cargo run --release -p contrastive-examples --bin synth_data -- images --out target/bench-images --images 2048 --max-side 512
//!     cargo bench -p contrastive-vision --bench image_files
#![allow(missing_docs)] // criterion_group! generates an undocumented function

#[global_allocator]
static GLOBAL: contrastive_core::alloc::MiMalloc = contrastive_core::alloc::MiMalloc;

use candle_core::Device;
use contrastive_core::data::{Dataset, Loader, LoaderConfig};
use contrastive_vision::augment::{Normalize, ViewAugmentation};
use contrastive_vision::{CollateViews, ColorMode, ImageFolder, Unreadable};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::PathBuf;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    contrastive_core::alloc::keep_freed_memory();
    contrastive_core::candle_pool::configure_candle_pool(0);
    let dir = std::env::var_os("IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-images")));
    let folder = match ImageFolder::open(&dir, ColorMode::Rgb, Unreadable::Fail) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "image_files: no images ({e}); make them with\n  cargo run --release -p contrastive-examples \
                 --bin synth_data -- images --out {} --images 2048 --max-side 512",
                dir.display()
            );
            return;
        }
    };
    // ImageNet's statistics, as the torchvision script uses.
    let normalize = Normalize { mean: vec![0.485, 0.456, 0.406], std: vec![0.229, 0.224, 0.225] };
    let mut group = c.benchmark_group("image_files");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(20));
    let images = folder.len() / 256 * 256;
    group.throughput(Throughput::Elements(images as u64));
    for side in [96, 224] {
        let views = ViewAugmentation::simclr((side, side), normalize.clone());
        let config = LoaderConfig { batch_size: 256, threads: 2, ..LoaderConfig::default() };
        let loader = Loader::new(folder.clone(), views, CollateViews { device: Device::Cpu }, config)
            .and_then(|l| l.with_prefetch(2))
            .unwrap();
        let mut epoch = 0;
        group.bench_function(format!("simclr_jpeg_{side}"), |b| {
            b.iter(|| {
                epoch += 1;
                loader.epoch(epoch).map(|batch| batch.unwrap().indices.len()).sum::<usize>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
