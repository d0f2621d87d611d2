//! The response body of a chat connection: frames go from the connection's send queue straight into the
//! socket's write buffer whenever actix asks the body for more. There is no writer task and no channel per
//! connection, and a burst of queued frames becomes one buffer (one write) per connection.
//!
//! Backpressure comes for free: actix polls the body only while its write buffer has room, so frames of a
//! client that does not read stay in the bounded queue, which then overflows (4008) or stalls (the session's
//! write timeout, 4008 too).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::ws::{CloseCode, OpCode, Parser};
use actix_web::body::{BodyStream, BoxBody, MessageBody};
use actix_web::web::{Bytes, BytesMut};
use actix_web::HttpResponse;
use futures_util::Stream;

use crate::events::queue::{CloseReason, Control, Outgoing, SendQueue};

/// RFC 6455 §5.5: control frame payloads are at most 125 bytes, so a close reason at most 123.
const MAX_CONTROL_PAYLOAD: usize = 125;
const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;
/// Header bytes of a server frame (unmasked, 64-bit length at most).
const FRAME_HEADER_MAX: usize = 10;
/// How long the body stays open after a server-initiated close frame for the client's answering close frame
/// (RFC 6455 §7.1.1: the server closes TCP first, once the handshake is complete). Without an answer the
/// connection ends when this passes.
pub const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// Replaces the body of an upgrade response built by actix-ws with one that drains `queue`. actix-ws's own
/// body is kept (never polled): dropping it when the connection ends is what ends its inbound message
/// stream.
pub fn queue_response(upgrade: HttpResponse, queue: Arc<SendQueue>) -> HttpResponse {
    let (head, actix_ws_body) = upgrade.into_parts();
    let body = QueueBody {
        queue,
        frames: Vec::new(),
        controls: Vec::new(),
        handshake_deadline: None,
        finished: false,
        _connection_signal: actix_ws_body,
    };
    head.set_body(BodyStream::new(body).boxed())
}

struct QueueBody {
    queue: Arc<SendQueue>,
    frames: Vec<Outgoing>,
    controls: Vec<Control>,
    /// Armed when the close frame is written: the body ends when the client's close frame arrives or this
    /// passes. Ending the body is what makes actix close the TCP connection.
    handshake_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    finished: bool,
    _connection_signal: BoxBody,
}

impl QueueBody {
    /// Encodes the drained controls and frames, then the close frame if there is one, into one buffer.
    fn encode(&mut self, close: Option<CloseReason>) -> Bytes {
        let size: usize = self.frames.iter().map(|f| f.text.len() + FRAME_HEADER_MAX).sum::<usize>()
            + (self.controls.len() + 1) * (MAX_CONTROL_PAYLOAD + FRAME_HEADER_MAX);
        let mut buf = BytesMut::with_capacity(size);
        for control in self.controls.drain(..) {
            let (payload, op) = match control {
                Control::Ping(payload) => (payload, OpCode::Ping),
                Control::Pong(payload) => (payload, OpCode::Pong),
            };
            Parser::write_message(
                &mut buf,
                &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)],
                op,
                true,
                false,
            );
        }
        for frame in self.frames.drain(..) {
            Parser::write_message(&mut buf, frame.text.as_bytes(), OpCode::Text, true, false);
        }
        if let Some(reason) = close {
            let mut description = reason.reason;
            if description.len() > MAX_CLOSE_REASON {
                let mut end = MAX_CLOSE_REASON;
                while !description.is_char_boundary(end) {
                    end -= 1;
                }
                description.truncate(end);
            }
            let reason = actix_http::ws::CloseReason {
                code: CloseCode::from(reason.code),
                description: (!description.is_empty()).then_some(description),
            };
            Parser::write_close(&mut buf, Some(reason), false);
        }
        buf.freeze()
    }
}

impl Stream for QueueBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        if let Some(deadline) = this.handshake_deadline.as_mut() {
            if this.queue.poll_peer_closed(cx).is_pending() && deadline.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.finished = true;
            return Poll::Ready(None);
        }
        let close = match this.queue.poll_batch(cx, &mut this.frames, &mut this.controls) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(close) => close,
        };
        if close.is_some() {
            // The close frame is the last frame; the body (and with it the connection) ends once the
            // client has answered it.
            this.handshake_deadline = Some(Box::pin(tokio::time::sleep(CLOSE_HANDSHAKE_TIMEOUT)));
            this.queue.mark_written_out();
        }
        Poll::Ready(Some(Ok(this.encode(close))))
    }
}

impl Drop for QueueBody {
    fn drop(&mut self) {
        self.queue.mark_written_out();
    }
}
