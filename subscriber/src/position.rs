//! The position file beside the log, `<LOG_FILE>.pos`: per publisher the epoch followed and
//! the last number the log accounts for, and the log's length (and identity) when that was so.
//!
//! It is never ahead of the log: it is written only of lines already flushed and — unless
//! `LOG_SYNC=never` — synced, at most every [`SAVE_EVERY`] (or the sync interval, when longer),
//! at shutdown, around a reopen or rotation, and always before the first line of a publisher
//! or epoch it does not name yet — so every line after `log_bytes` belongs to a (publisher,
//! epoch) it names, which is what lets a restart read the text format's lines (which carry no
//! epoch) back. Each write is atomic: a temporary file, fsync, rename, fsync of the directory.

use crate::log_file::FileId;
use crate::log_line::Entry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Shortest time between two routine writes.
pub const SAVE_EVERY: Duration = Duration::from_millis(200);
/// The format version this build writes and reads.
const VERSION: u32 = 1;

/// What the position file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Positions {
    /// The format version.
    #[serde(default)]
    pub version: u32,
    /// The log's length when the marks were true.
    pub log_bytes: u64,
    /// Which file that length measured (absent in files of older builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_id: Option<FileId>,
    /// Per publisher id.
    pub streams: BTreeMap<String, Mark>,
}

/// How far the log is with one publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The epoch the log follows; `None` when it was recovered from text lines alone.
    pub epoch: Option<u64>,
    /// The last number the log accounts for (an event, or the end of a gap line).
    pub last: u64,
}

/// Why the position file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// It could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// It is not a position file this build writes.
    #[error("{path} is not a position file: {cause}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        cause: String,
    },
}

/// The position file of log `log`: the same path with `.pos` appended.
pub fn path_for(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".pos");
    PathBuf::from(name)
}

/// Reads the position file; `Ok(None)` when there is none.
pub fn load(path: &Path) -> Result<Option<Positions>, LoadError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            let path = path.display().to_string();
            return Err(LoadError::Read { path, source });
        }
    };
    let corrupt = |cause: String| LoadError::Corrupt {
        path: path.display().to_string(),
        cause,
    };
    let positions: Positions = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
    if positions.version != VERSION {
        return Err(corrupt(format!(
            "version {} is not {VERSION}",
            positions.version
        )));
    }
    Ok(Some(positions))
}

/// Writes `positions` to `path` atomically.
pub fn save(path: &Path, positions: &Positions) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary)?;
    let text = serde_json::to_vec_pretty(positions).map_err(std::io::Error::other)?;
    file.write_all(&text)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    // The rename itself is durable only once the directory is synced.
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Ok(dir) = std::fs::File::open(dir.unwrap_or(Path::new("."))) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The writer's view of the position file: the marks of what has been written, and when
/// they were last saved.
#[derive(Debug)]
pub struct PositionFile {
    path: PathBuf,
    positions: Positions,
    every: Duration,
    saved_at: Option<Instant>,
    dirty: bool,
    failing: bool,
}

impl PositionFile {
    /// Marks as recovered at start, saved routinely at most every `every` (no more often than
    /// [`SAVE_EVERY`]).
    pub fn new(path: PathBuf, mut positions: Positions, every: Duration) -> Self {
        positions.version = VERSION;
        PositionFile {
            path,
            positions,
            every: every.max(SAVE_EVERY),
            saved_at: None,
            dirty: true,
            failing: false,
        }
    }

    /// Whether `entry` is the first line of a publisher or epoch the file does not name.
    /// If so, the file is to be saved (with the stream started just before the entry)
    /// before the line is written.
    pub fn starts_stream(&mut self, entry: &Entry) -> bool {
        let (publisher, epoch, first, _) = span(entry);
        let named = self.positions.streams.get(publisher).and_then(|m| m.epoch);
        if named == Some(epoch) {
            return false;
        }
        let mark = Mark {
            epoch: Some(epoch),
            last: first.saturating_sub(1),
        };
        self.positions.streams.insert(publisher.to_owned(), mark);
        true
    }

