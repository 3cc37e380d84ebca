//! How one log entry reads: the text line of design §5, or a JSON object, escaped so that no
//! value can split a line or forge another one.

use crate::config::Format;
use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};
use wire::{Channel, Envelope, Event};

/// One line of the log: an event, or the explicit record of events that never arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// An event as received.
    Event(Envelope<Event>),
    /// Events `first..=last` of `sender`'s `epoch` were not received.
    Gap {
        /// The publisher.
        sender: String,
        /// Its epoch.
        epoch: u64,
        /// First missing sequence number.
        first: u64,
        /// Last missing sequence number.
        last: u64,
        /// When the gap was noticed.
        ts_ms: u64,
        /// Why they are missing.
        reason: GapReason,
    },
}

/// Why a range of events is written as a gap instead of the events (design §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GapReason {
    /// They never arrived and the publisher does not serve replay.
    NotReceived,
    /// They arrived neither live nor by replay: the publisher's window no longer holds them.
    Expired,
    /// The publisher started a new epoch before they could be fetched; they cannot be now.
    PublisherRestarted,
    /// The publisher's replay endpoint did not answer within `REPLAY_GIVE_UP`.
    ReplayUnanswered,
}

impl GapReason {
    /// The words written in the line's `reason` field.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::NotReceived => "not received",
            GapReason::Expired => "expired",
            GapReason::PublisherRestarted => "publisher restarted",
            GapReason::ReplayUnanswered => "replay unanswered",
        }
    }
}

/// A field value: text is quoted and escaped, numbers are written bare.
enum Value<'a> {
    Text(&'a str),
    Number(u64),
}

/// Calls `field` with each field written after the header, in order.
fn each_field<'a>(event: &'a Event, mut field: impl FnMut(&'static str, Value<'a>)) {
    use Value::{Number, Text};
    match event {
        Event::Downcase(d) => {
            field("param", Text(&d.param));
            field("result", Text(&d.result));
        }
        Event::SignatureRequested(r) => {
            field("id", Text(&r.id));
            field("key", Text(&r.key));
            field("text_sha256", Text(&r.text_sha256));
            field("text_len", Number(r.text_len));
        }
        Event::SignatureOutcome(o) => {
            field("id", Text(&o.id));
            field("key", Text(&o.key));
            field("status", Text(o.status.as_str()));
            if let Some(reason) = &o.reason {
                field("reason", Text(reason));
            }
            if let Some(by) = &o.verified_by {
                field("verified_by", Text(by));
            }
            field("attempts", Number(u64::from(o.attempts)));
        }
    }
}

/// Appends `entry` to `out` as one line, newline included.
#[cfg(test)]
pub fn write_line(entry: &Entry, format: Format, out: &mut String) {
    Lines::new(format).write(entry, out);
}

/// Writes lines in one format, remembering the second of the last timestamp it wrote: the
/// lines of a burst share it, so only their milliseconds are formatted afresh.
#[derive(Debug)]
pub struct Lines {
    format: Format,
    /// The second (ms / 1000) that `second_text` writes.
    second: Option<u64>,
    /// `YYYY-MM-DDTHH:MM:SS.` of `second`.
    second_text: String,
}

impl Lines {
    /// Lines in `format`.
    pub fn new(format: Format) -> Self {
        Lines {
            format,
            second: None,
            second_text: String::with_capacity(STAMP_LEN),
        }
    }

    /// Appends `entry` to `out` as one line, newline included.
    pub fn write(&mut self, entry: &Entry, out: &mut String) {
        match self.format {
            Format::Text => self.write_text(entry, out),
            Format::Json => self.write_json(entry, out),
        }
        out.push('\n');
    }

