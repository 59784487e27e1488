//! `cargo +nightly fuzz run tu_dataset`: see the crate README.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| contrastive_fuzz::Reader::TuDataset.read(data));
