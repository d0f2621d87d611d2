//! Conversation use cases behind the HTTP handlers (chat-workflows.md §8.1–8.6, §8.11–8.12): create, list,
//! read (with download URLs), upload, delete, and the job/event read models. Every function blocks.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::model::{format_ts, new_uuid, Conversation, ConversationRow, Job, Message, STATUSES};
use super::names::{extension_of, participant_name, upload_name};
use super::{Chat, ChatError};
use crate::events::is_valid_chat_id;

/// Longest part of a refused extension quoted in the error message.
const MAX_SHOWN_EXTENSION_CHARS: usize = 16;

impl Chat {
    /// The conversation row, or 404 `Conversation not found`.
    pub fn require_row(&self, chat_id: &str) -> Result<ConversationRow, ChatError> {
        self.store
            .conversation_row(chat_id)?
            .ok_or_else(|| ChatError::NotFound("Conversation not found".into()))
    }

    /// Creates a conversation (§8.1): row, folder tree and `metadata.json`. A client id must match the chat id
    /// pattern (422) and be new (409).
    pub fn create_conversation(&self, chat_id: Option<&str>) -> Result<Conversation, ChatError> {
        let chat_id = match chat_id {
            Some(id) if is_valid_chat_id(id) => id.to_string(),
            Some(_) => {
                return Err(ChatError::validation_with(
                    "Invalid chat_id: must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
                    json!({"field": "chat_id"}),
                ))
            }
            None => new_uuid(),
        };
        let now = chrono::Utc::now();
        let created_at = format_ts(now);
        let theme = &self.config.chat_workflows.participant_name_theme;
        let name = participant_name(theme, |n| self.store.participant_name_in_use(n))?;
        let row = ConversationRow {
            partition_key: Some(self.storage.partition_key(&chat_id, now)),
            chat_id,
            participant_name: name,
            status: "created".into(),
            metadata: Value::Object(Map::new()),
            created_at: created_at.clone(),
            updated_at: created_at,
        };
        self.store.insert_conversation(&row)?;
        if let Err(e) = self.storage.create_layout(&row) {
            let _ = self.store.delete_conversation(&row.chat_id);
            return Err(e);
        }
        Ok(row.with_children(Vec::new(), Vec::new(), Vec::new(), Vec::new()))
    }

    /// The list page (§8.2) as JSON rows (with `bot_message` when a system message exists) and the total.
    pub fn list_conversations(
        &self,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Value>, u64), ChatError> {
        if let Some(s) = status {
            if !STATUSES.contains(&s) {
                return Err(ChatError::validation_with(
                    format!("Invalid status: {s}. Must be one of {}", STATUSES.join(", ")),
                    json!({"field": "status"}),
                ));
            }
        }
        let (rows, total) = self.store.list_conversations(status, limit, offset)?;
        let items = rows
            .into_iter()
            .map(|(row, bot_message)| {
                let mut v = serde_json::to_value(&row).unwrap_or(Value::Null);
                if let (Some(text), Value::Object(m)) = (bot_message, &mut v) {
                    m.insert("bot_message".into(), Value::String(text.chars().take(500).collect()));
                }
                v
            })
            .collect();
        Ok((items, total))
    }

    /// The full conversation with `metadata.download_url` on upload messages (§2.2), URLs from `base`.
    pub fn conversation_json(&self, chat_id: &str, base: &str) -> Result<Value, ChatError> {
        let mut conv = self
            .store
            .conversation(chat_id)?
            .ok_or_else(|| ChatError::NotFound("Conversation not found".into()))?;
        for m in &mut conv.messages {
            self.add_download_url(chat_id, m, base);
        }
        Ok(serde_json::to_value(&conv).unwrap_or(Value::Null))
    }

    /// Adds the (not persisted) `download_url` to a `file_upload` message.
    pub fn add_download_url(&self, chat_id: &str, message: &mut Message, base: &str) {
        if message.message_type != "file_upload" {
            return;
        }
        let Some(path) = message.metadata.get("file_path").and_then(Value::as_str).map(str::to_string) else {
            return;
        };
        if let Value::Object(m) = &mut message.metadata {
            m.insert("download_url".into(), Value::String(self.storage.file_url(base, chat_id, &path)));
        }
    }

    /// Persists a message and publishes `message_added` (websocket.md C.5).
    pub fn add_message(
        &self,
        chat_id: &str,
        message_type: &str,
        content: &str,
        metadata: Value,
        base: &str,
    ) -> Result<Message, ChatError> {
        let mut message = self.store.add_message(chat_id, message_type, content, metadata)?;
        let stored = message.clone();
        self.add_download_url(chat_id, &mut message, base);
        self.hub.publish_event(chat_id, &crate::events::wire::MessageAdded { message });
        Ok(stored)
    }

