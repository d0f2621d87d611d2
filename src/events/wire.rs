//! The WebSocket protocol's messages as Rust types (websocket.md A.3–A.5, C.3–C.14): what the hub and the
//! sessions serialise, and what `GET /asyncapi.json` describes (`ws::asyncapi`), from the same derives.
//!
//! A message's `type` is not a field: it is the message's [`WireMessage::TYPE`], written first by
//! [`WireMessage::to_json`]. [`wire_messages!`] is the only way to implement the trait, so every message the
//! service can send through the typed paths is also in [`server_messages`] and therefore in the document.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::chat::model::Message;

/// What the transport adds to a message after it is built (so the document can say so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Published on a chat by the hub: `chat_id`, `timestamp`, `seq` are added, `replayed: true` on replay.
    Chat,
    /// A direct reply to a client message: the client's request `id` is echoed when it sent one.
    Reply,
    /// Sent by the connection itself (no `id`, no `seq`).
    Connection,
}

/// One message of the protocol: its `type`, who adds what, and its schema.
pub trait WireMessage: Serialize + ToSchema + sealed::Sealed {
    const TYPE: &'static str;
    const SCOPE: Scope;
    /// One line for the document.
    const SUMMARY: &'static str;

    /// The frame as JSON: `type` first, then the fields.
    fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("type".into(), Value::String(Self::TYPE.into()));
        // Every message is a struct with named fields, so it always serialises to an object.
        if let Ok(Value::Object(fields)) = serde_json::to_value(self) {
            map.extend(fields);
        }
        Value::Object(map)
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A message's entry in the document: its name, `type`, scope, summary and schema (with the schemas it
/// refers to).
pub struct MessageSpec {
    /// The message's name in the document (unique; two messages may share a `type`, e.g. `error`).
    pub name: &'static str,
    pub type_name: &'static str,
    /// Other `type` values the server accepts for this message (client messages only).
    pub type_aliases: &'static [&'static str],
    pub scope: Scope,
    pub summary: &'static str,
    pub schema_name: String,
    pub schema: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
    pub dependencies: Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>,
}

fn spec<T: ToSchema>(
    name: &'static str,
    type_name: &'static str,
    type_aliases: &'static [&'static str],
    scope: Scope,
    summary: &'static str,
) -> MessageSpec {
    let mut dependencies = Vec::new();
    T::schemas(&mut dependencies);
    MessageSpec {
        name,
        type_name,
        type_aliases,
        scope,
        summary,
        schema_name: T::name().into_owned(),
        schema: T::schema(),
        dependencies,
    }
}

/// Declares the server messages: implements [`WireMessage`] and lists them in [`server_messages`].
macro_rules! wire_messages {
    ($($ty:ident => $name:literal, $type_name:literal, $scope:ident, $summary:literal;)*) => {
        $(
            impl sealed::Sealed for $ty {}
            impl WireMessage for $ty {
                const TYPE: &'static str = $type_name;
                const SCOPE: Scope = Scope::$scope;
                const SUMMARY: &'static str = $summary;
            }
        )*
        /// Every message the server sends, in the document's order.
        pub fn server_messages() -> Vec<MessageSpec> {
            vec![$(spec::<$ty>($name, $type_name, &[], Scope::$scope, $summary)),*]
        }
    };
}

wire_messages! {
    Connected => "connected", "connected", Reply,
        "Welcome on a new connection (after auth when required), and the reply to a replacing subscribe.";
    Pong => "pong", "pong", Reply, "Reply to a ping (JSON or the bare text `ping`).";
    Ack => "ack", "ack", Reply, "Reply to an object with a missing, non-string or unknown `type`.";
    ProtocolError => "protocolError", "error", Reply,
        "A connection-level problem (websocket.md C.12); the close codes that follow some of them are in C.13.";
    Subscribed => "subscribed", "subscribed", Reply, "Reply to subscribe with mode `add`.";
    Unsubscribed => "unsubscribed", "unsubscribed", Reply, "Reply to unsubscribe (idempotent).";
    Authenticated => "authenticated", "authenticated", Reply,
        "Reply to an `auth` message that refreshes the token of an authenticated connection.";
    ResyncRequired => "resyncRequired", "resync_required", Connection,
        "A resume that cannot be served gap-free: reload state over REST (websocket.md C.6).";
    ReplayComplete => "replayComplete", "replay_complete", Connection, "End of a resume's replayed events.";
    ServerShutdown => "serverShutdown", "server_shutdown", Connection,
        "The server is stopping; close 1001 follows. Reconnect with `last_seq` after the delay.";
    WorkflowQueued => "workflowQueued", "workflow_queued", Chat,
        "A job was submitted while another job of the chat runs.";
    WorkflowStarted => "workflowStarted", "workflow_started", Chat, "A job started running.";
    ProgressEvent => "progress", "progress", Chat,
        "A step's progress: 0 at its start, intermediate values while it runs, 100 or `failed` at its end.";
    StepResult => "stepResult", "step_result", Chat, "A step succeeded; right after its `progress` 100.";
    StepFailed => "stepFailed", "error", Chat,
        "A step failed; after its `progress` `failed`, before `workflow_failed`.";
    WorkflowCompleted => "workflowCompleted", "workflow_completed", Chat, "A job finished successfully.";
    WorkflowFailed => "workflowFailed", "workflow_failed", Chat,
        "A job failed, was cancelled (`cancelled: true`) or was interrupted by a shutdown.";
    MessageAdded => "messageAdded", "message_added", Chat, "A chat message was stored.";
    BotStateChanged => "botState", "bot_state", Chat, "The chat bot's state changed.";
    ConversationDeleted => "conversationDeleted", "conversation_deleted", Chat,
        "The conversation was deleted; connections subscribed to it alone close with 4001.";
}

