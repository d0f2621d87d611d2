//! The message handler chain (chatbot.md §6): every bot input becomes an event of a kind (text, file,
//! confirmation, system) dispatched along text → file → confirmation → system. Handlers are pure over
//! (context, input, environment facts) → (updated context, reply, effect); the service persists the context,
//! stores the messages, publishes the events and performs the effect (job submission or cancellation).

use serde_json::{json, Map, Value};

use super::intent::{self, Classification, Intent};
use super::params;
use super::replies;
use super::state::{BotContext, BotState, Step, Transition, TransitionError};
use super::suggest::{self, SuggestInput};

/// Confirmation threshold for a new intent while a workflow awaits an answer (§6.2 step 5.1).
pub const REPLACE_CONFIDENCE: f64 = 0.6;

/// Yes-words and no-words (§3.4), matched on the whole message.
pub const YES_WORDS: [&str; 7] = ["yes", "y", "ok", "proceed", "continue", "go", "confirm"];
pub const NO_WORDS: [&str; 2] = ["no", "n"];
pub const CANCEL_WORDS: [&str; 3] = ["cancel", "stop", "quit"];

/// One bot input.
#[derive(Debug, Clone, PartialEq)]
pub enum BotInput {
    /// `/message`
    Text(String),
    /// `/upload` (after the file was stored)
    File { filename: String },
    /// `/confirm`
    Confirmation { confirmed: bool, modified_workflow: Option<Vec<Step>> },
    /// Internal notices: logged, no reply.
    System(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Text,
    File,
    Confirmation,
    System,
}

impl BotInput {
    pub fn kind(&self) -> InputKind {
        match self {
            BotInput::Text(_) => InputKind::Text,
            BotInput::File { .. } => InputKind::File,
            BotInput::Confirmation { .. } => InputKind::Confirmation,
            BotInput::System(_) => InputKind::System,
        }
    }
}

/// Problems found when validating a workflow like `/execute` does.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowProblems {
    /// The full message, e.g. `Invalid workflow: step 1: unknown operation 'x'`.
    pub message: String,
    /// One human-readable line per problem (for the reply text).
    pub problems: Vec<String>,
    /// `details` of the 422 (`{"errors": [...]}`).
    pub details: Value,
}

/// The facts about the conversation a handler may consult. The service implements it over the chat store
/// and the workflow validator; tests use a fake.
pub trait Environment {
    /// File name of the most recently uploaded file, if any.
    fn latest_upload(&self) -> Option<String>;
    /// Names (or stored paths) of every upload of the conversation.
    fn uploads(&self) -> Vec<String>;
    /// Validation exactly like `/execute` (chat-workflows.md §9.1/§9.4).
    fn validate(&self, steps: &[Step]) -> Result<(), WorkflowProblems>;
    /// The current timestamp (RFC 3339, `+00:00`).
    fn now(&self) -> String;
}

/// How the HTTP layer answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// 200.
    Ok,
    /// A job is to be submitted: `/message` answers 200 with `action: execute_workflow`, `/confirm` 202.
    Submitted,
    /// HTTP 200 with the error envelope and body status 400; `message` = the reason (§2.2).
    SoftFailure(&'static str),
    /// A real error status (400 or 422) carrying `bot_response` in `data` (§2.4).
    Rejected { status: u16, message: String, details: Option<Value> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ModifyWorkflow,
    ExecuteWorkflow,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ModifyWorkflow => "modify_workflow",
            Action::ExecuteWorkflow => "execute_workflow",
        }
    }
}

/// Work the service performs after the handler returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Submit these steps as a `bot` job; on success call [`BotContext::mark_submitted`].
    Submit(Vec<Step>),
    /// Cooperatively cancel the chat's running bot job and drop its queued ones.
    CancelRunningJobs,
}

/// Everything the service needs to answer, store and publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: Status,
    /// `bot_response`; `None` only for system notices.
    pub bot_response: Option<String>,
    pub intent: Option<(Intent, f64)>,
    pub suggested_workflow: Option<Vec<Step>>,
    pub requires_confirmation: bool,
    pub requires_file: bool,
    pub action: Option<Action>,
    /// Parameters applied from the message (§6.4), when any.
    pub parameters: Option<Map<String, Value>>,
    pub missing_parameters: Vec<String>,
    /// Only for unknown intents.
    pub suggestions: Option<Vec<&'static str>>,
    pub effect: Option<Effect>,
    /// State transitions performed by the handler (each becomes a `bot_state` event).
    pub transitions: Vec<Transition>,
}

