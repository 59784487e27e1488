//! `cargo +nightly fuzz run pixel_csv`: see the crate README.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| contrastive_fuzz::Reader::PixelCsv.read(data));
