//! `cargo +nightly fuzz run idx_labels`: see the crate README.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| contrastive_fuzz::Reader::IdxLabels.read(data));
