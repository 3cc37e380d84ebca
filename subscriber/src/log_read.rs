//! Reading the log's own lines back, for what a restart needs of them: which publisher a line
//! belongs to and the last number it accounts for. Only the header is read — `<ts> <topic>
//! <publisher>#<seq>` and a gap line's `last=` — or the `publisher`/`epoch`/`seq`/`last`
//! fields of a JSON line; either format is recognised whatever `LOG_FORMAT` says now.

use std::time::UNIX_EPOCH;

/// What one line says about its publisher's numbering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The publisher id, unescaped.
    pub publisher: String,
    /// Its epoch: JSON lines carry it, text lines do not.
    pub epoch: Option<u64>,
    /// The last number the line accounts for: an event's own, a gap line's `last`.
    pub last: u64,
    /// When the publisher stamped the event (ms since the Unix epoch); `None` for gap lines,
    /// whose time is the subscriber's.
    pub event_ms: Option<u64>,
}

/// Reads the header of one line (without its newline); `None` when it has not our shape.
pub fn read_header(line: &str) -> Option<Header> {
    if line.starts_with('{') {
        read_json(line)
    } else {
        read_text(line)
    }
}

fn read_text(line: &str) -> Option<Header> {
    let mut parts = line.splitn(5, ' ');
    let (ts, topic, origin) = (parts.next()?, parts.next()?, parts.next()?);
    // The publisher token has `#` escaped, so the first `#` ends it.
    let (publisher, seq) = origin.split_once('#')?;
    let seq: u64 = seq.parse().ok()?;
    let (last, event_ms) = if topic == "gap" {
        let last = parts.next()?.strip_prefix("last=")?.parse().ok()?;
        (last, None)
    } else {
        (seq, rfc3339_ms(ts))
    };
    Some(Header {
        publisher: unescape(publisher)?,
        epoch: None,
        last,
        event_ms,
    })
}

fn read_json(line: &str) -> Option<Header> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let publisher = value.get("publisher")?.as_str()?.to_owned();
    let epoch = value.get("epoch").and_then(serde_json::Value::as_u64);
    let seq = value.get("seq")?.as_u64()?;
    let is_gap = value.get("topic").and_then(serde_json::Value::as_str) == Some("gap");
    let (last, event_ms) = if is_gap {
        (value.get("last")?.as_u64()?, None)
    } else {
        let ts = value.get("ts").and_then(serde_json::Value::as_str);
        (seq, ts.and_then(rfc3339_ms))
    };
    Some(Header {
        publisher,
        epoch,
        last,
        event_ms,
    })
}

fn rfc3339_ms(ts: &str) -> Option<u64> {
    let at = humantime::parse_rfc3339(ts).ok()?;
    let ms = at.duration_since(UNIX_EPOCH).ok()?.as_millis();
    u64::try_from(ms).ok()
}

/// Undoes the escaping of a token: `\\`, `\"`, `\n`, `\r`, `\t` and `\u{hex}`.
pub fn unescape(token: &str) -> Option<String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                if chars.next()? != '{' {
                    return None;
                }
                let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Format;
    use crate::log_line::{Entry, GapReason, escape_token, write_line};
    use wire::{Downcase, Event, Origin};

    fn line(entry: &Entry, format: Format) -> String {
        let mut out = String::new();
        write_line(entry, format, &mut out);
        out.trim_end_matches('\n').to_owned()
    }

    fn event(sender: &str, seq: u64) -> Entry {
        let origin = Origin {
            id: sender.into(),
            epoch: 9,
        };
        let mut envelope = origin.envelope(
            seq,
            Event::Downcase(Downcase {
                param: "a last=99 b".into(),
                result: "x".into(),
            }),
        );
        envelope.ts_ms = 1_700_000_000_123;
        Entry::Event(envelope)
    }

    #[test]
    fn both_formats_read_back_as_what_was_written() {
        let tricky = "pub 1#\"\\\n\u{1b}é";
        let gap = Entry::Gap {
            sender: tricky.into(),
            epoch: 9,
            first: 5,
            last: 8,
            ts_ms: 1,
            reason: GapReason::Expired,
        };
        for format in [Format::Text, Format::Json] {
            let epoch = (format == Format::Json).then_some(9);
            assert_eq!(
                read_header(&line(&event(tricky, 4), format)),
                Some(Header {
                    publisher: tricky.into(),
                    epoch,
                    last: 4,
                    event_ms: Some(1_700_000_000_123),
                })
            );
            let header = read_header(&line(&gap, format)).expect("a gap line reads");
            assert_eq!((header.last, header.event_ms), (8, None));
        }
    }

    #[test]
    fn an_escaped_token_unescapes_to_the_original() {
        let mut token = String::new();
        escape_token("a b#c\"d\\e\u{202e}", &mut token);
        assert_eq!(unescape(&token).as_deref(), Some("a b#c\"d\\e\u{202e}"));
    }

    #[test]
    fn lines_of_another_shape_are_not_read() {
        for bad in [
            "",
            "garbage",
            "ts downcase nohash",
            "ts gap p#1 missing=1",
            "{\"x\":1}",
        ] {
            assert_eq!(read_header(bad), None, "{bad:?}");
        }
    }
}
