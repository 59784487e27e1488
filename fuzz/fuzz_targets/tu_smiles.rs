//! `cargo +nightly fuzz run tu_smiles`: see the crate README.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| contrastive_fuzz::Reader::TuSmiles.read(data));
