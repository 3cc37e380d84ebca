//! The log file: lines appended through a buffer, with the file's length kept, so the
//! position file can say how much of it its positions cover.
//!
//! It is opened with `O_APPEND`, so every write lands at the file's end whatever happened to
//! it: after logrotate's `copytruncate` the next line starts the emptied file, with no hole
//! before it. The length is read back from the file at every sync, so positions saved after
//! such a truncation count from the file's new length. Rename-and-create rotation is
//! followed by [`LogFile::open`] of the same path again (SIGHUP, see `writer.rs`).

use crate::config::Format;
use crate::log_line::{Entry, Lines};
use anyhow::Context;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// An open log file.
pub struct LogFile {
    path: PathBuf,
    file: BufWriter<File>,
    lines: Lines,
    line: String,
    /// Bytes in the file once the buffer is flushed.
    len: u64,
    /// Lines written by this process.
    pub written: u64,
}

impl LogFile {
    /// Opens `path` for appending, creating it (not its directory) when missing.
    pub fn open(path: &Path, format: Format) -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open LOG_FILE {} for appending", path.display()))?;
        let len = file
            .metadata()
            .with_context(|| format!("cannot read the length of LOG_FILE {}", path.display()))?
            .len();
        Ok(LogFile {
            path: path.to_owned(),
            file: BufWriter::with_capacity(64 * 1024, file),
            lines: Lines::new(format),
            line: String::with_capacity(256),
            len,
            written: 0,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The line format.
    pub fn format(&self) -> Format {
        self.lines.format()
    }

    /// The file's length once flushed.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Appends one line (to the buffer).
    pub fn append(&mut self, entry: &Entry) -> anyhow::Result<()> {
        self.line.clear();
        self.lines.write(entry, &mut self.line);
        self.file
            .write_all(self.line.as_bytes())
            .with_context(|| self.failed())?;
        self.len += self.line.len() as u64;
        self.written += 1;
        Ok(())
    }

    /// Hands the buffered lines to the operating system.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.file.flush().with_context(|| self.failed())
    }

    /// Flushes, waits until the lines are on disk, and reads the file's length back.
    pub fn sync(&mut self) -> anyhow::Result<()> {
        self.flush()?;
        let file = self.file.get_ref();
        file.sync_data().with_context(|| self.failed())?;
        let on_disk = file.metadata().with_context(|| self.failed())?.len();
        if on_disk < self.len {
            tracing::info!(
                path = %self.path.display(),
                written = self.len,
                on_disk,
                "the log file was truncated (logrotate's copytruncate?); appending at its new end"
            );
        }
        self.len = on_disk;
        Ok(())
    }

    fn failed(&self) -> String {
        format!("cannot write LOG_FILE {}", self.path.display())
    }
}