/// Every message a client may send, in the document's order. The lenient parser is `ws::message`; these
/// types describe its input.
pub fn client_messages() -> Vec<MessageSpec> {
    vec![
        spec::<PingRequest>("ping", "ping", &[], Scope::Reply, "Application ping; answered with `pong`."),
        spec::<SubscribeRequest>(
            "subscribe",
            "subscribe",
            &[],
            Scope::Reply,
            "Subscribe to a chat: replace all subscriptions (answered with `connected`) or add one (`subscribed`).",
        ),
        spec::<UnsubscribeRequest>("unsubscribe", "unsubscribe", &[], Scope::Reply, "Drop one subscription."),
        spec::<ResumeRequest>(
            "resume",
            "resume",
            &["session_restore"],
            Scope::Reply,
            "Replay the events after `last_seq` (websocket.md C.6); subscribes to the chat if needed.",
        ),
        spec::<AuthRequest>(
            "auth",
            "auth",
            &[],
            Scope::Reply,
            "The token, as the first message, when the handshake carried none (auth enabled).",
        ),
    ]
}

// ---- connection-level messages -------------------------------------------------------------------------

/// The server's ping settings, in seconds (0 = off).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Heartbeat {
    pub ping_interval: u64,
    pub ping_timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActiveJobStatus {
    Pending,
    Running,
}

/// The chat's pending or running job, as of the welcome.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActiveJob {
    pub job_id: String,
    pub status: ActiveJobStatus,
    /// 1-based; null while the job is pending.
    #[schema(required = true)]
    pub step_index: Option<usize>,
    pub total_steps: usize,
    pub overall_progress: u64,
}

/// `connected`: the connection is open (and bound to `chat_id`, or unbound when it is null).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Connected {
    #[schema(required = true)]
    pub chat_id: Option<String>,
    pub timestamp: String,
    pub message: String,
    pub connection_id: String,
    /// The chat's highest `seq` (0 if none); null when unbound.
    #[schema(required = true)]
    pub last_seq: Option<u64>,
    /// Identifies the event store; a different epoch on resume means `resync_required`.
    pub epoch: String,
    pub protocol_version: u32,
    pub heartbeat: Heartbeat,
    /// Null when no job of the chat is pending or running, and when unbound.
    #[schema(required = true)]
    pub active_job: Option<ActiveJob>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Pong {
    pub timestamp: String,
}

/// `ack`: echoes the received object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Ack {
    pub original: Map<String, Value>,
}

/// The `code` of a connection-level error (websocket.md C.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolErrorCode {
    InvalidJson,
    InvalidMessage,
    InvalidChatId,
    UnknownChat,
    ForbiddenChat,
    Unauthorized,
    OriginNotAllowed,
    MaxConnections,
    RateLimited,
    TooManySubscriptions,
    IdleTimeout,
    InternalError,
}

/// `error` about the connection or a client message (not about a workflow step).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProtocolError {
    pub code: ProtocolErrorCode,
    pub message: String,
    /// The client message's field at fault (`invalid_message`, `invalid_chat_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
    /// The chat refused (`forbidden_chat`, `unknown_chat`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub chat_id: Option<String>,
    /// When the rate limit lets the next frame through (`rate_limited`, unless the connection closes).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub retry_after_ms: Option<u64>,
}

