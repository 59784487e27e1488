//! candle's own CPU worker pool, beside rayon's.
//!
//! candle 0.11 runs its element-wise maps on a pool of its own (`candle-bp-N` threads), sized
//! from `CANDLE_NUM_THREADS` or `RAYON_NUM_THREADS` (not from a rayon pool a program builds), whose
//! idle workers spin 25,000 times before they sleep. Where there are as many cores as threads, a
//! spinning worker takes a core from rayon's workers between candle's ops: 12% of the samples of
//! a ResNet-50 forward pass on 2 cores were that spinning. The ConvNet SimCLR step bench, three
//! alternating rounds on 2 cores: 194.7, 223.8, 178.7 ms spinning, 193.2, 188.2, 176.0 ms not. And
//! `--threads 1` left candle's element-wise maps on every core until its pool was sized too.

/// candle's pool: `threads` workers in all (0: leave candle's default, the cores here), and idle
/// workers that sleep at once. A setting the user gave in the environment (`CANDLE_NUM_THREADS`,
/// `CANDLE_BARRIER_POOL_SPIN_LIMIT`) is kept. Call it first thing in `main`, before any tensor op
/// and before other threads start: candle reads both once, and the environment is process-wide.
pub fn configure_candle_pool(threads: usize) {
    let unset = |name: &str| std::env::var_os(name).is_none();
    if threads > 0 && unset("CANDLE_NUM_THREADS") {
        std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    }
    if unset("CANDLE_BARRIER_POOL_SPIN_LIMIT") {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "1");
    }
}
