//! `cargo +nightly fuzz run safetensors`: see the crate README.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| contrastive_fuzz::Reader::Safetensors.read(data));
