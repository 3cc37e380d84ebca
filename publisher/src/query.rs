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
        let value = decode(value, name)?.into_owned();
        if value.len() > max_bytes {
            return Err(too_long(value.len()));
        }
        found = Some(value);
    }
    Ok(found)
}

/// `?wait=2s` (any humantime duration, or plain seconds), capped at `max`; `None` when absent.
pub fn wait(query: &str, max: Duration) -> Result<Option<Duration>, ApiError> {
    let Some(value) = optional_param(query, "wait", MAX_WAIT_BYTES)? else {
        return Ok(None);
    };
    let wait = value
        .parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .or_else(|| humantime::parse_duration(&value).ok())
        .ok_or_else(|| {
            ApiError::BadRequest(format!("`wait` is not a duration: {value:?} (try 5s)"))
        })?;
    Ok(Some(wait.min(max)))
}

fn decode<'a>(raw: &'a str, what: &str) -> Result<Cow<'a, str>, ApiError> {
    let spaced: Cow<'a, str> = if raw.contains('+') {
        Cow::Owned(raw.replace('+', " "))
    } else {
        Cow::Borrowed(raw)
    };
    let decoded = percent_decode_str(&spaced).decode_utf8().map_err(|_| {
        ApiError::BadRequest(format!("{what} is not valid UTF-8 once percent-decoded"))
    })?;
    Ok(Cow::Owned(decoded.into_owned()))
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
        assert_eq!(wait("", max).unwrap(), None);
        assert_eq!(
            wait("wait=1.5", max).unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            wait("wait=250ms", max).unwrap(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(wait("wait=1h", max).unwrap(), Some(max));
        assert!(matches!(
            wait("wait=soon", max),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            wait("wait=1&wait=2", max),
            Err(ApiError::BadRequest(_))
        ));
    }
}
