//! `subscriber.log` read back: each text line parsed into its parts, values unescaped.

use std::collections::BTreeMap;
use std::path::Path;

/// One parsed line of `subscriber.log` in the text format.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// RFC 3339 timestamp.
    pub ts: String,
    /// Topic, or `gap`.
    pub topic: String,
    /// Publisher id.
    pub publisher: String,
    /// Sequence number.
    pub seq: u64,
    /// `key=value` fields, values unescaped.
    pub fields: BTreeMap<String, String>,
}

/// Parses a text log line: `<ts> <topic> <publisher>#<seq> key="value" key=number …`.
/// Panics on a line that does not have that shape: the format is the contract.
pub fn parse_line(line: &str) -> LogLine {
    let mut rest = line;
    let mut token = || {
        let (t, r) = rest.split_once(' ').unwrap_or((rest, ""));
        rest = r;
        t.to_owned()
    };
    let ts = token();
    let topic = token();
    let origin = token();
    let (publisher, seq) = origin
        .rsplit_once('#')
        .unwrap_or_else(|| panic!("no publisher#seq in {line:?}"));
    let seq = seq
        .parse()
        .unwrap_or_else(|_| panic!("bad seq in {line:?}"));
    let mut fields = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('r') => value.push('\r'),
                        Some('t') => value.push('\t'),
                        Some('u') => {
                            let hex: String =
                                chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                            let code = u32::from_str_radix(&hex, 16).expect("hex escape");
                            value.push(char::from_u32(code).expect("scalar value"));
                        }
                        Some(other) => value.push(other),
                        None => panic!("dangling backslash in {line:?}"),
                    },
                    c => value.push(c),
                }
            }
            assert!(
                matches!(chars.next(), None | Some(' ')),
                "junk after value in {line:?}"
            );
        } else {
            value = chars.by_ref().take_while(|&c| c != ' ').collect();
        }
        fields.insert(key.trim().to_owned(), value);
    }
    LogLine {
        ts,
        topic,
        publisher: publisher.to_owned(),
        seq,
        fields,
    }
}

/// Every line of the log file (empty when it does not exist yet).
pub fn read_log(path: &Path) -> Vec<LogLine> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(parse_line)
        .collect()
}

impl LogLine {
    /// The `param` field of a `downcase` line.
    pub fn param(&self) -> Option<&str> {
        self.fields.get("param").map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_line;

    #[test]
    fn an_event_line_and_a_gap_line_are_taken_apart() {
        let event = parse_line(
            "2026-12-01T20:29:43.084Z downcase pub-test#7 param=\"A\\n\\\"b\\\"\" result=\"a\"",
        );
        let gap = parse_line(
            "2026-12-01T20:29:44.000Z gap pub-test#1 last=3 missing=3 reason=\"not received\"",
        );

        assert_eq!((event.topic.as_str(), event.seq), ("downcase", 7));
        assert_eq!(event.param(), Some("A\n\"b\""));
        assert_eq!((gap.topic.as_str(), gap.seq), ("gap", 1));
        assert_eq!(gap.fields["last"], "3");
    }
}
