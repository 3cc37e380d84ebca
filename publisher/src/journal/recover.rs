//! Reading the journal when the publisher starts. Damage never stops the start:
//!
//! - a record the file ends inside (a crash mid-write) is a torn tail, cut off;
//! - a record whose length or checksum is wrong is skipped up to the next intact record, or
//!   cut off with the rest of its segment when none follows;
//! - a segment whose header is unreadable is set aside as `<name>.damaged`.
//!
//! Each is logged and counted (`journal_damage_total`); a skipped record is a hole in the
//! numbers, which subscribers write as a gap line. What is intact gives the stream's
//! publisher, epoch and last number (so the publisher goes on where it stopped), the newest
//! events for the replay window, and every accepted signature request with its verdict if one
//! was journaled.

use super::record::{self, Accepted, Found, Header, MAGIC, Stored};
use super::segment::{self, Segment};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use wire::{Broadcast, Channel, Envelope, Event, SignatureOutcome};

/// What the journal held.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The publisher and epoch of the newest segment; `None` when there was no journal.
    pub stream: Option<(String, u64)>,
    /// The last event number of that epoch.
    pub last_seq: u64,
    /// The newest events of that epoch, oldest first, at most the number asked; a skipped
    /// record is a hole in their numbers.
    pub events: Vec<Envelope<Broadcast>>,
    /// The accepted signature requests, oldest first.
    pub requests: Vec<Restored>,
    /// The segments that remain, oldest first.
    pub segments: Vec<Segment>,
    /// What was damaged and how it was repaired.
    pub damage: Vec<Damage>,
    /// Intact event records read.
    pub records: u64,
}

/// An accepted signature request found in the journal.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The request id.
    pub id: String,
    /// The key id.
    pub key: String,
    /// When it was accepted (ms since the Unix epoch).
    pub accepted_ms: u64,
    /// What verifying it again takes.
    pub accepted: Accepted,
    /// Its verdict, when that was journaled too.
    pub outcome: Option<SignatureOutcome>,
}

/// One damaged place and its repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The segment.
    pub segment: PathBuf,
    /// Where the damage begins.
    pub offset: u64,
    /// How many bytes were cut or skipped.
    pub bytes: u64,
    /// What was wrong and what was done.
    pub what: String,
}

/// Reads every segment in `dir` (made when missing), repairs what is damaged, and keeps the
/// newest `keep` events.
pub fn recover(dir: &Path, keep: usize) -> std::io::Result<Recovered> {
    std::fs::create_dir_all(dir)?;
    let mut reader = Reader {
        keep,
        recovered: Recovered::default(),
        window: VecDeque::new(),
        pending: HashMap::new(),
    };
    for segment in segment::list(dir)? {
        reader.segment(segment)?;
    }
    Ok(reader.finish())
}

struct Reader {
    keep: usize,
    recovered: Recovered,
    window: VecDeque<Stored>,
    pending: HashMap<String, Restored>,
}

impl Reader {
    fn damage(&mut self, segment: &Path, offset: usize, bytes: usize, what: String) {
        tracing::warn!(segment = %segment.display(), offset, bytes, what = %what, "journal damage repaired");
        metrics::counter!("journal_damage_total").increment(1);
        self.recovered.damage.push(Damage {
            segment: segment.to_owned(),
            offset: offset as u64,
            bytes: bytes as u64,
            what,
        });
    }

    fn segment(&mut self, mut segment: Segment) -> std::io::Result<()> {
        let bytes = std::fs::read(&segment.path)?;
        let header = match record::read(&bytes, 0) {
            Found::Record(body, next) => rmp_serde::from_slice::<Header>(body)
                .ok()
                .filter(|h| h.magic == MAGIC)
                .map(|h| (h, next)),
            _ => None,
        };
        let Some((header, mut at)) = header else {
            let mut aside = segment.path.clone().into_os_string();
            aside.push(".damaged");
            std::fs::rename(&segment.path, &aside)?;
            self.damage(
                &segment.path,
                0,
                bytes.len(),
                "no readable segment header: set aside as .damaged".into(),
            );
            return Ok(());
        };
        let stream = (header.publisher, header.epoch);
        if self.recovered.stream.as_ref() != Some(&stream) {
            // A new epoch: its numbers start again, and only its events are replayable.
            self.recovered.stream = Some(stream);
            self.recovered.last_seq = 0;
            self.window.clear();
        }
        loop {
            match record::read(&bytes, at) {
                Found::Record(body, next) => {
                    self.record(&segment.path, at, body);
                    at = next;
                }
                Found::Torn => {
                    if at < bytes.len() {
                        self.cut(&mut segment, at, bytes.len(), "a torn last record")?;
                    }
                    break;
                }
                Found::Corrupt(why) => match record::resync(&bytes, at) {
                    Some(next) => {
                        self.damage(
                            &segment.path,
                            at,
                            next - at,
                            format!("{why}: skipped to the next intact record"),
                        );
                        at = next;
                    }
                    None => {
                        self.cut(&mut segment, at, bytes.len(), why)?;
                        break;
                    }
                },
            }
        }
        self.recovered.segments.push(segment);
        Ok(())
    }

