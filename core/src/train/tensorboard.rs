//! TensorBoard event files: what `tensorboard --logdir` reads, written without TensorFlow.
//!
//! A file is a sequence of records (little-endian u64 length, its masked CRC-32C, the bytes,
//! their masked CRC-32C), each an `Event` protocol buffer (TensorFlow's `event.proto` and
//! `summary.proto`, the fields used here declared with prost): first the file version, then
//! scalar summaries. A run resumed from a checkpoint writes a new file whose first event after
//! the version is a `SessionLog` START at the step training goes on from, so TensorBoard drops
//! what the interrupted run logged past its checkpoint, as `history.jsonl` drops those lines.

use crate::error::{Error, Result};
use prost::Message;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `tensorflow.Event`: a wall time, a step and one payload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The global step.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// The payload.
    #[prost(oneof = "What", tags = "3, 5, 7")]
    pub what: Option<What>,
}

/// The payloads of an [`Event`] this writer uses.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    /// `brain.Event:2`, the first event of a file.
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// Scalars.
    #[prost(message, tag = "5")]
    Summary(Summary),
    /// A session starting (over again) at the event's step.
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

/// `tensorflow.Summary`: tagged values.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value` with a scalar (`simple_value`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    /// The series the value belongs to, e.g. `train/loss`.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// The value.
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

/// `tensorflow.SessionLog`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    /// 1 = START (TensorBoard then drops events at and past this step written before it).
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// `SessionLog.START`.
const SESSION_START: i32 = 1;

/// CRC-32C of `bytes`, masked as TensorFlow's record format does (rotated right by 15 bits plus
/// a constant, so that a CRC of data holding CRCs stays well distributed).
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends events to one new file in a run folder.
pub struct EventWriter {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl EventWriter {
    /// Creates `events.out.tfevents.<seconds>.<microseconds>.<process id>.contrastive` in `dir`
    /// (names sort by creation time, which is the order TensorBoard reads a folder's files in)
    /// and writes the file version.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let name = format!(
            "events.out.tfevents.{}.{:06}.{}.contrastive",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id()
        );
        let path = dir.join(name);
        let file =
            std::fs::OpenOptions::new().write(true).create_new(true).open(&path).map_err(|e| Error::io(&path, e))?;
        let mut writer = Self { path, file: std::io::BufWriter::new(file) };
        writer.write(&Event {
            wall_time: wall_time(),
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        writer.flush()?;
        Ok(writer)
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Scalars `(tag, value)` at `step`, in one event.
    pub fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> Result<()> {
        let value =
            values.iter().map(|(tag, v)| SummaryValue { tag: tag.clone(), simple_value: Some(*v as f32) }).collect();
        self.write(&Event { wall_time: wall_time(), step: step as i64, what: Some(What::Summary(Summary { value })) })
    }

    /// Marks a (resumed) session starting at `step`: TensorBoard drops the events at and past
    /// `step` from the files before this one.
    pub fn session_start(&mut self, step: u64) -> Result<()> {
        let log = SessionLog { status: SESSION_START };
        self.write(&Event { wall_time: wall_time(), step: step as i64, what: Some(What::SessionLog(log)) })
    }

    /// Writes what is buffered to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }

    fn write(&mut self, event: &Event) -> Result<()> {
        let data = event.encode_to_vec();
        let length = (data.len() as u64).to_le_bytes();
        let mut record = Vec::with_capacity(data.len() + 16);
        record.extend_from_slice(&length);
        record.extend_from_slice(&masked_crc32c(&length).to_le_bytes());
        record.extend_from_slice(&data);
        record.extend_from_slice(&masked_crc32c(&data).to_le_bytes());
        self.file.write_all(&record).map_err(|e| Error::io(&self.path, e))
    }
}

/// Reads every event of a file written by [`EventWriter`] (or TensorFlow), checking both
/// checksums of each record; a bad or cut record is an error naming the file and its offset.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut events = Vec::new();
    let mut at = 0usize;
    let bad = |at: usize, what: &str| Error::in_file(path, None, format!("record at byte {at}: {what}"));
    while at < bytes.len() {
        let header = bytes.get(at..at + 12).ok_or_else(|| bad(at, "cut short in its header"))?;
        let (length, crc) = header.split_at(8);
        if masked_crc32c(length) != u32::from_le_bytes(crc.try_into().unwrap_or_default()) {
            return Err(bad(at, "the length's checksum does not match"));
        }
        let n = usize::try_from(u64::from_le_bytes(length.try_into().unwrap_or_default()))
            .map_err(|_| bad(at, "a length past this machine's memory"))?;
        let end = n.checked_add(at + 16).ok_or_else(|| bad(at, "a length past this machine's memory"))?;
        let body = bytes.get(at + 12..end).ok_or_else(|| bad(at, "cut short in its data"))?;
        let (data, crc) = body.split_at(n);
        if masked_crc32c(data) != u32::from_le_bytes(crc.try_into().unwrap_or_default()) {
            return Err(bad(at, "the data's checksum does not match"));
        }
        events.push(Event::decode(data).map_err(|e| bad(at, &format!("not an Event: {e}")))?);
        at += 16 + n;
    }
    Ok(events)
}

fn wall_time() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}
