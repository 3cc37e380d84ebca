//! The log file: lines appended through a buffer, with the file's length kept, so the
//! position file can say how much of it its positions cover.
//!
//! It is opened with `O_APPEND`, so every write lands at the file's end whatever happened to
//! it: after logrotate's `copytruncate` the next line starts the emptied file, with no hole
//! before it. The length is read back from the file at every sync, so positions saved after
//! such a truncation count from the file's new length. Rename-and-create rotation is
//! followed by [`LogFile::reopen`] of the same path (SIGHUP or the subscriber's own rotation,
//! see `writer.rs`). The file's identity ([`FileId`]) goes into the position file, so a restart
//! can tell whether the file at the path is the one the positions measured.

use crate::config::Format;
use crate::log_line::{Entry, Lines};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::fs::{File, Metadata, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which file this is, whatever its name: its device and inode (none where there are none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    /// The device the file is on.
    pub dev: u64,
    /// Its inode number.
    pub ino: u64,
}

impl FileId {
    /// The identity of the file `metadata` describes.
    pub fn of(metadata: &Metadata) -> Option<FileId> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Some(FileId {
                dev: metadata.dev(),
                ino: metadata.ino(),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = metadata;
            None
        }
    }

    /// The identity of the file at `path`; `None` when there is none (or it cannot be read).
    pub fn at(path: &Path) -> Option<FileId> {
        std::fs::metadata(path).ok().as_ref().and_then(FileId::of)
    }
}

/// An open log file.
pub struct LogFile {
    path: PathBuf,
    file: BufWriter<File>,
    /// The same open file (a second descriptor), for syncing it on another thread.
    handle: Arc<File>,
    id: Option<FileId>,
    lines: Lines,
    /// The line [`LogFile::stage`] formatted, which [`LogFile::append_staged`] writes.
    line: String,
    /// Bytes in the file once the buffer is flushed.
    len: u64,
    /// Whether lines were appended since the last [`LogFile::sync`].
    unsynced: bool,
    /// Lines written by this process.
    pub written: u64,
}

impl LogFile {
    /// Opens `path` for appending, creating it (not its directory) when missing.
    pub fn open(path: &Path, format: Format) -> anyhow::Result<Self> {
        let (file, len, id) = open_append(path)?;
        let handle = Arc::new(duplicate(&file, path)?);
        Ok(LogFile {
            path: path.to_owned(),
            file: BufWriter::with_capacity(64 * 1024, file),
            handle,
            id,
            lines: Lines::new(format),
            line: String::with_capacity(256),
            len,
            unsynced: false,
            written: 0,
        })
    }

    /// Opens the path afresh (after the file was renamed away), flushing what is buffered
    /// into the file left. When the path cannot be opened the open file is kept.
    pub fn reopen(&mut self) -> anyhow::Result<()> {
        self.flush()?;
        let (file, len, id) = open_append(&self.path)?;
        self.handle = Arc::new(duplicate(&file, &self.path)?);
        self.file = BufWriter::with_capacity(64 * 1024, file);
        (self.len, self.id, self.unsynced) = (len, id, false);
        Ok(())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length once flushed.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Which file is open.
    pub fn id(&self) -> Option<FileId> {
        self.id
    }

    /// Whether lines were appended since the last sync.
    pub fn unsynced(&self) -> bool {
        self.unsynced
    }

    /// Formats one line, to be appended by [`LogFile::append_staged`]; its length in bytes.
    pub fn stage(&mut self, entry: &Entry) -> u64 {
        self.line.clear();
        self.lines.write(entry, &mut self.line);
        self.line.len() as u64
    }

    /// Appends the line last staged (to the buffer).
    pub fn append_staged(&mut self) -> anyhow::Result<()> {
        self.file
            .write_all(self.line.as_bytes())
            .with_context(|| self.failed())?;
        self.len += self.line.len() as u64;
        self.unsynced = true;
        self.written += 1;
        Ok(())
    }

    /// Hands the buffered lines to the operating system.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.file.flush().with_context(|| self.failed())
    }

    /// Flushes and reads the file's length back (it is shorter after a copytruncate).
    pub fn settle(&mut self) -> anyhow::Result<()> {
        self.flush()?;
        let on_disk = self
            .file
            .get_ref()
            .metadata()
            .with_context(|| self.failed())?
            .len();
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

    /// [`settle`](Self::settle)s, and waits until the lines are on disk.
    pub fn sync(&mut self) -> anyhow::Result<()> {
        self.flush()?;
        if std::mem::take(&mut self.unsynced) {
            let synced = self.file.get_ref().sync_data();
            if let Err(e) = synced {
                self.unsynced = true;
                return Err(e).with_context(|| self.failed());
            }
        }
        self.settle()
    }

    /// [`settle`](Self::settle)s, and hands out the file to be synced on another thread when
    /// lines were appended since the last sync (they count as synced from now on: the caller
    /// stops the writer if that sync fails). The length read back is what that sync covers.
    pub fn sync_elsewhere(&mut self) -> anyhow::Result<Option<Arc<File>>> {
        self.settle()?;
        Ok(std::mem::take(&mut self.unsynced).then(|| Arc::clone(&self.handle)))
    }

    fn failed(&self) -> String {
        format!("cannot write LOG_FILE {}", self.path.display())
    }
}

/// Opens `path` for appending, creating it: the file, its length and its identity.
fn open_append(path: &Path) -> anyhow::Result<(File, u64, Option<FileId>)> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open LOG_FILE {} for appending", path.display()))?;
    let metadata = file
        .metadata()
        .with_context(|| format!("cannot read the length of LOG_FILE {}", path.display()))?;
    Ok((file, metadata.len(), FileId::of(&metadata)))
}

/// A second descriptor of `file` (at `path`), sharing its offset and its data on disk.
fn duplicate(file: &File, path: &Path) -> anyhow::Result<File> {
    file.try_clone().with_context(|| {
        format!(
            "cannot duplicate the descriptor of LOG_FILE {}",
            path.display()
        )
    })
}
