//! oxcelize: Excel/CSV processing over HTTP with chat workflows whose progress streams over WebSocket.
//! `App::build` binds both listeners (port 0 allowed) and exposes their addresses; `main.rs` and the
//! integration tests both start the service through it.

pub mod admission;
pub mod bot;
pub mod chat;
pub mod config;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod events;
pub mod files;
pub mod http;
pub mod leftovers;
#[cfg(feature = "loadgen")]
pub mod loadgen;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod ops;
pub mod table;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, HttpServer};

use crate::config::Config;
use crate::envelope::EnvelopeMeta;
use crate::events::Hub;

/// State shared by every handler of both listeners.
pub struct AppState {
    pub config: Arc<Config>,
    pub meta: EnvelopeMeta,
    pub hub: Arc<Hub>,
    /// HTTP and WebSocket metrics for `GET /metrics`.
    pub metrics: Arc<metrics::Metrics>,
    pub started_at: Instant,
    /// Extra readiness checks (the SQLite store adds one) reported by `GET {prefix}/health/ready`.
    pub readiness_probes: Vec<Arc<dyn ReadinessProbe>>,
    /// Conversations, files, runner and archives; `None` when `chat_workflows.enabled` is false.
    pub chat: Option<Arc<chat::Chat>>,
    /// Request bodies in transit per client address (`file.max_concurrent_uploads_per_ip`).
    pub upload_slots: Arc<http::body_guard::UploadSlots>,
    /// Slots, queue and memory budget of heavy work, shared by REST processing and workflow steps.
    pub admission: Arc<admission::Admission>,
    /// Where REST outputs are kept (`storage.backend`).
    pub files: Arc<files::Files>,
}

/// A dependency whose health decides readiness.
pub trait ReadinessProbe: Send + Sync {
    fn name(&self) -> &str;
    fn check(&self) -> Result<(), String>;
}

pub struct App {
    state: web::Data<AppState>,
    rest_addr: SocketAddr,
    ws_addr: Option<SocketAddr>,
    rest_server: Server,
    ws_server: Option<Server>,
}

/// Stops a running `App` from another task (tests, signal handling).
#[derive(Clone)]
pub struct AppHandle {
    state: web::Data<AppState>,
    rest: ServerHandle,
    ws: Option<ServerHandle>,
}

impl AppHandle {
    /// The shared state (tests reach the hub and the chat services through it).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Graceful stop: WebSocket clients get `server_shutdown` and close 1001, then both listeners stop.
    pub async fn stop(&self) {
        let cw = &self.state.config.chat_workflows;
        let grace = std::time::Duration::from_secs(cw.websocket.shutdown_grace_seconds);
        let job_grace = std::time::Duration::from_secs(cw.execution.shutdown_grace_seconds);
        // Sockets and jobs wind down together; events of jobs failed late are persisted for resume.
        let jobs = async {
            if let Some(chat) = &self.state.chat {
                chat.shutdown_jobs(job_grace).await;
            }
        };
        futures_util::future::join(self.state.hub.shutdown(grace), jobs).await;
        if let Some(ws) = &self.ws {
            ws.stop(true).await;
        }
        self.rest.stop(true).await;
    }
}

