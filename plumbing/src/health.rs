//! The workers' internal HTTP port, `HEALTH_ADDR` (design §8): `GET /healthz` (the process is
//! up), `GET /readyz` (200, or 503 with the reason in words) and `GET /metrics` (Prometheus
//! text with a `# HELP` line per described metric) — and `<worker> healthcheck`, which asks
//! `/healthz` so a container health check needs no curl in the image.
//!
//! [`HealthServer::start`] binds before it returns the resolved address (tests bind port 0
//! and read it from the `health port listening health=…` line), installs the process-wide
//! metrics recorder, and serves on a task of its own until the server is dropped.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Whether a process is ready for work: `Err` says why not, in words.
pub type Readiness = Result<(), String>;

/// How often histograms are folded into what `/metrics` renders, so a process nobody scrapes
/// keeps bounded memory.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Buckets of every `*_seconds` histogram: from the tens of microseconds an RSA check takes to
/// the seconds of a stuck disk.
const SECONDS_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Where the health port listens (`HEALTH_ADDR`): `host:port`, or nowhere (empty or `off`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthAddr {
    /// No health port.
    Off,
    /// Listen on this `host:port`.
    At(String),
}

impl HealthAddr {
    /// Parses a `HEALTH_ADDR` value (a clap value parser): `host:port`, `''` or `off`.
    pub fn parse(value: &str) -> Result<HealthAddr, String> {
        let value = value.trim();
        if value.is_empty() || value.eq_ignore_ascii_case("off") {
            return Ok(HealthAddr::Off);
        }
        let refused = || format!("{value:?} is not host:port (e.g. 0.0.0.0:9101), nor `off`");
        let (host, port) = value.rsplit_once(':').ok_or_else(refused)?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(refused());
        }
        Ok(HealthAddr::At(value.to_owned()))
    }
}

impl fmt::Display for HealthAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthAddr::Off => f.write_str("off"),
            HealthAddr::At(addr) => f.write_str(addr),
        }
    }
}

/// Why the health port could not be served.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The address could not be bound (in use, not ours, not resolvable).
    #[error("cannot listen on HEALTH_ADDR {addr} (set another, or `off`): {source}")]
    Bind {
        /// The configured address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The health port, served until this is dropped.
#[derive(Debug)]
pub struct HealthServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

type Check = Arc<dyn Fn() -> Readiness + Send + Sync>;

impl HealthServer {
    /// Serves the health port when `addr` names one (`None` when it is off): binds it, installs
    /// the metrics recorder, logs `health port listening health=<address>`. `ready` answers
    /// `/readyz`; it is called per request, so it must be quick and never block.
    pub async fn start(
        addr: &HealthAddr,
        ready: impl Fn() -> Readiness + Send + Sync + 'static,
    ) -> Result<Option<HealthServer>, HealthError> {
        let HealthAddr::At(configured) = addr else {
            return Ok(None);
        };
        let bind_failed = |source| HealthError::Bind {
            addr: configured.clone(),
            source,
        };
        let listener = tokio::net::TcpListener::bind(configured.as_str())
            .await
            .map_err(bind_failed)?;
        let local = listener.local_addr().map_err(bind_failed)?;
        let handle = recorder();
        let check: Check = Arc::new(ready);
        let app = axum::Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state((check, handle));
        let task = tokio::spawn(async move {
            let upkeep = fold_histograms(handle);
            tokio::select! {
                served = axum::serve(listener, app) => {
                    if let Err(e) = served {
                        tracing::error!(cause = %e, "the health port stopped serving");
                    }
                }
                () = upkeep => {}
            }
        });
        tracing::info!(health = %local, "health port listening");
        Ok(Some(HealthServer { addr: local, task }))
    }

    /// The address it listens on (the real port when `HEALTH_ADDR` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The process-wide Prometheus recorder, installed on first use. Metrics recorded before it
/// is installed are lost, so a worker starts its health port before anything else.
pub fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        install_recorder(
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS),
        )
    })
}

/// Installs the recorder `builder` makes as the process's and returns its handle. A builder
/// that failed (bad buckets), or another recorder installed already, leaves a handle that
/// renders nothing: the process goes on, uncounted.
pub fn install_recorder(
    builder: Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError>,
) -> PrometheusHandle {
    match builder.map(PrometheusBuilder::build_recorder) {
        Ok(recorder) => {
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        }
        Err(_) => PrometheusBuilder::new().build_recorder().handle(),
    }
}

/// Folds histogram samples into what `/metrics` renders every few seconds, for ever: the
/// recorder otherwise keeps every sample until it is scraped.
pub async fn fold_histograms(handle: &PrometheusHandle) {
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
}

