//! Handler-chain tests over a fake environment (no store, no runner).

use super::*;
use crate::bot::state::JobOutcome;
use serde_json::json;

const NOW: &str = "2026-03-01T03:00:00.000000+00:00";

/// A conversation's facts: its uploads (latest last) and a validator that checks operation names and
/// required arguments against the catalog, and `bind_file` against the uploads.
#[derive(Default)]
struct FakeEnv {
    uploads: Vec<String>,
}

impl FakeEnv {
    fn with(files: &[&str]) -> FakeEnv {
        FakeEnv { uploads: files.iter().map(|s| s.to_string()).collect() }
    }
}

impl Environment for FakeEnv {
    fn latest_upload(&self) -> Option<String> {
        self.uploads.last().cloned()
    }
    fn uploads(&self) -> Vec<String> {
        self.uploads.clone()
    }
    fn validate(&self, steps: &[Step]) -> Result<(), WorkflowProblems> {
        let mut errors = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            match crate::bot::catalog::operation(&step.operation) {
                None => errors.push((i + 1, "operation", format!("Unknown operation: {}", step.operation))),
                Some(op) => {
                    for a in op.arguments.iter().filter(|a| a.required) {
                        if !step.arguments.contains_key(a.name) {
                            errors.push((i + 1, a.name, format!("{} is required", a.name)));
                        }
                    }
                    if let Some(f) = step.arguments.get("bind_file").and_then(Value::as_str) {
                        if !self.uploads.iter().any(|u| u == f) {
                            errors.push((
                                i + 1,
                                "bind_file",
                                format!("bind_file not found in conversation: {f}"),
                            ));
                        }
                    }
                }
            }
        }
        if errors.is_empty() {
            return Ok(());
        }
        let problems: Vec<String> = errors.iter().map(|(s, _, e)| format!("step {s}: {e}")).collect();
        Err(WorkflowProblems {
            message: format!("Invalid workflow: {}", problems.join("; ")),
            details: json!({"errors": errors.iter().map(|(s, f, e)| json!({"step": s, "field": f, "error": e})).collect::<Vec<_>>()}),
            problems,
        })
    }
    fn now(&self) -> String {
        NOW.to_string()
    }
}

fn text(ctx: &mut BotContext, env: &FakeEnv, t: &str) -> Reply {
    dispatch(ctx, &BotInput::Text(t.to_string()), env).expect("no forbidden transition")
}

fn upload(ctx: &mut BotContext, env: &mut FakeEnv, name: &str) -> Reply {
    env.uploads.push(name.to_string());
    dispatch(ctx, &BotInput::File { filename: name.to_string() }, env).expect("no forbidden transition")
}

fn confirm(ctx: &mut BotContext, env: &FakeEnv, confirmed: bool, modified: Option<Vec<Step>>) -> Reply {
    dispatch(ctx, &BotInput::Confirmation { confirmed, modified_workflow: modified }, env)
        .expect("no forbidden transition")
}

fn in_state(state: BotState) -> BotContext {
    BotContext { current_state: state, ..BotContext::default() }
}

fn extract_step(cols: &[&str]) -> Step {
    Step::new(
        "excel/extract-columns-to-file",
        json!({"columns": cols, "remove_duplicates": false}),
        "Extract specific columns to a new file",
    )
}

fn awaiting_confirmation_ctx() -> (BotContext, FakeEnv) {
    let env = FakeEnv::with(&["data.xlsx"]);
    let mut ctx = BotContext::new();
    let r = text(&mut ctx, &env, "extract columns: Name");
    assert_eq!(ctx.current_state, BotState::AwaitingConfirmation, "{r:?}");
    (ctx, env)
}

fn states(r: &Reply) -> Vec<(BotState, BotState)> {
    r.transitions.iter().map(|t| (t.from, t.to)).collect()
}

