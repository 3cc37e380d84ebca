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
//!
//! The position file also names the file it measured (device and inode). When that is no
//! longer the file at the path but `<LOG_FILE>.1` — the process died after the log was renamed
//! and before the positions were saved of the new one: a rename by logrotate before its
//! SIGHUP, or the subscriber's own rotation when the save failed — the lines of `.1` after
//! the recorded offset are read first, then the file at the path whole, so what the rotated
//! file holds is neither asked again nor missed.

use crate::log_file::FileId;
use crate::log_read::read_header;
use crate::position::{self, Mark, Positions};
use crate::rotate;
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
    let mut event_ms = HashMap::new();
    let rotated = rotate::numbered(log, 1);
    let measured = positions.log_id;
    if measured.is_some() && measured != FileId::at(log) && measured == FileId::at(&rotated) {
        let failed = || format!("cannot read the rotated log {}", rotated.display());
        let mut file = File::open(&rotated).with_context(failed)?;
        let from = start_of_tail(&mut file, positions.log_bytes).with_context(failed)?;
        let (lines, unreadable) =
            read_tail(&mut file, from, &mut positions, &mut event_ms).with_context(failed)?;
        tracing::info!(
            rotated = %rotated.display(),
            from,
            lines,
            unreadable,
            "the position file measures the rotated log: its tail read before the log"
        );
        positions.log_bytes = 0;
    }
    let mut file = match OpenOptions::new().read(true).write(true).open(log) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            positions.log_bytes = 0;
            return Ok(resume(positions, event_ms));
        }
        Err(e) => {
            let what = format!("cannot open LOG_FILE {} to reconcile it", log.display());
            return Err(e).context(what);
        }
    };
    let failed = || format!("cannot read LOG_FILE {}", log.display());
    let len = cut_torn_tail(&mut file, log).with_context(failed)?;
    let from = start_of_tail(&mut file, positions.log_bytes).with_context(failed)?;
    let (lines, unreadable) =
        read_tail(&mut file, from, &mut positions, &mut event_ms).with_context(failed)?;
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

/// Where the lines the position file does not account for begin, given the offset it
/// recorded: there, or at 0 when the file is shorter (rotated or truncated) or the offset is
/// not at a line's end.
fn start_of_tail(file: &mut File, recorded: u64) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if recorded > len {
        tracing::info!(
            recorded,
            len,
            "the log is shorter than its position file says (rotated or truncated): reading all of it; marks only move forward"
        );
        return Ok(0);
    }
    if recorded > 0 && byte_at(file, recorded - 1)? != b'\n' {
        tracing::warn!(
            recorded,
            "the position file's offset is not at a line's end; reading the whole log"
        );
        return Ok(0);
    }
    Ok(recorded)
}

/// Reads the complete lines from `from` on, each moving its publisher's mark; the lines read
/// and those not of our shape.
fn read_tail(
    file: &mut File,
    from: u64,
    positions: &mut Positions,
    event_ms: &mut HashMap<String, u64>,
) -> std::io::Result<(u64, u64)> {
    let mut reader = BufReader::new(file);
    reader.seek(SeekFrom::Start(from))?;
    let (mut lines, mut unreadable) = (0u64, 0u64);
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line)? > 0 {
        let Some(complete) = line.strip_suffix(b"\n") else {
            break; // torn: the event it began is not in the log
        };
        let header = std::str::from_utf8(complete).ok().and_then(read_header);
        match header {
            Some(header) => {
                lines += 1;
                if let Some(ms) = header.event_ms {
                    event_ms.insert(header.publisher.clone(), ms);
                }
                advance(positions, header);
            }
            None => unreadable += 1,
        }
        line.clear();
    }
    Ok((lines, unreadable))
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
            log_id: None,
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

    #[test]
    fn after_a_crash_between_rename_and_save_the_rotated_tail_and_the_new_log_both_count() {
        // `.1` is the file the positions measured (#1 accounted for, #2 and the gap to #6
        // written after); the new log at the path has #7.
        let seven = B.replace("#2", "#7");
        let (_dir, log, pos) = setup(&seven, None);
        let rotated = rotate::numbered(&log, 1);
        std::fs::write(&rotated, format!("{A}{B}{GAP}")).expect("rotated");
        let mut recorded = positions(A.len() as u64, 1);
        recorded.log_id = FileId::at(&rotated);
        position::save(&pos, &recorded).expect("pos");

        let recovered = recover(&log, &pos).expect("recovers");
        assert_eq!(recovered.resume["pub-1"].last, 7);
        assert_eq!(recovered.positions.log_bytes, seven.len() as u64);

        std::fs::remove_file(&log).expect("no new log yet");
        let recovered = recover(&log, &pos).expect("recovers");
        assert_eq!(recovered.resume["pub-1"].last, 6, "the rotated tail counts");
        assert_eq!(recovered.positions.log_bytes, 0);
    }

    #[test]
    fn a_rotated_file_the_positions_do_not_measure_is_not_read() {
        let (_dir, log, pos) = setup(A, None);
        std::fs::write(rotate::numbered(&log, 1), format!("{B}{GAP}")).expect("rotated");
        let mut recorded = positions(A.len() as u64, 1);
        recorded.log_id = FileId::at(&log);
        position::save(&pos, &recorded).expect("pos");
        let recovered = recover(&log, &pos).expect("recovers");
        assert_eq!(recovered.resume["pub-1"].last, 1, "only the log's own tail");
    }
}
