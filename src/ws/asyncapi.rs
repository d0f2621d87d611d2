//! The AsyncAPI 3.0 document of the WebSocket protocol (`GET /asyncapi.json`), built from the message types
//! of `events::wire`: their derived schemas plus what the transport adds (`type`, the chat envelope, the
//! echoed request `id`). The servers and addresses follow the configuration.

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::events::wire::{client_messages, server_messages, MessageSpec, Scope};

pub const ASYNCAPI_VERSION: &str = "3.0.0";

const CHAT_ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$";

/// The chat envelope the hub adds to every chat-scoped event.
fn chat_envelope() -> Vec<(&'static str, Value, bool)> {
    vec![
        ("chat_id", json!({"type": "string", "description": "The chat the event belongs to."}), true),
        (
            "timestamp",
            json!({"type": "string", "description": "When the event was published (UTC, RFC 3339)."}),
            true,
        ),
        (
            "seq",
            json!({"type": "integer", "minimum": 1,
                   "description": "Per-chat sequence number; resume with the last one seen (`last_seq`)."}),
            true,
        ),
        (
            "replayed",
            json!({"type": "boolean", "const": true,
                   "description": "Present on events sent again by a resume or the running-job snapshot."}),
            false,
        ),
    ]
}

fn request_id_property() -> Value {
    json!({"type": "string", "maxLength": 64,
           "description": "The client's request id; echoed in the direct reply."})
}

/// The message's payload schema: the derived schema with `type` first and the transport's fields.
fn payload_schema(spec: &MessageSpec, client: bool) -> Value {
    let mut schema = serde_json::to_value(&spec.schema).unwrap_or_else(|_| json!({}));
    let Value::Object(object) = &mut schema else { return schema };
    let mut properties = Map::new();
    let type_schema = if spec.type_aliases.is_empty() {
        json!({"type": "string", "const": spec.type_name})
    } else {
        let mut names = vec![spec.type_name];
        names.extend_from_slice(spec.type_aliases);
        json!({"type": "string", "enum": names})
    };
    properties.insert("type".into(), type_schema);
    if let Some(Value::Object(own)) = object.remove("properties") {
        properties.extend(own);
    }
    let mut required: Vec<Value> = vec![json!("type")];
    if let Some(Value::Array(own)) = object.remove("required") {
        required.extend(own);
    }
    if client || spec.scope == Scope::Reply {
        properties.insert("id".into(), request_id_property());
    }
    if !client && spec.scope == Scope::Chat {
        for (name, property, is_required) in chat_envelope() {
            properties.insert(name.into(), property);
            if is_required {
                required.push(json!(name));
            }
        }
    }
    object.insert("type".into(), json!("object"));
    object.insert("properties".into(), Value::Object(properties));
    object.insert("required".into(), Value::Array(required));
    schema
}

fn message_object(spec: &MessageSpec, client: bool) -> Value {
    let mut message = json!({
        "name": spec.name,
        "title": spec.type_name,
        "summary": spec.summary,
        "contentType": "application/json",
        "payload": {"$ref": format!("#/components/schemas/{}", spec.schema_name)},
    });
    if client && spec.name == "ping" {
        message["description"] =
            json!("The bare text frame `ping` (any case) is accepted as well, for heartbeat-only clients.");
    }
    message
}

/// One channel's address on the servers that serve it.
struct ChannelSpec {
    id: &'static str,
    address: String,
    servers: Vec<&'static str>,
    bound: bool,
    description: &'static str,
}

fn channels_for(config: &Config) -> (Vec<ChannelSpec>, Vec<&'static str>) {
    let chat = &config.chat_workflows;
    if !chat.enabled {
        return (Vec::new(), Vec::new());
    }
    let rest = chat.websocket.serve_on_rest_port;
    let both = if rest { vec!["websocket", "rest"] } else { vec!["websocket"] };
    let mut channels = vec![
        ChannelSpec {
            id: "chat",
            address: "/chat/{chat_id}".into(),
            servers: both.clone(),
            bound: true,
            description: "A connection bound to one chat (a trailing `/` is accepted). Further chats can be \
                          added with `subscribe`.",
        },
        ChannelSpec {
            id: "wsChat",
            address: "/ws/chat/{chat_id}".into(),
            servers: both.clone(),
            bound: true,
            description: "Alias of `/chat/{chat_id}`.",
        },
        ChannelSpec {
            id: "unbound",
            address: "/".into(),
            servers: vec!["websocket"],
            bound: false,
            description: "An unbound connection (also `/chat/`): `connected` with a null `chat_id`; it \
                          receives chat events only after a `subscribe`.",
        },
    ];
    if rest {
        channels.push(ChannelSpec {
            id: "prefixedWsChat",
            address: format!("{}/ws/chat/{{chat_id}}", config.api.prefix),
            servers: vec!["rest"],
            bound: true,
            description: "Alias of `/chat/{chat_id}` under the REST API prefix.",
        });
    }
    let mut servers = vec!["websocket"];
    if rest {
        servers.push("rest");
    }
    (channels, servers)
}