#[test]
fn help_in_every_state_changes_nothing() {
    for state in crate::bot::state::ALL_STATES {
        for word in ["help", "HELP", "?", "Help!", " help. "] {
            let mut ctx = in_state(state);
            ctx.set_pending(vec![extract_step(&["a"])]);
            let before = ctx.clone();
            let r = text(&mut ctx, &FakeEnv::default(), word);
            assert_eq!(r.status, Status::Ok);
            assert!(r.bot_response.as_deref().unwrap().to_lowercase().contains("help"), "acceptance 115");
            assert_eq!(ctx, before, "{state} {word}");
            assert!(r.transitions.is_empty() && r.effect.is_none());
        }
    }
}

#[test]
fn acceptance_137_cancel_outside_processing_discards_and_returns_to_idle() {
    use BotState::*;
    for (state, expected) in [
        (Idle, vec![]),
        (AwaitingFile, vec![(AwaitingFile, Cancelled), (Cancelled, Idle)]),
        (AwaitingConfirmation, vec![(AwaitingConfirmation, Cancelled), (Cancelled, Idle)]),
        (AwaitingParameters, vec![(AwaitingParameters, Cancelled), (Cancelled, Idle)]),
        (Completed, vec![(Completed, Idle)]),
    ] {
        for word in ["cancel", "Stop", "quit!"] {
            let mut ctx = in_state(state);
            ctx.set_pending(vec![extract_step(&["a"])]);
            ctx.workflow_params.insert("columns".into(), json!(["a"]));
            let r = text(&mut ctx, &FakeEnv::default(), word);
            let reply = r.bot_response.clone().unwrap();
            assert!(reply.starts_with('✅') && reply.contains("cancelled"), "{reply}");
            assert_eq!(ctx.current_state, Idle);
            assert_eq!(ctx.pending_workflow, None);
            assert!(ctx.workflow_params.is_empty());
            assert_eq!(states(&r), expected, "{state}");
            assert_eq!(r.effect, None);
        }
    }
}

#[test]
fn acceptance_138_cancel_while_processing_requests_job_cancellation() {
    let mut ctx = in_state(BotState::Processing);
    ctx.set_pending(vec![extract_step(&["a"])]);
    ctx.pending_job_id = Some("job-1".into());
    let r = text(&mut ctx, &FakeEnv::default(), "cancel");
    assert_eq!(r.effect, Some(Effect::CancelRunningJobs));
    assert_eq!(ctx.current_state, BotState::Processing, "the job's end moves the state");
    assert!(r.bot_response.unwrap().contains("Cancellation requested"));
    // The runner reports the cancellation: cancelled → idle, the workflow stays for a retry.
    let done = ctx.on_job_finished("job-1", JobOutcome::Cancelled, NOW).unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(ctx.current_state, BotState::Idle);
    assert!(ctx.unsubmitted_pending().is_some());
}

#[test]
fn acceptance_113_request_without_file_asks_for_upload_and_stores_the_suggestion() {
    let env = FakeEnv::default();
    let mut ctx = BotContext::new();
    let r = text(&mut ctx, &env, "extract columns: name, email, phone");
    assert_eq!(r.status, Status::Ok);
    assert_eq!(r.intent, Some((Intent::ExtractColumns, 1.0)));
    assert!(r.requires_file);
    assert!(!r.requires_confirmation);
    assert!(r.bot_response.as_deref().unwrap().contains("📎"));
    assert_eq!(ctx.current_state, BotState::AwaitingFile);
    assert_eq!(states(&r), vec![(BotState::Idle, BotState::AwaitingFile)]);
    let pending = ctx.pending_workflow.clone().unwrap();
    assert_eq!(pending[0].arguments["columns"], json!(["name", "email", "phone"]));
    assert_eq!(r.suggested_workflow, Some(pending));
    assert_eq!(ctx.intent_history.len(), 1);
    assert_eq!(ctx.intent_history[0].intent_type, "extract_columns");
    assert_eq!(r.intent_json(), json!({"type": "extract_columns", "confidence": 1.0}));
}

#[test]
fn acceptance_125_request_with_file_awaits_confirmation() {
    let env = FakeEnv::with(&["test_data.xlsx"]);
    let mut ctx = BotContext::new();
    let r = text(&mut ctx, &env, "extract columns: postal_code");
    assert_eq!(r.status, Status::Ok);
    assert!(!r.requires_file);
    assert!(r.requires_confirmation);
    assert_eq!(r.suggested_workflow.as_ref().unwrap()[0].arguments["columns"], json!(["postal_code"]));
    assert_eq!(ctx.current_state, BotState::AwaitingConfirmation);
    assert!(r.bot_response.unwrap().contains("**Suggested Workflow:**"));
}

