//! `cargo +nightly fuzz run tokenizer`: see the crate README.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| contrastive_fuzz::Reader::Tokenizer.read(data));
