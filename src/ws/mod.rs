//! The WebSocket side: the listener and routing (`server`) and one connection's protocol (`session`).

pub mod server;
pub mod session;