#[test]
fn acceptance_114_and_155_convert_to_json() {
    let env = FakeEnv::with(&["a.xlsx"]);
    let mut ctx = BotContext::new();
    let r = text(&mut ctx, &env, "convert to JSON");
    assert_eq!(r.intent.map(|i| i.0), Some(Intent::ConvertFormat));
    let r2 = text(&mut BotContext::new(), &env, "export as JSON");
    assert_eq!(r2.intent.map(|i| i.0), Some(Intent::ConvertFormat));
    assert!(!r2.suggested_workflow.unwrap().is_empty());
    assert_eq!(r.suggested_workflow.unwrap()[0].operation, "json/generate");
}

#[test]
fn acceptance_118_119_unknown_intent_is_a_soft_failure_with_suggestions() {
    for t in ["do something random", "xyz abc 123", "Hello bot!", "yes", "no"] {
        let mut ctx = BotContext::new();
        let r = text(&mut ctx, &FakeEnv::default(), t);
        assert_eq!(r.status, Status::SoftFailure("Unknown intent"), "{t}");
        assert!(!r.bot_response.clone().unwrap().is_empty());
        assert_eq!(r.suggestions.as_ref().map(Vec::len), Some(4));
        assert_eq!(r.intent, Some((Intent::Unknown, 0.0)));
        assert_eq!(ctx.current_state, BotState::Idle);
        assert_eq!(ctx.pending_workflow, None);
        assert_eq!(ctx.intent_history.len(), 1, "every classified request is recorded");
    }
}

#[test]
fn acceptance_170_unsupported_conversion_stores_nothing() {
    let env = FakeEnv::with(&["a.xlsx"]);
    let mut ctx = BotContext::new();
    let r = text(&mut ctx, &env, "convert to csv");
    assert_eq!(r.status, Status::Ok);
    assert!(!r.requires_confirmation);
    assert_eq!(r.suggested_workflow, None);
    assert_eq!(ctx.pending_workflow, None);
    assert_eq!(ctx.current_state, BotState::Idle);
    let env = FakeEnv::with(&["a.csv"]);
    let r = text(&mut BotContext::new(), &env, "convert csv to excel");
    assert_eq!(r.suggested_workflow.unwrap()[0].operation, "csv/convert-to-excel");
}

#[test]
fn acceptance_171_csv_search_conditions() {
    let env = FakeEnv::with(&["sales.csv"]);
    let r = text(&mut BotContext::new(), &env, "search where status = active");
    let step = &r.suggested_workflow.unwrap()[0];
    assert_eq!(step.operation, "csv/search");
    assert_eq!(
        step.arguments["conditions"],
        json!([{"column": "status", "operator": "equals", "value": "active"}])
    );
}

#[test]
fn acceptance_133_yes_submits_the_pending_workflow() {
    for word in ["yes", "Yes!", "OK", "y", "proceed", "continue", "go", "confirm."] {
        let (mut ctx, env) = awaiting_confirmation_ctx();
        let r = text(&mut ctx, &env, word);
        assert_eq!(r.status, Status::Submitted, "{word}");
        assert_eq!(r.action, Some(Action::ExecuteWorkflow));
        assert!(r.bot_response.clone().unwrap().starts_with('🚀'));
        let Some(Effect::Submit(steps)) = r.effect.clone() else { panic!("no submit effect for {word}") };
        assert_eq!(steps[0].arguments["columns"], json!(["Name"]));
        // The service submits, then marks the context.
        let done = ctx.mark_submitted("job-1", NOW).unwrap();
        assert_eq!(done.iter().map(|t| t.to).collect::<Vec<_>>(), vec![BotState::Processing]);
    }
}

#[test]
fn yes_please_is_not_a_confirmation() {
    let (mut ctx, env) = awaiting_confirmation_ctx();
    let r = text(&mut ctx, &env, "yes please");
    assert_eq!(r.effect, None);
    assert_eq!(r.action, Some(Action::ModifyWorkflow));
}