    /// Appends the RFC 3339 form of `ts_ms` (UTC, milliseconds), as [`timestamp`] writes it.
    fn stamp(&mut self, ts_ms: u64, out: &mut String) {
        let ts_ms = ts_ms.min(LAST_WRITABLE_MS);
        let (second, ms) = (ts_ms / 1000, ts_ms % 1000);
        if self.second != Some(second) {
            self.second_text.clear();
            let _ = write!(self.second_text, "{}", timestamp(second * 1000));
            // `.000Z` off: the milliseconds are written per line.
            self.second_text.truncate(STAMP_LEN - 4);
            self.second = Some(second);
        }
        out.push_str(&self.second_text);
        let digits = [ms / 100, ms / 10 % 10, ms % 10].map(|d| char::from(b'0' + d as u8));
        out.extend(digits);
        out.push('Z');
    }

    fn write_text(&mut self, entry: &Entry, out: &mut String) {
        match entry {
            Entry::Event(e) => {
                self.stamp(e.ts_ms, out);
                out.push(' ');
                out.push_str(e.body.topic());
                out.push(' ');
                escape_token(&e.sender, out);
                out.push('#');
                out.push_str(itoa::Buffer::new().format(e.seq));
                each_field(&e.body, |name, value| {
                    out.push(' ');
                    out.push_str(name);
                    out.push('=');
                    match value {
                        Value::Text(text) => {
                            out.push('"');
                            escape_into(text, out);
                            out.push('"');
                        }
                        Value::Number(n) => out.push_str(itoa::Buffer::new().format(n)),
                    }
                });
            }
            Entry::Gap {
                sender,
                first,
                last,
                ts_ms,
                reason,
                ..
            } => {
                self.stamp(*ts_ms, out);
                out.push_str(" gap ");
                escape_token(sender, out);
                let missing = last - first + 1;
                let _ = write!(
                    out,
                    "#{first} last={last} missing={missing} reason=\"{}\"",
                    reason.as_str()
                );
            }
        }
    }

    fn write_json(&mut self, entry: &Entry, out: &mut String) {
        let ts_ms = match entry {
            Entry::Event(e) => e.ts_ms,
            Entry::Gap { ts_ms, .. } => *ts_ms,
        };
        let mut ts = String::with_capacity(STAMP_LEN);
        self.stamp(ts_ms, &mut ts);
        write_json(entry, ts, out);
    }
}

/// The last millisecond RFC 3339 can write (of the year 9999). An event's time comes from the
/// wire; past this, the formatter would fail — cutting the line's head off in text, panicking
/// in JSON — so a later time is written as this one.
const LAST_WRITABLE_MS: u64 = 253_402_300_799_999;
/// Characters of a timestamp: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
const STAMP_LEN: usize = 24;

fn timestamp(ts_ms: u64) -> humantime::Rfc3339Timestamp {
    let ts_ms = ts_ms.min(LAST_WRITABLE_MS);
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ts_ms))
}

/// Appends `entry` as a JSON object stamped `ts`, with no newline.
fn write_json(entry: &Entry, ts: String, out: &mut String) {
    let mut object = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        object.insert(k.to_owned(), v);
    };
    match entry {
        Entry::Event(e) => {
            put("ts", ts.into());
            put("topic", e.body.topic().into());
            put("publisher", e.sender.clone().into());
            put("epoch", e.epoch.into());
            put("seq", e.seq.into());
            each_field(&e.body, |name, value| match value {
                Value::Text(text) => put(name, text.into()),
                Value::Number(n) => put(name, n.into()),
            });
        }
        Entry::Gap {
            sender,
            epoch,
            first,
            last,
            reason,
            ..
        } => {
            put("ts", ts.into());
            put("topic", "gap".into());
            put("publisher", sender.clone().into());
            put("epoch", (*epoch).into());
            put("seq", (*first).into());
            put("last", (*last).into());
            put("missing", (last - first + 1).into());
            put("reason", reason.as_str().into());
        }
    }
    let mut json = Vec::with_capacity(256);
    let mut writer = serde_json::Serializer::with_formatter(&mut json, Escaping);
    // A map of strings and integers always serialises, and a Vec is always written to.
    let _ = serde::Serialize::serialize(&serde_json::Value::Object(object), &mut writer);
    out.push_str(&String::from_utf8_lossy(&json));
}

