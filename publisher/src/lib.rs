//! The publisher: an axum HTTP front that answers `/downcase` (and, later, signature requests)
//! and publishes every outcome as an event on a ZMQ PUB socket (design §2–4).
//!
//! [`Publisher::bind`] binds every socket and reports the resolved addresses, so tests can bind
//! port 0; [`Publisher::run`] serves until the shutdown future resolves, then lets the queued
//! events go out before it returns.

mod config;
mod error;
mod events;
mod healthcheck;
mod routes;

pub use config::{Command, Config};
pub use error::ApiError;
pub use healthcheck::Healthcheck;

use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;

/// A publisher whose sockets are bound, ready to [`run`](Publisher::run).
pub struct Publisher {
    listener: tokio::net::TcpListener,
    events: events::Events,
    flusher: events::Flusher,
    events_endpoint: Option<String>,
    max_param_bytes: usize,
}

impl Publisher {
    /// Binds the HTTP listener and the event socket.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        let codec = config.common.codec()?;
        let identity = events::Identity {
            id: config.id.clone(),
            epoch: wire::now_ms(),
        };
        let listener = tokio::net::TcpListener::bind(&config.http_addr)
            .await
            .with_context(|| format!("cannot listen on HTTP_ADDR {}", config.http_addr))?;
        let (events, flusher, events_endpoint) = events::start(
            identity,
            &config.events_bind,
            codec,
            config.heartbeat_interval,
            config.events_disabled,
        )
        .await?;
        tracing::info!(
            http = %listener.local_addr()?,
            events = events_endpoint.as_deref().unwrap_or("disabled"),
            id = %config.id,
            epoch = events.identity().epoch,
            "publisher listening"
        );
        Ok(Publisher {
            listener,
            events,
            flusher,
            events_endpoint,
            max_param_bytes: config.max_param_bytes,
        })
    }

    /// The address HTTP is served on.
    pub fn http_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The resolved PUB endpoint, `None` when publishing is disabled.
    pub fn events_endpoint(&self) -> Option<&str> {
        self.events_endpoint.as_deref()
    }

    /// Serves until `shutdown` resolves; then finishes the requests in progress, sends every
    /// queued event, and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let app = routes::router(routes::AppState {
            events: self.events,
            max_param_bytes: self.max_param_bytes,
        });
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("HTTP server failed")?;
        // The router, and with it every handle on the event queue, is gone: the socket task
        // drains the queue and ends.
        self.flusher.flushed().await;
        tracing::info!("publisher stopped");
        Ok(())
    }
}
