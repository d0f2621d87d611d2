//! `GET /asyncapi.json`: a structurally valid AsyncAPI 3.0 document of the WebSocket protocol whose message
//! schemas accept every frame a real session produces (and nothing undocumented), and which names every
//! message the service can send.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::chat_support::*;
use crate::common::{envelope, recv_json_within, send_text, spawn_app, spawn_app_with, TestApp, Ws};
use oxcelize::events::wire::{self, WireMessage};

const LONG: Duration = Duration::from_secs(60);

/// Schemas whose objects stay open (operations add their own result keys).
const OPEN_SCHEMAS: &[&str] = &["StepOutput"];

async fn fetch_document(app: &TestApp) -> Value {
    let res = app.client.get(format!("{}/asyncapi.json", app.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    res.json().await.unwrap()
}

/// Resolves a local `#/a/b` reference in the document.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

fn ref_of(value: &Value) -> &str {
    value["$ref"].as_str().unwrap_or_else(|| panic!("expected a $ref: {value}"))
}

/// Every `$ref` anywhere in `value`.
fn all_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| all_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| all_refs(v, out)),
        _ => {}
    }
}

/// Closes every described object (except the open ones) so an undocumented field fails validation.
fn close_objects(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(close_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// The server's messages from the document, each with a strict validator of its payload.
struct ServerMessages {
    by_name: BTreeMap<String, jsonschema::Validator>,
    /// `type` value → names of the messages that carry it.
    by_type: BTreeMap<String, Vec<String>>,
}

fn payload_type_names(doc: &Value, message: &Value) -> Vec<String> {
    let payload = resolve(doc, ref_of(&message["payload"])).expect("payload resolves");
    let t = &payload["properties"]["type"];
    match (t.get("const"), t.get("enum")) {
        (Some(c), _) => vec![c.as_str().unwrap().to_string()],
        (None, Some(Value::Array(names))) => names.iter().map(|n| n.as_str().unwrap().to_string()).collect(),
        _ => panic!("payload without a `type` const: {payload}"),
    }
}

/// A draft-07 validator of the message's payload, with `#/components/...` references resolving.
fn validator(doc: &Value, message_name: &str, strict: bool) -> jsonschema::Validator {
    let mut components = doc["components"].clone();
    if strict {
        for (name, schema) in components["schemas"].as_object_mut().unwrap() {
            if !OPEN_SCHEMAS.contains(&name.as_str()) {
                close_objects(schema);
            }
        }
    }
    let schema = json!({
        "$ref": format!("#/components/messages/{message_name}/payload"),
        "components": components,
    });
    jsonschema::draft7::new(&schema).unwrap_or_else(|e| panic!("{message_name}: not a valid schema: {e}"))
}

fn server_messages(doc: &Value) -> ServerMessages {
    let mut names = BTreeSet::new();
    for (_, operation) in doc["operations"].as_object().unwrap() {
        if operation["action"] == "send" {
            for m in operation["messages"].as_array().unwrap() {
                let message = resolve(doc, ref_of(m)).unwrap();
                let name = ref_of(message).rsplit('/').next().unwrap().to_string();
                names.insert(name);
            }
        }
    }
    let mut by_name = BTreeMap::new();
    let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in names {
        let message = &doc["components"]["messages"][&name];
        for t in payload_type_names(doc, message) {
            by_type.entry(t).or_default().push(name.clone());
        }
        by_name.insert(name.clone(), validator(doc, &name, true));
    }
    ServerMessages { by_name, by_type }
}

impl ServerMessages {
    /// The one message the frame is valid for; panics with the validation errors otherwise.
    fn classify(&self, frame: &Value) -> String {
        let t = frame["type"].as_str().unwrap_or_else(|| panic!("frame without a type: {frame}"));
        let candidates =
            self.by_type.get(t).unwrap_or_else(|| panic!("no message in the document for `{t}`"));
        let mut valid = Vec::new();
        let mut errors = Vec::new();
        for name in candidates {
            let v = &self.by_name[name];
            let errs: Vec<String> =
                v.iter_errors(frame).map(|e| format!("{e} at {}", e.instance_path())).collect();
            if errs.is_empty() {
                valid.push(name.clone());
            } else {
                errors.push(format!("{name}: {errs:?}"));
            }
        }
        assert_eq!(
            valid.len(),
            1,
            "frame {frame} must match exactly one message; {valid:?}, errors: {errors:?}"
        );
        valid.remove(0)
    }
}

#[tokio::test]
async fn the_document_is_structurally_valid_asyncapi_3() {
    let app = spawn_app().await;
    let doc = fetch_document(&app).await;

    assert_eq!(doc["asyncapi"], "3.0.0");
    assert!(doc["info"]["title"].as_str().is_some_and(|t| !t.is_empty()), "info.title");
    assert_eq!(doc["info"]["version"], app.config.app.version.as_str(), "info.version");
    assert_eq!(doc["defaultContentType"], "application/json");

    // Every reference anywhere resolves.
    let mut refs = Vec::new();
    all_refs(&doc, &mut refs);
    assert!(refs.len() > 50, "{}", refs.len());
    for r in &refs {
        assert!(resolve(&doc, r).is_some(), "unresolved $ref {r}");
    }

    let servers = doc["servers"].as_object().unwrap();
    for (name, server) in servers {
        assert!(server["host"].is_string() && server["protocol"] == "ws", "server {name}: {server}");
    }
    let ws = &app.config.chat_workflows.websocket;
    assert_eq!(servers["websocket"]["host"], format!("{}:{}", ws.host, ws.port));
    assert_eq!(servers["rest"]["host"], format!("{}:{}", app.config.app.host, app.config.app.port));

    // Channels: the addresses of websocket.md C.2 on the servers that serve them, parameters declared.
    let channels = doc["channels"].as_object().unwrap();
    let mut served: BTreeSet<(String, String)> = BTreeSet::new();
    for (id, channel) in channels {
        let address = channel["address"].as_str().unwrap_or_else(|| panic!("channel {id} without address"));
        let params: BTreeSet<&str> =
            address.split('{').skip(1).map(|rest| rest.split('}').next().unwrap()).collect();
        let declared: BTreeSet<&str> = channel
            .get("parameters")
            .and_then(Value::as_object)
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(params, declared, "channel {id}: parameters of {address}");
        for server in channel["servers"].as_array().unwrap() {
            let server = ref_of(server).strip_prefix("#/servers/").expect("a server ref").to_string();
            served.insert((server, address.to_string()));
        }
        for (name, message) in channel["messages"].as_object().unwrap() {
            let target = ref_of(message);
            assert_eq!(target, format!("#/components/messages/{name}"), "channel {id}");
        }
    }
    let prefixed = format!("{}/ws/chat/{{chat_id}}", app.config.api.prefix);
    for (server, address) in [
        ("websocket", "/chat/{chat_id}"),
        ("websocket", "/ws/chat/{chat_id}"),
        ("websocket", "/"),
        ("rest", "/chat/{chat_id}"),
        ("rest", "/ws/chat/{chat_id}"),
        ("rest", prefixed.as_str()),
    ] {
        assert!(served.contains(&(server.into(), address.into())), "{address} on {server}: {served:?}");
    }

    // Operations: send/receive on a channel, with messages of that channel.
    let mut per_channel: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, operation) in doc["operations"].as_object().unwrap() {
        let action = operation["action"].as_str().unwrap();
        assert!(["send", "receive"].contains(&action), "operation {id}: {action}");
        let channel = ref_of(&operation["channel"]).strip_prefix("#/channels/").expect("a channel ref");
        assert!(channels.contains_key(channel), "operation {id}: channel {channel}");
        for m in operation["messages"].as_array().unwrap() {
            let r = ref_of(m);
            assert!(r.starts_with(&format!("#/channels/{channel}/messages/")), "operation {id}: {r}");
        }
        per_channel.entry(channel.to_string()).or_default().insert(action.to_string());
    }
    for id in channels.keys() {
        assert_eq!(per_channel[id], BTreeSet::from(["receive".into(), "send".into()]), "channel {id}");
    }

    // Messages: a JSON payload whose schema is valid draft-07 and names the message's `type`.
    let messages = doc["components"]["messages"].as_object().unwrap();
    for (name, message) in messages {
        assert_eq!(message["contentType"], "application/json", "{name}");
        assert!(message["summary"].as_str().is_some_and(|s| !s.is_empty()), "{name}");
        let payload = resolve(&doc, ref_of(&message["payload"])).unwrap();
        jsonschema::draft7::meta::validate(payload).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(payload["properties"]["type"]["type"], "string", "{name}");
        assert!(payload["required"].as_array().unwrap().contains(&json!("type")), "{name}");
        validator(&doc, name, false);
    }
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        jsonschema::draft7::meta::validate(schema).unwrap_or_else(|e| panic!("schema {name}: {e}"));
    }

    // Every message type the code declares is in the document, under the same `type`.
    for (specs, action) in [(wire::server_messages(), "send"), (wire::client_messages(), "receive")] {
        for spec in specs {
            let message =
                messages.get(spec.name).unwrap_or_else(|| panic!("{} is not documented", spec.name));
            assert!(payload_type_names(&doc, message).contains(&spec.type_name.to_string()), "{}", spec.name);
            let in_operation = doc["operations"]
                .as_object()
                .unwrap()
                .values()
                .filter(|o| o["action"] == action && o["channel"]["$ref"] == "#/channels/chat")
                .flat_map(|o| o["messages"].as_array().unwrap())
                .any(|m| ref_of(m) == format!("#/channels/chat/messages/{}", spec.name));
            assert!(in_operation, "{} is not in a `{action}` operation of /chat/{{chat_id}}", spec.name);
        }
    }
    let declared = wire::server_messages().len() + wire::client_messages().len();
    assert_eq!(messages.len(), declared, "no message the code does not declare");

    // The fields websocket.md C.4 requires of intermediate `progress` events, optional.
    let progress = resolve(&doc, ref_of(&messages["progress"]["payload"])).unwrap();
    let required: Vec<&str> =
        progress["required"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    for field in ["rows_processed", "rows_total", "phase", "eta_seconds"] {
        assert!(progress["properties"].get(field).is_some(), "progress.{field}");
        assert!(!required.contains(&field), "progress.{field} is optional");
    }
    for field in
        ["job_id", "step_id", "step_index", "total_steps", "operation", "progress", "overall_progress"]
    {
        assert!(required.contains(&field), "progress.{field} is required");
    }
    for field in ["chat_id", "timestamp", "seq"] {
        assert!(required.contains(&field), "the hub's {field} is documented");
    }
    let strict = validator(&doc, "progress", true);
    let mut event = wire::ProgressEvent {
        job_id: "j".into(),
        step_id: "s".into(),
        step_index: 1,
        total_steps: 2,
        operation: "normalization/apply".into(),
        progress: 45,
        overall_progress: 22,
        status: wire::StepStatus::Running,
        message: "Normalizing row 450,000 of 1,000,000".into(),
        rows_processed: Some(450_000),
        rows_total: Some(None),
        phase: Some(wire::ProgressPhase::Processing),
        eta_seconds: Some(None),
    }
    .to_json();
    event["chat_id"] = json!("c");
    event["timestamp"] = json!("2026-03-01T02:15:02.611930+00:00");
    event["seq"] = json!(7);
    assert!(strict.is_valid(&event), "nullable rows_total / eta_seconds: {event}");
    event["rows_total"] = json!(1_000_000);
    event["eta_seconds"] = json!(3.5);
    assert!(strict.is_valid(&event), "{event}");
    for (field, bad) in
        [("phase", json!("sleeping")), ("rows_processed", json!(null)), ("progress", json!(101))]
    {
        let mut wrong = event.clone();
        wrong[field] = bad;
        assert!(!strict.is_valid(&wrong), "progress.{field} = {} must be refused", wrong[field]);
    }
    let mut unknown = event.clone();
    unknown["undocumented"] = json!(1);
    assert!(!strict.is_valid(&unknown), "the strict check refuses undocumented fields");

    // Client messages: each example is valid for its schema and understood by the server's parser.
    for spec in wire::client_messages() {
        let payload = resolve(&doc, ref_of(&messages[spec.name]["payload"])).unwrap();
        let examples =
            payload["examples"].as_array().unwrap_or_else(|| panic!("{} has no example", spec.name));
        let v = validator(&doc, spec.name, true);
        for example in examples {
            assert!(v.is_valid(example), "{}: {example}", spec.name);
            let parsed = oxcelize::ws::message::parse_client_message(&example.to_string());
            use oxcelize::ws::message::ClientMessage;
            assert!(
                !matches!(parsed, ClientMessage::Invalid { .. } | ClientMessage::Other { .. }),
                "{}: the parser does not take {example}: {parsed:?}",
                spec.name
            );
        }
    }

    // Only GET/HEAD (and OPTIONS).
    let res = app.client.post(format!("{}/asyncapi.json", app.base)).send().await.unwrap();
    let (status, body) = envelope(res).await;
    assert_eq!((status, body["message"].as_str()), (405, Some("Method not allowed")), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn without_the_rest_alias_only_the_websocket_port_is_described() {
    let app = spawn_app_with(|c| c.chat_workflows.websocket.serve_on_rest_port = false).await;
    let doc = fetch_document(&app).await;
    assert_eq!(doc["servers"].as_object().unwrap().keys().collect::<Vec<_>>(), ["websocket"]);
    for (id, channel) in doc["channels"].as_object().unwrap() {
        assert_eq!(channel["servers"], json!([{"$ref": "#/servers/websocket"}]), "{id}");
    }
    app.stop().await;
}

/// Text frames until one satisfies `stop` (included), at most `wait`.
async fn frames_until(ws: &mut Ws, wait: Duration, mut stop: impl FnMut(&Value) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame =
            recv_json_within(ws, left).await.unwrap_or_else(|| panic!("stop frame missing; got {out:?}"));
        let done = stop(&frame);
        out.push(frame);
        if done {
            return out;
        }
    }
}

fn is_type(t: &'static str) -> impl Fn(&Value) -> bool {
    move |f| f["type"] == t
}

/// Runs a session through every kind of server message and validates each real frame against the document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_of_a_real_session_matches_its_message() {
    let app = spawn_app().await;
    let doc = fetch_document(&app).await;
    let messages = server_messages(&doc);
    let mut frames: Vec<Value> = Vec::new();

    // Connection level: welcome (bound and unbound), pong, ack, protocol errors, subscriptions, resume.
    let chat = create_chat(&app).await;
    let mut ws = app.ws_connect(&format!("/chat/{chat}")).await;
    frames.extend(frames_until(&mut ws, LONG, is_type("connected")).await);
    let mut unbound = app.ws_connect("/").await;
    frames.extend(frames_until(&mut unbound, LONG, is_type("connected")).await);
    assert_eq!(frames.last().unwrap()["chat_id"], Value::Null);
    for text in [
        "ping",
        r#"{"type":"ping","id":"r1"}"#,
        r#"{"type":"hello","n":1}"#,
        "not json",
        "[1,2]",
        r#"{"type":"subscribe"}"#,
        r#"{"type":"subscribe","chat_id":"other-chat","mode":"add","id":"s1"}"#,
        r#"{"type":"unsubscribe","chat_id":"other-chat"}"#,
    ] {
        send_text(&mut unbound, text).await;
        frames.push(recv_json_within(&mut unbound, LONG).await.expect("a reply"));
    }
    send_text(&mut unbound, r#"{"type":"subscribe","chat_id":"bad$id"}"#).await;
    frames.push(recv_json_within(&mut unbound, LONG).await.expect("a reply"));
    send_text(&mut unbound, &format!(r#"{{"type":"subscribe","chat_id":"{chat}","id":"s2"}}"#)).await;
    frames.extend(frames_until(&mut unbound, LONG, is_type("connected")).await);
    send_text(&mut unbound, &format!(r#"{{"type":"resume","chat_id":"{chat}","last_seq":999}}"#)).await;
    frames.extend(frames_until(&mut unbound, LONG, is_type("replay_complete")).await);

    // Chat events: an upload, a queued and a completed run, a failing run.
    let (status, body) = upload(&app, &chat, "sales.csv", SAMPLE_CSV.as_bytes().to_vec()).await;
    assert_eq!(status, 200, "{body}");
    frames.extend(frames_until(&mut ws, LONG, is_type("message_added")).await);
    chat_of(&app).runner.set_test_step_delay(Duration::from_millis(200));
    let steps =
        json!({"steps": [{"operation": "csv/convert-to-excel", "arguments": {"sheet_name": "Sales"}}]});
    let (a, b) = tokio::join!(execute(&app, &chat, &steps), execute(&app, &chat, &steps));
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    let mut completed = 0;
    frames.extend(
        frames_until(&mut ws, LONG, |f| {
            completed += usize::from(f["type"] == "workflow_completed");
            completed == 2
        })
        .await,
    );
    chat_of(&app).runner.set_test_step_delay(Duration::ZERO);
    let failing = json!({"steps": [{"operation": "excel/extract-columns-to-file", "arguments": {"columns": ["nope"]}}]});
    assert_eq!(execute(&app, &chat, &failing).await.0, 422);
    frames.extend(frames_until(&mut ws, LONG, is_type("workflow_failed")).await);

    // A resume replays stored events (marked `replayed`).
    let mut resumed = app.ws_connect(&format!("/chat/{chat}?last_seq=0")).await;
    frames.extend(frames_until(&mut resumed, LONG, is_type("replay_complete")).await);
    assert!(frames.iter().any(|f| f["replayed"] == true));

    // The bot: its state transitions.
    let (status, body) = envelope(app.post_json("/chat/bot/conversations", &json!({})).await).await;
    assert_eq!(status, 201, "{body}");
    let bot_chat = body["data"]["chat_id"].as_str().unwrap().to_string();
    let mut bot_ws = app.ws_connect(&format!("/chat/{bot_chat}")).await;
    frames.extend(frames_until(&mut bot_ws, LONG, is_type("connected")).await);
    let path = format!("/chat/bot/conversations/{bot_chat}/message");
    let (status, body) =
        envelope(app.post_json(&path, &json!({"message": "extract columns: Name"})).await).await;
    assert_eq!(status, 200, "{body}");
    frames.extend(frames_until(&mut bot_ws, LONG, is_type("bot_state")).await);

    // Deleting the conversation.
    let res = app.client.delete(format!("{}/chat/workflows/{chat}", app.api)).send().await.unwrap();
    assert_eq!(envelope(res).await.0, 200);
    frames.extend(frames_until(&mut ws, LONG, is_type("conversation_deleted")).await);

    // Shutdown notice.
    let stop = app.stop();
    let (_, tail) = tokio::join!(stop, async {
        let mut tail = Vec::new();
        while let Some(Ok(msg)) = bot_ws.next().await {
            if let WsMessage::Text(t) = msg {
                tail.push(serde_json::from_str::<Value>(t.as_str()).unwrap());
            }
        }
        tail
    });
    assert!(tail.iter().any(|f| f["type"] == "server_shutdown"), "{tail:?}");
    frames.extend(tail);

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for frame in &frames {
        *seen.entry(messages.classify(frame)).or_default() += 1;
    }
    // `authenticated` needs token auth: see the next test. Every other server message was produced here.
    let expected: BTreeSet<&str> =
        messages.by_name.keys().map(String::as_str).filter(|n| *n != "authenticated").collect();
    let produced: BTreeSet<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(produced, expected, "frames per message: {seen:?}");
}

#[tokio::test]
async fn auth_frames_match_their_messages() {
    let app = spawn_app_with(|c| {
        let auth = &mut c.chat_workflows.websocket.auth;
        auth.enabled = true;
        auth.tokens = vec!["asyncapi-token".into()];
    })
    .await;
    let doc = fetch_document(&app).await;
    let messages = server_messages(&doc);
    let mut ws = app.ws_connect("/chat/auth-chat").await;
    send_text(&mut ws, r#"{"type":"auth","token":"asyncapi-token"}"#).await;
    let mut frames = frames_until(&mut ws, LONG, is_type("connected")).await;
    send_text(&mut ws, r#"{"type":"auth","token":"asyncapi-token","id":"a1"}"#).await;
    frames.push(recv_json_within(&mut ws, LONG).await.expect("a reply"));
    let mut refused = app.ws_connect("/chat/auth-chat").await;
    send_text(&mut refused, r#"{"type":"ping"}"#).await;
    send_text(&mut refused, r#"{"type":"subscribe","chat_id":"x"}"#).await;
    frames.extend(frames_until(&mut refused, LONG, |f| f["type"] == "error").await);
    let names: Vec<String> = frames.iter().map(|f| messages.classify(f)).collect();
    assert_eq!(names, ["connected", "authenticated", "pong", "protocolError"], "{frames:?}");
    assert_eq!(frames[1]["id"], "a1");
    assert_eq!(frames[3]["code"], "unauthorized");
    app.stop().await;
}

/// Frames of a documented type are built from their `events::wire` struct, never as a JSON literal: a
/// literal would bypass the schema the document derives from the struct.
#[test]
fn no_frame_of_a_documented_type_is_built_by_hand() {
    let types: BTreeSet<&str> = wire::server_messages().iter().map(|s| s.type_name).collect();
    let literal = regex::Regex::new(r#""type"\s*:\s*"([a-z_]+)""#).unwrap();
    let mut offenders = Vec::new();
    let mut dirs = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    let mut files = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.file_name().is_some_and(|n| n == "tests.rs")
            {
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests may spell frames out.
            let code = text.split("#[cfg(test)]").next().unwrap();
            for (n, line) in code.lines().enumerate() {
                for found in literal.captures_iter(line) {
                    if types.contains(&found[1]) {
                        offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(files > 50, "{files}");
    assert!(offenders.is_empty(), "hand-built frames of documented types: {offenders:#?}");
}
