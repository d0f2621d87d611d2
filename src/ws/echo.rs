//! `GET /echo` on the WebSocket port, only when `websocket.test_echo_route` is true: a bare RFC 6455 echo
//! endpoint (no JSON protocol, no rate limit) that the Autobahn|Testsuite conformance run drives, so the
//! framing, fragmentation, UTF-8 and closing-handshake behaviour of the WebSocket stack is checked alone.

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Session};

use crate::AppState;

/// Close codes a peer may send (RFC 6455 §7.4: 1000–1003, 1007–1011, the registered 1012–1014, and
/// the 3000–4999 application range).
fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

fn close_with(code: u16) -> Option<CloseReason> {
    Some(CloseReason { code: CloseCode::from(code), description: None })
}

pub async fn echo(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let limit = state.config.chat_workflows.websocket.max_message_bytes;
    let stream = stream.max_frame_size(limit).aggregate_continuations().max_continuation_size(limit);
    actix_web::rt::spawn(echo_loop(session, stream));
    Ok(response)
}

async fn echo_loop(mut session: Session, mut stream: actix_ws::AggregatedMessageStream) {
    let close = loop {
        let Some(msg) = stream.recv().await else { break None };
        let sent = match msg {
            Ok(AggregatedMessage::Text(text)) => session.text(text).await,
            Ok(AggregatedMessage::Binary(bytes)) => session.binary(bytes).await,
            Ok(AggregatedMessage::Ping(bytes)) => session.pong(&bytes).await,
            Ok(AggregatedMessage::Pong(_)) => Ok(()),
            Ok(AggregatedMessage::Close(reason)) => {
                // Echo the peer's code; a code it must not send is a protocol error.
                break Some(match reason {
                    None => None,
                    Some(r) if is_valid_close_code(u16::from(r.code)) => close_with(r.code.into()),
                    Some(_) => close_with(1002),
                });
            }
            Err(err) => break Some(close_with(crate::ws::session::protocol_close(&err).0)),
        };
        if sent.is_err() {
            return;
        }
    };
    if let Some(reason) = close {
        let _ = session.close(reason).await;
    }
}

#[cfg(test)]
mod tests {
    use super::is_valid_close_code;

    #[test]
    fn close_codes() {
        for ok in [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(is_valid_close_code(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535] {
            assert!(!is_valid_close_code(bad), "{bad}");
        }
    }
}