#[test]
fn a_second_yes_while_running_cannot_resubmit() {
    let (mut ctx, env) = awaiting_confirmation_ctx();
    assert!(matches!(text(&mut ctx, &env, "yes").effect, Some(Effect::Submit(_))));
    ctx.mark_submitted("job-1", NOW).unwrap();
    let r = text(&mut ctx, &env, "yes");
    assert_eq!(r.effect, None);
    assert!(r.is_soft_failure());
    assert_eq!(ctx.current_state, BotState::Processing);
    assert_eq!(ctx.pending_job_id.as_deref(), Some("job-1"));
    // The confirm endpoint refuses too, naming the running job.
    let r = confirm(&mut ctx, &env, true, None);
    assert_eq!(
        r.status,
        Status::Rejected { status: 400, message: "No pending workflow".into(), details: None }
    );
    assert!(r.bot_response.unwrap().contains("job-1"));
}

#[test]
fn yes_without_file_or_with_invalid_workflow_is_a_soft_failure() {
    let env = FakeEnv::default();
    let mut ctx = BotContext::new();
    text(&mut ctx, &env, "extract columns: a");
    let before = ctx.clone();
    let r = text(&mut ctx, &env, "yes");
    assert_eq!(r.status, Status::SoftFailure("No uploaded file found"));
    assert!(r.requires_file);
    assert_eq!(ctx, before, "state unchanged");

    let env = FakeEnv::with(&["a.xlsx"]);
    let mut ctx = BotContext::new();
    text(&mut ctx, &env, "bind data from another file"); // placeholder bind_file
    let r = text(&mut ctx, &env, "yes");
    assert_eq!(r.status, Status::SoftFailure("Invalid workflow"));
    assert!(r.bot_response.unwrap().contains("bind_file not found"));
    assert_eq!(r.effect, None);
    assert_eq!(ctx.current_state, BotState::AwaitingConfirmation);
}

#[test]
fn acceptance_134_no_declines_and_confirm_then_has_nothing() {
    for word in ["no", "N", "no."] {
        let (mut ctx, env) = awaiting_confirmation_ctx();
        let r = text(&mut ctx, &env, word);
        assert_eq!(r.status, Status::Ok);
        assert_eq!(ctx.current_state, BotState::Idle);
        assert_eq!(ctx.pending_workflow, None);
        assert_eq!(states(&r), vec![(BotState::AwaitingConfirmation, BotState::Idle)]);
        let r = confirm(&mut ctx, &env, true, None);
        assert!(matches!(r.status, Status::Rejected { status: 400, .. }));
    }
}

#[test]
fn acceptance_135_parameters_update_the_pending_step() {
    let (mut ctx, env) = awaiting_confirmation_ctx();
    let r = text(&mut ctx, &env, "columns: a, b");
    assert_eq!(r.status, Status::Ok);
    assert!(r.requires_confirmation);
    assert_eq!(ctx.pending_workflow.as_ref().unwrap()[0].arguments["columns"], json!(["a", "b"]));
    assert_eq!(r.suggested_workflow.unwrap()[0].arguments["columns"], json!(["a", "b"]));
    assert_eq!(r.parameters, Some(json!({"columns": ["a", "b"]}).as_object().cloned().unwrap()));
    assert_eq!(ctx.workflow_params.get("columns"), Some(&json!(["a", "b"])));
    assert_eq!(ctx.current_state, BotState::AwaitingConfirmation);
}

