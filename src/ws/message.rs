//! The inbound message parser (websocket.md C.11 parsing order), a pure function shared by the session and
//! the fuzz target: text in, a typed `ClientMessage` out, never a panic and never internal error text.

use serde_json::{Map, Value};

use crate::events::wire::ProtocolErrorCode::{self, InvalidChatId, InvalidJson, InvalidMessage};
use crate::events::wire::{ProtocolError, WireMessage};
use crate::events::{is_valid_chat_id, Resume};

/// The longest client `id` echoed in replies (websocket.md C.3).
pub const MAX_REQUEST_ID_CHARS: usize = 64;

/// A protocol error reply for a message that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: ProtocolErrorCode,
    pub message: &'static str,
    pub field: Option<&'static str>,
}

impl Rejection {
    const fn new(code: ProtocolErrorCode, message: &'static str, field: Option<&'static str>) -> Self {
        Rejection { code, message, field }
    }

    pub fn to_json(&self) -> Value {
        let mut error = ProtocolError::new(self.code, self.message);
        error.field = self.field.map(str::to_string);
        error.to_json()
    }
}

pub const INVALID_JSON: Rejection = Rejection::new(InvalidJson, "Invalid JSON", None);
pub const NOT_AN_OBJECT: Rejection = Rejection::new(InvalidMessage, "Message must be a JSON object", None);

/// One parsed client frame. `id` is the client's request id to echo (a string of at most 64 characters).
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `{"type":"ping"}` or the bare text `ping` (any case, surrounding whitespace ignored).
    Ping {
        id: Option<String>,
    },
    Subscribe {
        id: Option<String>,
        chat_id: String,
        add: bool,
        resume: Option<Resume>,
    },
    Unsubscribe {
        id: Option<String>,
        chat_id: String,
    },
    /// `resume` / `session_restore`; `chat_id` `None` = the connection's first subscription.
    Resume {
        id: Option<String>,
        chat_id: Option<String>,
        resume: Resume,
    },
    Auth {
        id: Option<String>,
        token: String,
    },
    /// An object with a missing, non-string or unknown `type`: answered with `ack` (reference behaviour).
    Other {
        id: Option<String>,
        original: Map<String, Value>,
    },
    /// Not usable; the reply is the rejection (plus `id` when the frame had one).
    Invalid {
        id: Option<String>,
        rejection: Rejection,
    },
}

impl ClientMessage {
    /// The request id to echo in the direct reply.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ClientMessage::Ping { id }
            | ClientMessage::Subscribe { id, .. }
            | ClientMessage::Unsubscribe { id, .. }
            | ClientMessage::Resume { id, .. }
            | ClientMessage::Auth { id, .. }
            | ClientMessage::Other { id, .. }
            | ClientMessage::Invalid { id, .. } => id.as_deref(),
        }
    }
}

fn request_id(message: &Map<String, Value>) -> Option<String> {
    match message.get("id") {
        Some(Value::String(id)) if id.chars().count() <= MAX_REQUEST_ID_CHARS => Some(id.clone()),
        _ => None,
    }
}

const CHAT_ID_MISSING: Rejection =
    Rejection::new(InvalidMessage, "chat_id must be a non-empty string", Some("chat_id"));
const CHAT_ID_PATTERN: Rejection = Rejection::new(InvalidChatId, "Invalid chat id", Some("chat_id"));
const LAST_SEQ_TYPE: Rejection =
    Rejection::new(InvalidMessage, "last_seq must be a non-negative integer", Some("last_seq"));
const LAST_SEQ_MISSING: Rejection = Rejection::new(InvalidMessage, "last_seq is required", Some("last_seq"));
const EPOCH_TYPE: Rejection = Rejection::new(InvalidMessage, "epoch must be a string", Some("epoch"));
const MODE_VALUE: Rejection =
    Rejection::new(InvalidMessage, "mode must be \"replace\" or \"add\"", Some("mode"));
