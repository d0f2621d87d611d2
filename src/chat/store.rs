//! The SQLite store (chat-workflows.md §4): the reference tables column for column, the version-2
//! additions (jobs, bot contexts, the WebSocket event log, service metadata), the 0 → 2 migration, and
//! every query of the chat layer. One writer connection and a small pool of readers, all in WAL mode;
//! every method blocks and must run on the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use serde_json::Value;

use super::model::{
    json_object, normalize_ts, now_ts, Conversation, ConversationRow, Job, Message, WorkflowStep,
};
use super::ChatError;
use crate::events::EventLog;

pub const SCHEMA_VERSION: i64 = 2;
const MAX_IDLE_READERS: usize = 8;

const REFERENCE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS conversations (
  chat_id TEXT PRIMARY KEY,
  participant_name TEXT NOT NULL,
  status TEXT NOT NULL,
  partition_key TEXT,
  metadata TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
  message_id TEXT PRIMARY KEY,
  chat_id TEXT NOT NULL,
  message_type TEXT NOT NULL,
  content TEXT NOT NULL,
  metadata TEXT,
  created_at TEXT NOT NULL,
  FOREIGN KEY (chat_id) REFERENCES conversations(chat_id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS workflow_steps (
  step_id TEXT PRIMARY KEY,
  chat_id TEXT NOT NULL,
  operation TEXT NOT NULL,
  arguments TEXT NOT NULL,
  input_file TEXT,
  output_file TEXT,
  status TEXT NOT NULL,
  progress INTEGER DEFAULT 0,
  error_message TEXT,
  started_at TEXT,
  completed_at TEXT,
  FOREIGN KEY (chat_id) REFERENCES conversations(chat_id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS files (
  file_id INTEGER PRIMARY KEY AUTOINCREMENT,
  chat_id TEXT NOT NULL,
  file_path TEXT NOT NULL,
  file_type TEXT NOT NULL,
  created_at TEXT NOT NULL,
  FOREIGN KEY (chat_id) REFERENCES conversations(chat_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS idx_conv_status   ON conversations(status);
CREATE INDEX IF NOT EXISTS idx_conv_created  ON conversations(created_at);
CREATE INDEX IF NOT EXISTS idx_messages_chat ON messages(chat_id);
CREATE INDEX IF NOT EXISTS idx_steps_chat    ON workflow_steps(chat_id);
CREATE INDEX IF NOT EXISTS idx_files_chat    ON files(chat_id);
";

const V2_SCHEMA: &str = "
CREATE UNIQUE INDEX IF NOT EXISTS idx_files_unique ON files(chat_id, file_type, file_path);
CREATE INDEX IF NOT EXISTS idx_steps_job ON workflow_steps(job_id);
CREATE TABLE IF NOT EXISTS jobs (
  job_id TEXT PRIMARY KEY,
  chat_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  status TEXT NOT NULL,
  submitted_at TEXT NOT NULL,
  started_at TEXT,
  completed_at TEXT,
  result TEXT,
  error TEXT,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  base_url TEXT,
  FOREIGN KEY (chat_id) REFERENCES conversations(chat_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS idx_jobs_chat ON jobs(chat_id, submitted_at);
CREATE INDEX IF NOT EXISTS idx_jobs_status ON jobs(status);
CREATE TABLE IF NOT EXISTS bot_contexts (
  chat_id TEXT PRIMARY KEY,
  current_state TEXT NOT NULL DEFAULT 'idle',
  previous_state TEXT,
  pending_workflow TEXT,
  pending_job_id TEXT,
  workflow_params TEXT NOT NULL DEFAULT '{}',
  intent_history TEXT NOT NULL DEFAULT '[]',
  user_preferences TEXT NOT NULL DEFAULT '{}',
  metadata TEXT NOT NULL DEFAULT '{}',
  last_message_time TEXT,
  updated_at TEXT NOT NULL,
  FOREIGN KEY (chat_id) REFERENCES conversations(chat_id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS ws_events (
  chat_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  type TEXT NOT NULL,
  payload TEXT NOT NULL,
  created_at TEXT NOT NULL,
  PRIMARY KEY (chat_id, seq)
);
CREATE INDEX IF NOT EXISTS idx_ws_events_created ON ws_events(created_at);
CREATE TABLE IF NOT EXISTS service_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// Timestamp columns rewritten to the §1.4 form by the migration.
const TIMESTAMP_COLUMNS: [(&str, &str, &[&str]); 4] = [
    ("conversations", "chat_id", &["created_at", "updated_at"]),
    ("messages", "message_id", &["created_at"]),
    ("workflow_steps", "step_id", &["started_at", "completed_at"]),
    ("files", "file_id", &["created_at"]),
];

/// A conversation row with its latest `system` message (`bot_message` of the list, §2.1).
pub type ListRow = (ConversationRow, Option<String>);

pub struct ChatStore {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    epoch: String,
    max_events_per_chat: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// §4.3 connection settings.
fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_millis(5000))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(1))?.collect::<Result<Vec<_>, _>>()?;
    Ok(names.iter().any(|n| n == column))
}

/// Migration 0 → 2 (§4.3): idempotent, in one transaction.
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let tx = conn.transaction()?;
    tx.execute_batch(REFERENCE_SCHEMA)?;
    for (column, kind) in [("job_id", "TEXT"), ("step_index", "INTEGER"), ("created_at", "TEXT")] {
        if !has_column(&tx, "workflow_steps", column)? {
            tx.execute_batch(&format!("ALTER TABLE workflow_steps ADD COLUMN {column} {kind}"))?;
        }
    }
    if version < SCHEMA_VERSION {
        // Keep the newest row per (chat_id, file_type, file_path) before the unique index exists.
        tx.execute(
            "DELETE FROM files WHERE file_id IN (SELECT file_id FROM (SELECT file_id, ROW_NUMBER() OVER \
             (PARTITION BY chat_id, file_type, file_path ORDER BY created_at DESC, file_id DESC) AS rn \
             FROM files) WHERE rn > 1)",
            [],
        )?;
        for (table, key, columns) in TIMESTAMP_COLUMNS {
            for column in columns {
                let rows: Vec<(Value, String)> = {
                    let mut stmt = tx.prepare(&format!(
                        "SELECT {key}, {column} FROM {table} WHERE {column} IS NOT NULL"
                    ))?;
                    let mapped = stmt.query_map([], |r| {
                        let k: rusqlite::types::Value = r.get(0)?;
                        let key = match k {
                            rusqlite::types::Value::Integer(i) => Value::from(i),
                            rusqlite::types::Value::Text(s) => Value::String(s),
                            _ => Value::Null,
                        };
                        Ok((key, r.get::<_, String>(1)?))
                    })?;
                    mapped.collect::<Result<Vec<_>, _>>()?
                };
                let sql = format!("UPDATE {table} SET {column} = ?1 WHERE {key} = ?2");
                for (k, ts) in rows {
                    let fixed = normalize_ts(&ts);
                    if fixed != ts {
                        match k {
                            Value::Number(n) => tx.execute(&sql, params![fixed, n.as_i64()])?,
                            Value::String(s) => tx.execute(&sql, params![fixed, s])?,
                            _ => 0,
                        };
                    }
                }
            }
        }
    }
    tx.execute_batch(V2_SCHEMA)?;
    let epoch = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    tx.execute("INSERT OR IGNORE INTO service_meta(key, value) VALUES ('event_epoch', ?1)", [epoch])?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

fn row_conversation(r: &Row<'_>) -> rusqlite::Result<ConversationRow> {
    Ok(ConversationRow {
        chat_id: r.get(0)?,
        participant_name: r.get(1)?,
        status: r.get(2)?,
        partition_key: r.get(3)?,
        metadata: json_object(r.get::<_, Option<String>>(4)?.as_deref()),
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

const CONV_COLUMNS: &str =
    "chat_id, participant_name, status, partition_key, metadata, created_at, updated_at";

fn row_message(r: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        message_id: r.get(0)?,
        message_type: r.get(1)?,
        content: r.get(2)?,
        metadata: json_object(r.get::<_, Option<String>>(3)?.as_deref()),
        created_at: r.get(4)?,
    })
}

const STEP_COLUMNS: &str = "step_id, operation, arguments, input_file, output_file, status, progress, \
                            error_message, started_at, completed_at, job_id, step_index";

fn row_step(r: &Row<'_>) -> rusqlite::Result<WorkflowStep> {
    let arguments = r.get::<_, String>(2)?;
    Ok(WorkflowStep {
        step_id: r.get(0)?,
        operation: r.get(1)?,
        arguments: serde_json::from_str(&arguments).unwrap_or(Value::Object(Default::default())),
        input_file: r.get(3)?,
        output_file: r.get(4)?,
        status: r.get(5)?,
        progress: r.get::<_, Option<i64>>(6)?.unwrap_or(0),
        error_message: r.get(7)?,
        started_at: r.get(8)?,
        completed_at: r.get(9)?,
        job_id: r.get(10)?,
        step_index: r.get(11)?,
    })
}

const JOB_COLUMNS: &str =
    "job_id, chat_id, kind, status, submitted_at, started_at, completed_at, result, error, cancel_requested, base_url";

fn row_job(r: &Row<'_>) -> rusqlite::Result<Job> {
    let result: Option<String> = r.get(7)?;
    Ok(Job {
        job_id: r.get(0)?,
        chat_id: r.get(1)?,
        kind: r.get(2)?,
        status: r.get(3)?,
        submitted_at: r.get(4)?,
        started_at: r.get(5)?,
        completed_at: r.get(6)?,
        result: result.and_then(|t| serde_json::from_str(&t).ok()),
        error: r.get(8)?,
        cancel_requested: r.get::<_, i64>(9)? != 0,
        base_url: r.get(10)?,
    })
}

fn insert_step(conn: &Connection, chat_id: &str, s: &WorkflowStep) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO workflow_steps (step_id, chat_id, operation, arguments, input_file, output_file, status, \
         progress, error_message, started_at, completed_at, job_id, step_index, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            s.step_id,
            chat_id,
            s.operation,
            s.arguments.to_string(),
            s.input_file,
            s.output_file,
            s.status,
            s.progress,
            s.error_message,
            s.started_at,
            s.completed_at,
            s.job_id,
            s.step_index,
            now_ts()
        ],
    )?;
    Ok(())
}

impl ChatStore {
    /// Opens (creating parent folders and the file if needed) and migrates the database.
    pub fn open(path: &Path, max_events_per_chat: u64) -> Result<ChatStore, ChatError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut writer = open_connection(path)?;
        migrate(&mut writer)?;
        let epoch: String =
            writer.query_row("SELECT value FROM service_meta WHERE key = 'event_epoch'", [], |r| r.get(0))?;
        Ok(ChatStore {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            epoch,
            max_events_per_chat: max_events_per_chat.max(1),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a pooled reader connection (other chat modules, e.g. the bot context, use this too).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, ChatError> {
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(c) => c,
            None => open_connection(&self.path)?,
        };
        let out = f(&conn);
        let mut idle = lock(&self.readers);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        Ok(out?)
    }

    /// Runs `f` on the single writer connection. Never publish events from inside `f`: `Hub::publish`
    /// appends to the log through this same connection.
    pub fn write<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, ChatError> {
        let mut conn = lock(&self.writer);
        Ok(f(&mut conn)?)
    }

    /// `SELECT 1`: the readiness check.
    pub fn ping(&self) -> Result<(), ChatError> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }

    // --- conversations -------------------------------------------------------------------------------

    /// Inserts a new conversation; 409 when the id exists.
    pub fn insert_conversation(&self, row: &ConversationRow) -> Result<(), ChatError> {
        let inserted = self.write(|c| {
            c.execute(
                &format!(
                    "INSERT OR IGNORE INTO conversations ({CONV_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ),
                params![
                    row.chat_id,
                    row.participant_name,
                    row.status,
                    row.partition_key,
                    row.metadata.to_string(),
                    row.created_at,
                    row.updated_at
                ],
            )
        })?;
        if inserted == 0 {
            return Err(ChatError::Conflict(format!("Conversation already exists: {}", row.chat_id)));
        }
        Ok(())
    }

    pub fn conversation_row(&self, chat_id: &str) -> Result<Option<ConversationRow>, ChatError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {CONV_COLUMNS} FROM conversations WHERE chat_id = ?1"),
                [chat_id],
                row_conversation,
            )
            .optional()
        })
    }

    /// The full conversation (§2.1) with children in §4.4 order.
    pub fn conversation(&self, chat_id: &str) -> Result<Option<Conversation>, ChatError> {
        self.read(|c| {
            let Some(row) = c
                .query_row(
                    &format!("SELECT {CONV_COLUMNS} FROM conversations WHERE chat_id = ?1"),
                    [chat_id],
                    row_conversation,
                )
                .optional()?
            else {
                return Ok(None);
            };
            let messages = query_messages(c, chat_id)?;
            let workflow_steps = {
                let mut stmt = c.prepare(&format!(
                    "SELECT {STEP_COLUMNS} FROM workflow_steps WHERE chat_id = ?1 ORDER BY rowid"
                ))?;
                let rows = stmt.query_map([chat_id], row_step)?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            let uploaded_files = query_files(c, chat_id, "uploaded")?;
            let output_files = query_files(c, chat_id, "output")?;
            Ok(Some(row.with_children(messages, workflow_steps, uploaded_files, output_files)))
        })
    }

    /// One page of the list (newest first) with each row's latest `system` message, plus the total.
    pub fn list_conversations(
        &self,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<ListRow>, u64), ChatError> {
        self.read(|c| {
            let total: i64 = c.query_row(
                "SELECT COUNT(*) FROM conversations WHERE (?1 IS NULL OR status = ?1)",
                [status],
                |r| r.get(0),
            )?;
            let mut stmt = c.prepare(&format!(
                "SELECT {CONV_COLUMNS}, (SELECT content FROM messages m WHERE m.chat_id = conversations.chat_id \
                 AND m.message_type = 'system' ORDER BY m.created_at DESC, m.rowid DESC LIMIT 1) \
                 FROM conversations WHERE (?1 IS NULL OR status = ?1) ORDER BY created_at DESC, rowid DESC \
                 LIMIT ?2 OFFSET ?3"
            ))?;
            let rows = stmt.query_map(params![status, limit, offset], |r| {
                Ok((row_conversation(r)?, r.get::<_, Option<String>>(7)?))
            })?;
            Ok((rows.collect::<Result<Vec<_>, _>>()?, total.max(0) as u64))
        })
    }

    pub fn participant_name_in_use(&self, name: &str) -> Result<bool, ChatError> {
        self.read(|c| {
            c.query_row("SELECT 1 FROM conversations WHERE participant_name = ?1 LIMIT 1", [name], |_| Ok(()))
                .optional()
                .map(|o| o.is_some())
        })
    }

    /// Sets the status and bumps `updated_at`.
    pub fn set_status(&self, chat_id: &str, status: &str) -> Result<(), ChatError> {
        self.write(|c| {
            c.execute(
                "UPDATE conversations SET status = ?1, updated_at = ?2 WHERE chat_id = ?3",
                params![status, now_ts(), chat_id],
            )
        })?;
        Ok(())
    }

    /// Removes the conversation and every row that belongs to it, events included. False if absent.
    pub fn delete_conversation(&self, chat_id: &str) -> Result<bool, ChatError> {
        self.write(|c| {
            let tx = c.transaction()?;
            for table in ["messages", "workflow_steps", "files", "jobs", "bot_contexts", "ws_events"] {
                tx.execute(&format!("DELETE FROM {table} WHERE chat_id = ?1"), [chat_id])?;
            }
            let n = tx.execute("DELETE FROM conversations WHERE chat_id = ?1", [chat_id])?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    // --- messages --------------------------------------------------------------------------------------

    pub fn add_message(
        &self,
        chat_id: &str,
        message_type: &str,
        content: &str,
        metadata: Value,
    ) -> Result<Message, ChatError> {
        let message = Message {
            message_id: super::model::new_uuid(),
            message_type: message_type.to_string(),
            content: content.to_string(),
            metadata,
            created_at: now_ts(),
        };
        self.write(|c| {
            c.execute(
                "INSERT INTO messages (message_id, chat_id, message_type, content, metadata, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    message.message_id,
                    chat_id,
                    message.message_type,
                    message.content,
                    message.metadata.to_string(),
                    message.created_at
                ],
            )
        })?;
        Ok(message)
    }

    pub fn messages(&self, chat_id: &str) -> Result<Vec<Message>, ChatError> {
        self.read(|c| query_messages(c, chat_id))
    }

    // --- files ---------------------------------------------------------------------------------------

    /// One row per `(chat_id, type, path)`; recording it again makes it the newest (§5.4).
    pub fn record_file(&self, chat_id: &str, path: &str, file_type: &str) -> Result<(), ChatError> {
        self.write(|c| {
            c.execute(
                "INSERT INTO files (chat_id, file_path, file_type, created_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(chat_id, file_type, file_path) DO UPDATE SET created_at = excluded.created_at",
                params![chat_id, path, file_type, now_ts()],
            )
        })?;
        Ok(())
    }

    pub fn remove_file_record(&self, chat_id: &str, path: &str, file_type: &str) -> Result<(), ChatError> {
        self.write(|c| {
            c.execute(
                "DELETE FROM files WHERE chat_id = ?1 AND file_path = ?2 AND file_type = ?3",
                params![chat_id, path, file_type],
            )
        })?;
        Ok(())
    }

    /// Paths of one type in §4.4 order (oldest first).
    pub fn files(&self, chat_id: &str, file_type: &str) -> Result<Vec<String>, ChatError> {
        self.read(|c| query_files(c, chat_id, file_type))
    }

    /// The most recently (re-)uploaded file.
    pub fn latest_upload(&self, chat_id: &str) -> Result<Option<String>, ChatError> {
        self.read(|c| {
            c.query_row(
                "SELECT file_path FROM files WHERE chat_id = ?1 AND file_type = 'uploaded' \
                 ORDER BY created_at DESC, file_id DESC LIMIT 1",
                [chat_id],
                |r| r.get(0),
            )
            .optional()
        })
    }

    // --- steps and jobs ----------------------------------------------------------------------------------

    /// Creates a pending job and its pending steps in one transaction (§9.6 step 2).
    pub fn create_job(&self, job: &Job, steps: &[WorkflowStep]) -> Result<(), ChatError> {
        self.write(|c| {
            let tx = c.transaction()?;
            tx.execute(
                &format!(
                    "INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ),
                params![
                    job.job_id,
                    job.chat_id,
                    job.kind,
                    job.status,
                    job.submitted_at,
                    job.started_at,
                    job.completed_at,
                    job.result.as_ref().map(Value::to_string),
                    job.error,
                    job.cancel_requested as i64,
                    job.base_url
                ],
            )?;
            for step in steps {
                insert_step(&tx, &job.chat_id, step)?;
            }
            tx.commit()
        })
    }

    /// Step upsert (§4.1 with the IMPROVE: `started_at` and `input_file` are updated too).
    pub fn update_step(&self, step: &WorkflowStep) -> Result<(), ChatError> {
        self.write(|c| {
            c.execute(
                "UPDATE workflow_steps SET status = ?1, progress = ?2, output_file = ?3, error_message = ?4, \
                 completed_at = ?5, started_at = ?6, input_file = ?7 WHERE step_id = ?8",
                params![
                    step.status,
                    step.progress,
                    step.output_file,
                    step.error_message,
                    step.completed_at,
                    step.started_at,
                    step.input_file,
                    step.step_id
                ],
            )
        })?;
        Ok(())
    }

    pub fn job_steps(&self, job_id: &str) -> Result<Vec<WorkflowStep>, ChatError> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {STEP_COLUMNS} FROM workflow_steps WHERE job_id = ?1 ORDER BY step_index, rowid"
            ))?;
            let rows = stmt.query_map([job_id], row_step)?;
            rows.collect()
        })
    }

    pub fn job(&self, job_id: &str) -> Result<Option<Job>, ChatError> {
        self.read(|c| {
            c.query_row(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?1"), [job_id], row_job)
                .optional()
        })
    }

    /// Jobs of a chat, newest first.
    pub fn jobs_of_chat(&self, chat_id: &str) -> Result<Vec<Job>, ChatError> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE chat_id = ?1 ORDER BY submitted_at DESC, rowid DESC"
            ))?;
            let rows = stmt.query_map([chat_id], row_job)?;
            rows.collect()
        })
    }

    pub fn mark_job_running(&self, job_id: &str, started_at: &str) -> Result<(), ChatError> {
        self.write(|c| {
            c.execute(
                "UPDATE jobs SET status = 'running', started_at = ?1 WHERE job_id = ?2",
                params![started_at, job_id],
            )
        })?;
        Ok(())
    }

    pub fn finish_job(
        &self,
        job_id: &str,
        status: &str,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> Result<(), ChatError> {
        self.write(|c| {
            c.execute(
                "UPDATE jobs SET status = ?1, result = ?2, error = ?3, completed_at = ?4 WHERE job_id = ?5",
                params![status, result.map(Value::to_string), error, now_ts(), job_id],
            )
        })?;
        Ok(())
    }

    pub fn set_cancel_requested(&self, job_id: &str) -> Result<(), ChatError> {
        self.write(|c| c.execute("UPDATE jobs SET cancel_requested = 1 WHERE job_id = ?1", [job_id]))?;
        Ok(())
    }

    /// Jobs left `pending` or `running` (restart recovery, §9.8).
    pub fn unfinished_jobs(&self) -> Result<Vec<Job>, ChatError> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE status IN ('pending', 'running') ORDER BY submitted_at, rowid"
            ))?;
            let rows = stmt.query_map([], row_job)?;
            rows.collect()
        })
    }

    /// Deletes finished jobs completed before `before`; returns how many.
    pub fn purge_jobs(&self, before: &str) -> Result<usize, ChatError> {
        self.write(|c| {
            c.execute(
                "DELETE FROM jobs WHERE status IN ('completed', 'failed', 'cancelled') AND completed_at < ?1",
                [before],
            )
        })
    }

    /// Bot state back to `idle` after an interrupted run (no-op for chats without a bot context).
    pub fn reset_bot_state(&self, chat_id: &str) -> Result<(), ChatError> {
        self.write(|c| {
            c.execute(
                "UPDATE bot_contexts SET previous_state = current_state, current_state = 'idle', \
                 pending_job_id = NULL, updated_at = ?1 WHERE chat_id = ?2 AND current_state != 'idle'",
                params![now_ts(), chat_id],
            )
        })?;
        Ok(())
    }

    /// The persisted bot context row as JSON (for dumps), if any.
    pub fn bot_context(&self, chat_id: &str) -> Result<Option<Value>, ChatError> {
        self.read(|c| {
            c.query_row(
                "SELECT current_state, previous_state, pending_workflow, pending_job_id, workflow_params, \
                 intent_history, user_preferences, metadata, last_message_time, updated_at \
                 FROM bot_contexts WHERE chat_id = ?1",
                [chat_id],
                |r| {
                    let parse = |t: Option<String>| t.and_then(|t| serde_json::from_str::<Value>(&t).ok());
                    Ok(serde_json::json!({
                        "current_state": r.get::<_, String>(0)?,
                        "previous_state": r.get::<_, Option<String>>(1)?,
                        "pending_workflow": parse(r.get(2)?),
                        "pending_job_id": r.get::<_, Option<String>>(3)?,
                        "workflow_params": parse(r.get(4)?),
                        "intent_history": parse(r.get(5)?),
                        "user_preferences": parse(r.get(6)?),
                        "metadata": parse(r.get(7)?),
                        "last_message_time": r.get::<_, Option<String>>(8)?,
                        "updated_at": r.get::<_, String>(9)?,
                    }))
                },
            )
            .optional()
        })
    }

    /// Upserts the bot context row from its JSON form (the shape [`ChatStore::bot_context`] returns; JSON
    /// columns are stored as JSON text, absent ones take the column defaults).
    pub fn save_bot_context(&self, chat_id: &str, ctx: &Value) -> Result<(), ChatError> {
        let json_text = |k: &str, default: &str| match ctx.get(k) {
            None | Some(Value::Null) => default.to_string(),
            Some(v) => v.to_string(),
        };
        let plain = |k: &str| ctx.get(k).and_then(Value::as_str).map(str::to_string);
        self.write(|c| {
            c.execute(
                "INSERT INTO bot_contexts (chat_id, current_state, previous_state, pending_workflow, \
                 pending_job_id, workflow_params, intent_history, user_preferences, metadata, \
                 last_message_time, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                 ON CONFLICT(chat_id) DO UPDATE SET current_state = excluded.current_state, \
                 previous_state = excluded.previous_state, pending_workflow = excluded.pending_workflow, \
                 pending_job_id = excluded.pending_job_id, workflow_params = excluded.workflow_params, \
                 intent_history = excluded.intent_history, user_preferences = excluded.user_preferences, \
                 metadata = excluded.metadata, last_message_time = excluded.last_message_time, \
                 updated_at = excluded.updated_at",
                params![
                    chat_id,
                    plain("current_state").unwrap_or_else(|| "idle".to_string()),
                    plain("previous_state"),
                    ctx.get("pending_workflow").filter(|v| !v.is_null()).map(Value::to_string),
                    plain("pending_job_id"),
                    json_text("workflow_params", "{}"),
                    json_text("intent_history", "[]"),
                    json_text("user_preferences", "{}"),
                    json_text("metadata", "{}"),
                    plain("last_message_time"),
                    now_ts()
                ],
            )
        })?;
        Ok(())
    }

    // --- restore -----------------------------------------------------------------------------------------

    /// Inserts a whole conversation (restore, §10.3 step 6) in one transaction. With `overwrite`, an
    /// existing conversation of the same id is replaced; otherwise it is a 409.
    pub fn insert_full(
        &self,
        conv: &Conversation,
        overwrite: bool,
        bot_context: Option<&Value>,
    ) -> Result<(), ChatError> {
        self.write(|c| {
            let tx = c.transaction()?;
            let exists = tx
                .query_row("SELECT 1 FROM conversations WHERE chat_id = ?1", [&conv.chat_id], |_| Ok(()))
                .optional()?
                .is_some();
            if exists && !overwrite {
                return Ok(Err(ChatError::Conflict(format!("Conversation already exists: {}", conv.chat_id))));
            }
            if exists {
                for table in ["messages", "workflow_steps", "files", "jobs", "bot_contexts", "conversations"] {
                    tx.execute(&format!("DELETE FROM {table} WHERE chat_id = ?1"), [&conv.chat_id])?;
                }
            }
            tx.execute(
                &format!("INSERT INTO conversations ({CONV_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    conv.chat_id,
                    conv.participant_name,
                    conv.status,
                    conv.partition_key,
                    conv.metadata.to_string(),
                    conv.created_at,
                    conv.updated_at
                ],
            )?;
            for m in &conv.messages {
                tx.execute(
                    "INSERT INTO messages (message_id, chat_id, message_type, content, metadata, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![m.message_id, conv.chat_id, m.message_type, m.content, m.metadata.to_string(), m.created_at],
                )?;
            }
            for s in &conv.workflow_steps {
                insert_step(&tx, &conv.chat_id, s)?;
            }
            for (paths, kind) in [(&conv.uploaded_files, "uploaded"), (&conv.output_files, "output")] {
                for p in paths {
                    tx.execute(
                        "INSERT OR IGNORE INTO files (chat_id, file_path, file_type, created_at) VALUES (?1, ?2, ?3, ?4)",
                        params![conv.chat_id, p, kind, now_ts()],
                    )?;
                }
            }
            if let Some(ctx) = bot_context.and_then(Value::as_object) {
                let text = |k: &str, default: &str| match ctx.get(k) {
                    None | Some(Value::Null) => default.to_string(),
                    Some(v) => v.to_string(),
                };
                let plain = |k: &str| ctx.get(k).and_then(Value::as_str).map(str::to_string);
                tx.execute(
                    "INSERT INTO bot_contexts (chat_id, current_state, previous_state, pending_workflow, \
                     pending_job_id, workflow_params, intent_history, user_preferences, metadata, \
                     last_message_time, updated_at) VALUES (?1, 'idle', ?2, ?3, NULL, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        conv.chat_id,
                        plain("previous_state"),
                        ctx.get("pending_workflow").filter(|v| !v.is_null()).map(Value::to_string),
                        text("workflow_params", "{}"),
                        text("intent_history", "[]"),
                        text("user_preferences", "{}"),
                        text("metadata", "{}"),
                        plain("last_message_time").map(|t| normalize_ts(&t)),
                        now_ts()
                    ],
                )?;
            }
            tx.commit()?;
            Ok(Ok(()))
        })?
    }

    // --- events ----------------------------------------------------------------------------------------

    /// Events with `seq > after`, ascending, at most `limit` (REST replay, dumps).
    pub fn events_page(
        &self,
        chat_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, ChatError> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT seq, payload FROM ws_events WHERE chat_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(params![chat_id, after as i64, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
                })?;
            rows.collect()
        })
    }

    /// Time-based retention: removes events created before `before`, always keeping each chat's newest
    /// one so sequence numbers are never reused.
    pub fn purge_events(&self, before: &str) -> Result<usize, ChatError> {
        self.write(|c| {
            c.execute(
                "DELETE FROM ws_events WHERE created_at < ?1 AND seq < \
                 (SELECT MAX(e.seq) FROM ws_events e WHERE e.chat_id = ws_events.chat_id)",
                [before],
            )
        })
    }

    /// Online backup (§11): a consistent copy of the whole database into `dest`.
    pub fn backup_to(&self, dest: &Path) -> Result<(), ChatError> {
        self.read(|c| {
            let mut target = Connection::open(dest)?;
            let backup = rusqlite::backup::Backup::new(c, &mut target)?;
            // Every page in one step, i.e. one consistent read transaction.
            backup.run_to_completion(i32::MAX, Duration::from_millis(0), None)
        })
    }
}

