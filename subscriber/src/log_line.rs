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

/// The fields written after the header, in order.
fn fields(event: &Event) -> Vec<(&'static str, Value<'_>)> {
    use Value::{Number, Text};
    match event {
        Event::Downcase(d) => vec![("param", Text(&d.param)), ("result", Text(&d.result))],
        Event::SignatureRequested(r) => vec![
            ("id", Text(&r.id)),
            ("key", Text(&r.key)),
            ("text_sha256", Text(&r.text_sha256)),
            ("text_len", Number(r.text_len)),
        ],
        Event::SignatureOutcome(o) => {
            let mut f = vec![
                ("id", Text(&o.id)),
                ("key", Text(&o.key)),
                ("status", Text(o.status.as_str())),
            ];
            if let Some(reason) = &o.reason {
                f.push(("reason", Text(reason)));
            }
            if let Some(by) = &o.verified_by {
                f.push(("verified_by", Text(by)));
            }
            f.push(("attempts", Number(u64::from(o.attempts))));
            f
        }
    }
}

/// Appends `entry` to `out` as one line, newline included.
pub fn write_line(entry: &Entry, format: Format, out: &mut String) {
    match format {
        Format::Text => write_text(entry, out),
        Format::Json => write_json(entry, out),
    }
    out.push('\n');
}

fn timestamp(ts_ms: u64) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ts_ms))
}

fn write_text(entry: &Entry, out: &mut String) {
    match entry {
        Entry::Event(e) => {
            let _ = write!(out, "{} {} ", timestamp(e.ts_ms), e.body.topic());
            escape_token(&e.sender, out);
            let _ = write!(out, "#{}", e.seq);
            for (name, value) in fields(&e.body) {
                match value {
                    Value::Text(text) => {
                        let _ = write!(out, " {name}=\"");
                        escape_into(text, out);
                        out.push('"');
                    }
                    Value::Number(n) => {
                        let _ = write!(out, " {name}={n}");
                    }
                }
            }
        }
        Entry::Gap {
            sender,
            first,
            last,
            ts_ms,
            reason,
            ..
        } => {
            let _ = write!(out, "{} gap ", timestamp(*ts_ms));
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

fn write_json(entry: &Entry, out: &mut String) {
    let mut object = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        object.insert(k.to_owned(), v);
    };
    match entry {
        Entry::Event(e) => {
            put("ts", timestamp(e.ts_ms).to_string().into());
            put("topic", e.body.topic().into());
            put("publisher", e.sender.clone().into());
            put("epoch", e.epoch.into());
            put("seq", e.seq.into());
            for (name, value) in fields(&e.body) {
                match value {
                    Value::Text(text) => put(name, text.into()),
                    Value::Number(n) => put(name, n.into()),
                }
            }
        }
        Entry::Gap {
            sender,
            epoch,
            first,
            last,
            ts_ms,
            reason,
        } => {
            put("ts", timestamp(*ts_ms).to_string().into());
            put("topic", "gap".into());
            put("publisher", sender.clone().into());
            put("epoch", (*epoch).into());
            put("seq", (*first).into());
            put("last", (*last).into());
            put("missing", (last - first + 1).into());
            put("reason", reason.as_str().into());
        }
    }
    // serde_json escapes every control character, so a value cannot break the line.
    out.push_str(&serde_json::Value::Object(object).to_string());
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
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Like [`escape_into`], for an unquoted token: spaces and `#` are escaped as well, so the
/// header's fields stay where a reader expects them.
pub(crate) fn escape_token(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            ' ' | '#' | '"' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => escape_into(c.encode_utf8(&mut [0; 4]), out),
        }
    }
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
}