const TOKEN_MISSING: Rejection =
    Rejection::new(InvalidMessage, "token must be a non-empty string", Some("token"));

/// `chat_id`: `Ok(None)` when absent or null.
fn chat_id(message: &Map<String, Value>) -> Result<Option<String>, Rejection> {
    match message.get("chat_id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) if id.is_empty() => Err(CHAT_ID_MISSING),
        Some(Value::String(id)) if is_valid_chat_id(id) => Ok(Some(id.clone())),
        Some(Value::String(_)) => Err(CHAT_ID_PATTERN),
        Some(_) => Err(CHAT_ID_MISSING),
    }
}

fn required_chat_id(message: &Map<String, Value>) -> Result<String, Rejection> {
    chat_id(message)?.ok_or(CHAT_ID_MISSING)
}

fn resume(message: &Map<String, Value>) -> Result<Option<Resume>, Rejection> {
    let epoch = match message.get("epoch") {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) => Some(e.clone()),
        Some(_) => return Err(EPOCH_TYPE),
    };
    match message.get("last_seq") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(|last_seq| Some(Resume { last_seq, epoch })).ok_or(LAST_SEQ_TYPE),
    }
}

fn subscribe(message: &Map<String, Value>, id: Option<String>) -> Result<ClientMessage, Rejection> {
    let chat_id = required_chat_id(message)?;
    let add = match message.get("mode") {
        None | Some(Value::Null) => false,
        Some(Value::String(m)) if m == "replace" => false,
        Some(Value::String(m)) if m == "add" => true,
        Some(_) => return Err(MODE_VALUE),
    };
    Ok(ClientMessage::Subscribe { id, chat_id, add, resume: resume(message)? })
}

/// websocket.md C.11: bare `ping`, then JSON, then object, then `type`, then the fields of known types.
pub fn parse_client_message(text: &str) -> ClientMessage {
    if text.trim().eq_ignore_ascii_case("ping") {
        return ClientMessage::Ping { id: None };
    }
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return ClientMessage::Invalid { id: None, rejection: INVALID_JSON };
    };
    let Value::Object(message) = value else {
        return ClientMessage::Invalid { id: None, rejection: NOT_AN_OBJECT };
    };
    let id = request_id(&message);
    let parsed = match message.get("type").and_then(Value::as_str) {
        Some("ping") => Ok(ClientMessage::Ping { id: id.clone() }),
        Some("subscribe") => subscribe(&message, id.clone()),
        Some("unsubscribe") => {
            required_chat_id(&message).map(|chat_id| ClientMessage::Unsubscribe { id: id.clone(), chat_id })
        }
        Some("resume") | Some("session_restore") => chat_id(&message).and_then(|chat_id| {
            let resume = resume(&message)?.ok_or(LAST_SEQ_MISSING)?;
            Ok(ClientMessage::Resume { id: id.clone(), chat_id, resume })
        }),
        Some("auth") => match message.get("token") {
            Some(Value::String(t)) if !t.is_empty() => {
                Ok(ClientMessage::Auth { id: id.clone(), token: t.clone() })
            }
            _ => Err(TOKEN_MISSING),
        },
        _ => Ok(ClientMessage::Other { id: id.clone(), original: message }),
    };
    parsed.unwrap_or_else(|rejection| ClientMessage::Invalid { id, rejection })
}

