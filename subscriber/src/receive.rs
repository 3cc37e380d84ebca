//! One task per publisher event endpoint: owns a SUB socket, keeps it connected, decodes what
//! arrives and passes it to the log writer, saying which endpoint it came from (its replay is
//! asked from the paired replay endpoint). Undecodable messages are counted and dropped.

use crate::writer::Arrival;
use plumbing::Rejects;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wire::Codec;
use zeromq::{Socket, SocketOptions, SocketRecv, SubSocket};

/// Receives from `endpoint` (pair number `index`) until `stop` is cancelled or the writer is gone.
pub async fn receive(
    index: usize,
    endpoint: String,
    codec: Codec,
    arrivals: mpsc::Sender<Arrival>,
    rejects: &Rejects,
    stop: CancellationToken,
) {
    let mut options = SocketOptions::default();
    // The publisher may start later than us, or never: wait for it as long as we run.
    options.no_connect_timeout();
    let mut socket = SubSocket::with_options(options);
    tokio::select! {
        connected = socket.connect(&endpoint) => {
            if let Err(e) = connected {
                tracing::error!(%endpoint, cause = %e, "cannot connect");
                return;
            }
        }
        () = stop.cancelled() => return,
    }
    // Every topic, heartbeats included: the writer needs them to notice lost events.
    if let Err(e) = socket.subscribe("").await {
        tracing::error!(%endpoint, cause = %e, "cannot subscribe");
        return;
    }
    tracing::info!(%endpoint, "subscribed");
    loop {
        let message = tokio::select! {
            m = socket.recv() => m,
            () = stop.cancelled() => break,
        };
        match message {
            Ok(message) => match codec.decode(&message) {
                Ok(envelope) => {
                    let arrival = Arrival::Live {
                        endpoint: index,
                        envelope,
                    };
                    if arrivals.send(arrival).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    rejects.record(&endpoint, &e);
                }
            },
            // The connection dropped; the socket reconnects by itself.
            Err(e) => tracing::debug!(%endpoint, cause = %e, "receive interrupted"),
        }
    }
}
