//! The allocator setting our binaries run with (feature `mimalloc`).
//!
//! Training allocates and frees the same large buffers every step (activations, gradients,
//! optimiser temporaries). mimalloc by default returns freed memory to the OS after 10 ms, so the
//! next step faults it back in and the kernel zeroes every page again: on the MiniLM SimCSE step
//! that was 148k page faults and about 30% of the step (3.4 s against 2.4 s on 2 cores). Keeping
//! freed memory mapped costs nothing but resident size, which the next step needs anyway.

/// mimalloc 3's `mi_option_purge_delay` (its `mi_option_e` enum, mimalloc.h).
const MI_OPTION_PURGE_DELAY: i32 = 15;

extern "C" {
    fn mi_option_set(option: i32, value: std::ffi::c_long);
}

/// Tells mimalloc never to purge freed memory back to the OS (`MIMALLOC_PURGE_DELAY=-1`). Call it
/// at the start of `main` in a program whose `#[global_allocator]` is `mimalloc::MiMalloc`.
pub fn keep_freed_memory() {
    // SAFETY: mi_option_set only stores an integer option; mimalloc is linked through the
    // `mimalloc` dependency this module is compiled with.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// The allocator to declare as `#[global_allocator]`.
pub use mimalloc::MiMalloc;