fn query_messages(c: &Connection, chat_id: &str) -> rusqlite::Result<Vec<Message>> {
    let mut stmt = c.prepare(
        "SELECT message_id, message_type, content, metadata, created_at FROM messages WHERE chat_id = ?1 \
         ORDER BY created_at ASC, rowid ASC",
    )?;
    let rows = stmt.query_map([chat_id], row_message)?;
    rows.collect()
}

fn query_files(c: &Connection, chat_id: &str, file_type: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = c.prepare(
        "SELECT file_path FROM files WHERE chat_id = ?1 AND file_type = ?2 ORDER BY created_at ASC, file_id ASC",
    )?;
    let rows = stmt.query_map([chat_id, file_type], |r| r.get(0))?;
    rows.collect()
}

/// The durable replay log (websocket.md C.6): the hub appends each event here before fan-out. Called
/// from `Hub::publish`/`subscribe`, so publishers and subscribers must be on the blocking pool.
/// Stores one event under `seq` and drops the chat's events that fall out of the newest `max`.
fn store_event(
    c: &Connection,
    max: u64,
    chat_id: &str,
    seq: u64,
    event_type: &str,
    json: &str,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT OR REPLACE INTO ws_events (chat_id, seq, type, payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![chat_id, seq as i64, event_type, json, now_ts()],
    )?;
    if seq > max {
        c.execute(
            "DELETE FROM ws_events WHERE chat_id = ?1 AND seq <= ?2",
            params![chat_id, (seq - max) as i64],
        )?;
    }
    Ok(())
}