/// JSON as serde_json writes it, but with every character [`needs_escape`] names written as
/// `\uXXXX`: serde_json escapes only what JSON requires (below U+0020, `"`, `\`), and would
/// leave DEL, the C1 controls (U+009B opens an ANSI sequence on some terminals), line and
/// paragraph separators and bidi overrides in the line as they are.
struct Escaping;

impl serde_json::ser::Formatter for Escaping {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (at, c) in fragment.char_indices() {
            if needs_escape(c) {
                writer.write_all(&fragment.as_bytes()[start..at])?;
                // Every such character is in the Basic Multilingual Plane: one \u escape.
                write!(writer, "\\u{:04x}", u32::from(c))?;
                start = at + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Characters that would let a value end the line, move the cursor, colour the terminal or
/// reorder what the reader sees.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
        )
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Appends `value` for use between double quotes: `\` and `"` are backslashed, `\n` `\r`
/// `\t` written as such, any other control or bidi character as `\u{hex}`. Printable
/// non-ASCII text (accents, Greek, emoji) stays as it is, for the human reader.
pub fn escape_into(value: &str, out: &mut String) {
    escape_with(value, out, |_| false);
}

/// Like [`escape_into`], for an unquoted token: spaces, `#` and `"` are escaped as `\u{hex}`,
/// so the header's fields stay where a reader expects them.
pub(crate) fn escape_token(value: &str, out: &mut String) {
    escape_with(value, out, |c| matches!(c, ' ' | '#' | '"'));
}

/// [`escape_into`], but the (ASCII) characters `also` names are written as `\u{hex}`. Runs
/// of characters that need nothing are copied whole.
fn escape_with(value: &str, out: &mut String, also: impl Fn(char) -> bool) {
    let bytes = value.as_bytes();
    let mut plain = 0;
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        // Most values are printable ASCII: a byte is checked without decoding a character.
        let c = if byte.is_ascii() {
            let c = char::from(byte);
            if (b' '..=b'~').contains(&byte) && !matches!(byte, b'\\' | b'"') && !also(c) {
                at += 1;
                continue;
            }
            c
        } else {
            // `at` is on a character boundary: it only ever moves by whole characters.
            let Some(c) = value[at..].chars().next() else {
                break;
            };
            if !needs_escape(c) {
                at += c.len_utf8();
                continue;
            }
            c
        };
        out.push_str(&value[plain..at]);
        at += c.len_utf8();
        plain = at;
        match c {
            c if also(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    out.push_str(&value[plain..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::Downcase;

    fn escaped(value: &str) -> String {
        let mut out = String::new();
        escape_into(value, &mut out);
        out
    }

    fn downcase(sender: &str, param: &str) -> Entry {
        let origin = wire::Origin {
            id: sender.into(),
            epoch: 1,
        };
        let mut envelope = origin.envelope(
            42,
            Event::Downcase(Downcase {
                param: param.into(),
                result: param.to_lowercase(),
            }),
        );
        envelope.ts_ms = 1_700_000_000_123;
        Entry::Event(envelope)
    }

    fn line(entry: &Entry, format: Format) -> String {
        let mut out = String::new();
        write_line(entry, format, &mut out);
        out
    }

    #[test]
    fn newline_carriage_return_quote_and_backslash_are_escaped() {
        assert_eq!(escaped("a\nb"), "a\\nb");
        assert_eq!(escaped("a\rb"), "a\\rb");
        assert_eq!(escaped("say \"hi\""), "say \\\"hi\\\"");
        assert_eq!(escaped("C:\\dir"), "C:\\\\dir");
        assert_eq!(escaped("tab\there"), "tab\\there");
    }

    #[test]
    fn ansi_escapes_and_other_controls_are_made_visible() {
        assert_eq!(
            escaped("\u{1b}[31mred\u{1b}[0m"),
            "\\u{1b}[31mred\\u{1b}[0m"
        );
        assert_eq!(
            escaped("nul\0del\u{7f}c1\u{9b}"),
            "nul\\u{0}del\\u{7f}c1\\u{9b}"
        );
        assert_eq!(escaped("ls\u{2028}ps\u{2029}"), "ls\\u{2028}ps\\u{2029}");
        assert_eq!(escaped("rtl\u{202e}txt"), "rtl\\u{202e}txt");
    }

    #[test]
    fn printable_non_ascii_text_stays_readable() {
        assert_eq!(escaped("ÀÉÎ ΣΑΣ 🙂 日本"), "ÀÉÎ ΣΑΣ 🙂 日本");
    }

    #[test]
    fn a_text_line_has_the_documented_shape() {
        assert_eq!(
            line(&downcase("pub-1", "HeLLo"), Format::Text),
            "2023-11-14T22:13:20.123Z downcase pub-1#42 param=\"HeLLo\" result=\"hello\"\n"
        );
    }

    #[test]
    fn no_value_can_forge_a_second_line_or_field() {
        let forged = "x\"\n2023-11-14T22:13:20.123Z downcase pub-1#43 param=\"evil";
        for format in [Format::Text, Format::Json] {
            let out = line(&downcase("pub 1#7\n", forged), format);
            assert_eq!(out.matches('\n').count(), 1, "{out}");
            assert!(!out.contains('\u{1b}'));
        }
        let text = line(&downcase("pub 1#7", "v"), Format::Text);
        assert!(text.contains(" downcase pub\\u{20}1\\u{23}7#42 "), "{text}");
    }

    #[test]
    fn a_json_line_round_trips_every_value() {
        let entry = downcase("pub-1", "ÀÉÎ ΣΑΣ\n\u{1b}[2J🙂");
        let out = line(&entry, Format::Json);
        let parsed: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(parsed["param"], "ÀÉÎ ΣΑΣ\n\u{1b}[2J🙂");
        assert_eq!(parsed["result"], "àéî σας\n\u{1b}[2j🙂");
        assert_eq!(parsed["seq"], 42);
        assert_eq!(parsed["publisher"], "pub-1");
        assert_eq!(parsed["topic"], "downcase");
        assert_eq!(parsed["ts"], "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn a_gap_is_a_line_of_its_own() {
        let gap = Entry::Gap {
            sender: "pub-1".into(),
            epoch: 1,
            first: 5,
            last: 9,
            ts_ms: 1_700_000_000_123,
            reason: GapReason::NotReceived,
        };
        assert_eq!(
            line(&gap, Format::Text),
            "2023-11-14T22:13:20.123Z gap pub-1#5 last=9 missing=5 reason=\"not received\"\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(line(&gap, Format::Json).trim_end()).unwrap();
        assert_eq!(json["missing"], 5);
        assert_eq!(json["reason"], "not received");
    }

    #[test]
    fn a_gap_line_names_its_reason() {
        let gap = |reason| Entry::Gap {
            sender: "p".into(),
            epoch: 1,
            first: 3,
            last: 3,
            ts_ms: 0,
            reason,
        };
        let text = line(&gap(GapReason::Expired), Format::Text);
        assert!(
            text.ends_with(" gap p#3 last=3 missing=1 reason=\"expired\"\n"),
            "{text}"
        );
        let json = line(&gap(GapReason::PublisherRestarted), Format::Json);
        assert!(
            json.contains("\"reason\":\"publisher restarted\""),
            "{json}"
        );
        let text = line(&gap(GapReason::ReplayUnanswered), Format::Text);
        assert!(text.contains("reason=\"replay unanswered\""), "{text}");
    }

    #[test]
    fn a_time_past_the_year_9999_is_written_as_its_last_millisecond() {
        let Entry::Event(mut envelope) = downcase("pub-1", "x") else {
            unreachable!("downcase makes an event")
        };
        envelope.ts_ms = u64::MAX;
        let entry = Entry::Event(envelope);
        let text = line(&entry, Format::Text);
        assert!(
            text.starts_with("9999-12-31T23:59:59.999Z downcase pub-1#42 "),
            "{text}"
        );
        let json = line(&entry, Format::Json);
        assert!(
            json.contains("\"ts\":\"9999-12-31T23:59:59.999Z\""),
            "{json}"
        );
    }

    #[test]
    fn a_json_line_escapes_what_a_text_line_does() {
        let out = line(
            &downcase("pub-1", "del\u{7f}csi\u{9b}ls\u{2028}rtl\u{202e}"),
            Format::Json,
        );
        assert!(
            out.contains(r#""param":"del\u007fcsi\u009bls\u2028rtl\u202e""#),
            "{out}"
        );
    }
}

/// Properties of the line format for any values at all: one line each, nothing in it a
/// terminal would act on, and every value read back as it was.
#[cfg(test)]
mod props {
    use super::*;
    use crate::log_read::{Header, read_header, unescape};
    use proptest::collection::vec;
    use proptest::prelude::*;
    use wire::{Downcase, SignatureOutcome, SignatureRequested, SignatureStatus};

    /// Text of any characters, the troublesome ones often.
    fn text() -> impl Strategy<Value = String> {
        let nasty = proptest::sample::select(vec![
            '\n', '\r', '\t', '\u{0}', '\u{1b}', '\u{7f}', '\u{9b}', '\u{85}', '\u{2028}',
            '\u{2029}', '\u{202e}', '\u{2066}', '\u{200f}', '"', '\\', '#', ' ', '=', '{', '}',
            'u', 'é', 'Σ', '🙂',
        ]);
        vec(prop_oneof![any::<char>(), nasty], 0..16).prop_map(|cs| cs.into_iter().collect())
    }

    fn status() -> impl Strategy<Value = SignatureStatus> {
        proptest::sample::select(vec![
            SignatureStatus::Valid,
            SignatureStatus::Invalid,
            SignatureStatus::Error,
        ])
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (text(), text())
                .prop_map(|(param, result)| Event::Downcase(Downcase { param, result })),
            (text(), text(), text(), any::<u64>()).prop_map(|(id, key, text_sha256, text_len)| {
                Event::SignatureRequested(SignatureRequested {
                    id,
                    key,
                    text_sha256,
                    text_len,
                })
            }),
            (
                (text(), text(), status()),
                (
                    proptest::option::of(text()),
                    proptest::option::of(text()),
                    any::<u32>()
                ),
            )
                .prop_map(|((id, key, status), (reason, verified_by, attempts))| {
                    Event::SignatureOutcome(SignatureOutcome {
                        id,
                        key,
                        status,
                        reason,
                        verified_by,
                        attempts,
                    })
                }),
        ]
    }

    /// A time now-ish most often, any 64-bit number of milliseconds sometimes.
    fn ts_ms() -> impl Strategy<Value = u64> {
        prop_oneof![3 => 0..LAST_WRITABLE_MS, 1 => any::<u64>()]
    }

    fn reason() -> impl Strategy<Value = GapReason> {
        proptest::sample::select(vec![
            GapReason::NotReceived,
            GapReason::Expired,
            GapReason::PublisherRestarted,
            GapReason::ReplayUnanswered,
        ])
    }

    fn entry() -> impl Strategy<Value = Entry> {
        prop_oneof![
            (text(), any::<u64>(), any::<u64>(), ts_ms(), event()).prop_map(
                |(sender, epoch, seq, ts_ms, body)| {
                    Entry::Event(Envelope {
                        v: wire::PROTOCOL_VERSION,
                        sender,
                        epoch,
                        seq,
                        ts_ms,
                        body,
                    })
                }
            ),
            (
                text(),
                any::<u64>(),
                1..u64::MAX,
                any::<u64>(),
                ts_ms(),
                reason()
            )
                .prop_map(|(sender, epoch, first, span, ts_ms, reason)| Entry::Gap {
                    sender,
                    epoch,
                    first,
                    last: first.saturating_add(span % 1000),
                    ts_ms,
                    reason,
                }),
        ]
    }

    /// What a reader should get back from a line: header and fields, all as text.
    #[derive(Debug, PartialEq)]
    struct Parts {
        ts: String,
        topic: String,
        publisher: String,
        seq: u64,
        fields: Vec<(String, String)>,
    }

    fn expected(entry: &Entry) -> Parts {
        let as_text = |value: &Value<'_>| match value {
            Value::Text(t) => (*t).to_owned(),
            Value::Number(n) => n.to_string(),
        };
        match entry {
            Entry::Event(e) => Parts {
                ts: timestamp(e.ts_ms).to_string(),
                topic: e.body.topic().to_owned(),
                publisher: e.sender.clone(),
                seq: e.seq,
                fields: {
                    let mut fields = Vec::new();
                    each_field(&e.body, |name, value| {
                        fields.push((name.to_owned(), as_text(&value)));
                    });
                    fields
                },
            },
            Entry::Gap {
                sender,
                first,
                last,
                ts_ms,
                reason,
                ..
            } => Parts {
                ts: timestamp(*ts_ms).to_string(),
                topic: "gap".into(),
                publisher: sender.clone(),
                seq: *first,
                fields: vec![
                    ("last".into(), last.to_string()),
                    ("missing".into(), (last - first + 1).to_string()),
                    ("reason".into(), reason.as_str().into()),
                ],
            },
        }
    }

    /// Reads a text line by the documented grammar — `<ts> <topic> <publisher>#<seq>`, then
    /// ` name="escaped text"` or ` name=digits` — strictly: `None` for anything else.
    fn parse_text(line: &str) -> Option<Parts> {
        let line = line.strip_suffix('\n')?;
        let (ts, rest) = line.split_once(' ')?;
        let (topic, rest) = rest.split_once(' ')?;
        let (origin, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let (publisher, seq) = origin.split_once('#')?;
        let mut fields = Vec::new();
        while !rest.is_empty() {
            let (name, after) = rest.split_once('=')?;
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return None;
            }
            let (value, after) = match after.strip_prefix('"') {
                Some(quoted) => {
                    let end = closing_quote(quoted)?;
                    (unescape(&quoted[..end])?, &quoted[end + 1..])
                }
                None => {
                    let (digits, after) =
                        after.split_once(' ').map_or((after, ""), |(d, a)| (d, a));
                    digits.parse::<u64>().ok()?;
                    fields.push((name.to_owned(), digits.to_owned()));
                    rest = after;
                    continue;
                }
            };
            fields.push((name.to_owned(), value));
            rest = match after.strip_prefix(' ') {
                Some(more) if !more.is_empty() => more,
                None if after.is_empty() => after,
                _ => return None,
            };
        }
        Some(Parts {
            ts: ts.to_owned(),
            topic: topic.to_owned(),
            publisher: unescape(publisher)?,
            seq: seq.parse().ok()?,
            fields,
        })
    }

    /// Where the first `"` not escaped by a backslash is.
    fn closing_quote(quoted: &str) -> Option<usize> {
        let mut escaped = false;
        for (at, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => return Some(at),
                _ => {}
            }
        }
        None
    }

    fn written(entry: &Entry, format: Format) -> String {
        let mut out = String::new();
        write_line(entry, format, &mut out);
        out
    }

    /// Escaping as the rule reads, one character at a time: what the byte-wise scan of
    /// [`escape_with`] must write byte for byte.
    fn escaped_per_character(value: &str, token: bool) -> String {
        let mut out = String::new();
        for c in value.chars() {
            let also = token && matches!(c, ' ' | '#' | '"');
            match c {
                c if also => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => out.push(c),
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn escaping_byte_by_byte_writes_what_escaping_per_character_does(
            value in prop_oneof![text(), "\\PC*", any::<String>()],
        ) {
            let mut quoted = String::new();
            escape_into(&value, &mut quoted);
            prop_assert_eq!(quoted, escaped_per_character(&value, false));
            let mut token = String::new();
            escape_token(&value, &mut token);
            prop_assert_eq!(token, escaped_per_character(&value, true));
        }

        #[test]
        fn no_value_makes_a_line_that_splits_or_holds_a_control_character(entry in entry()) {
            for format in [Format::Text, Format::Json] {
                let out = written(&entry, format);
                let body = out.strip_suffix('\n');
                prop_assert!(body.is_some(), "{:?} does not end its line", out);
                let body = body.unwrap_or_default();
                prop_assert!(
                    !body.chars().any(needs_escape),
                    "{:?} holds a control or bidi character", out
                );
            }
        }

        #[test]
        fn lines_written_one_after_another_carry_each_its_own_time(
            times in vec(prop_oneof![3 => 1_700_000_000_000..1_700_000_005_000u64, 1 => ts_ms()], 1..32)
        ) {
            for format in [Format::Text, Format::Json] {
                let mut lines = Lines::new(format);
                for &ts_ms in &times {
                    let entry = Entry::Gap {
                        sender: "p".into(), epoch: 1, first: 1, last: 1, ts_ms, reason: GapReason::Expired,
                    };
                    let mut out = String::new();
                    lines.write(&entry, &mut out);
                    prop_assert_eq!(&out, &written(&entry, format));
                    let ts = timestamp(ts_ms).to_string();
                    prop_assert!(out.contains(&ts), "{:?} lacks {}", out, ts);
                }
            }
        }

        #[test]
        fn a_text_line_reads_back_as_the_values_written(entry in entry()) {
            let out = written(&entry, Format::Text);
            prop_assert_eq!(parse_text(&out), Some(expected(&entry)), "{}", out);
        }

        #[test]
        fn the_test_kits_parser_reads_a_text_line_back_too(entry in entry()) {
            let out = written(&entry, Format::Text);
            let parsed = test_support::parse_line(out.trim_end_matches('\n'));
            let want = expected(&entry);
            prop_assert_eq!(unescape(&parsed.publisher), Some(want.publisher));
            prop_assert_eq!((parsed.ts, parsed.topic, parsed.seq), (want.ts, want.topic, want.seq));
            let fields: Vec<(String, String)> = parsed.fields.into_iter().collect();
            let mut want_fields = want.fields;
            want_fields.sort();
            prop_assert_eq!(fields, want_fields);
        }

        #[test]
        fn a_json_line_reads_back_as_the_values_written(entry in entry()) {
            let out = written(&entry, Format::Json);
            let json: serde_json::Value = serde_json::from_str(&out).map_err(|e| {
                TestCaseError::fail(format!("{out:?} is not JSON: {e}"))
            })?;
            let want = expected(&entry);
            prop_assert_eq!(json["ts"].as_str(), Some(want.ts.as_str()));
            prop_assert_eq!(json["topic"].as_str(), Some(want.topic.as_str()));
            prop_assert_eq!(json["publisher"].as_str(), Some(want.publisher.as_str()));
            prop_assert_eq!(json["seq"].as_u64(), Some(want.seq));
            for (name, value) in &want.fields {
                let got = match &json[name] {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                prop_assert_eq!(&got, value, "field {}", name);
            }
        }

        #[test]
        fn a_restart_reads_the_header_of_either_format_back(entry in entry()) {
            let (publisher, epoch, last) = match &entry {
                Entry::Event(e) => (e.sender.clone(), e.epoch, e.seq),
                Entry::Gap { sender, epoch, last, .. } => (sender.clone(), *epoch, *last),
            };
            for format in [Format::Text, Format::Json] {
                let out = written(&entry, format);
                let header = read_header(out.trim_end_matches('\n'));
                let Some(Header { publisher: got, epoch: got_epoch, last: got_last, .. }) = header else {
                    return Err(TestCaseError::fail(format!("{out:?} has no header")));
                };
                prop_assert_eq!(&got, &publisher);
                prop_assert_eq!(got_last, last);
                let want_epoch = (format == Format::Json).then_some(epoch);
                prop_assert_eq!(got_epoch, want_epoch);
            }
        }
    }
}
