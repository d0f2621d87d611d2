//! The bot service: each request loads the conversation's persisted context, runs the handler chain, stores
//! the messages, submits through the chat job runner and saves the context, all under one per-chat lock so
//! concurrent requests (and the runner's start/finish hooks) see one consistent context. Every function
//! blocks (SQLite, files); call them on the blocking pool.

use std::cell::{OnceCell, RefCell};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use serde_json::{json, Map, Value};

use super::handler::{dispatch, BotInput, Effect, Environment, Reply, WorkflowProblems};
use super::replies;
use super::state::{BotContext, BotState, JobOutcome, Step, Transition, TransitionError};
use super::view::{self, Submission};
use crate::chat::jobs::{JobKind, JobObserver, RunOutcome};
use crate::chat::model::{now_ts, ConversationRow, Job};
use crate::chat::workflow::{self, Plan};
use crate::chat::{Chat, ChatError};
use crate::events::is_valid_chat_id;

/// Striped per-chat locks: bounded memory, and two chats rarely share a stripe.
const LOCK_STRIPES: usize = 64;

fn chat_lock(chat_id: &str) -> MutexGuard<'static, ()> {
    static STRIPES: OnceLock<Vec<Mutex<()>>> = OnceLock::new();
    let stripes = STRIPES.get_or_init(|| (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect());
    let hash = chat_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    stripes[(hash % LOCK_STRIPES as u64) as usize].lock().unwrap_or_else(|p| p.into_inner())
}

impl From<TransitionError> for ChatError {
    fn from(e: TransitionError) -> Self {
        ChatError::Conflict(e.to_string())
    }
}

/// The answer of one bot request, rendered by the HTTP layer.
pub struct Answer {
    pub reply: Reply,
    pub context: BotContext,
    pub submission: Option<Submission>,
}

/// What the upload endpoint reports besides the reply.
pub struct UploadAnswer {
    pub answer: Answer,
    pub file_path: String,
    pub filename: String,
    pub download_url: String,
}

pub struct BotService {
    chat: Arc<Chat>,
}

/// The conversation facts the handlers may consult, backed by the store and the workflow planner. The plan
/// of the last successful validation is kept so a submission does not plan twice.
struct ChatEnv<'a> {
    chat: &'a Chat,
    row: &'a ConversationRow,
    uploads: Vec<String>,
    latest: Option<String>,
    plan: RefCell<Option<(Vec<Step>, Plan)>>,
    failure: RefCell<Option<ChatError>>,
}

fn steps_body(steps: &[Step]) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("steps".into(), serde_json::to_value(steps).unwrap_or(Value::Array(Vec::new())));
    body
}

fn problems_of(message: &str, details: Option<&Value>) -> WorkflowProblems {
    let problems: Vec<String> = details
        .and_then(|d| d.get("errors"))
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    let field = e.get("field").and_then(Value::as_str).unwrap_or("");
                    let error = e.get("error").and_then(Value::as_str).unwrap_or("");
                    format!("Step {} `{field}`: {error}", e.get("step").unwrap_or(&Value::Null))
                })
                .collect()
        })
        .unwrap_or_default();
    WorkflowProblems {
        message: message.to_string(),
        problems,
        details: details.cloned().unwrap_or_else(|| json!({"errors": []})),
    }
}

impl Environment for ChatEnv<'_> {
    fn latest_upload(&self) -> Option<String> {
        self.latest.clone()
    }

    fn uploads(&self) -> Vec<String> {
        self.uploads.clone()
    }

    /// Plans exactly like `/execute`. A missing upload is not a validation problem here (the handler checks
    /// the file separately, after validation).
    fn validate(&self, steps: &[Step]) -> Result<(), WorkflowProblems> {
        match workflow::plan(self.chat, self.row, &steps_body(steps)) {
            Ok(plan) => {
                *self.plan.borrow_mut() = Some((steps.to_vec(), plan));
                Ok(())
            }
            Err(ChatError::Validation { message, .. })
                if message == "No uploaded file found for processing" =>
            {
                Ok(())
            }
            Err(ChatError::Validation { message, details }) => Err(problems_of(&message, details.as_ref())),
            Err(other) => {
                let p = problems_of("Invalid workflow: the workflow could not be checked", None);
                *self.failure.borrow_mut() = Some(other);
                Err(p)
            }
        }
    }

    fn now(&self) -> String {
        now_ts()
    }
}

