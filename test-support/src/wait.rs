//! Waiting for a condition: a bounded retry inside a timeout, never a bare sleep.

use std::time::Duration;

/// How long a test waits for anything that should take well under a second on a quiet
/// machine: generous, because two cores run the whole suite in parallel.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Pause between two checks.
const POLL: Duration = Duration::from_millis(25);

/// Runs `check` until it returns `Some`, pausing briefly between attempts, and returns that
/// value. Panics after `limit` (a check that hangs counts against it too) with a message
/// naming `what` was awaited.
///
/// ```no_run
/// # async fn example(path: &std::path::Path) {
/// use test_support::{PATIENCE, read_log, wait_until};
///
/// let lines = wait_until("two lines in the log", PATIENCE, async || {
///     let lines = read_log(path);
///     (lines.len() >= 2).then_some(lines)
/// })
/// .await;
/// # }
/// ```
pub async fn wait_until<T>(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let attempts = async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(POLL).await;
        }
    };
    match tokio::time::timeout(limit, attempts).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}
