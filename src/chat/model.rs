//! The chat data model (chat-workflows.md §2): conversations, messages, workflow steps, jobs, and the
//! timestamp rule of §1.4 (UTC, six fractional digits, `+00:00`; naive inputs read as UTC).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

/// Conversation status values (§3).
pub const STATUSES: [&str; 6] = ["created", "active", "processing", "completed", "failed", "archived"];

/// `2026-02-06T18:11:05.349996+00:00` (the one timestamp format of the service).
pub use crate::ops::clock::iso_timestamp as format_ts;

pub fn now_ts() -> String {
    format_ts(Utc::now())
}

/// Parses an RFC 3339 time (any offset) or a naive ISO time (with `T` or space, with or without a
/// fraction, read as UTC).
pub fn parse_ts(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(naive.and_utc());
        }
    }
    None
}

/// Re-emits a stored or archived time in the §1.4 form; text that is not a time is kept as it is.
pub fn normalize_ts(text: &str) -> String {
    parse_ts(text).map(format_ts).unwrap_or_else(|| text.to_string())
}

/// JSON object text from the database; anything else reads as `{}`.
pub fn json_object(text: Option<&str>) -> Value {
    match text.and_then(|t| serde_json::from_str::<Value>(t).ok()) {
        Some(Value::Object(m)) => Value::Object(m),
        _ => Value::Object(Map::new()),
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Message {
    pub message_id: String,
    pub message_type: String,
    pub content: String,
    pub metadata: Value,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkflowStep {
    pub step_id: String,
    pub operation: String,
    pub arguments: Value,
    pub input_file: Option<String>,
    pub output_file: Option<String>,
    pub status: String,
    pub progress: i64,
    pub error_message: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub job_id: Option<String>,
    pub step_index: Option<i64>,
}

/// The conversation row without its children.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConversationRow {
    pub chat_id: String,
    pub participant_name: String,
    pub status: String,
    pub partition_key: Option<String>,
    pub metadata: Value,
    pub created_at: String,
    pub updated_at: String,
}

impl ConversationRow {
    /// The full form of this row with its children.
    pub fn with_children(
        self,
        messages: Vec<Message>,
        workflow_steps: Vec<WorkflowStep>,
        uploaded_files: Vec<String>,
        output_files: Vec<String>,
    ) -> Conversation {
        Conversation {
            chat_id: self.chat_id,
            participant_name: self.participant_name,
            status: self.status,
            messages,
            workflow_steps,
            uploaded_files,
            output_files,
            metadata: self.metadata,
            created_at: self.created_at,
            updated_at: self.updated_at,
            partition_key: self.partition_key,
        }
    }
}

/// The full form (§2.1).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Conversation {
    pub chat_id: String,
    pub participant_name: String,
    pub status: String,
    pub messages: Vec<Message>,
    pub workflow_steps: Vec<WorkflowStep>,
    pub uploaded_files: Vec<String>,
    pub output_files: Vec<String>,
    pub metadata: Value,
    pub created_at: String,
    pub updated_at: String,
    pub partition_key: Option<String>,
}

impl Conversation {
    pub fn row(&self) -> ConversationRow {
        ConversationRow {
            chat_id: self.chat_id.clone(),
            participant_name: self.participant_name.clone(),
            status: self.status.clone(),
            partition_key: self.partition_key.clone(),
            metadata: self.metadata.clone(),
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
        }
    }
}

/// A persisted run (§2.5).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Job {
    pub job_id: String,
    pub chat_id: String,
    pub kind: String,
    pub status: String,
    pub submitted_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub result: Option<Value>,
    pub error: Option<String>,
    #[serde(skip)]
    pub cancel_requested: bool,
    #[serde(skip)]
    pub base_url: Option<String>,
}

impl Job {
    pub fn is_finished(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled")
    }
}

/// `{chat_id}_workflow_{unix ms}_{8 hex}` (§1.5).
pub fn new_job_id(chat_id: &str) -> String {
    format!("{chat_id}_workflow_{}_{:08x}", Utc::now().timestamp_millis(), rand::random::<u32>())
}

pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_normalise_naive_and_offset_forms() {
        assert_eq!(normalize_ts("2026-02-06T18:11:05.349996"), "2026-02-06T18:11:05.349996+00:00");
        assert_eq!(normalize_ts("2026-02-06T18:11:05"), "2026-02-06T18:11:05.000000+00:00");
        assert_eq!(normalize_ts("2026-02-06 18:11:05.5"), "2026-02-06T18:11:05.500000+00:00");
        assert_eq!(normalize_ts("2026-02-06T20:11:05.349996+02:00"), "2026-02-06T18:11:05.349996+00:00");
        assert_eq!(normalize_ts("not a time"), "not a time");
        let now = now_ts();
        assert!(now.ends_with("+00:00") && now.len() == 32, "{now}");
    }

    #[test]
    fn job_ids_have_the_documented_shape() {
        let id = new_job_id("abc");
        let parts: Vec<&str> = id.rsplitn(3, '_').collect();
        assert_eq!(parts[0].len(), 8);
        assert!(parts[1].parse::<i64>().is_ok());
        assert!(parts[2].starts_with("abc_workflow"));
    }
}
