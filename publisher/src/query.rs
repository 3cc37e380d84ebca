//! Query-string parsing shared by the routes: one value of a parameter, percent-decoded and
//! strictly UTF-8, with a size limit; and `?wait=` as a duration. Every mistake is a 4xx that
//! says what is wrong.

use crate::error::ApiError;
use percent_encoding::percent_decode_str;
use std::borrow::Cow;
use std::time::Duration;

/// Longest `?wait=` value read, in bytes: any sensible duration fits.
const MAX_WAIT_BYTES: usize = 64;

/// The one value of `name` in a query string, percent-decoded (`+` is a space) and strictly
/// UTF-8. Missing, repeated, undecodable and over-long values are the client's mistake.
pub fn single_param(query: &str, name: &str, max_bytes: usize) -> Result<String, ApiError> {
    optional_param(query, name, max_bytes)?.ok_or_else(|| {
        ApiError::BadRequest(format!(
            "missing query parameter `{name}`, e.g. ?{name}=HeLLo"
        ))
    })
}

/// Like [`single_param`], for a parameter that may be left out.
pub fn optional_param(
    query: &str,
    name: &str,
    max_bytes: usize,
) -> Result<Option<String>, ApiError> {
    Ok(find_param(query, name, max_bytes)?.map(Cow::into_owned))
}

/// [`optional_param`], borrowing the value from `query` when decoding changes nothing.
fn find_param<'a>(
    query: &'a str,
    name: &str,
    max_bytes: usize,
) -> Result<Option<Cow<'a, str>>, ApiError> {
    let mut found = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(key, "a parameter name")? != name {
            continue;
        }
        if found.is_some() {
            return Err(ApiError::BadRequest(format!(
                "`{name}` is given more than once"
            )));
        }
        // A percent-encoded byte takes three characters: longer than that cannot fit.
        let too_long = |len| {
            ApiError::UriTooLong(format!(
                "`{name}` is {len} bytes; the limit is {max_bytes} bytes"
            ))
        };
        if value.len() > max_bytes.saturating_mul(3) {
            return Err(too_long(value.len()));
        }
        let value = decode(value, name)?;
        if value.len() > max_bytes {
            return Err(too_long(value.len()));
        }
        found = Some(value);
    }
    Ok(found)
}

/// `?wait=2s` (any humantime duration, or plain seconds), capped at `max`; `None` when absent.
pub fn wait(query: &str, max: Duration) -> Result<Option<Duration>, ApiError> {
    let Some(value) = find_param(query, "wait", MAX_WAIT_BYTES)? else {
        return Ok(None);
    };
    let wait = whole_seconds_or_millis(&value)
        .or_else(|| {
            value
                .parse::<f64>()
                .ok()
                .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        })
        .or_else(|| humantime::parse_duration(&value).ok())
        .ok_or_else(|| {
            ApiError::BadRequest(format!("`wait` is not a duration: {value:?} (try 5s)"))
        })?;
    Ok(Some(wait.min(max)))
}

/// `10s` or `250ms` read directly, as humantime reads them (and as no float parses); `None`
/// for anything else.
fn whole_seconds_or_millis(value: &str) -> Option<Duration> {
    let (digits, unit): (_, fn(u64) -> Duration) = match value.strip_suffix("ms") {
        Some(digits) => (digits, Duration::from_millis),
        None => (value.strip_suffix('s')?, Duration::from_secs),
    };
    // Nine digits at most: no overflow to think about, and far past any cap.
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(unit)
}

/// `raw` with `+` as a space and percent escapes decoded, borrowed when neither occurs.
fn decode<'a>(raw: &'a str, what: &str) -> Result<Cow<'a, str>, ApiError> {
    let invalid =
        || ApiError::BadRequest(format!("{what} is not valid UTF-8 once percent-decoded"));
    if raw.contains('+') {
        let spaced = raw.replace('+', " ");
        let decoded = percent_decode_str(&spaced)
            .decode_utf8()
            .map_err(|_| invalid())?;
        return Ok(Cow::Owned(decoded.into_owned()));
    }
    percent_decode_str(raw).decode_utf8().map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(query: &str) -> Result<String, ApiError> {
        single_param(query, "param", 16)
    }

    #[test]
    fn a_query_value_is_percent_and_plus_decoded() {
        assert_eq!(param("param=HeLLo").unwrap(), "HeLLo");
        assert_eq!(param("x=1&param=a+b%20c%0A").unwrap(), "a b c\n");
        assert_eq!(param("param=%CE%A3").unwrap(), "Σ");
        assert_eq!(param("param=").unwrap(), "");
        assert_eq!(param("param").unwrap(), "");
    }

    #[test]
    fn missing_repeated_invalid_and_long_values_are_rejected() {
        assert!(matches!(param(""), Err(ApiError::BadRequest(_))));
        assert!(matches!(param("other=1"), Err(ApiError::BadRequest(_))));
        assert!(matches!(
            param("param=a&param=b"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(param("param=%FF"), Err(ApiError::BadRequest(_))));
        assert!(matches!(
            param(&format!("param={}", "a".repeat(17))),
            Err(ApiError::UriTooLong(_))
        ));
        assert!(matches!(
            param(&format!("param={}", "%41".repeat(17))),
            Err(ApiError::UriTooLong(_))
        ));
        assert_eq!(
            param(&format!("param={}", "%41".repeat(16))).unwrap(),
            "A".repeat(16)
        );
    }

    #[test]
    fn wait_reads_seconds_or_a_duration_capped_at_the_maximum() {
        let max = Duration::from_secs(30);
        let ms = Duration::from_millis;
        for (query, read) in [
            ("", None),
            ("wait=1.5", Some(ms(1500))),
            ("wait=250ms", Some(ms(250))),
            ("wait=10s", Some(ms(10_000))),
            ("wait=%31s", Some(ms(1000))),
            ("wait=1m", Some(max)),
            ("wait=1h", Some(max)),
        ] {
            assert_eq!(wait(query, max).unwrap(), read, "{query}");
        }
        for bad in [
            "wait=soon",
            "wait=1&wait=2",
            "wait=s",
            "wait=ms",
            "wait=-1s",
            "wait=%FF",
        ] {
            assert!(
                matches!(wait(bad, max), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn whole_seconds_and_millis_read_as_humantime_reads_them(
            digits in "[0-9]{0,10}",
            unit in proptest::sample::select(vec!["s", "ms", "sec", "m", "", "ns", "us"]),
        ) {
            let value = format!("{digits}{unit}");
            if let Some(direct) = whole_seconds_or_millis(&value) {
                proptest::prop_assert_eq!(Some(direct), humantime::parse_duration(&value).ok());
                proptest::prop_assert!(value.parse::<f64>().is_err());
            }
        }
    }
}
