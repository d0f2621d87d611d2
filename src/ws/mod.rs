//! The WebSocket side: the listener and routing (`server`), one connection's protocol (`session`), the
//! inbound message parser (`message`), origin and token checks (`origin`, `auth`), the test-only echo
//! endpoint used by the Autobahn conformance run (`echo`) and the protocol's AsyncAPI document (`asyncapi`).

pub mod asyncapi;
pub mod auth;
pub mod body;
pub mod echo;
pub mod message;
pub mod origin;
pub mod server;
pub mod session;