impl Reply {
    fn new(status: Status, text: impl Into<String>) -> Reply {
        Reply {
            status,
            bot_response: Some(text.into()),
            intent: None,
            suggested_workflow: None,
            requires_confirmation: false,
            requires_file: false,
            action: None,
            parameters: None,
            missing_parameters: Vec::new(),
            suggestions: None,
            effect: None,
            transitions: Vec::new(),
        }
    }

    fn ok(text: impl Into<String>) -> Reply {
        Reply::new(Status::Ok, text)
    }

    fn soft(reason: &'static str, text: impl Into<String>) -> Reply {
        Reply::new(Status::SoftFailure(reason), text)
    }

    fn rejected(
        status: u16,
        message: impl Into<String>,
        details: Option<Value>,
        text: impl Into<String>,
    ) -> Reply {
        Reply::new(Status::Rejected { status, message: message.into(), details }, text)
    }

    fn with_intent(mut self, c: &Classification) -> Reply {
        self.intent = Some((c.intent, c.confidence));
        self
    }

    fn with_transitions(mut self, mut t: Vec<Transition>) -> Reply {
        self.transitions.append(&mut t);
        self
    }

    /// `{"type", "confidence"}` or null.
    pub fn intent_json(&self) -> Value {
        match self.intent {
            Some((i, c)) => json!({"type": i.as_str(), "confidence": c}),
            None => Value::Null,
        }
    }

    pub fn is_soft_failure(&self) -> bool {
        matches!(self.status, Status::SoftFailure(_))
    }
}

/// One link of the chain.
pub trait MessageHandler: Sync {
    fn kind(&self) -> InputKind;
    fn handle(
        &self,
        ctx: &mut BotContext,
        input: &BotInput,
        env: &dyn Environment,
    ) -> Result<Reply, TransitionError>;
}

struct TextHandler;
struct FileHandler;
struct ConfirmationHandler;
struct SystemHandler;

/// The chain in dispatch order (§6.1).
pub static CHAIN: [&dyn MessageHandler; 4] =
    [&TextHandler, &FileHandler, &ConfirmationHandler, &SystemHandler];

/// Passes `input` along the chain; the first handler of its kind handles it. A forbidden transition is
/// returned as an error (the HTTP layer answers 409) and the caller must not persist the context.
pub fn dispatch(
    ctx: &mut BotContext,
    input: &BotInput,
    env: &dyn Environment,
) -> Result<Reply, TransitionError> {
    dispatch_with(&CHAIN, ctx, input, env)
}

fn dispatch_with(
    chain: &[&dyn MessageHandler],
    ctx: &mut BotContext,
    input: &BotInput,
    env: &dyn Environment,
) -> Result<Reply, TransitionError> {
    match chain.iter().find(|h| h.kind() == input.kind()) {
        Some(h) => h.handle(ctx, input, env),
        None => Ok(Reply::soft("Unknown error", replies::unhandled())),
    }
}

/// Lower-cased, trimmed, trailing `.`/`!` removed (IMPROVE: `Yes!` confirms, `yes please` does not).
pub fn command_word(text: &str) -> String {
    text.trim().to_lowercase().trim_end_matches(['.', '!']).trim_end().to_string()
}

impl MessageHandler for TextHandler {
    fn kind(&self) -> InputKind {
        InputKind::Text
    }

    fn handle(
        &self,
        ctx: &mut BotContext,
        input: &BotInput,
        env: &dyn Environment,
    ) -> Result<Reply, TransitionError> {
        let BotInput::Text(text) = input else {
            return Ok(Reply::soft("Unknown error", replies::unhandled()));
        };
        handle_text(ctx, text, env)
    }
}

