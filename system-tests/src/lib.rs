//! The kit the whole-system tests share: build and start the real binaries on free ports,
//! stop them for real (SIGTERM, SIGKILL), wait for conditions within a bound, and read
//! `subscriber.log` back.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Path of a workspace binary, built (once per test process) with the same profile as the
/// tests, so a test never runs a stale build of another package.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--workspace", "--bins", "--quiet"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the binaries failed");
        // Test executables live in target/<profile>/deps; binaries one level up.
        let exe = std::env::current_exe().expect("test executable path");
        exe.parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .to_owned()
    });
    dir.join(name)
}

/// A free TCP port on loopback (bound and released; the window for a clash is tiny).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `check` until it returns `Some`, at most for `limit`; panics naming `what`.
pub async fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running binary; killed when dropped, so a failing test leaves nothing behind.
pub struct Proc {
    name: String,
    child: Child,
    stderr: PathBuf,
}

impl Proc {
    /// Starts binary `name` with `env` (and nothing inherited but PATH), stderr into `dir`.
    pub fn start(name: &str, dir: &Path, env: &[(&str, String)]) -> Proc {
        let stderr = dir.join(format!("{name}-{}.stderr", free_port()));
        let file = std::fs::File::create(&stderr).expect("stderr file");
        let child = Command::new(binary(name))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.into(),
            child,
            stderr,
        }
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends `signal` (e.g. "TERM", "KILL").
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// Sends SIGTERM and waits (at most `limit`) for the exit status.
    pub async fn terminate(mut self, limit: Duration) -> ExitStatus {
        self.signal("TERM");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "{} did not exit within {limit:?} of SIGTERM; stderr:\n{}",
                self.name,
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `None` while running.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

/// The ports one publisher listens on.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// HTTP.
    pub http: u16,
    /// ZMQ PUB (events).
    pub events: u16,
    /// ZMQ PUSH (tasks).
    pub tasks: u16,
    /// ZMQ PULL (results).
    pub results: u16,
    /// ZMQ ROUTER (replay).
    pub replay: u16,
}

impl Ports {
    /// Five free ports.
    pub fn free() -> Ports {
        Ports {
            http: free_port(),
            events: free_port(),
            tasks: free_port(),
            results: free_port(),
            replay: free_port(),
        }
    }
}

/// A scratch directory with a publisher and subscriber wired to each other.
pub struct System {
    /// Where logs, keys and stderr files go.
    pub dir: tempfile::TempDir,
    /// The publisher's ports, kept across restarts.
    pub ports: Ports,
    /// HTTP client.
    pub http: reqwest::Client,
}

impl Default for System {
    fn default() -> Self {
        Self::new()
    }
}

impl System {
    /// A fresh directory and free ports; nothing started yet.
    pub fn new() -> System {
        System {
            dir: tempfile::tempdir().expect("temp dir"),
            ports: Ports::free(),
            http: reqwest::Client::new(),
        }
    }

    /// Environment for the publisher.
    pub fn publisher_env(&self) -> Vec<(&'static str, String)> {
        let p = self.ports;
        vec![
            ("HTTP_ADDR", format!("127.0.0.1:{}", p.http)),
            ("EVENTS_BIND", format!("tcp://127.0.0.1:{}", p.events)),
            ("TASKS_BIND", format!("tcp://127.0.0.1:{}", p.tasks)),
            ("RESULTS_BIND", format!("tcp://127.0.0.1:{}", p.results)),
            ("REPLAY_BIND", format!("tcp://127.0.0.1:{}", p.replay)),
            ("PUBLISHER_ID", "pub-test".into()),
        ]
    }

    /// Starts the publisher and waits until it answers /healthz.
    pub async fn start_publisher(&self) -> Proc {
        self.start_publisher_with(&[]).await
    }

