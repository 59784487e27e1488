//! Every reader on mutated valid inputs, a bounded number of cases each (the stable counterpart of
//! `cargo fuzz`; CONTRASTIVE_FUZZ_CASES sets the count, default 300 per reader). A case fails if
//! the reader panics, if it allocates more than [`ALLOCATION_CAP`] (a declared size trusted
//! before it was checked against the file), or if it runs past [`HANG_SECONDS`] (the process
//! then aborts, printing the reader and the input).

use contrastive_fuzz::Reader;
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// No input here is over 64 KiB; the most any format can justify from that is a gzip or PNG body
/// that inflates about 1000-fold. 256 MiB is far beyond that and far below what trusting a
/// declared size would ask.
const ALLOCATION_CAP: usize = 256 << 20;
const HANG_SECONDS: u64 = 60;

/// Counts live heap bytes and their peak, for the whole process.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to the system allocator unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: the caller's layout goes to System as given.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= layout.size() {
            let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: as for System.realloc.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One reader at a time, so that the peak is that reader's (tests run on several threads).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
/// When the case under way started (ms since the watchdog's epoch; 0: none under way).
static CASE_STARTED_MS: AtomicU64 = AtomicU64::new(0);

/// A place in an input of any length: the fraction `raw / 2^16` of the way in.
#[derive(Clone, Copy, Debug)]
struct Index(u16);

impl Index {
    fn index(self, len: usize) -> usize {
        (usize::from(self.0) * len) >> 16
    }
}

impl Arbitrary for Index {
    type Parameters = ();
    type Strategy = prop::strategy::Map<prop::num::u16::Any, fn(u16) -> Index>;

    fn arbitrary_with((): ()) -> Self::Strategy {
        any::<u16>().prop_map(Index)
    }
}

/// A change to a valid input: what fuzzers do to find the cases a reader gets wrong.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
    Duplicate(Index, usize),
    /// Replaces the digits at a place with a number that does not fit: where a size or an id is.
    Number(Index, &'static str),
}

const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "4294967296",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775808",
    "1e309",
    "NaN",
    "4000000000",
    "99999999999999999999999999",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop::sample::select(vec![0u8, 1, 0x7f, 0x80, 0xff, b'\n', b',', b'"', b'{', b'-', b'9']);
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), prop_oneof![interesting, any::<u8>()]).prop_map(|(i, v)| Mutation::SetByte(i, v)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<Index>(), 1usize..32).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        (any::<Index>(), prop::sample::select(NUMBERS)).prop_map(|(i, n)| Mutation::Number(i, n)),
    ]
}

fn apply(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = data.len();
        if len == 0 {
            if let Mutation::Insert(_, bytes) = m {
                data.extend_from_slice(bytes);
            }
            continue;
        }
        match m {
            Mutation::FlipBit(i, bit) => data[i.index(len)] ^= 1 << bit,
            Mutation::SetByte(i, v) => data[i.index(len)] = *v,
            Mutation::Insert(i, bytes) => {
                let at = i.index(len + 1);
                data.splice(at..at, bytes.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let at = i.index(len);
                data.drain(at..(at + n).min(len));
            }
            Mutation::Truncate(i) => data.truncate(i.index(len)),
            Mutation::Duplicate(i, n) => {
                let at = i.index(len);
                let chunk: Vec<u8> = data[at..(at + n).min(len)].to_vec();
                data.splice(at..at, chunk);
            }
            Mutation::Number(i, number) => {
                // The run of digits at or after the place, replaced (appended if there is none).
                let start = (i.index(len)..len).find(|&j| data[j].is_ascii_digit()).unwrap_or(len);
                let end = (start..len).find(|&j| !data[j].is_ascii_digit()).unwrap_or(len);
                data.splice(start..end, number.bytes());
            }
        }
        data.truncate(64 << 10);
    }
    data
}