impl EventLog for ChatStore {
    fn append(&self, chat_id: &str, seq: u64, event_type: &str, json: &str) -> Result<(), String> {
        let max = self.max_events_per_chat;
        self.write(|c| store_event(c, max, chat_id, seq, event_type, json)).map_err(|e| e.to_string())
    }

    fn last_seq(&self, chat_id: &str) -> Result<u64, String> {
        self.read(|c| {
            c.query_row("SELECT COALESCE(MAX(seq), 0) FROM ws_events WHERE chat_id = ?1", [chat_id], |r| {
                r.get::<_, i64>(0)
            })
        })
        .map(|v| v.max(0) as u64)
        .map_err(|e| e.to_string())
    }

    fn oldest_seq(&self, chat_id: &str) -> Result<Option<u64>, String> {
        self.read(|c| {
            c.query_row("SELECT MIN(seq) FROM ws_events WHERE chat_id = ?1", [chat_id], |r| {
                r.get::<_, Option<i64>>(0)
            })
        })
        .map(|v| v.map(|s| s.max(0) as u64))
        .map_err(|e| e.to_string())
    }

    fn events_after(&self, chat_id: &str, after: u64, limit: usize) -> Result<Vec<(u64, Arc<str>)>, String> {
        self.events_page(chat_id, after, limit)
            .map(|rows| rows.into_iter().map(|(s, t)| (s, Arc::from(t))).collect())
            .map_err(|e| e.to_string())
    }

