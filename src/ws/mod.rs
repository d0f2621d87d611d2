//! The WebSocket side: the listener and routing (`server`), one connection's protocol (`session`), the
//! inbound message parser (`message`), origin and token checks (`origin`, `auth`) and the test-only echo
//! endpoint used by the Autobahn conformance run (`echo`).

pub mod auth;
pub mod body;
pub mod echo;
pub mod message;
pub mod origin;
pub mod server;
pub mod session;