impl App {
    /// Creates the folders the service writes to, binds both listeners and prepares the servers.
    pub async fn build(config: Config) -> std::io::Result<App> {
        for dir in [&config.file.upload_folder, &config.file.output_folder] {
            std::fs::create_dir_all(dir)?;
        }
        // Nothing of this process is in flight yet: every temporary file found now is a leftover.
        let sweep_config = config.clone();
        let removed = tokio::task::spawn_blocking(move || leftovers::sweep(&sweep_config, None))
            .await
            .map_err(std::io::Error::other)?;
        if removed > 0 {
            log::info!("removed {removed} temporary file(s) left by an earlier run");
        }
        // An unusable store stops the start with the key to fix, before anything is served.
        let files = Arc::new(files::Files::from_config(&config).map_err(std::io::Error::other)?);
        if config.storage.backend == config::StorageBackend::S3 {
            files.check().await.map_err(std::io::Error::other)?;
        }
        let config = Arc::new(config);
        let hub = Arc::new(Hub::new(config.clone()));
        let admission = admission::Admission::new(admission::Limits::from_config(&config.limits));
        let mut readiness_probes: Vec<Arc<dyn ReadinessProbe>> = Vec::new();
        if !files.outputs.is_local() {
            readiness_probes.push(Arc::new(files::StoreProbe(files.outputs.clone())));
        }
        if config.cluster.enabled && config.chat_workflows.enabled {
            // Unreachable Redis stops start-up; the message names `cluster.redis_url`.
            let bus = events::bus::Bus::connect(&config).await.map_err(std::io::Error::other)?;
            hub.attach_bus(bus.clone());
            readiness_probes.push(Arc::new(events::bus::RedisProbe(bus)));
        }
        let chat = if config.chat_workflows.enabled {
            let (cfg, h, adm) = (config.clone(), hub.clone(), admission.clone());
            let chat = tokio::task::spawn_blocking(move || chat::Chat::open(cfg, h, adm))
                .await
                .map_err(std::io::Error::other)?
                .map_err(|e| std::io::Error::other(format!("chat store: {e}")))?;
            let chat = Arc::new(chat);
            let recovering = chat.clone();
            let recovered = tokio::task::spawn_blocking(move || recovering.recover_interrupted())
                .await
                .map_err(std::io::Error::other)?
                .map_err(|e| std::io::Error::other(format!("job recovery: {e}")))?;
            if recovered > 0 {
                log::warn!("{recovered} job(s) interrupted by the last stop were failed (or, in cluster mode, given back)");
            }
            chat.start_job_workers();
            readiness_probes.push(Arc::new(chat::store_api::StoreProbe(chat.store.clone())));
            Some(chat)
        } else {
            None
        };
        let state = web::Data::new(AppState {
            meta: EnvelopeMeta::from_config(&config),
            config: config.clone(),
            metrics: Arc::new(metrics::Metrics::new(
                hub.clone(),
                admission.clone(),
                chat.as_ref().and_then(|c| c.runner.queue_stats()),
            )),
            hub,
            started_at: Instant::now(),
            readiness_probes,
            chat: chat.clone(),
            upload_slots: Arc::default(),
            admission,
            files,
        });

        let workers = if config.app.workers == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
        } else {
            config.app.workers
        };

        let rest_state = state.clone();
        // TCP_NODELAY on both listeners: actix leaves Nagle on, and a small frame written while an earlier
        // one is unacknowledged then waits for the peer's delayed ACK (up to 40 ms on Linux). WebSocket
        // events are exactly such small frames.
        let rest_server = HttpServer::new(move || http::rest_app(rest_state.clone()))
            .workers(workers)
            .tcp_nodelay(true)
            .disable_signals()
            .bind((config.app.host.as_str(), config.app.port))?;
        let rest_addr = first_addr(&rest_server.addrs())?;
        let rest_server = rest_server.run();

        let (ws_addr, ws_server) = if config.chat_workflows.enabled {
            let ws_state = state.clone();
            let ws = &config.chat_workflows.websocket;
            let server = HttpServer::new(move || ws::server::ws_app(ws_state.clone()))
                .workers(workers)
                .tcp_nodelay(true)
                // A connection ends when its body has completed the close handshake (ws::body); actix's
                // default 1 s linger for the client's disconnect would only delay every close.
                .client_disconnect_timeout(std::time::Duration::ZERO)
                .disable_signals()
                .bind((ws.host.as_str(), ws.port))?;
            let addr = first_addr(&server.addrs())?;
            (Some(addr), Some(server.run()))
        } else {
            (None, None)
        };

        http::files::spawn_output_sweeper(state.clone());
        leftovers::spawn_sweeper(state.clone());
        memory::spawn_heap_trimmer(std::time::Duration::from_secs(config.app.memory_trim_interval_seconds));
        if let Some(chat) = &chat {
            chat::spawn_event_purge(chat);
            chat.spawn_job_purge();
            chat.spawn_backups();
        }

        Ok(App { state, rest_addr, ws_addr, rest_server, ws_server })
    }

    pub fn rest_addr(&self) -> SocketAddr {
        self.rest_addr
    }

    /// `None` when `chat_workflows.enabled` is false (the WebSocket server is then not started).
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    pub fn handle(&self) -> AppHandle {
        AppHandle {
            state: self.state.clone(),
            rest: self.rest_server.handle(),
            ws: self.ws_server.as_ref().map(|s| s.handle()),
        }
    }

    /// Runs both servers until they stop (see `AppHandle::stop`).
    pub async fn run(self) -> std::io::Result<()> {
        let rest = self.rest_server;
        match self.ws_server {
            Some(ws) => {
                let (a, b) = futures_util::future::join(rest, ws).await;
                a.and(b)
            }
            None => rest.await,
        }
    }

    /// Runs until SIGINT/SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) -> std::io::Result<()> {
        let handle = self.handle();
        tokio::spawn(async move {
            wait_for_signal().await;
            log::info!("shutdown signal received, stopping");
            handle.stop().await;
        });
        self.run().await
    }
}

fn first_addr(addrs: &[SocketAddr]) -> std::io::Result<SocketAddr> {
    addrs.first().copied().ok_or_else(|| std::io::Error::other("listener has no address"))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