/// The handshake's optional query parameters (websocket.md C.2, C.6, C.10), as a WebSockets binding.
fn ws_binding() -> Value {
    json!({"ws": {
        "method": "GET",
        "query": {
            "type": "object",
            "properties": {
                "last_seq": {"type": "integer", "minimum": 0,
                             "description": "Resume: replay the chat's events after this seq."},
                "epoch": {"type": "string", "description": "Resume: the epoch the client saw in `connected`."},
                "token": {"type": "string",
                          "description": "Auth token (when `auth.allow_query_token`); redacted in logs."}
            }
        },
        "headers": {
            "type": "object",
            "properties": {
                "Authorization": {"type": "string", "description": "`Bearer <token>` when auth is enabled."},
                "Sec-WebSocket-Protocol": {"type": "string",
                    "description": "`pycelize.v1, bearer.<token>` carries the token; the server selects `pycelize.v1`."}
            }
        },
        "bindingVersion": "0.1.0"
    }})
}

fn server_object(host: &str, port: u16, description: &str) -> Value {
    json!({"host": format!("{host}:{port}"), "protocol": "ws", "description": description})
}

/// The whole document for this configuration.
pub fn document(config: &Config) -> Value {
    let server_specs = server_messages();
    let client_specs = client_messages();

    let mut schemas = Map::new();
    let mut messages = Map::new();
    for (specs, client) in [(&server_specs, false), (&client_specs, true)] {
        for spec in specs.iter() {
            for (name, schema) in &spec.dependencies {
                schemas
                    .entry(name.clone())
                    .or_insert_with(|| serde_json::to_value(schema).unwrap_or(Value::Null));
            }
            schemas.insert(spec.schema_name.clone(), payload_schema(spec, client));
            messages.insert(spec.name.into(), message_object(spec, client));
        }
    }

    let (channel_specs, server_names) = channels_for(config);
    let ws = &config.chat_workflows.websocket;
    let mut servers = Map::new();
    for name in &server_names {
        let server = match *name {
            "websocket" => server_object(&ws.host, ws.port, "The WebSocket listener."),
            _ => server_object(
                &config.app.host,
                config.app.port,
                "The REST listener; upgrade requests on the WebSocket paths speak the same protocol \
                 (`websocket.serve_on_rest_port`).",
            ),
        };
        servers.insert((*name).into(), server);
    }

    let mut channels = Map::new();
    let mut operations = Map::new();
    for channel in &channel_specs {
        let message_refs = |specs: &[MessageSpec]| -> Map<String, Value> {
            specs
                .iter()
                .map(|s| (s.name.to_string(), json!({"$ref": format!("#/components/messages/{}", s.name)})))
                .collect()
        };
        let mut channel_messages = message_refs(&server_specs);
        channel_messages.extend(message_refs(&client_specs));
        let mut object = json!({
            "address": channel.address,
            "title": channel.address,
            "description": channel.description,
            "servers": channel.servers.iter().map(|s| json!({"$ref": format!("#/servers/{s}")})).collect::<Vec<_>>(),
            "messages": channel_messages,
            "bindings": ws_binding(),
        });
        if channel.bound {
            object["parameters"] = json!({"chat_id": {
                "description": format!(
                    "The chat to subscribe to; must match `{CHAT_ID_PATTERN}` (else error `invalid_chat_id` and close 4001)."
                ),
                "examples": ["7f3d2c1b-5a4e-4f1e-9c3b-2d1e0f9a8b7c"]
            }});
        }
        channels.insert(channel.id.into(), object);

        let channel_message_refs = |specs: &[MessageSpec]| -> Vec<Value> {
            specs
                .iter()
                .map(|s| json!({"$ref": format!("#/channels/{}/messages/{}", channel.id, s.name)}))
                .collect()
        };
        operations.insert(
            format!("{}ServerMessages", channel.id),
            json!({
                "action": "send",
                "channel": {"$ref": format!("#/channels/{}", channel.id)},
                "summary": "What the server sends: replies, connection messages and the chat events of every subscribed chat.",
                "messages": channel_message_refs(&server_specs),
            }),
        );
        operations.insert(
            format!("{}ClientMessages", channel.id),
            json!({
                "action": "receive",
                "channel": {"$ref": format!("#/channels/{}", channel.id)},
                "summary": "What a client may send. Other JSON objects are answered with `ack`; text that is not JSON with `invalid_json`.",
                "messages": channel_message_refs(&client_specs),
            }),
        );
    }

    let description = if config.chat_workflows.enabled {
        "Progress and lifecycle events of chat workflows over WebSocket (websocket.md). Every frame is one \
         JSON text message whose `type` names it. Chat events carry a per-chat `seq`; a client that \
         reconnects resumes with `last_seq` and misses nothing. New fields may be added to any message."
    } else {
        "The WebSocket protocol is disabled in this configuration (`chat_workflows.enabled: false`)."
    };
    json!({
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "oxcelize WebSocket protocol",
            "version": config.app.version,
            "description": description,
        },
        "defaultContentType": "application/json",
        "servers": servers,
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    })
}