fn file_name(stored: &str) -> String {
    stored.rsplit('/').next().unwrap_or(stored).to_string()
}

/// The persisted context of a chat (idle when it never used the bot). A row this version cannot read
/// (hand-edited, newer schema) starts over from idle instead of failing every request.
fn load(chat: &Chat, chat_id: &str) -> Result<BotContext, ChatError> {
    match chat.store.bot_context(chat_id)? {
        Some(v) => Ok(serde_json::from_value(v).unwrap_or_else(|e| {
            log::warn!("bot context of chat {chat_id} unreadable ({e}); starting from idle");
            BotContext::new()
        })),
        None => Ok(BotContext::new()),
    }
}

fn save(chat: &Chat, chat_id: &str, ctx: &BotContext) -> Result<(), ChatError> {
    let value = serde_json::to_value(ctx).map_err(|e| ChatError::Internal(e.to_string()))?;
    chat.store.save_bot_context(chat_id, &value)
}

fn publish_transitions(chat: &Chat, chat_id: &str, transitions: &[Transition]) {
    for t in transitions {
        chat.hub.publish_event(chat_id, &t.event());
    }
}

impl BotService {
    pub fn new(chat: Arc<Chat>) -> BotService {
        BotService { chat }
    }

    fn env<'a>(&'a self, row: &'a ConversationRow) -> Result<ChatEnv<'a>, ChatError> {
        let uploads = self.chat.store.files(&row.chat_id, "uploaded")?;
        let latest = self.chat.store.latest_upload(&row.chat_id)?.map(|p| file_name(&p));
        Ok(ChatEnv {
            chat: &self.chat,
            row,
            uploads,
            latest,
            plan: RefCell::new(None),
            failure: RefCell::new(None),
        })
    }