#[test]
fn acceptance_136_unparseable_text_asks_what_to_change_then_shows_syntax() {
    let (mut ctx, env) = awaiting_confirmation_ctx();
    let r = text(&mut ctx, &env, "hmm not sure");
    assert_eq!(r.action, Some(Action::ModifyWorkflow));
    assert_eq!(ctx.current_state, BotState::AwaitingParameters);
    assert_eq!(states(&r), vec![(BotState::AwaitingConfirmation, BotState::AwaitingParameters)]);

    let r = text(&mut ctx, &env, "still not sure");
    assert_eq!(r.status, Status::SoftFailure("Invalid parameters"));
    assert!(r.bot_response.unwrap().contains("key: value"));
    assert_eq!(ctx.current_state, BotState::AwaitingParameters);

    let r = text(&mut ctx, &env, "remove_duplicates: yes");
    assert_eq!(ctx.current_state, BotState::AwaitingConfirmation);
    assert_eq!(states(&r), vec![(BotState::AwaitingParameters, BotState::AwaitingConfirmation)]);
    assert_eq!(ctx.pending_workflow.as_ref().unwrap()[0].arguments["remove_duplicates"], json!(true));
    // yes from here submits
    assert!(matches!(text(&mut ctx, &env, "yes").effect, Some(Effect::Submit(_))));
}

#[test]
fn a_confident_new_request_replaces_the_pending_workflow() {
    let (mut ctx, env) = awaiting_confirmation_ctx();
    let r = text(&mut ctx, &env, "generate SQL for table users");
    assert_eq!(r.intent, Some((Intent::GenerateSql, 1.0)));
    assert_eq!(ctx.pending_workflow.as_ref().unwrap()[0].operation, "sql/generate");
    assert_eq!(ctx.current_state, BotState::AwaitingConfirmation);
    // Below 0.6 the text is read as parameters / a change request instead.
    let r = text(&mut ctx, &env, "I need some columns");
    assert_eq!(r.action, Some(Action::ModifyWorkflow));
    assert_eq!(ctx.pending_workflow.as_ref().unwrap()[0].operation, "sql/generate");
    // From awaiting_parameters a confident request returns to awaiting_confirmation.
    let r = text(&mut ctx, &env, "convert to JSON");
    assert_eq!(ctx.current_state, BotState::AwaitingConfirmation);
    assert_eq!(r.suggested_workflow.unwrap()[0].operation, "json/generate");
    assert!(ctx.workflow_params.is_empty());
}

#[test]
fn acceptance_131_upload_presents_the_stored_suggestion() {
    let mut env = FakeEnv::default();
    let mut ctx = BotContext::new();
    text(&mut ctx, &env, "extract columns: Name");
    let r = upload(&mut ctx, &mut env, "customers.xlsx");
    let steps = r.suggested_workflow.clone().unwrap();
    assert_eq!(steps[0].operation, "excel/extract-columns-to-file");
    assert_eq!(steps[0].arguments["columns"], json!(["Name"]));
    assert!(r.requires_confirmation);
    assert_eq!(ctx.current_state, BotState::AwaitingConfirmation);
    let reply = r.bot_response.unwrap();
    assert!(reply.starts_with("✅ File 'customers.xlsx' uploaded successfully!"), "{reply}");
    // acceptance 132: confirm without modified_workflow executes the stored suggestion
    let r = confirm(&mut ctx, &env, true, None);
    assert_eq!(r.status, Status::Submitted);
    assert_eq!(r.effect, Some(Effect::Submit(steps)));
}

#[test]
fn upload_rows_of_section_3_4() {
    // awaiting_file without pending → idle
    let mut env = FakeEnv::default();
    let mut ctx = in_state(BotState::AwaitingFile);
    let r = upload(&mut ctx, &mut env, "a.csv");
    assert_eq!(ctx.current_state, BotState::Idle);
    assert_eq!(r.suggested_workflow, None);
    assert!(!r.requires_confirmation);
    assert!(r.bot_response.unwrap().contains("uploaded successfully"));
    // idle, nothing pending → no change, asks what to do
    let r = upload(&mut ctx, &mut env, "b.csv");
    assert!(r.transitions.is_empty());
    assert!(r.bot_response.unwrap().contains("What would you like to do"));
    // awaiting_confirmation → re-presents, notes the new file
    let (mut ctx, mut env) = awaiting_confirmation_ctx();
    let r = upload(&mut ctx, &mut env, "newer.xlsx");
    assert!(r.requires_confirmation && r.transitions.is_empty());
    assert!(r.bot_response.unwrap().contains("now use this file"));
    assert_eq!(ctx.current_state, BotState::AwaitingConfirmation);
    // processing → no state change
    let mut ctx = in_state(BotState::Processing);
    upload(&mut ctx, &mut env, "c.xlsx");
    assert_eq!(ctx.current_state, BotState::Processing);
}

