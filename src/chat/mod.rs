//! Chat workflows (chat-workflows.md): conversations in SQLite, their partitioned files, the workflow
//! runner and its jobs, dump/restore and database snapshots. The HTTP layer (`http::chat`) only translates.

mod admission;
pub mod archive;
pub mod backup;
pub mod conversations;
pub mod jobs;
pub mod model;
pub mod names;
pub mod pg_store;
pub mod queue;
pub mod storage;
pub mod store;
pub mod store_api;
pub mod workflow;

use serde_json::Value;

use crate::error::{ApiError, ErrorKind};
use crate::ops::OpError;

/// The one error type of the chat layer; `ApiError::from` maps each variant to its status.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// 404: unknown conversation, job or file.
    #[error("{0}")]
    NotFound(String),
    /// 422: invalid request, workflow or archive.
    #[error("{message}")]
    Validation { message: String, details: Option<Value> },
    /// 400: malformed request (e.g. a file path with separators).
    #[error("{0}")]
    BadRequest(String),
    /// 409: duplicate id, restore over an existing conversation, job already finished.
    #[error("{0}")]
    Conflict(String),
    /// 413: upload or archive over its limit.
    #[error("{0}")]
    TooLarge(String),
    /// 503: the service is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// An operation failed; mapped like the standalone endpoints.
    #[error(transparent)]
    Op(#[from] OpError),
    /// 500: database failure (text logged, not sent).
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// 500: file-system failure (text logged, not sent).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// 500: anything else unexpected.
    #[error("{0}")]
    Internal(String),
}

impl ChatError {
    pub fn validation(message: impl Into<String>) -> ChatError {
        ChatError::Validation { message: message.into(), details: None }
    }

    pub fn validation_with(message: impl Into<String>, details: Value) -> ChatError {
        ChatError::Validation { message: message.into(), details: Some(details) }
    }

    /// The HTTP error; unexpected failures read `{action}: Internal server error` (§1.3) and keep the cause
    /// for the log only.
    pub fn api(self, action: &str) -> ApiError {
        match self {
            ChatError::NotFound(m) => ApiError::not_found(m),
            ChatError::Validation { message, details } => {
                let e = ApiError::validation(message);
                match details {
                    Some(d) => e.with_details(d),
                    None => e,
                }
            }
            ChatError::BadRequest(m) => ApiError::bad_request(m),
            ChatError::Conflict(m) => ApiError::conflict(m),
            ChatError::TooLarge(m) => ApiError::payload_too_large(m),
            ChatError::Unavailable(m) => ApiError::new(ErrorKind::Unavailable, m),
            ChatError::Op(op) => {
                let api = ApiError::from_op(&op);
                if api.kind == ErrorKind::Internal {
                    ApiError::internal(format!("{action}: Internal server error"), op)
                } else {
                    api
                }
            }
            other @ (ChatError::Db(_) | ChatError::Io(_) | ChatError::Internal(_)) => {
                ApiError::internal(format!("{action}: Internal server error"), other)
            }
        }
    }
}

impl From<ChatError> for ApiError {
    fn from(err: ChatError) -> Self {
        err.api("Failed to process request")
    }
}

impl From<crate::table::TableError> for ChatError {
    fn from(err: crate::table::TableError) -> Self {
        ChatError::Op(OpError::Table(err))
    }
}

use std::sync::Arc;

use crate::config::Config;
use crate::events::Hub;

/// The chat services shared through `AppState::chat` (present when `chat_workflows.enabled`).
pub struct Chat {
    pub config: Arc<Config>,
    /// SQLite in the embedded mode, PostgreSQL when `cluster.enabled`.
    pub store: Arc<dyn store_api::Store>,
    pub storage: Arc<storage::Storage>,
    pub hub: Arc<Hub>,
    pub runner: Arc<jobs::JobRunner>,
    /// The processing budget every workflow step is admitted by (shared with the REST endpoints).
    pub admission: Arc<crate::admission::Admission>,
}

impl Chat {
    /// Opens the database (blocking: call on the blocking pool of the runtime that will run jobs) and
    /// installs it as the hub's durable event log and the runner as its active-job view.
    pub fn open(
        config: Arc<Config>,
        hub: Arc<Hub>,
        admission: Arc<crate::admission::Admission>,
    ) -> Result<Chat, ChatError> {
        let cw = &config.chat_workflows;
        let storage = Arc::new(storage::Storage::new(&config)?);
        let runner = Arc::new(jobs::JobRunner::new(cw.execution.max_concurrent_jobs));
        let store: Arc<dyn store_api::Store> = if config.cluster.enabled {
            let pg = Arc::new(pg_store::PgStore::connect(&pg_store::PgOptions::from_config(&config))?);
            // PostgreSQL is the job queue too.
            runner.enable_cluster(pg.clone(), &config.cluster);
            pg
        } else {
            Arc::new(store::ChatStore::open(
                &cw.storage.sqlite_path,
                cw.websocket.replay.max_events_per_chat,
            )?)
        };
        hub.set_log(store.clone());
        hub.set_active_jobs(runner.clone());
        Ok(Chat { config, store, storage, hub, runner, admission })
    }
}

/// Runs `work` every `period` on the blocking pool, forever (background maintenance).
pub(crate) fn spawn_periodic(
    name: &'static str,
    period: std::time::Duration,
    work: impl Fn() -> Result<(), ChatError> + Send + Sync + 'static,
) {
    let work = Arc::new(work);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            ticker.tick().await;
            let w = work.clone();
            match tokio::task::spawn_blocking(move || w()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::warn!("{name}: {e}"),
                Err(e) => log::error!("{name}: task failed: {e}"),
            }
        }
    });
}

/// Event retention by age (websocket.md C.6), checked every tenth of the retention period.
pub fn spawn_event_purge(chat: &Arc<Chat>) {
    let hours = chat.config.chat_workflows.websocket.replay.retention_hours;
    if hours == 0 {
        return;
    }
    let retention = chrono::Duration::hours(hours as i64);
    let period = std::time::Duration::from_secs(hours * 360)
        .clamp(std::time::Duration::from_secs(60), std::time::Duration::from_secs(3600));
    let store = chat.store.clone();
    spawn_periodic("event retention", period, move || {
        let before = model::format_ts(chrono::Utc::now() - retention);
        let n = store.purge_events(&before)?;
        if n > 0 {
            log::info!("event retention removed {n} event(s)");
        }
        Ok(())
    });
}