    /// Stores an upload (§5.4, §8.4): name rules, extension check, atomic placement, one file record,
    /// a `file_upload` message. `extra_metadata` is merged into the message metadata (the bot adds
    /// `filename`). Returns `(stored path, file name)`.
    pub fn store_upload(
        &self,
        row: &ConversationRow,
        temp: &Path,
        client_name: &str,
        extra_metadata: Map<String, Value>,
        base: &str,
    ) -> Result<(String, String), ChatError> {
        let name = upload_name(client_name)?;
        let ext = extension_of(&name);
        let allowed = &self.config.chat_workflows.file.allowed_extensions;
        if !allowed.iter().any(|a| a.trim().to_ascii_lowercase() == ext) || ext.is_empty() {
            // A client can send a kilobytes-long "extension"; the message names its start only.
            let shown = match ext.char_indices().nth(MAX_SHOWN_EXTENSION_CHARS) {
                _ if ext.is_empty() => "(none)".to_string(),
                Some((cut, _)) => format!("{}...", &ext[..cut]),
                None => ext,
            };
            return Err(ChatError::validation_with(
                format!("File type not allowed: {shown}"),
                json!({"allowed_extensions": allowed}),
            ));
        }
        let stored = self.storage.place_upload(row, temp, &name)?;
        self.store.record_file(&row.chat_id, &stored, "uploaded")?;
        let mut metadata = Map::new();
        metadata.insert("file_path".into(), Value::String(stored.clone()));
        metadata.extend(extra_metadata);
        self.add_message(
            &row.chat_id,
            "file_upload",
            &format!("File uploaded: {name}"),
            Value::Object(metadata),
            base,
        )?;
        Ok((stored, name))
    }

    /// Deletes a conversation (§8.6): cancels its jobs, tells subscribers, removes rows and files, then
    /// closes connections subscribed only to it (4001).
    pub fn delete_conversation(&self, chat_id: &str) -> Result<(), ChatError> {
        let row = self.require_row(chat_id)?;
        self.forget_chat(chat_id);
        self.hub.publish_event(chat_id, &crate::events::wire::ConversationDeleted {});
        self.store.delete_conversation(chat_id)?;
        self.storage.remove_conversation(&row)?;
        self.hub.close_chat(chat_id, crate::events::queue::CLOSE_INVALID_SESSION, "conversation deleted");
        Ok(())
    }

    /// A job of this chat as the §9.7 object, URLs rendered for `base`; 404 `Job not found` otherwise.
    pub fn job_json(&self, chat_id: &str, job_id: &str, base: &str) -> Result<Value, ChatError> {
        let job = self
            .store
            .job(job_id)?
            .filter(|j| j.chat_id == chat_id)
            .ok_or_else(|| ChatError::NotFound("Job not found".into()))?;
        self.render_job(&job, base)
    }

    pub fn render_job(&self, job: &Job, base: &str) -> Result<Value, ChatError> {
        let steps = self.store.job_steps(&job.job_id)?;
        let done = steps.iter().filter(|s| s.status == "completed").count();
        let progress = if steps.is_empty() {
            0
        } else if job.status == "completed" {
            100
        } else {
            (100 * done / steps.len()) as u64
        };
        let mut v = serde_json::to_value(job).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("steps".into(), serde_json::to_value(&steps).unwrap_or(Value::Null));
            m.insert("progress".into(), Value::from(progress));
            if let (Some(result), Some(old_base)) = (m.get_mut("result"), job.base_url.as_deref()) {
                rebase_urls(result, old_base, base);
            }
        }
        Ok(v)
    }

    /// Jobs of a chat, newest first (§8.12).
    pub fn jobs_json(&self, chat_id: &str, base: &str) -> Result<Vec<Value>, ChatError> {
        self.require_row(chat_id)?;
        self.store.jobs_of_chat(chat_id)?.iter().map(|j| self.render_job(j, base)).collect()
    }

    /// Persisted events with `seq > after` (§8.12).
    pub fn events_json(&self, chat_id: &str, after: u64, limit: usize) -> Result<Value, ChatError> {
        self.require_row(chat_id)?;
        let events: Vec<Value> = self
            .store
            .events_page(chat_id, after, limit)?
            .into_iter()
            .filter_map(|(_, text)| serde_json::from_str(&text).ok())
            .collect();
        let oldest = self.store.oldest_seq(chat_id).map_err(ChatError::Internal)?;
        Ok(json!({
            "events": events,
            "last_seq": self.hub.last_seq(chat_id),
            "oldest_seq": oldest,
            "epoch": self.hub.epoch(),
        }))
    }
}

/// Rewrites every `download_url` that starts with `old` to start with `new` (job results are rendered for
/// the current request, §7).
pub fn rebase_urls(value: &mut Value, old: &str, new: &str) {
    match value {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                match v {
                    Value::String(s) if k == "download_url" && s.starts_with(old) => {
                        *s = format!("{new}{}", &s[old.len()..]);
                    }
                    other => rebase_urls(other, old, new),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rebase_urls(i, old, new)),
        _ => {}
    }
}