#[test]
fn acceptance_127_128_confirm_on_a_fresh_conversation() {
    let env = FakeEnv::default();
    let mut ctx = BotContext::new();
    let r = confirm(&mut ctx, &env, true, None);
    assert_eq!(
        r.status,
        Status::Rejected { status: 400, message: "No pending workflow".into(), details: None }
    );
    assert!(!r.bot_response.unwrap().is_empty());
    let r = confirm(&mut ctx, &env, false, None);
    assert_eq!(r.status, Status::Ok);
    assert!(!r.bot_response.unwrap().is_empty());
    assert_eq!(ctx.current_state, BotState::Idle);
    // An empty modified_workflow counts as absent.
    let r = confirm(&mut ctx, &env, true, Some(vec![]));
    assert!(matches!(r.status, Status::Rejected { status: 400, .. }));
}

#[test]
fn acceptance_126_175_operations_panel_confirm_from_idle() {
    let env = FakeEnv::with(&["test_data.xlsx"]);
    let mut ctx = BotContext::new();
    let modified = vec![Step {
        operation: "excel/extract-columns-to-file".into(),
        arguments: json!({"columns": ["Name", "Email"], "remove_duplicates": true})
            .as_object()
            .cloned()
            .unwrap(),
        description: None,
        input_file: None,
    }];
    let r = confirm(&mut ctx, &env, true, Some(modified.clone()));
    assert_eq!(r.status, Status::Submitted);
    assert_eq!(r.effect, Some(Effect::Submit(modified.clone())));
    assert_eq!(ctx.pending_workflow, Some(modified), "stored as the new pending workflow");
    let done = ctx.mark_submitted("job-9", NOW).unwrap();
    assert_eq!(
        done.iter().map(|t| (t.from, t.to)).collect::<Vec<_>>(),
        vec![
            (BotState::Idle, BotState::AwaitingConfirmation),
            (BotState::AwaitingConfirmation, BotState::Processing)
        ]
    );
}

#[test]
fn confirm_validates_before_checking_the_file() {
    let env = FakeEnv::default();
    let mut ctx = BotContext::new();
    let bad = vec![Step::new("excel/explode", json!({}), "x")];
    let r = confirm(&mut ctx, &env, true, Some(bad));
    let Status::Rejected { status, message, details } = r.status else { panic!("{r:?}") };
    assert_eq!(status, 422);
    assert!(message.starts_with("Invalid workflow: "));
    assert_eq!(details.unwrap()["errors"][0]["field"], "operation");
    assert_eq!(ctx.pending_workflow, None, "invalid workflows are never stored");

    let r = confirm(&mut ctx, &env, true, Some(vec![extract_step(&["a"])]));
    assert_eq!(
        r.status,
        Status::Rejected { status: 400, message: "No uploaded file found".into(), details: None }
    );
    assert!(r.requires_file);
    assert_eq!(ctx.current_state, BotState::AwaitingFile);
    assert!(ctx.unsubmitted_pending().is_some());
}

#[test]
fn confirm_false_keeps_processing() {
    let mut ctx = in_state(BotState::Processing);
    ctx.set_pending(vec![extract_step(&["a"])]);
    let r = confirm(&mut ctx, &FakeEnv::default(), false, None);
    assert_eq!(r.status, Status::Ok);
    assert_eq!(ctx.current_state, BotState::Processing);
    assert_eq!(ctx.pending_workflow, None);
}