fn handle_text(ctx: &mut BotContext, text: &str, env: &dyn Environment) -> Result<Reply, TransitionError> {
    if text.trim().is_empty() {
        return Ok(Reply::soft("Empty message", replies::empty_message()));
    }
    let word = command_word(text);
    if word == "help" || word == "?" {
        return Ok(Reply::ok(replies::help()));
    }
    if CANCEL_WORDS.contains(&word.as_str()) {
        return cancel(ctx, env);
    }
    if ctx.unsubmitted_pending().is_some() {
        if YES_WORDS.contains(&word.as_str()) {
            return submit_pending_by_text(ctx, env);
        }
        if NO_WORDS.contains(&word.as_str()) {
            return decline(ctx, env);
        }
    }
    if ctx.current_state.is_awaiting_answer() && ctx.unsubmitted_pending().is_some() {
        return modify_pending(ctx, text, env);
    }
    classify_and_suggest(ctx, text, env)
}

/// §3.4 cancel: stops a run in `processing`, otherwise discards the pending request.
fn cancel(ctx: &mut BotContext, env: &dyn Environment) -> Result<Reply, TransitionError> {
    let now = env.now();
    if ctx.current_state == BotState::Processing {
        let mut reply = Reply::ok(replies::cancellation_requested());
        reply.effect = Some(Effect::CancelRunningJobs);
        return Ok(reply);
    }
    ctx.clear_pending();
    let path: &[BotState] = match ctx.current_state {
        BotState::Idle => &[],
        BotState::AwaitingFile | BotState::AwaitingConfirmation | BotState::AwaitingParameters => {
            &[BotState::Cancelled, BotState::Idle]
        }
        _ => &[BotState::Idle],
    };
    let done = ctx.transition_path(path, &now)?;
    Ok(Reply::ok(replies::cancelled()).with_transitions(done))
}

/// Decline (no-word or `confirmed: false`): clear pending, → idle unless processing.
fn decline(ctx: &mut BotContext, env: &dyn Environment) -> Result<Reply, TransitionError> {
    ctx.clear_pending();
    let done = if ctx.current_state == BotState::Processing {
        Vec::new()
    } else {
        ctx.move_to(BotState::Idle, &env.now())?
    };
    Ok(Reply::ok(replies::declined()).with_transitions(done))
}

/// Validation problems as a soft failure / rejection reply text.
fn problems_text(p: &WorkflowProblems) -> String {
    let lines = if p.problems.is_empty() { vec![p.message.clone()] } else { p.problems.clone() };
    replies::invalid_workflow(&lines)
}

fn submission_reply() -> Reply {
    let mut reply = Reply::new(Status::Submitted, replies::submitted());
    reply.action = Some(Action::ExecuteWorkflow);
    reply
}

/// Yes-word with an unsubmitted pending workflow: file first, then validation (§3.4), then submit.
fn submit_pending_by_text(ctx: &mut BotContext, env: &dyn Environment) -> Result<Reply, TransitionError> {
    let Some(steps) = ctx.unsubmitted_pending().cloned() else {
        return Ok(Reply::soft("No pending workflow", replies::no_pending_workflow()));
    };
    if env.latest_upload().is_none() {
        let mut reply = Reply::soft("No uploaded file found", replies::no_uploaded_file());
        reply.requires_file = true;
        return Ok(reply);
    }
    if let Err(p) = env.validate(&steps) {
        return Ok(Reply::soft("Invalid workflow", problems_text(&p)));
    }
    let mut reply = submission_reply();
    reply.effect = Some(Effect::Submit(steps));
    Ok(reply)
}

