//! The persisted bot context of one conversation and its state machine (chatbot.md §3): the eight states,
//! exactly the allowed transitions of §3.3 (a forbidden one is an error value, never a silent reset), and
//! the job lifecycle hooks of §3.4/§7.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::events::wire::BotStateChanged;

/// Most recent intents kept in the context (IMPROVE: the reference list is unbounded).
pub const INTENT_HISTORY_CAP: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BotState {
    #[default]
    Idle,
    AwaitingFile,
    AwaitingConfirmation,
    AwaitingParameters,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

pub const ALL_STATES: [BotState; 8] = [
    BotState::Idle,
    BotState::AwaitingFile,
    BotState::AwaitingConfirmation,
    BotState::AwaitingParameters,
    BotState::Processing,
    BotState::Completed,
    BotState::Failed,
    BotState::Cancelled,
];

impl BotState {
    pub fn as_str(self) -> &'static str {
        match self {
            BotState::Idle => "idle",
            BotState::AwaitingFile => "awaiting_file",
            BotState::AwaitingConfirmation => "awaiting_confirmation",
            BotState::AwaitingParameters => "awaiting_parameters",
            BotState::Processing => "processing",
            BotState::Completed => "completed",
            BotState::Failed => "failed",
            BotState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<BotState> {
        ALL_STATES.into_iter().find(|st| st.as_str() == s)
    }

    /// The targets allowed from this state (§3.3; `processing → cancelled` is the one addition).
    pub fn allowed_targets(self) -> &'static [BotState] {
        use BotState::*;
        match self {
            Idle => &[AwaitingFile, AwaitingConfirmation, AwaitingParameters],
            AwaitingFile => &[AwaitingConfirmation, Cancelled, Idle],
            AwaitingConfirmation => &[Processing, AwaitingParameters, Cancelled, Idle],
            AwaitingParameters => &[AwaitingConfirmation, Cancelled, Idle],
            Processing => &[Completed, Failed, Cancelled],
            Completed | Failed | Cancelled => &[Idle],
        }
    }

    /// Same-state transitions are successful no-ops, so they count as allowed.
    pub fn can_transition_to(self, to: BotState) -> bool {
        self == to || self.allowed_targets().contains(&to)
    }

    /// States in which a not-yet-submitted pending workflow waits for the user's answer.
    pub fn is_awaiting_answer(self) -> bool {
        matches!(self, BotState::AwaitingConfirmation | BotState::AwaitingParameters)
    }
}

impl std::fmt::Display for BotState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused transition. The HTTP layer reports it as a conflict (409); the context is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Invalid state transition: {from} -> {to}")]
pub struct TransitionError {
    pub from: BotState,
    pub to: BotState,
}

/// One performed transition (published as a `bot_state` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: BotState,
    pub to: BotState,
}

impl Transition {
    /// The `bot_state` event payload (websocket.md C.5); `chat_id`, `timestamp` and `seq` come from the hub.
    pub fn event(&self) -> BotStateChanged {
        BotStateChanged { state: self.to.as_str().into(), previous_state: self.from.as_str().into() }
    }
}

/// One workflow step as suggested, stored as pending and accepted back by `/confirm` (§5.1). Unknown keys
/// are dropped; `description` is ignored by the executor; `input_file` is the optional per-step input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub operation: String,
    #[serde(default)]
    pub arguments: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_file: Option<String>,
}

impl Step {
    pub fn new(operation: &str, arguments: Value, description: &str) -> Step {
        Step {
            operation: operation.to_string(),
            arguments: match arguments {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            description: Some(description.to_string()),
            input_file: None,
        }
    }
}

/// `{intent_type, confidence, message, timestamp}` (§3.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntentRecord {
    pub intent_type: String,
    pub confidence: f64,
    pub message: String,
    pub timestamp: String,
}

/// A stored `null` (or a column whose JSON did not parse) reads as the field's default.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The persisted per-conversation context (§3.1); stored as one `bot_contexts` row. Unknown keys (such as
/// the row's `updated_at`) are ignored and nulls read as defaults, so the store's JSON form loads directly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BotContext {
    #[serde(default, deserialize_with = "null_as_default")]
    pub current_state: BotState,
    #[serde(default, deserialize_with = "null_as_default")]
    pub previous_state: Option<BotState>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub pending_workflow: Option<Vec<Step>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub pending_job_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub workflow_params: Map<String, Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub intent_history: Vec<IntentRecord>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub user_preferences: Map<String, Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub last_message_time: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: Map<String, Value>,
}