    fn epoch(&self) -> String {
        self.epoch.clone()
    }

    /// Numbers and stores in one IMMEDIATE transaction (it takes the database's write lock first), so
    /// several processes sharing the file never hand out the same `seq`.
    fn append_next(
        &self,
        chat_id: &str,
        event_type: &str,
        render: &mut dyn FnMut(u64) -> String,
    ) -> Result<(u64, String), String> {
        let max = self.max_events_per_chat;
        self.write(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let last: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM ws_events WHERE chat_id = ?1",
                [chat_id],
                |r| r.get(0),
            )?;
            let seq = last.max(0) as u64 + 1;
            let text = render(seq);
            store_event(&tx, max, chat_id, seq, event_type, &text)?;
            tx.commit()?;
            Ok((seq, text))
        })
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(id: &str) -> ConversationRow {
        ConversationRow {
            chat_id: id.into(),
            participant_name: "Orca-1234".into(),
            status: "created".into(),
            partition_key: Some("2026/03".into()),
            metadata: json!({}),
            created_at: now_ts(),
            updated_at: now_ts(),
        }
    }

    #[test]
    fn reference_database_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(REFERENCE_SCHEMA).unwrap();
            c.execute_batch(
                "INSERT INTO conversations VALUES ('c1', 'Orca-1000', 'completed', '2026/02', '{}', \
                 '2026-02-06T18:11:05.349996', '2026-02-06T18:11:05');
                 INSERT INTO files (chat_id, file_path, file_type, created_at) VALUES
                   ('c1', 'x/a.csv', 'uploaded', '2026-02-06T18:11:05'),
                   ('c1', 'x/a.csv', 'uploaded', '2026-02-06T18:12:05');",
            )
            .unwrap();
        }
        let store = ChatStore::open(&path, 1000).unwrap();
        let conv = store.conversation("c1").unwrap().unwrap();
        assert_eq!(conv.created_at, "2026-02-06T18:11:05.349996+00:00");
        assert_eq!(conv.updated_at, "2026-02-06T18:11:05.000000+00:00");
        assert_eq!(conv.uploaded_files, vec!["x/a.csv"]);
        drop(store);
        // Idempotent: opening again changes nothing and keeps the epoch.
        let epoch = ChatStore::open(&path, 1000).unwrap().epoch();
        assert_eq!(ChatStore::open(&path, 1000).unwrap().epoch(), epoch);
    }

    #[test]
    fn event_log_keeps_the_newest_and_never_reuses_seq() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::open(&dir.path().join("chat.db"), 3).unwrap();
        for seq in 1..=5 {
            store.append("c", seq, "progress", &format!("{{\"seq\":{seq}}}")).unwrap();
        }
        assert_eq!(store.last_seq("c").unwrap(), 5);
        assert_eq!(store.oldest_seq("c").unwrap(), Some(3));
        assert_eq!(store.events_after("c", 3, 10).unwrap().len(), 2);
        let future = crate::chat::model::format_ts(chrono::Utc::now() + chrono::Duration::hours(1));
        store.purge_events(&future).unwrap();
        assert_eq!(store.last_seq("c").unwrap(), 5, "the newest event survives time retention");
    }

    #[test]
    fn b32_messages_of_the_same_microsecond_keep_insertion_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::open(&dir.path().join("chat.db"), 10).unwrap();
        store.insert_conversation(&row("m")).unwrap();
        for text in ["first", "second", "third"] {
            store.add_message("m", "user", text, json!({})).unwrap();
        }
        store
            .write(|c| c.execute("UPDATE messages SET created_at = '2026-01-01T00:00:00.000000+00:00'", []))
            .unwrap();
        let contents: Vec<String> = store.messages("m").unwrap().into_iter().map(|m| m.content).collect();
        assert_eq!(contents, ["first", "second", "third"]);
    }

    #[test]
    fn duplicate_conversation_is_a_conflict_and_delete_cascades() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::open(&dir.path().join("chat.db"), 10).unwrap();
        store.insert_conversation(&row("a")).unwrap();
        assert!(matches!(store.insert_conversation(&row("a")), Err(ChatError::Conflict(_))));
        store.add_message("a", "user", "hi", json!({})).unwrap();
        store.record_file("a", "p/a.csv", "uploaded").unwrap();
        store.record_file("a", "p/a.csv", "uploaded").unwrap();
        assert_eq!(store.files("a", "uploaded").unwrap().len(), 1);
        store.append("a", 1, "x", "{}").unwrap();
        assert!(store.delete_conversation("a").unwrap());
        assert!(store.conversation("a").unwrap().is_none());
        assert_eq!(store.last_seq("a").unwrap(), 0);
        assert!(!store.delete_conversation("a").unwrap());
    }
}
