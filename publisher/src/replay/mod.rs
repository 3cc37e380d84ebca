//! Replay (design §6): the window of recent events and the ROUTER socket that serves it to
//! subscribers catching up.

pub mod server;
pub mod window;

pub use server::{ReplayServer, start};
pub use window::{Bounds, Window};
