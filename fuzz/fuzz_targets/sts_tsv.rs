//! `cargo +nightly fuzz run sts_tsv`: see the crate README.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| contrastive_fuzz::Reader::StsTsv.read(data));
