//! What every route handler can reach: the publishing path, verification, the results store,
//! the peers' requests and the request limits. Kept apart from the routes so no route file
//! imports another.

use crate::events::Events;
use crate::peers::PeerStatuses;
use crate::request_id::Tag;
use crate::results::Results;
use crate::verification::Verification;
use std::sync::Arc;
use std::time::Duration;

/// The router's state, shared by every request behind one [`Arc`]: axum clones the state for
/// each request, and one reference count is cheaper than cloning each handle.
pub type SharedState = Arc<AppState>;

/// What the handlers reach through [`SharedState`].
pub struct AppState {
    /// The publishing path.
    pub events: Events,
    /// Signature checks by the verifiers.
    pub verification: Verification,
    /// Signature requests and their outcomes.
    pub results: Arc<Results>,
    /// The tag this publisher's request ids carry.
    pub ids: Tag,
    /// The peer publishers' requests, as their events told.
    pub peers: Arc<PeerStatuses>,
    /// How long a lookup waits for a peer's event not yet arrived (`PEER_WAIT`).
    pub peer_wait: Duration,
    /// Longest accepted `param`, in bytes.
    pub max_param_bytes: usize,
    /// Largest accepted body, in bytes.
    pub max_body_bytes: usize,
    /// Longest `?wait=` honoured.
    pub max_wait: Duration,
}
