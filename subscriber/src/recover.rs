//! At start, before anything is appended: the position file reconciled with the log's actual
//! tail, so no event is written twice at the restart point and replay fills exactly what is
//! missing.
//!
//! A torn last line (no newline: the process died mid-write) is cut off. Complete lines after
//! the recorded offset advance the positions: the position file named their (publisher,
//! epoch) before the first of them was written. Without a usable position file (missing, or
//! corrupt — a warning, never a refusal to start) the whole log is read, and the last line
//! of each publisher says where it stands; a text line names no epoch, so the epoch is left
//! open and decided when the publisher is next heard (see `Resume::continues`).
//!
//! **After a rotation** the file at the path is another one than the position file's offset
//! measured, and the rule is: a log *shorter* than the recorded offset is read whole, and its
//! lines only ever move a mark forward. So a fresh empty file (logrotate's `create`, or a log
//! renamed away while the subscriber was stopped) keeps every mark as it was — nothing is
//! asked again from replay and no gap line is written — and lines already in the new file
//! count as usual. A missing log keeps the marks too. The writer saves the positions as true
//! of the new file right after it reopens (before writing to it), so a log *longer* than the
//! offset is always the file the offset measures.

use crate::log_read::read_header;
use crate::position::{self, Mark, Positions};
use crate::streams::Resume;
use anyhow::Context;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// What the log holds, as the writer starts.
#[derive(Debug)]
pub struct Recovered {
    /// The marks, true of the log as it now is.
    pub positions: Positions,
    /// The same, for the state machine.
    pub resume: HashMap<String, Resume>,
}

/// Reads the position file `pos` and reconciles it with the log at `log`.
pub fn recover(log: &Path, pos: &Path) -> anyhow::Result<Recovered> {
    let mut positions = match position::load(pos) {
        Ok(Some(positions)) => positions,
        Ok(None) => Positions::default(),
        Err(e) => {
            tracing::warn!(cause = %e, "position file unusable; reading the whole log instead");
            Positions::default()
        }
    };
    let mut file = match OpenOptions::new().read(true).write(true).open(log) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            positions.log_bytes = 0;
            return Ok(resume(positions, HashMap::new()));
        }
        Err(e) => {
            let what = format!("cannot open LOG_FILE {} to reconcile it", log.display());
            return Err(e).context(what);
        }
    };
    let failed = || format!("cannot read LOG_FILE {}", log.display());
    let len = cut_torn_tail(&mut file, log).with_context(failed)?;
    let mut from = positions.log_bytes;
    if from > len {
        tracing::info!(
            recorded = from,
            len,
            "the log is shorter than its position file says (rotated or truncated): reading all of it; marks only move forward"
        );
        from = 0;
    } else if from > 0 && byte_at(&mut file, from - 1).with_context(failed)? != b'\n' {
        tracing::warn!(
            recorded = from,
            "the position file's offset is not at a line's end; reading the whole log"
        );
        from = 0;
    }
    let mut reader = BufReader::new(file);
    reader.seek(SeekFrom::Start(from)).with_context(failed)?;
    let (mut lines, mut unreadable) = (0u64, 0u64);
    let mut event_ms = HashMap::new();
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line).with_context(failed)? > 0 {
        let header = std::str::from_utf8(&line)
            .ok()
            .and_then(|l| read_header(l.trim_end_matches('\n')));
        match header {
            Some(header) => {
                lines += 1;
                if let Some(ms) = header.event_ms {
                    event_ms.insert(header.publisher.clone(), ms);
                }
                advance(&mut positions, header);
            }
            None => unreadable += 1,
        }
        line.clear();
    }
    if lines > 0 || unreadable > 0 {
        tracing::info!(
            from,
            lines,
            unreadable,
            "log tail reconciled with the position file"
        );
    }
    positions.log_bytes = len;
    Ok(resume(positions, event_ms))
}

/// One line moves its publisher's mark. Within an epoch numbers only grow, so a mark the
/// position file named is only moved forward; a mark known from text lines alone is where
/// the publisher's last line leaves it (an older epoch's lines may come before).
fn advance(positions: &mut Positions, header: crate::log_read::Header) {
    let mark = positions.streams.entry(header.publisher).or_insert(Mark {
        epoch: header.epoch,
        last: 0,
    });
    match (mark.epoch, header.epoch) {
        (Some(followed), Some(line)) if line < followed => {} // a line of an older epoch
        (Some(followed), Some(line)) if line == followed => mark.last = mark.last.max(header.last),
        (_, Some(line)) => {
            *mark = Mark {
                epoch: Some(line),
                last: header.last,
            }
        }
        (Some(_), None) => mark.last = mark.last.max(header.last),
        (None, None) => mark.last = header.last,
    }
}

fn resume(positions: Positions, event_ms: HashMap<String, u64>) -> Recovered {
    let resume = positions
        .streams
        .iter()
        .map(|(publisher, mark)| {
            let r = Resume {
                epoch: mark.epoch,
                last: mark.last,
                last_event_ms: event_ms.get(publisher).copied(),
            };
            (publisher.clone(), r)
        })
        .collect();
    Recovered { positions, resume }
}

/// Cuts everything after the last newline; returns the length left.
fn cut_torn_tail(file: &mut File, path: &Path) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut block = vec![0; 64 * 1024];
    let keep = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..usize::try_from(end - start).unwrap_or(0)];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            break start + i as u64 + 1;
        }
        end = start;
    };
    if keep < len {
        tracing::warn!(path = %path.display(), cut_bytes = len - keep, "the log's last line was torn (no newline); cut off");
        file.set_len(keep)?;
    }
    Ok(keep)
}

