//! The log file's writer: runs on a thread of its own, takes decoded envelopes in arrival
//! order, writes each event once, and flushes whenever it has caught up, so `tail -f` shows an
//! event a moment after it arrives while a burst is still written in large blocks.

use crate::config::Format;
use crate::log_line::{Entry, write_line};
use crate::streams::{Admit, Streams};
use anyhow::Context;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;
use wire::{Broadcast, Envelope};

/// An open log file and the numbering state that decides what is written to it.
pub struct LogFile {
    path: PathBuf,
    file: BufWriter<File>,
    format: Format,
    streams: Streams,
    line: String,
    written: u64,
}

impl LogFile {
    /// Opens `path` for appending, creating it (not its directory) when missing.
    pub fn open(path: &Path, format: Format) -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open LOG_FILE {} for appending", path.display()))?;
        Ok(LogFile {
            path: path.to_owned(),
            file: BufWriter::with_capacity(64 * 1024, file),
            format,
            streams: Streams::default(),
            line: String::with_capacity(256),
            written: 0,
        })
    }

    /// Writes what arrives until the channel closes, then flushes and syncs the file.
    pub fn run(mut self, mut arrivals: mpsc::Receiver<Envelope<Broadcast>>) -> anyhow::Result<()> {
        while let Some(first) = arrivals.blocking_recv() {
            self.take(first)?;
            while let Ok(next) = arrivals.try_recv() {
                self.take(next)?;
            }
            self.file.flush().with_context(|| self.failed())?;
        }
        self.file.flush().with_context(|| self.failed())?;
        self.file
            .get_ref()
            .sync_all()
            .with_context(|| self.failed())?;
        tracing::info!(written = self.written, path = %self.path.display(), "log file closed");
        Ok(())
    }

    fn take(&mut self, envelope: Envelope<Broadcast>) -> anyhow::Result<()> {
        let now = wire::now_ms();
        let (envelope, body) = envelope.into_parts();
        let gap = |(first, last)| Entry::Gap {
            sender: envelope.sender.clone(),
            epoch: envelope.epoch,
            first,
            last,
            ts_ms: now,
        };
        let event = match body {
            Broadcast::Heartbeat(beat) => {
                let missing =
                    self.streams
                        .heartbeat(&envelope.sender, envelope.epoch, beat.last_seq);
                if let Some(range) = missing {
                    self.write(&gap(range))?;
                }
                return Ok(());
            }
            Broadcast::Event(event) => event,
        };
        match self
            .streams
            .admit(&envelope.sender, envelope.epoch, envelope.seq)
        {
            Admit::Seen => {
                tracing::debug!(publisher = %envelope.sender, seq = envelope.seq, "duplicate dropped");
                return Ok(());
            }
            Admit::AfterGap { first, last } => self.write(&gap((first, last)))?,
            Admit::Next => {}
        }
        self.write(&Entry::Event(envelope.with(event)))
    }

    fn write(&mut self, entry: &Entry) -> anyhow::Result<()> {
        if let Entry::Gap {
            sender,
            first,
            last,
            ..
        } = entry
        {
            tracing::warn!(publisher = %sender, first, last, "events never arrived; gap written");
        }
        self.line.clear();
        write_line(entry, self.format, &mut self.line);
        self.file
            .write_all(self.line.as_bytes())
            .with_context(|| self.failed())?;
        self.written += 1;
        Ok(())
    }

    fn failed(&self) -> String {
        format!("cannot write LOG_FILE {}", self.path.display())
    }
}
