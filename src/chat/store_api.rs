//! The chat layer's store as one trait: the SQLite [`ChatStore`] (embedded mode) and the PostgreSQL
//! [`PgStore`](super::pg_store::PgStore) (cluster mode) implement it, chosen once by `Chat::open`; handlers,
//! the job runner and the hub only hold an `Arc<dyn Store>`. Every method blocks: call it on the blocking pool.

use std::path::Path;

use serde_json::Value;

use super::model::{Conversation, ConversationRow, Job, Message, WorkflowStep};
use super::store::{ChatStore, ListRow};
use super::ChatError;
use crate::events::EventLog;

pub trait Store: EventLog + Send + Sync {
    /// The dependency's name in `GET {prefix}/health/ready` (`sqlite`, `postgresql`).
    fn backend(&self) -> &'static str;
    /// A trivial query: the readiness check.
    fn ping(&self) -> Result<(), ChatError>;
    /// The SQLite store itself, for the embedded mode's SQLite-only tools (tests hold its writer).
    fn as_sqlite(&self) -> Option<&ChatStore> {
        None
    }

    // --- conversations
    /// Inserts a new conversation; `Conflict` when the id exists.
    fn insert_conversation(&self, row: &ConversationRow) -> Result<(), ChatError>;
    fn conversation_row(&self, chat_id: &str) -> Result<Option<ConversationRow>, ChatError>;
    /// The full conversation with its children in §4.4 order.
    fn conversation(&self, chat_id: &str) -> Result<Option<Conversation>, ChatError>;
    /// One page of the list (newest first) with each row's latest `system` message, plus the total.
    fn list_conversations(
        &self,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<ListRow>, u64), ChatError>;
    fn participant_name_in_use(&self, name: &str) -> Result<bool, ChatError>;
    /// Sets the status and bumps `updated_at`.
    fn set_status(&self, chat_id: &str, status: &str) -> Result<(), ChatError>;
    /// Removes the conversation and every row that belongs to it, events included. False if absent.
    fn delete_conversation(&self, chat_id: &str) -> Result<bool, ChatError>;

    // --- messages
    fn add_message(
        &self,
        chat_id: &str,
        message_type: &str,
        content: &str,
        metadata: Value,
    ) -> Result<Message, ChatError>;
    fn messages(&self, chat_id: &str) -> Result<Vec<Message>, ChatError>;

    // --- files
    /// One row per `(chat_id, type, path)`; recording it again makes it the newest.
    fn record_file(&self, chat_id: &str, path: &str, file_type: &str) -> Result<(), ChatError>;
    fn remove_file_record(&self, chat_id: &str, path: &str, file_type: &str) -> Result<(), ChatError>;
    /// Paths of one type, oldest first.
    fn files(&self, chat_id: &str, file_type: &str) -> Result<Vec<String>, ChatError>;
    /// The most recently (re-)uploaded file.
    fn latest_upload(&self, chat_id: &str) -> Result<Option<String>, ChatError>;