fn byte_at(file: &mut File, at: u64) -> std::io::Result<u8> {
    let mut byte = [0];
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(&mut byte)?;
    Ok(byte[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const A: &str = "2023-11-14T22:13:20.123Z downcase pub-1#1 param=\"a\" result=\"a\"\n";
    const B: &str = "2023-11-14T22:13:20.124Z downcase pub-1#2 param=\"b\" result=\"b\"\n";
    const GAP: &str = "2023-11-14T22:13:21.000Z gap pub-1#3 last=6 missing=4 reason=\"expired\"\n";

    fn positions(log_bytes: u64, last: u64) -> Positions {
        Positions {
            version: 1,
            log_bytes,
            streams: BTreeMap::from([(
                "pub-1".to_owned(),
                Mark {
                    epoch: Some(7),
                    last,
                },
            )]),
        }
    }

    fn setup(
        log: &str,
        pos: Option<&Positions>,
    ) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let log_path = dir.path().join("subscriber.log");
        let pos_path = position::path_for(&log_path);
        std::fs::write(&log_path, log).expect("log");
        if let Some(pos) = pos {
            position::save(&pos_path, pos).expect("pos");
        }
        (dir, log_path, pos_path)
    }

    #[test]
    fn a_torn_last_line_is_cut_off() {
        let torn = format!("{A}{B}2023-11-14T22:13:20.125Z downcase pub-1#3 par");
        let (_dir, log, pos) = setup(&torn, Some(&positions(A.len() as u64, 1)));
        let recovered = recover(&log, &pos).expect("recovers");
        assert_eq!(
            std::fs::read_to_string(&log).expect("log"),
            format!("{A}{B}")
        );
        assert_eq!(recovered.positions.log_bytes, (A.len() + B.len()) as u64);
        assert_eq!(
            recovered.resume["pub-1"].last, 2,
            "the torn event is not counted"
        );
    }

    #[test]
    fn lines_after_the_recorded_offset_advance_the_position() {
        let (_dir, log, pos) = setup(&format!("{A}{B}{GAP}"), Some(&positions(A.len() as u64, 1)));
        let recovered = recover(&log, &pos).expect("recovers");
        let resume = recovered.resume["pub-1"];
        assert_eq!(
            (resume.epoch, resume.last),
            (Some(7), 6),
            "the gap line's last counts"
        );
        assert_eq!(recovered.positions.streams["pub-1"].last, 6);
    }

    #[test]
    fn a_corrupt_position_file_is_a_warning_and_the_whole_log_is_read() {
        let (_dir, log, pos) = setup(&format!("{A}{B}"), None);
        std::fs::write(&pos, "{ not json").expect("junk");
        let recovered = recover(&log, &pos).expect("starts anyway");
        let resume = recovered.resume["pub-1"];
        assert_eq!(
            (resume.epoch, resume.last),
            (None, 2),
            "text lines name no epoch"
        );
        assert_eq!(resume.last_event_ms, Some(1_700_000_000_124));
    }

    #[test]
    fn without_a_position_file_json_lines_name_their_epoch_and_the_last_line_wins() {
        let json = "{\"ts\":\"2023-11-14T22:13:20.123Z\",\"topic\":\"downcase\",\"publisher\":\"p\",\"epoch\":5,\"seq\":9}\n\
                    {\"ts\":\"2023-11-14T22:13:20.123Z\",\"topic\":\"gap\",\"publisher\":\"p\",\"epoch\":6,\"seq\":1,\"last\":2}\n";
        let (_dir, log, pos) = setup(json, None);
        let resume = recover(&log, &pos).expect("recovers").resume["p"];
        assert_eq!((resume.epoch, resume.last), (Some(6), 2));
    }

    #[test]
    fn a_log_shorter_than_recorded_is_read_whole_and_a_missing_log_keeps_the_marks() {
        let (_dir, log, pos) = setup(A, Some(&positions(10_000, 40)));
        let resume = recover(&log, &pos).expect("recovers").resume["pub-1"];
        assert_eq!(
            resume.last, 40,
            "lines of a rotated log never move a mark back"
        );
        std::fs::remove_file(&log).expect("rm");
        let recovered = recover(&log, &pos).expect("recovers");
        assert_eq!(recovered.resume["pub-1"].last, 40);
        assert_eq!(recovered.positions.log_bytes, 0);
    }

    #[test]
    fn a_fresh_empty_log_after_rotation_keeps_every_mark_and_counts_from_zero() {
        let (_dir, log, pos) = setup("", Some(&positions((A.len() + B.len()) as u64, 2)));
        let recovered = recover(&log, &pos).expect("recovers");
        let resume = recovered.resume["pub-1"];
        assert_eq!(
            (resume.epoch, resume.last),
            (Some(7), 2),
            "nothing to ask again"
        );
        assert_eq!(recovered.positions.log_bytes, 0);
    }

    #[test]
    fn lines_in_a_rotated_log_shorter_than_recorded_move_marks_forward() {
        // The old file held #1..#2 (recorded at its length); the new one already has #3.
        let three = B.replace("#2", "#3");
        let long = A.len() + B.len() + GAP.len();
        let (_dir, log, pos) = setup(&three, Some(&positions(long as u64, 2)));
        let recovered = recover(&log, &pos).expect("recovers");
        assert_eq!(recovered.resume["pub-1"].last, 3);
        assert_eq!(recovered.positions.log_bytes, three.len() as u64);
    }
}
