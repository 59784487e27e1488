//! `cargo +nightly fuzz run image_file`: see the crate README.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| contrastive_fuzz::Reader::ImageFile.read(data));