impl BotContext {
    pub fn new() -> BotContext {
        BotContext::default()
    }

    /// One transition of §3.3. Same state: `Ok(None)` (no-op, nothing recorded). Forbidden: `Err`, and the
    /// context is left exactly as it was. Allowed: records `previous_state`, `last_message_time`, merges
    /// `metadata`, and returns the transition.
    pub fn transition(
        &mut self,
        to: BotState,
        now: &str,
        metadata: Option<&Map<String, Value>>,
    ) -> Result<Option<Transition>, TransitionError> {
        let from = self.current_state;
        if from == to {
            return Ok(None);
        }
        if !from.can_transition_to(to) {
            log::warn!("bot: refused state transition {from} -> {to}");
            return Err(TransitionError { from, to });
        }
        self.previous_state = Some(from);
        self.current_state = to;
        self.last_message_time = Some(now.to_string());
        if let Some(meta) = metadata {
            for (k, v) in meta {
                self.metadata.insert(k.clone(), v.clone());
            }
        }
        Ok(Some(Transition { from, to }))
    }

    /// Applies a sequence of transitions, collecting those performed. Stops at the first refusal; the
    /// transitions already made stay (each one was valid on its own).
    pub fn transition_path(
        &mut self,
        path: &[BotState],
        now: &str,
    ) -> Result<Vec<Transition>, TransitionError> {
        let mut done = Vec::new();
        for to in path {
            if let Some(t) = self.transition(*to, now, None)? {
                done.push(t);
            }
        }
        Ok(done)
    }

    /// Moves to `target` along the shortest chain of allowed transitions that never passes *through*
    /// `processing` or a transient state (e.g. `awaiting_confirmation → idle → awaiting_file`). No such
    /// chain: `Err` and nothing changes.
    pub fn move_to(&mut self, target: BotState, now: &str) -> Result<Vec<Transition>, TransitionError> {
        let path = shortest_path(self.current_state, target)
            .ok_or(TransitionError { from: self.current_state, to: target })?;
        self.transition_path(&path, now)
    }

    /// Appends to `intent_history`, keeping the newest [`INTENT_HISTORY_CAP`].
    pub fn record_intent(&mut self, intent_type: &str, confidence: f64, message: &str, now: &str) {
        self.intent_history.push(IntentRecord {
            intent_type: intent_type.to_string(),
            confidence,
            message: message.to_string(),
            timestamp: now.to_string(),
        });
        let excess = self.intent_history.len().saturating_sub(INTENT_HISTORY_CAP);
        if excess > 0 {
            self.intent_history.drain(..excess);
        }
    }

    /// The `n` most recent intents, newest last (acceptance 176).
    pub fn recent_intents(&self, n: usize) -> &[IntentRecord] {
        &self.intent_history[self.intent_history.len().saturating_sub(n)..]
    }

    /// A pending workflow that has not been submitted yet (yes/no words act on it).
    pub fn unsubmitted_pending(&self) -> Option<&Vec<Step>> {
        match (&self.pending_workflow, &self.pending_job_id) {
            (Some(steps), None) if !steps.is_empty() => Some(steps),
            _ => None,
        }
    }

    /// Replaces the pending workflow; the submission marker always resets with it (§3.1).
    pub fn set_pending(&mut self, steps: Vec<Step>) {
        self.pending_workflow = Some(steps);
        self.pending_job_id = None;
    }

    /// Drops the pending workflow and the user-supplied parameters.
    pub fn clear_pending(&mut self) {
        self.pending_workflow = None;
        self.pending_job_id = None;
        self.workflow_params = Map::new();
    }

    /// Submission accepted under `job_id`: marks the pending workflow as submitted and enters
    /// `processing`, through `awaiting_confirmation` when coming from another waiting state (§3.3).
    /// Already `processing` (another job runs): stays. From a transient state the context first
    /// returns to `idle`.
    pub fn mark_submitted(&mut self, job_id: &str, now: &str) -> Result<Vec<Transition>, TransitionError> {
        self.pending_job_id = Some(job_id.to_string());
        self.enter_processing(now)
    }

