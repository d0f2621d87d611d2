//! Response `data` and stored-message metadata of the bot endpoints (chatbot.md §2.2–§2.4, §8), built from
//! a handler [`Reply`] and the context after it, so the HTTP layer only wraps them in the envelope.

use serde_json::{json, Map, Value};

use super::handler::{Reply, Status};
use super::state::{BotContext, Step};

fn steps_json(steps: &Option<Vec<Step>>) -> Value {
    match steps {
        Some(s) => serde_json::to_value(s).unwrap_or(Value::Null),
        None => Value::Null,
    }
}

/// A submitted job as reported to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub job_id: String,
    /// Jobs of this chat ahead of this one (0 = starts immediately).
    pub position: u64,
}

/// `/message` success `data` (§2.2 table).
pub fn message_data(reply: &Reply, ctx: &BotContext, submission: Option<&Submission>) -> Value {
    let mut data = json!({
        "bot_response": reply.bot_response,
        "intent": reply.intent_json(),
        "suggested_workflow": steps_json(&reply.suggested_workflow),
        "requires_confirmation": reply.requires_confirmation,
        "requires_file": reply.requires_file,
        "action": reply.action.map(|a| a.as_str()),
        "output_files": [],
        "state": ctx.current_state.as_str(),
        "pending_workflow": steps_json(&ctx.pending_workflow),
        "missing_parameters": reply.missing_parameters,
        "understood": true,
    });
    if let Some(map) = data.as_object_mut() {
        if let Some(p) = &reply.parameters {
            map.insert("parameters".into(), Value::Object(p.clone()));
        }
        if let Some(s) = submission {
            map.insert("job_id".into(), json!(s.job_id));
            map.insert("status".into(), json!("submitted"));
            map.insert("position".into(), json!(s.position));
        }
    }
    data
}

/// `data` of a soft failure (HTTP 200, body status 200, `understood: false`): the reference's
/// `error_type`/`details` plus `bot_response`, `state` and, for unknown intents, `suggestions` (§2.2).
pub fn soft_failure_data(reply: &Reply, ctx: &BotContext) -> Value {
    let mut data = json!({
        "error_type": "Error",
        "details": null,
        "bot_response": reply.bot_response,
        "state": ctx.current_state.as_str(),
        "requires_file": reply.requires_file,
        "understood": false,
    });
    if let (Some(map), Some(s)) = (data.as_object_mut(), &reply.suggestions) {
        map.insert("suggestions".into(), json!(s));
    }
    data
}

/// `data` of a rejected confirm (400/422): the error envelope's fields plus `bot_response` and `state`.
pub fn rejected_data(reply: &Reply, ctx: &BotContext) -> Value {
    let (details, status) = match &reply.status {
        Status::Rejected { details, status, .. } => (details.clone().unwrap_or(Value::Null), *status),
        _ => (Value::Null, 400),
    };
    // Like every error envelope: the class beside the chat routes' constant `error_type`.
    json!({
        "error_type": "Error",
        "error_class": crate::error::ErrorKind::from_status(status).error_type(),
        "details": details,
        "bot_response": reply.bot_response,
        "state": ctx.current_state.as_str(),
        "requires_file": reply.requires_file,
    })
}

/// Metadata of the stored reply to a text message: `{"intent","suggested_workflow","requires_confirmation"}`
/// (plus `job_id`/`action` when the text submitted a job).
pub fn text_reply_metadata(reply: &Reply, submission: Option<&Submission>) -> Value {
    let mut meta = json!({
        "intent": reply.intent_json(),
        "suggested_workflow": steps_json(&reply.suggested_workflow),
        "requires_confirmation": reply.requires_confirmation,
    });
    add_submission(&mut meta, submission);
    meta
}

/// Metadata of the stored reply to an upload: `{"file_path","suggested_workflow","requires_confirmation"}`.
pub fn upload_reply_metadata(reply: &Reply, file_path: &str) -> Value {
    json!({
        "file_path": file_path,
        "suggested_workflow": steps_json(&reply.suggested_workflow),
        "requires_confirmation": reply.requires_confirmation,
    })
}

/// Metadata of the stored reply to a confirm: `{}`, or `{"job_id","action":"execute_workflow"}` on
/// submission.
pub fn confirm_reply_metadata(submission: Option<&Submission>) -> Value {
    let mut meta = Value::Object(Map::new());
    add_submission(&mut meta, submission);
    meta
}

fn add_submission(meta: &mut Value, submission: Option<&Submission>) {
    if let (Some(map), Some(s)) = (meta.as_object_mut(), submission) {
        map.insert("job_id".into(), json!(s.job_id));
        map.insert("action".into(), json!("execute_workflow"));
    }
}

/// `/upload` success `data` (§2.3).
pub fn upload_data(
    reply: &Reply,
    ctx: &BotContext,
    file_path: &str,
    filename: &str,
    download_url: &str,
) -> Value {
    json!({
        "file_path": file_path,
        "filename": filename,
        "download_url": download_url,
        "bot_response": reply.bot_response,
        "suggested_workflow": steps_json(&reply.suggested_workflow),
        "requires_confirmation": reply.requires_confirmation,
        "state": ctx.current_state.as_str(),
        "missing_parameters": reply.missing_parameters,
    })
}