impl ProtocolError {
    pub fn new(code: ProtocolErrorCode, message: impl Into<String>) -> Self {
        ProtocolError { code, message: message.into(), field: None, chat_id: None, retry_after_ms: None }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Subscribed {
    pub chat_id: String,
    /// The chat's current highest `seq`.
    pub last_seq: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Unsubscribed {
    pub chat_id: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Authenticated {
    /// The new token's expiry (Unix seconds); null for static tokens.
    #[schema(required = true)]
    pub expires_at: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResyncReason {
    /// Events after `requested_seq` were purged; replay starts at `oldest_seq`.
    Expired,
    /// `requested_seq` is ahead of the chat's current `seq`; nothing is replayed.
    Ahead,
    /// The event store was wiped since the client's `epoch`; nothing is replayed.
    EpochMismatch,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResyncRequired {
    pub chat_id: String,
    pub requested_seq: u64,
    pub oldest_seq: u64,
    pub current_seq: u64,
    pub epoch: String,
    pub reason: ResyncReason,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReplayComplete {
    pub chat_id: String,
    pub from_seq: u64,
    pub to_seq: u64,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServerShutdown {
    pub reconnect_after_ms: u64,
}

// ---- chat-scoped events ----------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkflowQueued {
    pub job_id: String,
    pub total_steps: usize,
    /// 1 = next to run.
    pub position: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// Started by `POST …/execute`.
    Execute,
    /// Started by the chat bot.
    Bot,
}

/// One step of a run as announced by `workflow_started`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepRef {
    pub step_id: String,
    /// 1-based.
    pub step_index: usize,
    pub operation: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkflowStarted {
    pub job_id: String,
    pub kind: RunKind,
    pub total_steps: usize,
    /// The first step's operation.
    #[schema(required = true)]
    pub operation: Option<String>,
    pub steps: Vec<StepRef>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Running,
    Completed,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProgressPhase {
    Reading,
    Processing,
    Writing,
}

/// `progress` of one step. The row fields come with intermediate progress and with the step's end
/// (websocket.md C.4); a step's start event and runs of operations without row counts leave them out.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgressEvent {
    pub job_id: String,
    pub step_id: String,
    /// 1-based.
    pub step_index: usize,
    pub total_steps: usize,
    pub operation: String,
    /// This step's percentage, 0–100, non-decreasing within the step.
    #[schema(minimum = 0, maximum = 100)]
    pub progress: u64,
    /// `floor(100 × ((step_index − 1) + progress/100) / total_steps)`.
    #[schema(minimum = 0, maximum = 100)]
    pub overall_progress: u64,
    pub status: StepStatus,
    pub message: String,
    /// Rows of the step's input handled so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub rows_processed: Option<u64>,
    /// Rows of the step's input; null only when unknowable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>)]
    pub rows_total: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub phase: Option<ProgressPhase>,
    /// Estimated seconds left in this step; null when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub eta_seconds: Option<Option<f64>>,
}

/// What a successful step produced. Operations add their own keys (e.g. `warnings`), so it is open.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepOutput {
    /// The stored output file; null for steps that produce none.
    #[schema(required = true)]
    pub output_file_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub download_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistics: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<Value>,
    /// Left out (with `data_truncated: true`) above 64 KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub data_truncated: Option<bool>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepResult {
    pub job_id: String,
    pub step_id: String,
    pub step_index: usize,
    pub total_steps: usize,
    pub operation: String,
    /// The operation's result object, as `StepOutput` describes it.
    #[schema(value_type = StepOutput)]
    pub result: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepFailedCode {
    StepFailed,
}

/// `error` about a workflow step (chat-scoped, unlike the protocol `error`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepFailed {
    pub job_id: String,
    pub step_id: String,
    pub operation: String,
    pub code: StepFailedCode,
    /// The step's error text.
    pub message: String,
}

/// A file produced by a run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OutputFile {
    pub file_path: String,
    pub download_url: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkflowCompleted {
    pub job_id: String,
    pub total_steps: usize,
    /// The last step's operation.
    #[schema(required = true)]
    pub operation: Option<String>,
    pub duration_ms: u64,
    /// The files produced by this run.
    #[schema(value_type = Vec<OutputFile>)]
    pub output_files: Vec<Value>,
    pub output_files_count: usize,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkflowFailed {
    pub job_id: String,
    /// The failed step's operation; null if the run failed before any step.
    #[schema(required = true)]
    pub operation: Option<String>,
    #[schema(required = true)]
    pub step_id: Option<String>,
    /// 1-based index of the failed step; null if the run failed before any step.
    #[schema(required = true)]
    pub failed_step: Option<u64>,
    pub skipped_steps: usize,
    /// True when a cancel request ended the run (`error` is then `Workflow cancelled by user`).
    pub cancelled: bool,
    pub error: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageAdded {
    pub message: Message,
}

/// `bot_state`: one transition of the chat bot's state machine (chatbot.md).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BotStateChanged {
    pub state: String,
    pub previous_state: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConversationDeleted {}

// ---- client messages (described; parsed leniently by `ws::message`) ------------------------------------

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(examples(json!({"type": "ping", "id": "r1"})))]
pub struct PingRequest {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscribeMode {
    /// Drop every other subscription (the default).
    Replace,
    /// Keep the others.
    Add,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(examples(json!({"type": "subscribe", "chat_id": "0a9b8c7d", "mode": "add", "last_seq": 12})))]
pub struct SubscribeRequest {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
    pub chat_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub mode: Option<SubscribeMode>,
    /// Resume the chat from this `seq` (websocket.md C.6).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub last_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub epoch: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(examples(json!({"type": "unsubscribe", "chat_id": "0a9b8c7d"})))]
pub struct UnsubscribeRequest {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
    pub chat_id: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(examples(json!({"type": "resume", "chat_id": "7f3d2c1b", "last_seq": 41, "epoch": "e4b9a0c2"})))]
pub struct ResumeRequest {
    /// Defaults to the connection's first subscription.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
    pub chat_id: Option<String>,
    pub last_seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub epoch: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(examples(json!({"type": "auth", "token": "s3cr3t"})))]
pub struct AuthRequest {
    #[schema(min_length = 1)]
    pub token: String,
}
