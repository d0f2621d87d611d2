//! Integration tests: each test starts the real `App` on port 0 with a temporary working directory and talks
//! to it over real HTTP (reqwest) and WebSocket (tokio-tungstenite) connections.

mod admission;
mod api_docs;
mod asyncapi;
mod bind;
mod bot;
mod chat_archive;
mod chat_events;
mod chat_socket;
mod chat_support;
mod chat_workflows;
mod cluster_bus;
mod cluster_jobs;
mod cluster_pg;
mod common;
mod console;
mod csv;
mod csv_streaming;
mod downloads;
mod excel;
mod fixtures;
mod foundation;
mod hostile_input;
mod hostile_io;
mod json;
mod normalization;
mod pg;
mod refusals;
mod s3_storage;
mod sql;
mod step_engine;
mod store_conformance;
mod streamed_generation;
mod transform_support;
mod websocket;
mod ws_security;