    /// A bot job started: make sure the state is `processing` (a job queued behind a finished one re-enters).
    pub fn on_job_started(&mut self, now: &str) -> Result<Vec<Transition>, TransitionError> {
        self.enter_processing(now)
    }

    fn enter_processing(&mut self, now: &str) -> Result<Vec<Transition>, TransitionError> {
        use BotState::*;
        let path: &[BotState] = match self.current_state {
            Processing => &[],
            AwaitingConfirmation => &[Processing],
            Idle | AwaitingFile | AwaitingParameters => &[AwaitingConfirmation, Processing],
            Completed | Failed | Cancelled => &[Idle, AwaitingConfirmation, Processing],
        };
        self.transition_path(path, now)
    }

    /// A bot job finished (§3.4 "job succeeds/fails/cancelled"): through the transient state to `idle`.
    /// Success clears the pending workflow only if it is the one submitted as `job_id` (a suggestion made
    /// during the run survives); failure and cancellation keep it but reset the submission marker so the
    /// user can answer `yes` again.
    pub fn on_job_finished(
        &mut self,
        job_id: &str,
        outcome: JobOutcome,
        now: &str,
    ) -> Result<Vec<Transition>, TransitionError> {
        let ours = self.pending_job_id.as_deref() == Some(job_id);
        match outcome {
            JobOutcome::Completed if ours => {
                self.pending_workflow = None;
                self.pending_job_id = None;
            }
            JobOutcome::Failed | JobOutcome::Cancelled if ours => self.pending_job_id = None,
            _ => {}
        }
        let transient = match outcome {
            JobOutcome::Completed => BotState::Completed,
            JobOutcome::Failed => BotState::Failed,
            JobOutcome::Cancelled => BotState::Cancelled,
        };
        if self.current_state != BotState::Processing {
            // The run ended while the context was elsewhere (e.g. a restart reset it): only settle to idle.
            return match self.current_state {
                BotState::Completed | BotState::Failed | BotState::Cancelled => {
                    self.transition_path(&[BotState::Idle], now)
                }
                _ => Ok(Vec::new()),
            };
        }
        self.transition_path(&[transient, BotState::Idle], now)
    }
}

/// Breadth-first search over the §3.3 table (targets in table order, so the result is deterministic).
/// Intermediate states must be waiting states or `idle`.
fn shortest_path(from: BotState, to: BotState) -> Option<Vec<BotState>> {
    use std::collections::VecDeque;
    if from == to {
        return Some(Vec::new());
    }
    let via_ok = |s: BotState| {
        matches!(
            s,
            BotState::Idle
                | BotState::AwaitingFile
                | BotState::AwaitingConfirmation
                | BotState::AwaitingParameters
        )
    };
    let mut prev: std::collections::HashMap<BotState, BotState> = std::collections::HashMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(s) = queue.pop_front() {
        for &next in s.allowed_targets() {
            if next == from || prev.contains_key(&next) {
                continue;
            }
            prev.insert(next, s);
            if next == to {
                let mut path = vec![to];
                let mut cur = to;
                while let Some(&p) = prev.get(&cur) {
                    if p == from {
                        break;
                    }
                    path.push(p);
                    cur = p;
                }
                path.reverse();
                return Some(path);
            }
            if via_ok(next) {
                queue.push_back(next);
            }
        }
    }
    None
}