/// §6.2 step 5: free text while a workflow awaits an answer.
fn modify_pending(ctx: &mut BotContext, text: &str, env: &dyn Environment) -> Result<Reply, TransitionError> {
    let now = env.now();
    let c = intent::classify(text);
    if c.is_known() && c.confidence >= REPLACE_CONFIDENCE {
        return suggest_for(ctx, text, c, env);
    }
    ctx.record_intent(c.intent.as_str(), c.confidence, text, &now);
    let Some(mut steps) = ctx.unsubmitted_pending().cloned() else {
        return classify_and_suggest(ctx, text, env);
    };
    let applied = params::apply_pairs(&mut steps, &params::parse_pairs(text));
    if !applied.is_empty() {
        for (k, v) in &applied.parameters {
            ctx.workflow_params.insert(k.clone(), v.clone());
        }
        ctx.set_pending(steps.clone());
        let done = ctx.move_to(BotState::AwaitingConfirmation, &now)?;
        let missing = suggest::missing_parameters(&steps, &ctx.workflow_params);
        let mut reply = Reply::ok(suggest::workflow_reply(replies::parameters_updated(), &steps, &missing))
            .with_transitions(done);
        reply.suggested_workflow = Some(steps);
        reply.requires_confirmation = true;
        reply.parameters = Some(applied.parameters);
        reply.missing_parameters = missing;
        return Ok(reply);
    }
    if ctx.current_state == BotState::AwaitingConfirmation {
        let done = ctx.transition(BotState::AwaitingParameters, &now, None)?;
        let mut reply =
            Reply::ok(replies::modify_prompt(&steps)).with_transitions(done.into_iter().collect());
        reply.action = Some(Action::ModifyWorkflow);
        reply.missing_parameters = suggest::missing_parameters(&steps, &ctx.workflow_params);
        return Ok(reply);
    }
    let mut reply = Reply::soft("Invalid parameters", replies::invalid_parameters());
    reply.missing_parameters = suggest::missing_parameters(&steps, &ctx.workflow_params);
    Ok(reply)
}

/// §6.2 step 6 / §3.4 "other text": classify, then suggest.
fn classify_and_suggest(
    ctx: &mut BotContext,
    text: &str,
    env: &dyn Environment,
) -> Result<Reply, TransitionError> {
    let c = intent::classify(text);
    if !c.is_known() {
        ctx.record_intent(c.intent.as_str(), c.confidence, text, &env.now());
        let mut reply = Reply::soft("Unknown intent", replies::unknown_intent()).with_intent(&c);
        reply.suggestions = Some(replies::UNKNOWN_SUGGESTIONS.to_vec());
        return Ok(reply);
    }
    suggest_for(ctx, text, c, env)
}

/// A known intent: build the suggestion, store it as pending, move to `awaiting_confirmation` (file
/// present) or `awaiting_file` (no file); `processing` is kept. An empty suggestion stores nothing.
fn suggest_for(
    ctx: &mut BotContext,
    text: &str,
    c: Classification,
    env: &dyn Environment,
) -> Result<Reply, TransitionError> {
    let now = env.now();
    ctx.record_intent(c.intent.as_str(), c.confidence, text, &now);
    let latest = env.latest_upload();
    let uploads = env.uploads();
    let file_type = intent::file_type(latest.as_deref(), text);
    let steps = suggest::suggest(c.intent, SuggestInput { text, file_type, uploads: &uploads });
    if steps.is_empty() {
        return Ok(Reply::ok(suggest::conversion_not_supported_reply()).with_intent(&c));
    }
    // A new request starts from fresh parameters.
    ctx.workflow_params = Map::new();
    ctx.set_pending(steps.clone());
    let missing = suggest::missing_parameters(&steps, &ctx.workflow_params);
    let has_file = latest.is_some();
    let done = if ctx.current_state == BotState::Processing {
        Vec::new()
    } else if has_file {
        ctx.move_to(BotState::AwaitingConfirmation, &now)?
    } else {
        ctx.move_to(BotState::AwaitingFile, &now)?
    };
    let text = if has_file {
        suggest::suggestion_reply(c.intent, &steps, &missing)
    } else {
        suggest::file_needed_reply(c.intent, &steps)
    };
    let mut reply = Reply::ok(text).with_intent(&c).with_transitions(done);
    reply.suggested_workflow = Some(steps);
    reply.requires_confirmation = has_file;
    reply.requires_file = !has_file;
    reply.missing_parameters = missing;
    Ok(reply)
}

impl MessageHandler for FileHandler {
    fn kind(&self) -> InputKind {
        InputKind::File
    }