    /// `entry` was written.
    pub fn wrote(&mut self, entry: &Entry) {
        let (publisher, epoch, _, last) = span(entry);
        let mark = Mark {
            epoch: Some(epoch),
            last,
        };
        // In place: the publisher is named already but for its very first line.
        match self.positions.streams.get_mut(publisher) {
            Some(named) => *named = mark,
            None => {
                self.positions.streams.insert(publisher.to_owned(), mark);
            }
        }
        self.dirty = true;
    }

    /// Whether lines were written since the last save.
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// Whether a routine save is due.
    pub fn due(&self, now: Instant) -> bool {
        self.dirty
            && self
                .saved_at
                .is_none_or(|at| now.duration_since(at) >= self.every)
    }

    /// Saves the marks as true of log file `log_id` of `log_bytes` bytes, which are on disk
    /// (or, with `LOG_SYNC=never`, written). A failure is a warning (the log matters more); the
    /// next save tries again.
    pub fn save(&mut self, log_bytes: u64, log_id: Option<FileId>, now: Instant) {
        let (path, positions) = self.snapshot(log_bytes, log_id, now);
        let saved = save(&path, &positions);
        self.saved(saved);
    }

    /// The marks as true of log file `log_id` of `log_bytes` bytes, and the path to save them
    /// to, for a save on another thread; [`PositionFile::saved`] takes its outcome. Counts as
    /// the routine save of `now`.
    pub fn snapshot(
        &mut self,
        log_bytes: u64,
        log_id: Option<FileId>,
        now: Instant,
    ) -> (PathBuf, Positions) {
        self.positions.log_bytes = log_bytes;
        self.positions.log_id = log_id;
        self.dirty = false;
        self.saved_at = Some(now);
        (self.path.clone(), self.positions.clone())
    }

    /// How the save of the last [`snapshot`](PositionFile::snapshot) went.
    pub fn saved(&mut self, outcome: std::io::Result<()>) {
        match outcome {
            Ok(()) => {
                if std::mem::take(&mut self.failing) {
                    tracing::info!(path = %self.path.display(), "position file written again");
                }
            }
            Err(e) => {
                // Not saved: the next routine save is due as soon as its time comes.
                self.dirty = true;
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(path = %self.path.display(), cause = %e, "cannot write the position file");
                }
            }
        }
    }
}

/// The publisher, epoch and numbers a line accounts for.
fn span(entry: &Entry) -> (&str, u64, u64, u64) {
    match entry {
        Entry::Event(e) => (&e.sender, e.epoch, e.seq, e.seq),
        Entry::Gap {
            sender,
            epoch,
            first,
            last,
            ..
        } => (sender, *epoch, *first, *last),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_survive_a_round_trip_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = path_for(&dir.path().join("subscriber.log"));
        assert!(path.ends_with("subscriber.log.pos"));
        assert!(load(&path).expect("missing is fine").is_none());
        let positions = Positions {
            version: VERSION,
            log_bytes: 1234,
            log_id: Some(FileId { dev: 8, ino: 99 }),
            streams: BTreeMap::from([
                (
                    "pub 1#".to_owned(),
                    Mark {
                        epoch: Some(7),
                        last: 42,
                    },
                ),
                (
                    "old".to_owned(),
                    Mark {
                        epoch: None,
                        last: 3,
                    },
                ),
            ]),
        };
        save(&path, &positions).expect("saved");
        assert_eq!(load(&path).expect("read"), Some(positions));
        assert!(!dir.path().join("subscriber.log.pos.tmp").exists());
    }

    #[test]
    fn a_position_file_of_an_older_build_without_a_log_id_still_loads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.pos");
        let old = "{\"version\":1,\"log_bytes\":7,\"streams\":{\"p\":{\"epoch\":3,\"last\":4}}}";
        std::fs::write(&path, old).expect("write");
        let positions = load(&path).expect("loads").expect("there is one");
        assert_eq!((positions.log_bytes, positions.log_id), (7, None));
        assert_eq!(positions.streams["p"].last, 4);
    }

    #[test]
    fn a_corrupt_position_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.pos");
        for junk in [
            "{\"log_bytes\": \"many\"",
            "",
            "{\"version\":9,\"log_bytes\":0,\"streams\":{}}",
        ] {
            std::fs::write(&path, junk).expect("write");
            let error = load(&path).expect_err("corrupt");
            assert!(
                error.to_string().contains("x.pos is not a position file"),
                "{error}"
            );
        }
    }
}