/// Adds the client's request id to a direct reply.
pub fn with_request_id(mut reply: Value, id: Option<&str>) -> Value {
    if let (Some(id), Value::Object(map)) = (id, &mut reply) {
        map.insert("id".into(), Value::String(id.to_string()));
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invalid(text: &str) -> Rejection {
        match parse_client_message(text) {
            ClientMessage::Invalid { rejection, .. } => rejection,
            other => panic!("{text}: expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn ping_forms() {
        for text in ["ping", " PING\n", "Ping", r#"{"type":"ping"}"#] {
            assert_eq!(parse_client_message(text), ClientMessage::Ping { id: None }, "{text}");
        }
        assert_eq!(
            parse_client_message(r#"{"type":"ping","id":"r1"}"#),
            ClientMessage::Ping { id: Some("r1".into()) }
        );
        let long = "x".repeat(65);
        assert_eq!(
            parse_client_message(&format!(r#"{{"type":"ping","id":"{long}"}}"#)),
            ClientMessage::Ping { id: None },
            "ids over 64 chars are not echoed"
        );
    }

    #[test]
    fn parsing_order() {
        assert_eq!(invalid("not json"), INVALID_JSON);
        assert_eq!(invalid("pingpong"), INVALID_JSON);
        assert_eq!(invalid(""), INVALID_JSON);
        for text in ["[1,2]", "\"hi\"", "3", "null", "true"] {
            assert_eq!(invalid(text), NOT_AN_OBJECT, "{text}");
        }
        for text in [r#"{"type":"hello","n":1}"#, r#"{"n":1}"#, r#"{"type":5}"#] {
            assert!(matches!(parse_client_message(text), ClientMessage::Other { .. }), "{text}");
        }
    }

    #[test]
    fn subscribe_fields() {
        assert_eq!(
            parse_client_message(
                r#"{"type":"subscribe","chat_id":"abc","mode":"add","last_seq":4,"epoch":"e1"}"#
            ),
            ClientMessage::Subscribe {
                id: None,
                chat_id: "abc".into(),
                add: true,
                resume: Some(Resume { last_seq: 4, epoch: Some("e1".into()) })
            }
        );
        assert_eq!(invalid(r#"{"type":"subscribe"}"#), CHAT_ID_MISSING);
        assert_eq!(invalid(r#"{"type":"subscribe","chat_id":""}"#), CHAT_ID_MISSING);
        assert_eq!(invalid(r#"{"type":"subscribe","chat_id":7}"#), CHAT_ID_MISSING);
        assert_eq!(invalid(r#"{"type":"subscribe","chat_id":"bad$id"}"#), CHAT_ID_PATTERN);
        assert_eq!(invalid(r#"{"type":"subscribe","chat_id":"a","last_seq":-1}"#), LAST_SEQ_TYPE);
        assert_eq!(invalid(r#"{"type":"subscribe","chat_id":"a","mode":"merge"}"#), MODE_VALUE);
        assert_eq!(invalid(r#"{"type":"unsubscribe"}"#), CHAT_ID_MISSING);
        let with_id = parse_client_message(r#"{"type":"subscribe","id":"q","chat_id":"b$"}"#);
        assert_eq!(with_id.request_id(), Some("q"));
    }

    #[test]
    fn resume_and_auth_fields() {
        assert_eq!(
            parse_client_message(r#"{"type":"session_restore","last_seq":0}"#),
            ClientMessage::Resume { id: None, chat_id: None, resume: Resume { last_seq: 0, epoch: None } }
        );
        assert_eq!(invalid(r#"{"type":"resume","chat_id":"a"}"#), LAST_SEQ_MISSING);
        assert_eq!(invalid(r#"{"type":"resume","last_seq":1,"epoch":3}"#), EPOCH_TYPE);
        assert_eq!(
            parse_client_message(r#"{"type":"auth","token":"t"}"#),
            ClientMessage::Auth { id: None, token: "t".into() }
        );
        assert_eq!(invalid(r#"{"type":"auth"}"#), TOKEN_MISSING);
        assert_eq!(invalid(r#"{"type":"auth","token":""}"#), TOKEN_MISSING);
    }

    #[test]
    fn rejection_json_has_code_message_and_field() {
        assert_eq!(
            CHAT_ID_PATTERN.to_json(),
            json!({"type":"error","code":"invalid_chat_id","message":"Invalid chat id","field":"chat_id"})
        );
        assert_eq!(
            INVALID_JSON.to_json(),
            json!({"type":"error","code":"invalid_json","message":"Invalid JSON"})
        );
    }
}