    /// §3.4 upload rows / §6.3.
    fn handle(
        &self,
        ctx: &mut BotContext,
        input: &BotInput,
        env: &dyn Environment,
    ) -> Result<Reply, TransitionError> {
        let BotInput::File { filename } = input else {
            return Ok(Reply::soft("Unknown error", replies::unhandled()));
        };
        let now = env.now();
        let pending = ctx.unsubmitted_pending().cloned();
        let state = ctx.current_state;
        let present = |steps: Vec<Step>, text: String, done: Vec<Transition>, missing: Vec<String>| {
            let mut reply = Reply::ok(text).with_transitions(done);
            reply.suggested_workflow = Some(steps);
            reply.requires_confirmation = true;
            reply.missing_parameters = missing;
            reply
        };
        match (state, pending) {
            (BotState::AwaitingFile, Some(steps)) => {
                let done = ctx.move_to(BotState::AwaitingConfirmation, &now)?;
                let missing = suggest::missing_parameters(&steps, &ctx.workflow_params);
                let text = replies::upload_with_workflow(filename, &steps, &missing);
                Ok(present(steps, text, done, missing))
            }
            (BotState::AwaitingFile, None) => {
                let done = ctx.move_to(BotState::Idle, &now)?;
                Ok(Reply::ok(replies::upload_ask_what_to_do(filename)).with_transitions(done))
            }
            (s, Some(steps)) if s.is_awaiting_answer() => {
                let missing = suggest::missing_parameters(&steps, &ctx.workflow_params);
                let text = replies::upload_replaces_input(filename, &steps, &missing);
                Ok(present(steps, text, Vec::new(), missing))
            }
            // Other states keep their state; a workflow kept after a failed run is offered again.
            (_, Some(steps)) => {
                let missing = suggest::missing_parameters(&steps, &ctx.workflow_params);
                let text = replies::upload_with_workflow(filename, &steps, &missing);
                Ok(present(steps, text, Vec::new(), missing))
            }
            (_, None) => Ok(Reply::ok(replies::upload_ask_what_to_do(filename))),
        }
    }
}

impl MessageHandler for ConfirmationHandler {
    fn kind(&self) -> InputKind {
        InputKind::Confirmation
    }

    /// §2.4: decline, or resolve → validate (422) → file (400) → submit.
    fn handle(
        &self,
        ctx: &mut BotContext,
        input: &BotInput,
        env: &dyn Environment,
    ) -> Result<Reply, TransitionError> {
        let BotInput::Confirmation { confirmed, modified_workflow } = input else {
            return Ok(Reply::soft("Unknown error", replies::unhandled()));
        };
        if !confirmed {
            return decline(ctx, env);
        }
        let modified = modified_workflow.as_ref().filter(|w| !w.is_empty()).cloned();
        let steps = match (&modified, ctx.unsubmitted_pending()) {
            (Some(m), _) => m.clone(),
            (None, Some(p)) => p.clone(),
            (None, None) => {
                let text = match (&ctx.pending_workflow, &ctx.pending_job_id) {
                    (Some(_), Some(job)) => replies::already_submitted(job),
                    _ => replies::no_pending_workflow(),
                };
                return Ok(Reply::rejected(400, "No pending workflow", None, text));
            }
        };
        if let Err(p) = env.validate(&steps) {
            let text = problems_text(&p);
            return Ok(Reply::rejected(422, p.message.clone(), Some(p.details.clone()), text));
        }
        if modified.is_some() {
            ctx.set_pending(steps.clone());
        }
        if env.latest_upload().is_none() {
            let done = if ctx.current_state == BotState::Idle {
                ctx.move_to(BotState::AwaitingFile, &env.now())?
            } else {
                Vec::new()
            };
            let mut reply = Reply::rejected(400, "No uploaded file found", None, replies::no_uploaded_file())
                .with_transitions(done);
            reply.requires_file = true;
            return Ok(reply);
        }
        let mut reply = submission_reply();
        reply.effect = Some(Effect::Submit(steps));
        Ok(reply)
    }
}

impl MessageHandler for SystemHandler {
    fn kind(&self) -> InputKind {
        InputKind::System
    }

    fn handle(
        &self,
        ctx: &mut BotContext,
        input: &BotInput,
        _env: &dyn Environment,
    ) -> Result<Reply, TransitionError> {
        if let BotInput::System(notice) = input {
            log::info!("bot notice (state {}): {notice}", ctx.current_state);
        }
        let mut reply = Reply::ok(String::new());
        reply.bot_response = None;
        Ok(reply)
    }
}

#[cfg(test)]
mod tests;
