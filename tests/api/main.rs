//! Integration tests: each test starts the real `App` on port 0 with a temporary working directory and talks
//! to it over real HTTP (reqwest) and WebSocket (tokio-tungstenite) connections.

mod common;
mod foundation;
mod websocket;
mod ws_security;