fn cases() -> u32 {
    std::env::var("CONTRASTIVE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

/// Aborts the process when a case runs past [`HANG_SECONDS`], naming the reader and input.
fn watchdog(epoch: Instant) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let started = CASE_STARTED_MS.load(Ordering::SeqCst);
            let now = epoch.elapsed().as_millis() as u64;
            if started != 0 && now.saturating_sub(started) > HANG_SECONDS * 1000 {
                let input = CURRENT.lock().map(|c| c.clone()).unwrap_or_default();
                eprintln!(
                    "a reader ran for over {HANG_SECONDS} s on {} ({} bytes): {:02x?}",
                    input.0,
                    input.1.len(),
                    input.1
                );
                std::process::abort();
            }
        });
    });
}

/// The reader and input of the case under way, for the watchdog's report.
static CURRENT: Mutex<(&str, Vec<u8>)> = Mutex::new(("", Vec::new()));

fn fuzz(reader: Reader) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let epoch = *EPOCH.get_or_init(Instant::now);
    let seeds = reader.seeds();
    watchdog(epoch);
    let strategy = (0..seeds.len(), prop::collection::vec(mutation(), 1..6));
    let config = ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |((seed, mutations) in strategy)| {
        let data = apply(seeds[seed].clone(), &mutations);
        if let Ok(mut c) = CURRENT.lock() {
            *c = (reader.name(), data.clone());
        }
        let base = LIVE.load(Ordering::SeqCst);
        PEAK.store(base, Ordering::SeqCst);
        CASE_STARTED_MS.store(epoch.elapsed().as_millis() as u64 + 1, Ordering::SeqCst);
        reader.read(&data);
        CASE_STARTED_MS.store(0, Ordering::SeqCst);
        let used = PEAK.load(Ordering::SeqCst).saturating_sub(base);
        prop_assert!(
            used <= ALLOCATION_CAP,
            "{} allocated {} MiB for {} bytes of input", reader.name(), used >> 20, data.len()
        );
    });
}

static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

macro_rules! fuzz_tests {
    ($($name:ident => $reader:expr),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                fuzz($reader);
            }
        )*
    };
}

fuzz_tests! {
    idx_images => Reader::IdxImages,
    idx_labels => Reader::IdxLabels,
    pixel_csv => Reader::PixelCsv,
    image_file => Reader::ImageFile,
    tu_dataset => Reader::TuDataset,
    corpus => Reader::Corpus,
    sts_tsv => Reader::StsTsv,
    tokenizer => Reader::Tokenizer,
    bert_config => Reader::BertConfig,
    safetensors => Reader::Safetensors,
    checkpoint => Reader::Checkpoint,
    history => Reader::History,
}

#[test]
fn the_allocation_meter_sees_what_a_reader_would_allocate() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let big: Vec<u8> = Vec::with_capacity(ALLOCATION_CAP + 1);
    drop(std::hint::black_box(big));
    assert!(PEAK.load(Ordering::SeqCst) - base > ALLOCATION_CAP);
    assert!(LIVE.load(Ordering::SeqCst) < base + (1 << 20), "freed memory is counted out");
}

#[test]
fn mutations_change_inputs_the_way_they_say() {
    let seed = b"12,34\n".to_vec();
    assert_eq!(apply(seed.clone(), &[]), seed);
    let half = Index(1 << 15);
    assert_eq!(apply(b"ab".to_vec(), &[Mutation::Truncate(half)]), b"a");
    assert_eq!(apply(b"x 12,34".to_vec(), &[Mutation::Number(Index(0), "-1")]), b"x -1,34");
    assert_eq!(apply(b"ab".to_vec(), &[Mutation::Duplicate(Index(0), 2)]), b"abab");
    assert_eq!(apply(b"ab".to_vec(), &[Mutation::Insert(half, b"--".to_vec())]), b"a--b");
    assert_eq!(apply(b"abc".to_vec(), &[Mutation::Delete(Index(0), 2)]), b"c");
    assert_eq!(apply(b"a".to_vec(), &[Mutation::FlipBit(Index(0), 0)]), b"`");
    assert_eq!(half.index(10), 5);
}
