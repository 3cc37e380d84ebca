//! When a file's writes are forced to disk: the syntax `always`, `interval:<ms>`, `never`,
//! shared by the publisher's journal (`JOURNAL_SYNC`) and the subscriber's log (`LOG_SYNC`).
//! Each of them says what the policy promises of its own file.

use std::str::FromStr;
use std::time::Duration;

/// When written data is forced to the disk with `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `always`: at every point where the writer promises something of what it wrote;
    /// survives a crash of the process and of the machine.
    Always,
    /// `interval:<ms>` (or `interval:<ms>ms`): written at once, synced at most this long
    /// after; a crash of the machine loses at most this much.
    Interval(Duration),
    /// `never`: written at once, synced when the OS chooses; survives a crash of the process
    /// only.
    Never,
}

impl FromStr for SyncPolicy {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "always" => Ok(SyncPolicy::Always),
            "never" => Ok(SyncPolicy::Never),
            other => {
                let ms = other.strip_prefix("interval:").ok_or_else(|| {
                    format!("{other:?} is not `always`, `interval:<ms>` or `never`")
                })?;
                let ms: u64 = ms
                    .trim_end_matches("ms")
                    .parse()
                    .map_err(|_| format!("{ms:?} is not a number of milliseconds"))?;
                if ms == 0 {
                    return Err("the interval must be longer than zero; use `always`".into());
                }
                Ok(SyncPolicy::Interval(Duration::from_millis(ms)))
            }
        }
    }
}

impl std::fmt::Display for SyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncPolicy::Always => f.write_str("always"),
            SyncPolicy::Interval(every) => write!(f, "interval:{}", every.as_millis()),
            SyncPolicy::Never => f.write_str("never"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_policies_parse_and_nonsense_is_refused() {
        assert_eq!("always".parse(), Ok(SyncPolicy::Always));
        assert_eq!("never".parse(), Ok(SyncPolicy::Never));
        assert_eq!(
            "interval:5".parse(),
            Ok(SyncPolicy::Interval(Duration::from_millis(5)))
        );
        assert_eq!(
            "interval:20ms".parse(),
            Ok(SyncPolicy::Interval(Duration::from_millis(20)))
        );
        assert!("interval:0".parse::<SyncPolicy>().is_err());
        assert!("sometimes".parse::<SyncPolicy>().is_err());
        assert!("interval:soon".parse::<SyncPolicy>().is_err());
    }

    #[test]
    fn a_policy_prints_as_it_is_written() {
        for text in ["always", "interval:200", "never"] {
            let policy: SyncPolicy = text.parse().expect("parses");
            assert_eq!(policy.to_string(), text);
        }
    }
}
