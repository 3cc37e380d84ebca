//! The subscriber's own rotation of its log (`LOG_MAX_BYTES`, `LOG_KEEP`), for machines
//! without logrotate: the names of the rotated files (`<LOG_FILE>.1`, the newest, up to
//! `.<LOG_KEEP>`) and shifting them one up to make room for the file now at the path. The
//! writer decides when (`writer.rs`, "Rotation"); the restart after a crash in the middle of
//! it reads `.1` when the position file still measures it (`recover.rs`).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// When the log is rotated, and how many rotated files are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// A line that would take the file past this many bytes goes into a new file (a file
    /// holds at least one line, however long).
    pub max_bytes: u64,
    /// Rotated files kept: `.1` … `.<keep>`.
    pub keep: u32,
}

/// The `n`-th rotated file of `log`: `<log>.<n>`.
pub fn numbered(log: &Path, n: u32) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Deletes `<log>.<keep>`, renames each `<log>.<n>` to `<log>.<n+1>`, then `log` to `<log>.1`,
/// and syncs the directory so the renames survive a crash of the machine. Rotated files that
/// do not exist are passed over. On an error nothing after it is done: in particular `log`
/// stays where it is unless the last rename succeeded.
pub fn shift(log: &Path, keep: u32) -> std::io::Result<()> {
    let missing_is_fine = |result: std::io::Result<()>| match result {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    };
    missing_is_fine(std::fs::remove_file(numbered(log, keep)))?;
    for n in (1..keep).rev() {
        missing_is_fine(std::fs::rename(numbered(log, n), numbered(log, n + 1)))?;
    }
    std::fs::rename(log, numbered(log, 1))?;
    let dir = log.parent().filter(|d| !d.as_os_str().is_empty());
    std::fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    #[test]
    fn each_shift_moves_every_file_one_up_and_drops_the_one_past_keep() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("subscriber.log");
        for generation in ["a", "b", "c", "d"] {
            std::fs::write(&log, generation).expect("log");
            shift(&log, 2).expect("shifted");
        }
        assert_eq!(read(&log), None, "the path is free for the new file");
        assert_eq!(read(&numbered(&log, 1)).as_deref(), Some("d"));
        assert_eq!(read(&numbered(&log, 2)).as_deref(), Some("c"));
        assert_eq!(read(&numbered(&log, 3)), None, "past LOG_KEEP: deleted");
    }

    #[test]
    fn without_a_file_at_the_path_the_shift_fails_once_the_older_files_moved() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("subscriber.log");
        std::fs::write(numbered(&log, 1), "old").expect("rotated");
        let error = shift(&log, 3).expect_err("nothing to rotate");
        assert_eq!(error.kind(), ErrorKind::NotFound);
        assert_eq!(read(&numbered(&log, 2)).as_deref(), Some("old"));
        assert_eq!(read(&numbered(&log, 1)), None);
    }
}