#[test]
fn a_suggestion_during_a_run_keeps_processing_and_survives_the_run() {
    let (mut ctx, env) = awaiting_confirmation_ctx();
    text(&mut ctx, &env, "yes");
    ctx.mark_submitted("job-1", NOW).unwrap();
    let r = text(&mut ctx, &env, "generate JSON");
    assert!(r.requires_confirmation);
    assert!(r.transitions.is_empty());
    assert_eq!(ctx.current_state, BotState::Processing);
    assert_eq!(ctx.pending_job_id, None);
    // yes now queues a second job while the first runs
    assert!(matches!(text(&mut ctx, &env, "yes").effect, Some(Effect::Submit(_))));
    ctx.mark_submitted("job-2", NOW).unwrap();
    ctx.on_job_finished("job-1", JobOutcome::Completed, NOW).unwrap();
    assert_eq!(ctx.pending_job_id.as_deref(), Some("job-2"), "job-2's workflow is not cleared by job-1");
    ctx.on_job_started(NOW).unwrap();
    assert_eq!(ctx.current_state, BotState::Processing);
    ctx.on_job_finished("job-2", JobOutcome::Completed, NOW).unwrap();
    assert_eq!(ctx.pending_workflow, None);
    assert_eq!(ctx.current_state, BotState::Idle);
}

#[test]
fn full_text_flow_upload_first() {
    let mut env = FakeEnv::default();
    let mut ctx = BotContext::new();
    let r = upload(&mut ctx, &mut env, "sales.csv");
    assert!(r.transitions.is_empty());
    let r = text(&mut ctx, &env, "search where status = active and amount > 1000");
    assert_eq!(ctx.current_state, BotState::AwaitingConfirmation);
    let step = &r.suggested_workflow.unwrap()[0];
    assert_eq!(step.operation, "csv/search");
    assert_eq!(step.arguments["conditions"].as_array().unwrap().len(), 2);
    assert!(r.missing_parameters.is_empty());
    let r = text(&mut ctx, &env, "output_format: json");
    assert_eq!(ctx.pending_workflow.as_ref().unwrap()[0].arguments["output_format"], json!("json"));
    assert!(r.requires_confirmation);
    assert!(matches!(text(&mut ctx, &env, "go").effect, Some(Effect::Submit(_))));
    ctx.mark_submitted("j", NOW).unwrap();
    ctx.on_job_started(NOW).unwrap();
    let done = ctx.on_job_finished("j", JobOutcome::Failed, NOW).unwrap();
    assert_eq!(done.iter().map(|t| t.to).collect::<Vec<_>>(), vec![BotState::Failed, BotState::Idle]);
    // retry with yes
    assert!(matches!(text(&mut ctx, &env, "yes").effect, Some(Effect::Submit(_))));
}

#[test]
fn missing_parameters_are_reported_and_named_in_the_reply() {
    let env = FakeEnv::with(&["a.xlsx"]);
    let mut ctx = BotContext::new();
    let r = text(&mut ctx, &env, "I need some columns");
    assert_eq!(r.missing_parameters, vec!["columns".to_string()]);
    assert!(r.bot_response.unwrap().contains("`columns`"));
    let r = text(&mut ctx, &env, "columns: Name");
    assert!(r.missing_parameters.is_empty());
}

#[test]
fn empty_text_and_system_notices() {
    let mut ctx = BotContext::new();
    let r = text(&mut ctx, &FakeEnv::default(), "   ");
    assert_eq!(r.status, Status::SoftFailure("Empty message"));
    let r = dispatch(&mut ctx, &BotInput::System("job finished".into()), &FakeEnv::default()).unwrap();
    assert_eq!(r.bot_response, None);
    assert_eq!(r.status, Status::Ok);
    assert_eq!(ctx, BotContext::new());
}

#[test]
fn dispatch_without_a_matching_handler_is_a_soft_failure() {
    let chain: [&dyn MessageHandler; 1] = [&TextHandler];
    let mut ctx = BotContext::new();
    let r =
        dispatch_with(&chain, &mut ctx, &BotInput::File { filename: "a.csv".into() }, &FakeEnv::default())
            .unwrap();
    assert!(r.is_soft_failure());
    assert!(r.bot_response.unwrap().contains("not sure how to handle"));
    // the real chain orders text, file, confirmation, system
    assert_eq!(
        CHAIN.map(|h| h.kind()),
        [InputKind::Text, InputKind::File, InputKind::Confirmation, InputKind::System]
    );
}

#[test]
fn command_words() {
    assert_eq!(command_word("  Yes!! "), "yes");
    assert_eq!(command_word("OK."), "ok");
    assert_eq!(command_word("yes please"), "yes please");
    assert_eq!(command_word("?"), "?");
}
