//! A binary running as a child process, its stderr in a file, stopped for real: SIGTERM,
//! SIGKILL, or frozen with SIGSTOP and thawed with SIGCONT.

use crate::wait::{PATIENCE, wait_until};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A running binary; killed when dropped, so a failing test leaves nothing behind (and then
/// prints what the process wrote, to explain the failure).
pub struct Process {
    name: String,
    child: Child,
    stderr: PathBuf,
}

impl Process {
    /// Starts `program` in `dir` with `env` and nothing inherited but `PATH`; `RUST_LOG` is
    /// `info` and `HEALTH_ADDR` (the workers' health port) `127.0.0.1:0` unless `env` says
    /// otherwise, so workers started side by side never fight over a port. Its stderr goes to
    /// a file in `dir`.
    pub fn start(program: &Path, dir: &Path, env: &[(&str, String)]) -> Process {
        let name = program
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("process");
        Process::start_command(Command::new(program), name, dir, env)
    }

    /// [`start`](Self::start) for a `command` that execs the binary `name` in the end (a
    /// wrapper such as `unshare … sh -c '… exec BINARY'`), so the child is the binary itself.
    pub fn start_command(
        mut command: Command,
        name: &str,
        dir: &Path,
        env: &[(&str, String)],
    ) -> Process {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let number = STARTED.fetch_add(1, Ordering::Relaxed);
        let stderr = dir.join(format!("{name}-{number}.stderr"));
        let file = std::fs::File::create(&stderr)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", stderr.display()));
        let child = command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("HEALTH_ADDR", "127.0.0.1:0")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process {
            name: name.to_owned(),
            child,
            stderr,
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What the process wrote to stderr so far (its tracing log).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until stderr contains `needle`; panics after `limit` with what it did say.
    pub async fn wait_for_log(&self, needle: &str, limit: Duration) {
        let what = format!("{} to log {needle:?}", self.name);
        wait_until(&what, limit, async || {
            self.stderr().contains(needle).then_some(())
        })
        .await;
    }

    /// Where its health port listens (workers only), from its `health port listening
    /// health=…` line; waits for that line, and panics when it exits first.
    pub async fn health_addr(&mut self) -> SocketAddr {
        let what = format!("{}'s health port line", self.name);
        let found = wait_until(&what, PATIENCE, async || {
            if let Some(addr) = health_addr_from_log(&self.stderr()) {
                return Some(Ok(addr));
            }
            self.exited().map(Err)
        })
        .await;
        found.unwrap_or_else(|status| {
            panic!(
                "{} exited ({status}) before its health port listened",
                self.name
            )
        })
    }

    /// SIGHUP (the subscriber reopens its log file, a verifier reloads its keys).
    pub fn sighup(&self) {
        self.signal("HUP");
    }

    /// `None` while it runs; its exit status once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot read the status of {}: {e}", self.name))
    }

    /// Waits (at most `limit`) for the process to exit by itself.
    pub async fn exit_status(&mut self, limit: Duration) -> ExitStatus {
        let what = format!("{} to exit", self.name);
        wait_until(&what, limit, async || self.exited()).await
    }

    /// Sends SIGTERM and waits (at most `limit`) for the exit status.
    pub async fn terminate(&mut self, limit: Duration) -> ExitStatus {
        self.sigterm();
        let what = format!("{} to exit after SIGTERM", self.name);
        wait_until(&what, limit, async || self.exited()).await
    }

    /// Sends SIGTERM and returns at once.
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// SIGKILL, and waits until the process is gone (its sockets closed by the kernel).
    pub fn kill(&mut self) {
        // Fails only when it has exited already, which is what is wanted.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: the process stays, with its sockets open, but does nothing until
    /// [`resume`](Self::resume) — a way to be sure something happens while it cannot react.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("the kill command runs");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }
}

/// The address of the first `health port listening health=<addr>` line of a worker's stderr.
pub fn health_addr_from_log(stderr: &str) -> Option<SocketAddr> {
    let (_, fields) = stderr
        .lines()
        .find_map(|l| l.split_once(" health port listening "))?;
    let value = fields
        .split(' ')
        .find_map(|token| token.strip_prefix("health="))?;
    value.trim_matches('"').parse().ok()
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- {} stderr ---\n{}", self.name, self.stderr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::health_addr_from_log;

    #[test]
    fn the_health_port_line_gives_the_address_and_its_absence_none() {
        let stderr = "2026-12-01T20:29:43.084555Z  INFO plumbing::health: health port listening \
            health=127.0.0.1:40231\n";
        assert_eq!(health_addr_from_log(stderr).map(|a| a.port()), Some(40231));
        assert_eq!(health_addr_from_log("INFO subscriber running\n"), None);
    }
}