/// How a bot job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Completed,
    Failed,
    Cancelled,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use BotState::*;

    const NOW: &str = "2026-03-01T03:00:00.000000+00:00";

    /// The full §3.3 table as (from, to) pairs.
    fn allowed_pairs() -> Vec<(BotState, BotState)> {
        vec![
            (Idle, AwaitingFile),
            (Idle, AwaitingConfirmation),
            (Idle, AwaitingParameters),
            (AwaitingFile, AwaitingConfirmation),
            (AwaitingFile, Cancelled),
            (AwaitingFile, Idle),
            (AwaitingConfirmation, Processing),
            (AwaitingConfirmation, AwaitingParameters),
            (AwaitingConfirmation, Cancelled),
            (AwaitingConfirmation, Idle),
            (AwaitingParameters, AwaitingConfirmation),
            (AwaitingParameters, Cancelled),
            (AwaitingParameters, Idle),
            (Processing, Completed),
            (Processing, Failed),
            (Processing, Cancelled),
            (Completed, Idle),
            (Failed, Idle),
            (Cancelled, Idle),
        ]
    }

    fn ctx_in(state: BotState) -> BotContext {
        BotContext { current_state: state, ..BotContext::default() }
    }

    #[test]
    fn every_allowed_transition_succeeds_and_records_history() {
        for (from, to) in allowed_pairs() {
            let mut ctx = ctx_in(from);
            let t = ctx.transition(to, NOW, None).unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
            assert_eq!(t, Some(Transition { from, to }));
            assert_eq!(ctx.current_state, to);
            assert_eq!(ctx.previous_state, Some(from));
            assert_eq!(ctx.last_message_time.as_deref(), Some(NOW));
        }
    }

    #[test]
    fn every_forbidden_transition_is_an_error_and_changes_nothing() {
        let allowed = allowed_pairs();
        let mut forbidden = 0;
        for from in ALL_STATES {
            for to in ALL_STATES {
                if from == to || allowed.contains(&(from, to)) {
                    continue;
                }
                forbidden += 1;
                let mut ctx = ctx_in(from);
                ctx.pending_workflow = Some(vec![Step::new("csv/convert-to-excel", json!({}), "x")]);
                let before = ctx.clone();
                assert_eq!(
                    ctx.transition(to, NOW, None),
                    Err(TransitionError { from, to }),
                    "{from} -> {to}"
                );
                assert_eq!(ctx, before, "{from} -> {to} must not touch the context");
                assert!(!from.can_transition_to(to));
            }
        }
        // 8 × 8 pairs − 8 self pairs − 19 allowed.
        assert_eq!(forbidden, 64 - 8 - 19);
    }

    #[test]
    fn same_state_is_a_successful_no_op() {
        for s in ALL_STATES {
            let mut ctx = ctx_in(s);
            assert_eq!(ctx.transition(s, NOW, None), Ok(None));
            assert_eq!(ctx.previous_state, None);
            assert_eq!(ctx.last_message_time, None);
        }
    }

    #[test]
    fn acceptance_174_reference_state_rules() {
        let mut ctx = BotContext::new();
        assert_eq!(
            ctx.transition(Processing, NOW, None),
            Err(TransitionError { from: Idle, to: Processing })
        );
        assert_eq!(ctx.current_state, Idle);
        let path = [AwaitingFile, AwaitingConfirmation, Processing, Completed, Idle];
        let mut prev = Idle;
        for (i, s) in path.into_iter().enumerate() {
            let now = format!("2026-03-01T03:00:0{i}.000000+00:00");
            ctx.transition(s, &now, None).unwrap();
            assert_eq!(ctx.previous_state, Some(prev));
            assert_eq!(ctx.last_message_time.as_deref(), Some(now.as_str()));
            prev = s;
        }
        // [NEW] processing → cancelled
        let mut ctx = ctx_in(Processing);
        assert!(ctx.transition(Cancelled, NOW, None).is_ok());
    }

    #[test]
    fn transition_metadata_is_merged() {
        let mut ctx = BotContext::new();
        let m1 = json!({"a": 1, "b": 1}).as_object().cloned().unwrap();
        let m2 = json!({"b": 2}).as_object().cloned().unwrap();
        ctx.transition(AwaitingFile, NOW, Some(&m1)).unwrap();
        ctx.transition(AwaitingConfirmation, NOW, Some(&m2)).unwrap();
        assert_eq!(Value::Object(ctx.metadata), json!({"a": 1, "b": 2}));
    }

    #[test]
    fn context_round_trips_through_serde_and_tolerates_missing_fields() {
        let mut ctx = BotContext::new();
        ctx.transition(AwaitingFile, NOW, None).unwrap();
        ctx.set_pending(vec![Step::new(
            "excel/extract-columns-to-file",
            json!({"columns": ["Name"], "remove_duplicates": false}),
            "Extract specific columns to a new file",
        )]);
        ctx.workflow_params.insert("columns".into(), json!(["Name"]));
        ctx.record_intent("extract_columns", 1.0, "extract columns: Name", NOW);
        let text = serde_json::to_string(&ctx).unwrap();
        let back: BotContext = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ctx);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["current_state"], "awaiting_file");
        assert_eq!(v["previous_state"], "idle");
        assert_eq!(v["pending_workflow"][0]["operation"], "excel/extract-columns-to-file");
        assert!(v["pending_workflow"][0].get("input_file").is_none());
        assert_eq!(v["pending_job_id"], Value::Null);
        let empty: BotContext = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, BotContext::new());
        assert!(serde_json::from_str::<BotContext>(r#"{"current_state": "dancing"}"#).is_err());
        // The store's row form: nulls where a JSON column was empty, plus `updated_at`.
        let row = json!({
            "current_state": "awaiting_confirmation", "previous_state": null, "pending_workflow": null,
            "pending_job_id": null, "workflow_params": null, "intent_history": null, "user_preferences": null,
            "metadata": null, "last_message_time": null, "updated_at": NOW,
        });
        let loaded: BotContext = serde_json::from_value(row).unwrap();
        assert_eq!(loaded, BotContext { current_state: AwaitingConfirmation, ..BotContext::default() });
    }

    #[test]
    fn steps_accept_confirm_shapes() {
        let s: Step = serde_json::from_value(json!({"operation": "csv/convert-to-excel"})).unwrap();
        assert!(s.arguments.is_empty());
        let s: Step = serde_json::from_value(
            json!({"operation": "x", "arguments": {"a": 1}, "description": "d", "input_file": "a.csv", "extra": 1}),
        )
        .unwrap();
        assert_eq!(s.input_file.as_deref(), Some("a.csv"));
        assert!(serde_json::from_value::<Step>(json!({"arguments": {}})).is_err());
    }

    #[test]
    fn intent_history_is_capped_and_newest_last() {
        let mut ctx = BotContext::new();
        for i in 0..(INTENT_HISTORY_CAP + 7) {
            ctx.record_intent("unknown", 0.0, &format!("m{i}"), NOW);
        }
        assert_eq!(ctx.intent_history.len(), INTENT_HISTORY_CAP);
        assert_eq!(ctx.intent_history[0].message, "m7");
        let recent: Vec<_> = ctx.recent_intents(5).iter().map(|r| r.message.clone()).collect();
        assert_eq!(recent, ["m52", "m53", "m54", "m55", "m56"]);
        assert_eq!(BotContext::new().recent_intents(5).len(), 0);
    }

    #[test]
    fn set_pending_resets_the_submission_marker() {
        let mut ctx = BotContext::new();
        ctx.set_pending(vec![Step::new("csv/convert-to-excel", json!({}), "c")]);
        assert!(ctx.unsubmitted_pending().is_some());
        ctx.pending_job_id = Some("j1".into());
        assert!(ctx.unsubmitted_pending().is_none());
        ctx.set_pending(vec![Step::new("json/generate", json!({}), "j")]);
        assert_eq!(ctx.pending_job_id, None);
        ctx.set_pending(Vec::new());
        assert!(ctx.unsubmitted_pending().is_none(), "an empty workflow is not pending");
    }

    #[test]
    fn submission_enters_processing_through_awaiting_confirmation() {
        // acceptance 175: from idle the path is awaiting_confirmation then processing
        for (start, expected) in [
            (Idle, vec![(Idle, AwaitingConfirmation), (AwaitingConfirmation, Processing)]),
            (AwaitingFile, vec![(AwaitingFile, AwaitingConfirmation), (AwaitingConfirmation, Processing)]),
            (
                AwaitingParameters,
                vec![(AwaitingParameters, AwaitingConfirmation), (AwaitingConfirmation, Processing)],
            ),
            (AwaitingConfirmation, vec![(AwaitingConfirmation, Processing)]),
            (Processing, vec![]),
            (Failed, vec![(Failed, Idle), (Idle, AwaitingConfirmation), (AwaitingConfirmation, Processing)]),
        ] {
            let mut ctx = ctx_in(start);
            let done = ctx.mark_submitted("job-1", NOW).unwrap();
            let pairs: Vec<_> = done.iter().map(|t| (t.from, t.to)).collect();
            assert_eq!(pairs, expected, "from {start}");
            assert_eq!(ctx.current_state, Processing);
            assert_eq!(ctx.pending_job_id.as_deref(), Some("job-1"));
        }
    }

    fn submitted_ctx() -> BotContext {
        let mut ctx = ctx_in(AwaitingConfirmation);
        ctx.set_pending(vec![Step::new("csv/convert-to-excel", json!({}), "c")]);
        ctx.mark_submitted("job-1", NOW).unwrap();
        ctx
    }

    #[test]
    fn job_success_clears_only_its_own_pending_workflow() {
        let mut ctx = submitted_ctx();
        let done = ctx.on_job_finished("job-1", JobOutcome::Completed, NOW).unwrap();
        assert_eq!(
            done.iter().map(|t| (t.from, t.to)).collect::<Vec<_>>(),
            vec![(Processing, Completed), (Completed, Idle)]
        );
        assert_eq!(ctx.pending_workflow, None);
        assert_eq!(ctx.pending_job_id, None);

        // A suggestion made during the run survives the run's success.
        let mut ctx = submitted_ctx();
        ctx.set_pending(vec![Step::new("json/generate", json!({}), "j")]);
        ctx.on_job_finished("job-1", JobOutcome::Completed, NOW).unwrap();
        assert_eq!(ctx.current_state, Idle);
        assert_eq!(ctx.pending_workflow.as_ref().map(|w| w[0].operation.as_str()), Some("json/generate"));
    }

    #[test]
    fn job_failure_and_cancellation_keep_the_workflow_for_a_retry() {
        for (outcome, transient) in [(JobOutcome::Failed, Failed), (JobOutcome::Cancelled, Cancelled)] {
            let mut ctx = submitted_ctx();
            let done = ctx.on_job_finished("job-1", outcome, NOW).unwrap();
            assert_eq!(
                done.iter().map(|t| (t.from, t.to)).collect::<Vec<_>>(),
                vec![(Processing, transient), (transient, Idle)]
            );
            assert!(ctx.unsubmitted_pending().is_some(), "{outcome:?}: `yes` can retry");
        }
    }

    #[test]
    fn job_end_outside_processing_only_settles() {
        let mut ctx = ctx_in(Idle);
        assert_eq!(ctx.on_job_finished("j", JobOutcome::Failed, NOW), Ok(vec![]));
        assert_eq!(ctx.current_state, Idle);
        let mut ctx = ctx_in(Failed);
        assert_eq!(ctx.on_job_finished("j", JobOutcome::Failed, NOW).unwrap().len(), 1);
        assert_eq!(ctx.current_state, Idle);
    }

    #[test]
    fn job_start_reenters_processing() {
        let mut ctx = ctx_in(Idle);
        let done = ctx.on_job_started(NOW).unwrap();
        assert_eq!(done.len(), 2);
        assert_eq!(ctx.current_state, Processing);
        assert_eq!(ctx.on_job_started(NOW).unwrap(), vec![]);
    }

    #[test]
    fn move_to_takes_the_shortest_valid_route() {
        #[rustfmt::skip]
        let cases: Vec<(BotState, BotState, Option<Vec<BotState>>)> = vec![
            (Idle, Idle, Some(vec![])),
            (Idle, AwaitingFile, Some(vec![AwaitingFile])),
            (AwaitingConfirmation, AwaitingFile, Some(vec![Idle, AwaitingFile])),
            (AwaitingParameters, AwaitingFile, Some(vec![Idle, AwaitingFile])),
            (Completed, AwaitingConfirmation, Some(vec![Idle, AwaitingConfirmation])),
            (AwaitingFile, Processing, Some(vec![AwaitingConfirmation, Processing])),
            (Processing, Idle, None), // only a job end may leave processing
            (Idle, Completed, None),  // never routed through processing
            (AwaitingFile, Cancelled, Some(vec![Cancelled])),
        ];
        for (from, to, expected) in cases {
            let mut ctx = ctx_in(from);
            match expected {
                Some(path) => {
                    let done = ctx.move_to(to, NOW).unwrap();
                    assert_eq!(done.iter().map(|t| t.to).collect::<Vec<_>>(), path, "{from} -> {to}");
                    assert_eq!(ctx.current_state, to);
                }
                None => {
                    assert_eq!(ctx.move_to(to, NOW), Err(TransitionError { from, to }));
                    assert_eq!(ctx.current_state, from);
                }
            }
        }
    }

    #[test]
    fn bot_state_event_payload() {
        use crate::events::wire::WireMessage;
        let t = Transition { from: AwaitingFile, to: AwaitingConfirmation };
        assert_eq!(
            t.event().to_json(),
            json!({"type": "bot_state", "state": "awaiting_confirmation", "previous_state": "awaiting_file"})
        );
        assert_eq!(BotState::parse("awaiting_parameters"), Some(AwaitingParameters));
        assert_eq!(BotState::parse("unknown"), None);
    }
}
