//! Fuzzes the WebSocket inbound message parser: any text must parse without panicking, and what it
//! returns must respect the protocol's invariants (valid chat ids, bounded request ids, error replies
//! that carry a code and never internal text).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxcelize::events::is_valid_chat_id;
use oxcelize::ws::message::{parse_client_message, ClientMessage, MAX_REQUEST_ID_CHARS};

fuzz_target!(|data: &[u8]| {
    // Binary frames reach the parser only when they are UTF-8; lossy decoding still exercises the rest.
    let text = String::from_utf8_lossy(data);
    let message = parse_client_message(&text);
    if let Some(id) = message.request_id() {
        assert!(id.chars().count() <= MAX_REQUEST_ID_CHARS);
    }
    match &message {
        ClientMessage::Subscribe { chat_id, .. } | ClientMessage::Unsubscribe { chat_id, .. } => {
            assert!(is_valid_chat_id(chat_id));
        }
        ClientMessage::Resume { chat_id: Some(chat_id), .. } => assert!(is_valid_chat_id(chat_id)),
        ClientMessage::Auth { token, .. } => assert!(!token.is_empty()),
        ClientMessage::Invalid { rejection, .. } => {
            let reply = rejection.to_json();
            assert_eq!(reply["type"], "error");
            assert!(reply["code"].as_str().is_some_and(|c| !c.is_empty()));
        }
        _ => {}
    }
    // Replies built from the message serialise (the `ack` echoes the original object).
    if let ClientMessage::Other { original, .. } = message {
        assert!(serde_json::to_string(&original).is_ok());
    }
});