    /// Cuts the segment at `at`: what follows is not a record.
    fn cut(
        &mut self,
        segment: &mut Segment,
        at: usize,
        len: usize,
        why: &str,
    ) -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment.path)?;
        file.set_len(at as u64)?;
        file.sync_all()?;
        segment.bytes = at as u64;
        self.damage(&segment.path, at, len - at, format!("{why}: cut off"));
        Ok(())
    }

    fn record(&mut self, segment: &Path, at: usize, body: &[u8]) {
        let Ok(stored) = rmp_serde::from_slice::<Stored>(body) else {
            self.damage(
                segment,
                at,
                body.len(),
                "an event record that does not decode: skipped".into(),
            );
            return;
        };
        if stored.seq <= self.recovered.last_seq {
            return;
        }
        self.recovered.records += 1;
        if stored.topic.starts_with("signature.") {
            self.signature(&stored);
        }
        self.recovered.last_seq = stored.seq;
        self.window.push_back(stored);
        if self.window.len() > self.keep {
            self.window.pop_front();
        }
    }

    fn signature(&mut self, stored: &Stored) {
        let Ok(envelope) = Broadcast::open(&stored.topic, &stored.envelope) else {
            return;
        };
        match envelope.body {
            Broadcast::Event(Event::SignatureRequested(requested)) => {
                if let Some(accepted) = stored.accepted.clone() {
                    let restored = Restored {
                        id: requested.id.clone(),
                        key: requested.key,
                        accepted_ms: envelope.ts_ms,
                        accepted,
                        outcome: None,
                    };
                    self.pending.insert(requested.id, restored);
                }
            }
            Broadcast::Event(Event::SignatureOutcome(outcome)) => {
                if let Some(request) = self.pending.get_mut(&outcome.id) {
                    request.outcome = Some(outcome);
                }
            }
            _ => {}
        }
    }

    fn finish(mut self) -> Recovered {
        let mut events = Vec::with_capacity(self.window.len());
        for stored in self.window.drain(..) {
            match Broadcast::open(&stored.topic, &stored.envelope) {
                Ok(envelope) => events.push(envelope),
                // Checksummed and written by this program: only a change of protocol gets here.
                Err(e) => {
                    tracing::warn!(seq = stored.seq, cause = %e, "a journaled event does not decode; it is left out");
                }
            }
        }
        self.recovered.events = events;
        let mut requests: Vec<_> = self.pending.into_values().collect();
        requests.sort_by_key(|r| r.accepted_ms);
        self.recovered.requests = requests;
        self.recovered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::segment;
    use proptest::prelude::*;
    use wire::{Codec, Downcase, Origin};

    /// A segment of events 1..=n as the writer makes it.
    fn segment_bytes(n: u64) -> Vec<u8> {
        let origin = Origin {
            id: "pub".into(),
            epoch: 7,
        };
        let mut out = Vec::new();
        let header = Header {
            magic: MAGIC.into(),
            publisher: "pub".into(),
            epoch: 7,
        };
        record::frame(&header, &mut out);
        for seq in 1..=n {
            let envelope = origin.envelope(
                seq,
                Broadcast::Event(Event::Downcase(Downcase {
                    param: format!("p{seq}"),
                    result: format!("p{seq}"),
                })),
            );
            let message = Codec::default().encode(&envelope);
            let stored = Stored {
                seq,
                topic: "downcase".into(),
                envelope: message.get(1).map(|f| f.to_vec()).unwrap_or_default(),
                accepted: None,
            };
            record::frame(&stored, &mut out);
        }
        out
    }

    fn recovered(bytes: &[u8]) -> Recovered {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(segment::path(dir.path(), 1), bytes).unwrap();
        recover(dir.path(), 1000).expect("recovery never fails on damage")
    }

    #[test]
    fn an_intact_journal_gives_back_its_stream() {
        let got = recovered(&segment_bytes(20));
        assert_eq!(got.stream, Some(("pub".into(), 7)));
        assert_eq!(got.last_seq, 20);
        assert_eq!(got.events.len(), 20);
        assert!(got.damage.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Cut anywhere, one byte changed anywhere, or both: recovery never fails or panics,
        /// what it gives back is events of the stream with their own numbers, in order, and
        /// every event before the damage is there.
        #[test]
        fn a_damaged_journal_is_repaired_and_keeps_every_intact_event(
            cut in proptest::option::of(0usize..4000),
            flip in proptest::option::of((0usize..4000, 1u8..=255)),
        ) {
            let intact = segment_bytes(30);
            let mut bytes = intact.clone();
            let mut damaged_from = intact.len();
            if let Some((at, with)) = flip {
                let at = at % bytes.len();
                bytes[at] ^= with;
                damaged_from = at;
            }
            if let Some(cut) = cut {
                let cut = cut % (intact.len() + 1);
                bytes.truncate(cut);
                damaged_from = damaged_from.min(cut);
            }
            // The events whose records end before the damage (the header is record 0).
            let mut ends = Vec::new();
            let mut at = 0;
            while let Found::Record(_, next) = record::read(&intact, at) {
                ends.push(next);
                at = next;
            }
            let before = ends.iter().skip(1).filter(|&&end| end <= damaged_from).count() as u64;
            let header_intact = ends[0] <= damaged_from;
            let got = recovered(&bytes);
            if header_intact {
                prop_assert!(got.last_seq >= before, "{} < {before}", got.last_seq);
            }
            let seqs: Vec<u64> = got.events.iter().map(|e| e.seq).collect();
            prop_assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
            prop_assert!(got.last_seq <= 30);
            prop_assert_eq!(seqs.last().copied().unwrap_or(got.last_seq), got.last_seq);
            for event in &got.events {
                let Broadcast::Event(Event::Downcase(d)) = &event.body else {
                    panic!("not an event of the stream: {event:?}");
                };
                prop_assert_eq!(&d.param, &format!("p{}", event.seq));
            }
            if bytes == intact {
                prop_assert_eq!(got.last_seq, 30);
                prop_assert!(got.damage.is_empty());
            } else if got.damage.is_empty() {
                // Cut exactly at a record's end: a shorter journal, not a damaged one.
                prop_assert!(intact.starts_with(&bytes));
            }
        }
    }
}