type AppState = (Check, &'static PrometheusHandle);

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State((check, _)): State<AppState>) -> Response {
    match check() {
        Ok(()) => Json(serde_json::json!({ "ready": true })).into_response(),
        Err(reason) => {
            let body = serde_json::json!({ "ready": false, "reason": reason });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

async fn metrics(State((_, handle)): State<AppState>) -> String {
    handle.render()
}

/// One-off commands of a worker binary.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Exit 0 when this worker's health port (HEALTH_ADDR) answers /healthz (for container
    /// health checks).
    Healthcheck(Healthcheck),
}

/// Options of `<worker> healthcheck`.
#[derive(Debug, Clone, clap::Args)]
pub struct Healthcheck {
    /// How long to wait for the answer.
    #[arg(long, default_value = "2s", value_parser = crate::positive_duration)]
    pub timeout: Duration,
}

impl Healthcheck {
    /// Sends `GET /healthz` to the health port at `addr` and checks for a 200.
    pub fn run(&self, addr: &HealthAddr) -> anyhow::Result<()> {
        let HealthAddr::At(configured) = addr else {
            anyhow::bail!("HEALTH_ADDR is off: there is no health port to ask");
        };
        probe_healthz(configured, "HEALTH_ADDR", self.timeout)
    }
}

/// Sends `GET /healthz` to the server bound to `addr` (the value of the variable `var`) on
/// this host and checks for a 200 within `timeout`: every binary's `healthcheck` command.
pub fn probe_healthz(addr: &str, var: &str, timeout: Duration) -> anyhow::Result<()> {
    use anyhow::{Context, bail};
    let target = local_target(addr, var)?;
    let mut stream = TcpStream::connect_timeout(&target, timeout)
        .with_context(|| format!("cannot connect to {target}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).context("no answer")?;
    if &head[9..12] != b"200" {
        bail!("/healthz answered {}", String::from_utf8_lossy(&head));
    }
    Ok(())
}

/// The address to reach a server bound to `addr` from the same host: a wildcard bind
/// (`0.0.0.0`, `[::]`) is reached on loopback.
fn local_target(addr: &str, var: &str) -> anyhow::Result<SocketAddr> {
    use anyhow::Context;
    let mut target = addr
        .to_socket_addrs()
        .with_context(|| format!("{var} {addr:?} is not an address"))?
        .next()
        .with_context(|| format!("{var} {addr:?} resolves to nothing"))?;
    if target.ip().is_unspecified() {
        target.set_ip(if target.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_off_health_addr_disables_the_port_and_a_bad_one_is_refused() {
        assert_eq!(HealthAddr::parse(""), Ok(HealthAddr::Off));
        assert_eq!(HealthAddr::parse(" OFF "), Ok(HealthAddr::Off));
        assert_eq!(
            HealthAddr::parse("0.0.0.0:9101"),
            Ok(HealthAddr::At("0.0.0.0:9101".into()))
        );
        assert_eq!(
            HealthAddr::parse("[::]:0"),
            Ok(HealthAddr::At("[::]:0".into()))
        );
        for bad in ["9101", ":9101", "host:port", "host:70000"] {
            assert!(HealthAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_port_answers_health_readiness_and_described_metrics_and_healthcheck_passes() {
        let ready = Arc::new(std::sync::Mutex::new(Err("not yet".to_owned())));
        let state = Arc::clone(&ready);
        let at = HealthAddr::At("127.0.0.1:0".into());
        let server = HealthServer::start(&at, move || {
            state
                .lock()
                .map_or_else(|_| Err("poisoned".into()), |r| r.clone())
        })
        .await
        .expect("binds")
        .expect("on");
        metrics::describe_counter!("health_test_total", "A counter of this test.");
        metrics::counter!("health_test_total").increment(3);
        let addr = server.local_addr();

        let get = move |path: &'static str| {
            tokio::task::spawn_blocking(move || {
                let mut stream = TcpStream::connect(addr).expect("connects");
                let request = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
                stream.write_all(request.as_bytes()).expect("sent");
                let mut answer = String::new();
                stream.read_to_string(&mut answer).expect("answer");
                answer
            })
        };
        assert!(
            get("/healthz")
                .await
                .expect("ran")
                .starts_with("HTTP/1.0 200")
        );
        let not_ready = get("/readyz").await.expect("ran");
        assert!(not_ready.starts_with("HTTP/1.0 503"), "{not_ready}");
        assert!(not_ready.contains("\"reason\":\"not yet\""), "{not_ready}");
        *ready.lock().expect("lock") = Ok(());
        assert!(
            get("/readyz")
                .await
                .expect("ran")
                .starts_with("HTTP/1.0 200")
        );
        let page = get("/metrics").await.expect("ran");
        assert!(
            page.contains("# HELP health_test_total A counter of this test."),
            "{page}"
        );
        assert!(page.contains("health_test_total 3"), "{page}");

        let check = Healthcheck {
            timeout: Duration::from_secs(2),
        };
        let target = HealthAddr::At(addr.to_string());
        tokio::task::spawn_blocking(move || check.run(&target))
            .await
            .expect("ran")
            .expect("healthy");
        drop(server);
        let check = Healthcheck {
            timeout: Duration::from_secs(2),
        };
        let gone = HealthAddr::At(addr.to_string());
        // The listener closes once the aborted task is dropped by the runtime.
        let mut refused = false;
        for _ in 0..100 {
            let (check, gone) = (check.clone(), gone.clone());
            if tokio::task::spawn_blocking(move || check.run(&gone))
                .await
                .expect("ran")
                .is_err()
            {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused, "a stopped health port no longer answers");
        assert!(
            Healthcheck {
                timeout: Duration::from_secs(1)
            }
            .run(&HealthAddr::Off)
            .is_err()
        );
    }
}