/// `/confirm` 202 `data` (§2.4).
pub fn submitted_data(reply: &Reply, submission: &Submission) -> Value {
    json!({
        "job_id": submission.job_id,
        "status": "submitted",
        "message": "Workflow submitted for execution. Track progress over the WebSocket or the status endpoint.",
        "bot_response": reply.bot_response,
        "position": submission.position,
    })
}

/// `/confirm` decline `data` (§2.4).
pub fn declined_data(reply: &Reply, ctx: &BotContext) -> Value {
    json!({
        "bot_response": reply.bot_response,
        "output_files": [],
        "results": [],
        "state": ctx.current_state.as_str(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::handler::{dispatch, BotInput, Environment, WorkflowProblems};

    struct Env(Option<String>);
    impl Environment for Env {
        fn latest_upload(&self) -> Option<String> {
            self.0.clone()
        }
        fn uploads(&self) -> Vec<String> {
            self.0.clone().into_iter().collect()
        }
        fn validate(&self, _: &[Step]) -> Result<(), WorkflowProblems> {
            Ok(())
        }
        fn now(&self) -> String {
            "2026-03-01T03:00:00.000000+00:00".into()
        }
    }

    fn run(ctx: &mut BotContext, env: &Env, text: &str) -> Reply {
        dispatch(ctx, &BotInput::Text(text.into()), env).unwrap()
    }

    #[test]
    fn message_data_has_every_documented_field() {
        let env = Env(None);
        let mut ctx = BotContext::new();
        let reply = run(&mut ctx, &env, "extract columns: Name");
        let d = message_data(&reply, &ctx, None);
        for key in [
            "bot_response",
            "intent",
            "suggested_workflow",
            "requires_confirmation",
            "requires_file",
            "action",
            "output_files",
            "state",
            "pending_workflow",
            "missing_parameters",
        ] {
            assert!(d.get(key).is_some(), "missing {key}");
        }
        assert_eq!(d["intent"], json!({"type": "extract_columns", "confidence": 1.0}));
        assert_eq!(d["requires_file"], true);
        assert_eq!(d["state"], "awaiting_file");
        assert_eq!(d["action"], Value::Null);
        assert_eq!(d["output_files"], json!([]));
        assert_eq!(d["pending_workflow"], d["suggested_workflow"]);
        assert!(d.get("job_id").is_none() && d.get("parameters").is_none());

        let sub = Submission { job_id: "j1".into(), position: 0 };
        let d = message_data(&reply, &ctx, Some(&sub));
        assert_eq!((d["job_id"].clone(), d["status"].clone()), (json!("j1"), json!("submitted")));
        let m = text_reply_metadata(&reply, Some(&sub));
        assert_eq!(m["action"], "execute_workflow");
        assert_eq!(m["intent"]["type"], "extract_columns");
        assert_eq!(m["requires_confirmation"], false);
    }

    #[test]
    fn soft_failure_data_carries_reply_state_and_suggestions() {
        let env = Env(None);
        let mut ctx = BotContext::new();
        let reply = run(&mut ctx, &env, "do something random");
        let d = soft_failure_data(&reply, &ctx);
        assert_eq!(d["error_type"], "Error");
        assert_eq!(d["details"], Value::Null);
        assert!(!d["bot_response"].as_str().unwrap().is_empty());
        assert_eq!(d["state"], "idle");
        assert_eq!(d["understood"], false);
        assert_eq!(
            d["suggestions"],
            json!(["extract columns", "convert to JSON", "generate SQL", "normalize data"])
        );
    }

    #[test]
    fn confirm_and_upload_shapes() {
        let env = Env(Some("a.xlsx".into()));
        let mut ctx = BotContext::new();
        let reply =
            dispatch(&mut ctx, &BotInput::Confirmation { confirmed: false, modified_workflow: None }, &env)
                .unwrap();
        let d = declined_data(&reply, &ctx);
        assert_eq!((d["output_files"].clone(), d["results"].clone()), (json!([]), json!([])));
        assert!(d["bot_response"].is_string());
        assert_eq!(confirm_reply_metadata(None), json!({}));

        let reply = run(&mut ctx, &env, "convert to JSON");
        let sub = Submission { job_id: "j".into(), position: 1 };
        let d = submitted_data(&reply, &sub);
        assert_eq!(d["position"], 1);
        assert!(d["message"].as_str().unwrap().contains("WebSocket"));

        let d = upload_data(
            &reply,
            &ctx,
            "./w/c/uploads/a.xlsx",
            "a.xlsx",
            "http://h/api/v1/chat/workflows/c/files/a.xlsx",
        );
        assert_eq!(d["filename"], "a.xlsx");
        assert_eq!(d["requires_confirmation"], true);
        assert_eq!(d["state"], "awaiting_confirmation");
        let m = upload_reply_metadata(&reply, "./w/c/uploads/a.xlsx");
        assert_eq!(m["file_path"], "./w/c/uploads/a.xlsx");
        assert!(m["suggested_workflow"].is_array());

        let reply = dispatch(
            &mut BotContext::new(),
            &BotInput::Confirmation { confirmed: true, modified_workflow: None },
            &env,
        )
        .unwrap();
        let d = rejected_data(&reply, &BotContext::new());
        assert_eq!(d["error_type"], "Error");
        assert!(d["bot_response"].is_string());
    }
}
