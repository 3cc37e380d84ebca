//! The journal's segment files: `<first sequence number, 20 digits>.journal` in the journal
//! directory, so their names sort in the order of the stream. The segments kept are bounded by
//! total size and by age; the oldest goes first, the one being written never.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const SUFFIX: &str = ".journal";

/// The file of the segment whose first event is `first_seq`.
pub fn path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}{SUFFIX}"))
}

/// One segment on disk.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Its file.
    pub path: PathBuf,
    /// The number its name gives: no event in it is older.
    pub first_seq: u64,
    /// Its size.
    pub bytes: u64,
    /// When it was last written to.
    pub modified: SystemTime,
}

/// The segments in `dir`, oldest first. Files of other names are left alone.
pub fn list(dir: &Path) -> std::io::Result<Vec<Segment>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(first_seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SUFFIX))
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        segments.push(Segment {
            path: entry.path(),
            first_seq,
            bytes: meta.len(),
            modified: meta.modified().unwrap_or_else(|_| SystemTime::now()),
        });
    }
    segments.sort_by_key(|s| s.first_seq);
    Ok(segments)
}

/// The segments kept, oldest first; the last is the one being written.
#[derive(Debug, Default)]
pub struct Kept {
    segments: VecDeque<Segment>,
}

impl Kept {
    /// The segments found on disk.
    pub fn new(found: Vec<Segment>) -> Self {
        Kept {
            segments: found.into(),
        }
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Their total size.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// A new segment being written from now on. A segment of the same name (one a run before
    /// began and wrote nothing to, since the numbers are the same) is the file just begun
    /// again: it is no longer an old one to be pruned.
    pub fn push(&mut self, segment: Segment) {
        self.segments.retain(|s| s.path != segment.path);
        self.segments.push_back(segment);
    }

    /// The segment being written grew to `bytes`.
    pub fn grew(&mut self, bytes: u64) {
        if let Some(last) = self.segments.back_mut() {
            last.bytes = bytes;
            last.modified = SystemTime::now();
        }
    }

    /// Deletes the oldest segments while the total is over `max_bytes`, and those last written
    /// more than `max_age` ago; never the one being written. Returns how many went.
    pub fn prune(&mut self, max_bytes: u64, max_age: Duration) -> usize {
        let mut deleted = 0;
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let too_old = oldest.modified.elapsed().is_ok_and(|age| age > max_age);
            if self.bytes() <= max_bytes && !too_old {
                break;
            }
            match std::fs::remove_file(&oldest.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(segment = %oldest.path.display(), cause = %e, "cannot delete an old journal segment");
                    break;
                }
            }
            tracing::info!(segment = %oldest.path.display(), "old journal segment deleted");
            self.segments.pop_front();
            deleted += 1;
        }
        deleted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, first_seq: u64, bytes: usize) {
        std::fs::write(path(dir, first_seq), vec![0; bytes]).unwrap();
    }

    #[test]
    fn segments_are_listed_in_stream_order_and_other_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1001, 10);
        write(dir.path(), 1, 10);
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        std::fs::write(dir.path().join("12.journal"), "x").unwrap();
        let found = list(dir.path()).unwrap();
        let firsts: Vec<_> = found.iter().map(|s| s.first_seq).collect();
        assert_eq!(firsts, [1, 1001]);
    }

    #[test]
    fn the_oldest_go_first_when_over_the_size_and_the_newest_stays() {
        let dir = tempfile::tempdir().unwrap();
        for first in [1, 2, 3] {
            write(dir.path(), first, 100);
        }
        let mut kept = Kept::new(list(dir.path()).unwrap());
        assert_eq!(kept.prune(250, Duration::from_secs(3600)), 1);
        assert_eq!(kept.len(), 2);
        assert!(!path(dir.path(), 1).exists());
        assert_eq!(kept.prune(0, Duration::from_secs(3600)), 1);
        assert_eq!(kept.len(), 1, "the segment being written stays");
        assert!(path(dir.path(), 3).exists());
    }

    #[test]
    fn a_segment_begun_again_under_its_old_name_is_never_pruned_as_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1, 10);
        write(dir.path(), 5, 10);
        let mut kept = Kept::new(list(dir.path()).unwrap());
        kept.push(Segment {
            path: path(dir.path(), 5),
            first_seq: 5,
            bytes: 10,
            modified: SystemTime::now(),
        });
        assert_eq!(kept.len(), 2);
        assert_eq!(kept.prune(0, Duration::ZERO), 1);
        assert!(
            path(dir.path(), 5).exists(),
            "the segment being written stays"
        );
    }

    #[test]
    fn segments_older_than_the_age_go() {
        let dir = tempfile::tempdir().unwrap();
        for first in [1, 2] {
            write(dir.path(), first, 10);
        }
        let mut kept = Kept::new(list(dir.path()).unwrap());
        assert_eq!(kept.prune(u64::MAX, Duration::ZERO), 1);
        assert!(path(dir.path(), 2).exists());
    }
}
