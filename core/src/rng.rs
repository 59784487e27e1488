//! Seeded random streams. candle cannot seed its CPU random numbers, so every random choice in
//! this workspace draws from a ChaCha stream derived from the run's seed and a key that says what
//! it is for: the same seed gives the same numbers whatever the thread count or the order in
//! which things are built.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The random generator used throughout.
pub type Rng = ChaCha8Rng;

/// SplitMix64's finaliser: a bijective mix of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stream keyed by a seed and a list of integers.
pub fn keyed_rng(seed: u64, key: &[u64]) -> Rng {
    let mut bytes = [0u8; 32];
    let mut h = mix(seed);
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        for &k in key {
            h = mix(h ^ mix(k));
        }
        h = mix(h ^ i as u64);
        chunk.copy_from_slice(&h.to_le_bytes());
    }
    Rng::from_seed(bytes)
}

/// The stream of one sample in one epoch: its augmentations do not depend on the batch it lands
/// in or on the thread that prepares it.
pub fn sample_rng(seed: u64, epoch: usize, index: usize) -> Rng {
    keyed_rng(seed, &[1, epoch as u64, index as u64])
}

/// The stream of a named thing (a parameter path, a dropout layer).
pub fn named_rng(seed: u64, name: &str) -> Rng {
    // FNV-1a of the name.
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    keyed_rng(seed, &[2, h, name.len() as u64])
}

/// The stream of one epoch's shuffle.
pub fn shuffle_rng(seed: u64, epoch: usize) -> Rng {
    keyed_rng(seed, &[3, epoch as u64])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng as _;

    #[test]
    fn streams_repeat_and_differ_by_key() {
        let draw = |mut r: Rng| -> Vec<u32> { (0..4).map(|_| r.random()).collect() };
        assert_eq!(draw(sample_rng(7, 1, 2)), draw(sample_rng(7, 1, 2)));
        assert_ne!(draw(sample_rng(7, 1, 2)), draw(sample_rng(7, 2, 1)));
        assert_ne!(draw(sample_rng(7, 1, 2)), draw(sample_rng(8, 1, 2)));
        assert_ne!(draw(named_rng(0, "a.weight")), draw(named_rng(0, "a.bias")));
        assert_eq!(draw(named_rng(0, "a.weight")), draw(named_rng(0, "a.weight")));
    }
}
