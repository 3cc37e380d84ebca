//! The HTTP server around the router: an accept loop handing each connection to hyper's
//! HTTP/1 server with a deadline for request headers, so a client that opens connections and
//! dribbles header bytes (slowloris) holds each for at most `HEADER_READ_TIMEOUT`. Accept
//! errors such as running out of file descriptors are waited out, not fatal. On shutdown the
//! listener closes, idle connections close, and the requests in progress are finished.
//! hyper's own refusals of requests it cannot parse get the API's JSON error body
//! ([`json_refusals`]).

mod json_refusals;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long the accept loop waits after an error that is not one connection's own (out of
/// file descriptors, out of memory): long enough not to spin, short enough to notice when
/// descriptors are free again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` resolves, then lets every connection finish
/// its request in progress and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let connections = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            // The peer gave up before we took its connection: nothing to wait out.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                ::metrics::counter!("http_accept_errors_total").increment(1);
                tracing::error!(cause = %e, "cannot accept an HTTP connection; retrying shortly");
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        let connection = http.serve_connection(
            TokioIo::new(json_refusals::JsonRefusals::new(stream)),
            TowerToHyperService::new(app.clone()),
        );
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // A client's own doing (gone, too slow with its headers, malformed): not ours.
                tracing::debug!(cause = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::debug!(
        connections = connections.count(),
        "no longer accepting; finishing the requests in progress"
    );
    connections.shutdown().await;
}

/// Errors of one connection, not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