    // --- steps and jobs
    /// Creates a pending job and its pending steps in one transaction.
    fn create_job(&self, job: &Job, steps: &[WorkflowStep]) -> Result<(), ChatError>;
    fn update_step(&self, step: &WorkflowStep) -> Result<(), ChatError>;
    fn job_steps(&self, job_id: &str) -> Result<Vec<WorkflowStep>, ChatError>;
    fn job(&self, job_id: &str) -> Result<Option<Job>, ChatError>;
    /// Jobs of a chat, newest first.
    fn jobs_of_chat(&self, chat_id: &str) -> Result<Vec<Job>, ChatError>;
    fn mark_job_running(&self, job_id: &str, started_at: &str) -> Result<(), ChatError>;
    fn finish_job(
        &self,
        job_id: &str,
        status: &str,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> Result<(), ChatError>;
    fn set_cancel_requested(&self, job_id: &str) -> Result<(), ChatError>;
    /// Jobs left `pending` or `running` that this process must recover at start (the embedded mode; in
    /// PostgreSQL only the ones this node submitted. Cluster mode recovers through the job queue instead:
    /// see `queue::JobQueue::release`).
    fn unfinished_jobs(&self) -> Result<Vec<Job>, ChatError>;
    /// Deletes finished jobs completed before `before`; returns how many.
    fn purge_jobs(&self, before: &str) -> Result<usize, ChatError>;

    // --- bot contexts
    /// Bot state back to `idle` after an interrupted run (no-op for chats without a bot context).
    fn reset_bot_state(&self, chat_id: &str) -> Result<(), ChatError>;
    /// The persisted bot context as JSON, if any.
    fn bot_context(&self, chat_id: &str) -> Result<Option<Value>, ChatError>;
    /// Upserts the bot context from its JSON form (the shape `bot_context` returns).
    fn save_bot_context(&self, chat_id: &str, ctx: &Value) -> Result<(), ChatError>;

    // --- restore, events, snapshots
    /// Inserts a whole conversation (restore) in one transaction; with `overwrite` an existing one of the
    /// same id is replaced, otherwise it is a `Conflict`.
    fn insert_full(
        &self,
        conv: &Conversation,
        overwrite: bool,
        bot_context: Option<&Value>,
    ) -> Result<(), ChatError>;
    /// Events with `seq > after`, ascending, at most `limit`.
    fn events_page(&self, chat_id: &str, after: u64, limit: usize) -> Result<Vec<(u64, String)>, ChatError>;
    /// Time-based retention: removes events created before `before`, keeping each chat's newest one.
    fn purge_events(&self, before: &str) -> Result<usize, ChatError>;
    /// A consistent snapshot of the whole store written to `dest` as a SQLite database of the embedded
    /// schema (what `POST /chat/workflows/backup` keeps).
    fn backup_to(&self, dest: &Path) -> Result<(), ChatError>;
}

/// The embedded store: every method is `ChatStore`'s own.
impl Store for ChatStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }
    fn ping(&self) -> Result<(), ChatError> {
        ChatStore::ping(self)
    }
    fn as_sqlite(&self) -> Option<&ChatStore> {
        Some(self)
    }
    fn insert_conversation(&self, row: &ConversationRow) -> Result<(), ChatError> {
        ChatStore::insert_conversation(self, row)
    }
    fn conversation_row(&self, chat_id: &str) -> Result<Option<ConversationRow>, ChatError> {
        ChatStore::conversation_row(self, chat_id)
    }
    fn conversation(&self, chat_id: &str) -> Result<Option<Conversation>, ChatError> {
        ChatStore::conversation(self, chat_id)
    }
    fn list_conversations(
        &self,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<ListRow>, u64), ChatError> {
        ChatStore::list_conversations(self, status, limit, offset)
    }
    fn participant_name_in_use(&self, name: &str) -> Result<bool, ChatError> {
        ChatStore::participant_name_in_use(self, name)
    }
    fn set_status(&self, chat_id: &str, status: &str) -> Result<(), ChatError> {
        ChatStore::set_status(self, chat_id, status)
    }
    fn delete_conversation(&self, chat_id: &str) -> Result<bool, ChatError> {
        ChatStore::delete_conversation(self, chat_id)
    }
    fn add_message(
        &self,
        chat_id: &str,
        message_type: &str,
        content: &str,
        metadata: Value,
    ) -> Result<Message, ChatError> {
        ChatStore::add_message(self, chat_id, message_type, content, metadata)
    }
    fn messages(&self, chat_id: &str) -> Result<Vec<Message>, ChatError> {
        ChatStore::messages(self, chat_id)
    }
    fn record_file(&self, chat_id: &str, path: &str, file_type: &str) -> Result<(), ChatError> {
        ChatStore::record_file(self, chat_id, path, file_type)
    }
    fn remove_file_record(&self, chat_id: &str, path: &str, file_type: &str) -> Result<(), ChatError> {
        ChatStore::remove_file_record(self, chat_id, path, file_type)
    }
    fn files(&self, chat_id: &str, file_type: &str) -> Result<Vec<String>, ChatError> {
        ChatStore::files(self, chat_id, file_type)
    }
    fn latest_upload(&self, chat_id: &str) -> Result<Option<String>, ChatError> {
        ChatStore::latest_upload(self, chat_id)
    }
    fn create_job(&self, job: &Job, steps: &[WorkflowStep]) -> Result<(), ChatError> {
        ChatStore::create_job(self, job, steps)
    }
    fn update_step(&self, step: &WorkflowStep) -> Result<(), ChatError> {
        ChatStore::update_step(self, step)
    }
    fn job_steps(&self, job_id: &str) -> Result<Vec<WorkflowStep>, ChatError> {
        ChatStore::job_steps(self, job_id)
    }
    fn job(&self, job_id: &str) -> Result<Option<Job>, ChatError> {
        ChatStore::job(self, job_id)
    }
    fn jobs_of_chat(&self, chat_id: &str) -> Result<Vec<Job>, ChatError> {
        ChatStore::jobs_of_chat(self, chat_id)
    }
    fn mark_job_running(&self, job_id: &str, started_at: &str) -> Result<(), ChatError> {
        ChatStore::mark_job_running(self, job_id, started_at)
    }
    fn finish_job(
        &self,
        job_id: &str,
        status: &str,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> Result<(), ChatError> {
        ChatStore::finish_job(self, job_id, status, result, error)
    }
    fn set_cancel_requested(&self, job_id: &str) -> Result<(), ChatError> {
        ChatStore::set_cancel_requested(self, job_id)
    }
    fn unfinished_jobs(&self) -> Result<Vec<Job>, ChatError> {
        ChatStore::unfinished_jobs(self)
    }
    fn purge_jobs(&self, before: &str) -> Result<usize, ChatError> {
        ChatStore::purge_jobs(self, before)
    }
    fn reset_bot_state(&self, chat_id: &str) -> Result<(), ChatError> {
        ChatStore::reset_bot_state(self, chat_id)
    }
    fn bot_context(&self, chat_id: &str) -> Result<Option<Value>, ChatError> {
        ChatStore::bot_context(self, chat_id)
    }
    fn save_bot_context(&self, chat_id: &str, ctx: &Value) -> Result<(), ChatError> {
        ChatStore::save_bot_context(self, chat_id, ctx)
    }
    fn insert_full(
        &self,
        conv: &Conversation,
        overwrite: bool,
        bot_context: Option<&Value>,
    ) -> Result<(), ChatError> {
        ChatStore::insert_full(self, conv, overwrite, bot_context)
    }
    fn events_page(&self, chat_id: &str, after: u64, limit: usize) -> Result<Vec<(u64, String)>, ChatError> {
        ChatStore::events_page(self, chat_id, after, limit)
    }
    fn purge_events(&self, before: &str) -> Result<usize, ChatError> {
        ChatStore::purge_events(self, before)
    }
    fn backup_to(&self, dest: &Path) -> Result<(), ChatError> {
        ChatStore::backup_to(self, dest)
    }
}

/// Readiness check for `GET {prefix}/health/ready`, named after the store's backend.
pub struct StoreProbe(pub std::sync::Arc<dyn Store>);

impl crate::ReadinessProbe for StoreProbe {
    fn name(&self) -> &str {
        self.0.backend()
    }

    fn check(&self) -> Result<(), String> {
        self.0.ping().map_err(|e| e.to_string())
    }
}