    /// §2.1: a new conversation with an idle context and the welcome message.
    pub fn start(&self, chat_id: Option<&Value>, base: &str) -> Result<Value, ChatError> {
        let chat_id = match chat_id {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) if is_valid_chat_id(id) => Some(id.as_str()),
            Some(_) => {
                return Err(ChatError::validation_with(
                    "Invalid chat_id",
                    json!({"field": "chat_id", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"}),
                ))
            }
        };
        let conv = self.chat.create_conversation(chat_id)?;
        let _guard = chat_lock(&conv.chat_id);
        save(&self.chat, &conv.chat_id, &BotContext::new())?;
        let welcome = replies::welcome();
        self.chat.add_message(&conv.chat_id, "system", &welcome, json!({"is_welcome": true}), base)?;
        Ok(json!({
            "chat_id": conv.chat_id,
            "participant_name": conv.participant_name,
            "status": conv.status,
            "bot_message": welcome,
            "state": "idle",
            "created_at": conv.created_at,
            "updated_at": conv.updated_at,
            "partition_key": conv.partition_key,
        }))
    }

    /// Runs one input through the chain under the chat lock: `input` (which stores the user's message or
    /// file, so messages pair up in order even when requests race), dispatch, submission, reply message,
    /// context save, `bot_state` events. Cancellation calls back into the runner, whose finish hook takes
    /// the same lock, so it runs after the lock is released.
    fn handle(
        &self,
        row: &ConversationRow,
        input: impl FnOnce() -> Result<BotInput, ChatError>,
        base: &str,
        reply_message: impl FnOnce(&Reply, Option<&Submission>) -> (&'static str, Value),
    ) -> Result<Answer, ChatError> {
        let chat_id = row.chat_id.clone();
        let (answer, cancel) = {
            let _guard = chat_lock(&chat_id);
            let input = input()?;
            let mut ctx = load(&self.chat, &chat_id)?;
            let env = self.env(row)?;
            let mut reply = dispatch(&mut ctx, &input, &env)?;
            if let Some(e) = env.failure.borrow_mut().take() {
                return Err(e);
            }
            let mut submission = None;
            let mut cancel = false;
            match reply.effect.clone() {
                Some(Effect::Submit(steps)) => {
                    let cached = env.plan.borrow_mut().take().filter(|(s, _)| *s == steps).map(|(_, p)| p);
                    let plan = match cached {
                        Some(p) => p,
                        None => workflow::plan(&self.chat, row, &steps_body(&steps))?,
                    };
                    let observer: Arc<dyn JobObserver> =
                        Arc::new(BotObserver { chat_id: chat_id.clone(), base: base.to_string() });
                    let submitted = self.chat.submit(plan, JobKind::Bot, base, Some(observer))?;
                    let done = ctx.mark_submitted(&submitted.job_id, &now_ts())?;
                    reply.transitions.extend(done);
                    submission = Some(Submission {
                        job_id: submitted.job_id.clone(),
                        position: submitted.position as u64,
                    });
                }
                Some(Effect::CancelRunningJobs) => cancel = true,
                None => {}
            }
            if let Some(text) = &reply.bot_response {
                let (kind, meta) = reply_message(&reply, submission.as_ref());
                self.chat.add_message(&chat_id, kind, text, meta, base)?;
            }
            save(&self.chat, &chat_id, &ctx)?;
            publish_transitions(&self.chat, &chat_id, &reply.transitions);
            (Answer { reply, context: ctx, submission }, cancel)
        };
        if cancel {
            self.cancel_bot_jobs(&chat_id)?;
        }
        Ok(answer)
    }

    /// §3.4 cancel in `processing`: queued bot jobs are dropped first, then the running one is flagged.
    fn cancel_bot_jobs(&self, chat_id: &str) -> Result<(), ChatError> {
        let mut jobs: Vec<Job> =
            self.chat.store.jobs_of_chat(chat_id)?.into_iter().filter(|j| !j.is_finished()).collect();
        // Newest first from the store: queued ones before the running (oldest) one.
        jobs.retain(|j| j.kind == "bot");
        if jobs.is_empty() {
            // `processing` without a job (e.g. the job was cancelled through the REST route meanwhile):
            // settle so the conversation is not stuck.
            let _guard = chat_lock(chat_id);
            let mut ctx = load(&self.chat, chat_id)?;
            if ctx.current_state == BotState::Processing {
                let job = ctx.pending_job_id.clone().unwrap_or_default();
                let done = ctx.on_job_finished(&job, JobOutcome::Cancelled, &now_ts())?;
                save(&self.chat, chat_id, &ctx)?;
                publish_transitions(&self.chat, chat_id, &done);
            }
            return Ok(());
        }
        for job in jobs {
            match self.chat.cancel_job(chat_id, &job.job_id) {
                Ok(()) | Err(ChatError::Conflict(_)) | Err(ChatError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// §2.2: the user text, the handler's reply, and a submission when the text confirmed a workflow.
    pub fn message(&self, chat_id: &str, text: &str, base: &str) -> Result<Answer, ChatError> {
        let row = self.chat.require_row(chat_id)?;
        let store_text = || {
            self.chat.add_message(chat_id, "user", text, json!({}), base)?;
            Ok(BotInput::Text(text.to_string()))
        };
        self.handle(&row, store_text, base, |reply, submission| {
            ("system", view::text_reply_metadata(reply, submission))
        })
    }

    /// §2.3: stores the upload like the workflow endpoint (plus `filename` in the message metadata), then
    /// runs the file handler.
    pub fn upload(
        &self,
        row: &ConversationRow,
        temp: &Path,
        client_name: &str,
        base: &str,
    ) -> Result<UploadAnswer, ChatError> {
        let placed: OnceCell<(String, String)> = OnceCell::new();
        let store_file = || {
            let name = crate::chat::names::upload_name(client_name)?;
            let mut extra = Map::new();
            extra.insert("filename".into(), Value::String(name));
            let (stored, name) = self.chat.store_upload(row, temp, client_name, extra, base)?;
            let _ = placed.set((stored, name.clone()));
            Ok(BotInput::File { filename: name })
        };
        let answer = self.handle(row, store_file, base, |reply, _| {
            let path = placed.get().map(|p| p.0.as_str()).unwrap_or_default();
            ("system", view::upload_reply_metadata(reply, path))
        })?;
        let (file_path, filename) = placed.into_inner().unwrap_or_default();
        let download_url = self.chat.storage.file_url(base, &row.chat_id, &file_path);
        Ok(UploadAnswer { answer, file_path, filename, download_url })
    }

    /// §2.4: decline, or validate and submit the pending/modified workflow.
    pub fn confirm(
        &self,
        chat_id: &str,
        confirmed: bool,
        modified_workflow: Option<Vec<Step>>,
        base: &str,
    ) -> Result<Answer, ChatError> {
        let row = self.chat.require_row(chat_id)?;
        let input = move || Ok(BotInput::Confirmation { confirmed, modified_workflow });
        self.handle(&row, input, base, |_, submission| ("system", view::confirm_reply_metadata(submission)))
    }

    /// §2.5: the conversation with the bot's view (state, pending workflow, active job), optionally the last
    /// `limit` messages only.
    pub fn history(&self, chat_id: &str, limit: Option<usize>, base: &str) -> Result<Value, ChatError> {
        let conv = self
            .chat
            .store
            .conversation(chat_id)?
            .ok_or_else(|| ChatError::NotFound("Conversation not found".into()))?;
        let ctx = load(&self.chat, chat_id)?;
        let total_messages = conv.messages.len();
        let mut messages = conv.messages;
        if let Some(n) = limit {
            let skip = messages.len().saturating_sub(n);
            messages.drain(..skip);
        }
        for m in &mut messages {
            self.chat.add_download_url(chat_id, m, base);
        }
        let urls = |paths: &[String]| -> Vec<Value> {
            paths
                .iter()
                .map(
                    |p| json!({"file_path": p, "download_url": self.chat.storage.file_url(base, chat_id, p)}),
                )
                .collect()
        };
        let active_job = self.active_job(chat_id, base)?;
        Ok(json!({
            "chat_id": conv.chat_id,
            "participant_name": conv.participant_name,
            "status": conv.status,
            "current_state": ctx.current_state.as_str(),
            "messages": messages,
            "uploaded_files": urls(&conv.uploaded_files),
            "output_files": urls(&conv.output_files),
            "workflow_steps": conv.workflow_steps,
            "total_messages": total_messages,
            "pending_workflow": ctx.pending_workflow,
            "active_job": active_job,
        }))
    }

    /// The running job of the chat (else the oldest pending one) as `{job_id, status, progress}`.
    fn active_job(&self, chat_id: &str, base: &str) -> Result<Value, ChatError> {
        let jobs = self.chat.store.jobs_of_chat(chat_id)?;
        let job = jobs
            .iter()
            .find(|j| j.status == "running")
            .or_else(|| jobs.iter().rev().find(|j| j.status == "pending"));
        let Some(job) = job else { return Ok(Value::Null) };
        let rendered = self.chat.render_job(job, base)?;
        Ok(
            json!({"job_id": job.job_id, "status": job.status, "progress": rendered.get("progress").cloned().unwrap_or(json!(0))}),
        )
    }

    /// §2.6: a job of this chat.
    pub fn job_status(&self, chat_id: &str, job_id: &str, base: &str) -> Result<Value, ChatError> {
        self.chat.job_json(chat_id, job_id, base)
    }

    /// §2.7: as the workflow delete (rows, bot context, files, subscribers). Not under the chat lock: the
    /// runner's hooks take that lock while holding a job's, and deleting waits for the job's.
    pub fn delete(&self, chat_id: &str) -> Result<(), ChatError> {
        self.chat.delete_conversation(chat_id)
    }
}

/// The runner's hooks for one bot job (§7): state on start, the reply inside the job result, the completion
/// or failure message and the return to `idle` on finish. `base` is the submitting request's origin.
struct BotObserver {
    chat_id: String,
    base: String,
}

impl BotObserver {
    fn settle(
        &self,
        chat: &Chat,
        apply: impl FnOnce(&mut BotContext) -> Result<Vec<Transition>, TransitionError>,
    ) {
        let chat_id = self.chat_id.as_str();
        let _guard = chat_lock(chat_id);
        let result = (|| -> Result<(), ChatError> {
            if chat.store.conversation_row(chat_id)?.is_none() {
                return Ok(()); // deleted meanwhile
            }
            let mut ctx = load(chat, chat_id)?;
            let done = apply(&mut ctx)?;
            save(chat, chat_id, &ctx)?;
            publish_transitions(chat, chat_id, &done);
            Ok(())
        })();
        if let Err(e) = result {
            log::error!("bot: cannot update the context of chat {chat_id}: {e}");
        }
    }
}

fn outcome_of(status: &str) -> JobOutcome {
    match status {
        "completed" => JobOutcome::Completed,
        "cancelled" => JobOutcome::Cancelled,
        _ => JobOutcome::Failed,
    }
}

/// The bot's hooks for a run of `chat_id` (cluster mode: the node that claims a bot job builds them).
pub fn job_observer(chat_id: &str, base: &str) -> Arc<dyn JobObserver> {
    Arc::new(BotObserver { chat_id: chat_id.to_string(), base: base.to_string() })
}

impl JobObserver for BotObserver {
    fn on_start(&self, chat: &Chat, _job_id: &str) {
        self.settle(chat, |ctx| ctx.on_job_started(&now_ts()));
    }

    fn result_extras(&self, outcome: &RunOutcome) -> Map<String, Value> {
        let text = match outcome.status {
            "completed" => replies::run_completed(&output_names(outcome)),
            _ => replies::run_failed_response(outcome.error.as_deref().unwrap_or("unknown error")),
        };
        let mut m = Map::new();
        m.insert("bot_response".into(), Value::String(text));
        m
    }

    fn on_finish(&self, chat: &Chat, outcome: &RunOutcome) {
        let (chat_id, base) = (self.chat_id.as_str(), self.base.as_str());
        let stored = if chat.store.conversation_row(chat_id).ok().flatten().is_none() {
            Ok(()) // deleted meanwhile
        } else {
            match outcome.status {
                "completed" => {
                    let paths: Vec<Value> =
                        outcome.output_files.iter().filter_map(|f| f.get("file_path").cloned()).collect();
                    chat.add_message(
                        chat_id,
                        "system",
                        &replies::run_completed(&output_names(outcome)),
                        json!({"output_files": paths, "results": outcome.results, "job_id": outcome.job_id}),
                        base,
                    )
                }
                "cancelled" => chat.add_message(
                    chat_id,
                    "error",
                    &replies::run_cancelled_message(),
                    json!({"error": outcome.error, "job_id": outcome.job_id, "cancelled": true}),
                    base,
                ),
                _ => {
                    let error = outcome.error.clone().unwrap_or_default();
                    chat.add_message(
                        chat_id,
                        "error",
                        &replies::run_failed_message(&error),
                        json!({"error": error, "job_id": outcome.job_id}),
                        base,
                    )
                }
            }
            .map(|_| ())
        };
        if let Err(e) = stored {
            log::error!("bot: cannot store the outcome message of job {}: {e}", outcome.job_id);
        }
        let (job_id, result) = (outcome.job_id.clone(), outcome_of(outcome.status));
        self.settle(chat, |ctx| ctx.on_job_finished(&job_id, result, &now_ts()));
    }
}

fn output_names(outcome: &RunOutcome) -> Vec<String> {
    outcome
        .output_files
        .iter()
        .filter_map(|f| f.get("file_path").and_then(Value::as_str))
        .map(file_name)
        .collect()
}