    /// Starts the publisher with extra environment, and waits until it answers /healthz.
    pub async fn start_publisher_with(&self, extra: &[(&str, String)]) -> Proc {
        let mut env = self.publisher_env();
        env.extend(extra.iter().cloned());
        let mut publisher = Proc::start("publisher", self.dir.path(), &env);
        let start = Instant::now();
        loop {
            if self.get("/healthz").await.is_ok_and(|r| r.status() == 200) {
                return publisher;
            }
            if let Some(status) = publisher.exited() {
                panic!("publisher exited with {status}: {}", publisher.stderr());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "publisher did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The subscriber's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("subscriber.log")
    }

    /// Starts a subscriber connected to the publisher's ports, logging to [`Self::log_path`].
    pub fn start_subscriber(&self, extra: &[(&str, String)]) -> Proc {
        let p = self.ports;
        let mut env = vec![
            ("EVENTS_CONNECT", format!("tcp://127.0.0.1:{}", p.events)),
            ("REPLAY_CONNECT", format!("tcp://127.0.0.1:{}", p.replay)),
            ("LOG_FILE", self.log_path().display().to_string()),
        ];
        env.extend(extra.iter().cloned());
        Proc::start("subscriber", self.dir.path(), &env)
    }

    /// GET `path` (with query) on the publisher.
    pub async fn get(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        self.http
            .get(format!("http://127.0.0.1:{}{path}", self.ports.http))
            .timeout(Duration::from_secs(10))
            .send()
            .await
    }

    /// `/downcase?param=…`, asserting a 200, returning the answer's JSON.
    pub async fn downcase(&self, param: &str) -> serde_json::Value {
        let response = self
            .http
            .get(format!("http://127.0.0.1:{}/downcase", self.ports.http))
            .query(&[("param", param)])
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status(), 200, "downcase {param:?}");
        response.json().await.expect("JSON answer")
    }

    /// Sends warm-up requests until one of them shows in the log, so the subscriber is known
    /// to be connected; returns the warm-up params sent.
    pub async fn until_subscribed(&self, label: &str) -> Vec<String> {
        let start = Instant::now();
        let mut sent = Vec::new();
        loop {
            let param = format!("{label}-{}", sent.len());
            self.downcase(&param).await;
            sent.push(param);
            let logged = read_log(&self.log_path());
            if logged
                .iter()
                .any(|l| l.fields.get("param").is_some_and(|p| p.starts_with(label)))
            {
                return sent;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the subscriber never logged {label}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Keys and signatures made with the `openssl` command-line tool, as a user would make them.
pub mod openssl {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    fn run(args: &[&str]) -> Vec<u8> {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Makes an RSA-2048 key pair: `<dir>/<id>.private.pem`, and the public key in
    /// `<dir>/keys/<id>.pem` (SPKI) for verifiers. Returns the private key's path.
    pub fn key_pair(dir: &Path, id: &str) -> PathBuf {
        let private = dir.join(format!("{id}.private.pem"));
        std::fs::create_dir_all(dir.join("keys")).expect("keys dir");
        let private_s = private.to_str().expect("utf-8 path");
        run(&["genrsa", "-out", private_s, "2048"]);
        let public = dir.join("keys").join(format!("{id}.pem"));
        run(&[
            "rsa",
            "-in",
            private_s,
            "-pubout",
            "-out",
            public.to_str().expect("utf-8 path"),
        ]);
        private
    }

    /// `openssl dgst -sha256 -sign <private>` of `document`, hex-encoded.
    pub fn sign(private: &Path, document: &[u8]) -> String {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), document).expect("write document");
        let signature = run(&[
            "dgst",
            "-sha256",
            "-sign",
            private.to_str().expect("utf-8 path"),
            file.path().to_str().expect("utf-8 path"),
        ]);
        hex::encode(signature)
    }
}

impl System {
    /// Starts a verifier connected to this system's publisher, with the keys in `<dir>/keys`.
    pub fn start_verifier(&self, id: &str) -> Proc {
        let p = self.ports;
        let env = [
            ("TASKS_CONNECT", format!("tcp://127.0.0.1:{}", p.tasks)),
            ("RESULTS_CONNECT", format!("tcp://127.0.0.1:{}", p.results)),
            (
                "KEYS_DIR",
                self.dir.path().join("keys").display().to_string(),
            ),
            ("VERIFIER_ID", id.to_owned()),
        ];
        Proc::start("verifier", self.dir.path(), &env)
    }

    /// Waits until `/readyz` reports at least `n` verifiers.
    pub async fn until_verifiers(&self, n: u64) {
        let start = Instant::now();
        loop {
            if let Ok(response) = self.get("/readyz").await {
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                if body["verifiers"].as_u64().unwrap_or(0) >= n {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{n} verifiers never showed up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `POST /signatures` with `body` (and `query`, e.g. `?wait=5s`): status and JSON answer.
    pub async fn post_signature(
        &self,
        query: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.post_raw(query, body.to_string().into_bytes()).await
    }

    /// `POST /signatures` with raw bytes.
    pub async fn post_raw(&self, query: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        let response = self
            .http
            .post(format!(
                "http://127.0.0.1:{}/signatures{query}",
                self.ports.http
            ))
            .header("content-type", "application/json")
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("answer");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }
}
