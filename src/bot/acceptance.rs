//! acceptance-chat.md section G at unit level: one test per item, named after its number.

use serde_json::{json, Value};

use super::handler::{dispatch, BotInput, Environment, Reply, WorkflowProblems};
use super::intent::{classify, FileType, Intent};
use super::params;
use super::state::{BotContext, BotState, Step, TransitionError};
use super::suggest::{self, SuggestInput};

const NOW: &str = "2026-03-01T03:00:00.000000+00:00";

struct Uploads(Vec<String>);

impl Environment for Uploads {
    fn latest_upload(&self) -> Option<String> {
        self.0.last().cloned()
    }
    fn uploads(&self) -> Vec<String> {
        self.0.clone()
    }
    fn validate(&self, _: &[Step]) -> Result<(), WorkflowProblems> {
        Ok(())
    }
    fn now(&self) -> String {
        NOW.into()
    }
}

fn intent(text: &str) -> (Intent, f64) {
    let c = classify(text);
    (c.intent, c.confidence)
}

fn suggestion(text: &str, file_type: FileType) -> Vec<Step> {
    suggest::suggest(classify(text).intent, SuggestInput { text, file_type, uploads: &[] })
}

fn say(ctx: &mut BotContext, env: &Uploads, text: &str) -> Reply {
    dispatch(ctx, &BotInput::Text(text.into()), env).expect("allowed transitions only")
}

#[test]
fn g151_extract_columns_name_email_phone() {
    assert_eq!(intent("extract columns: name, email, phone"), (Intent::ExtractColumns, 1.0));
    assert!(params::extract_columns("extract columns: name, email, phone").contains(&"name".to_string()));
}

#[test]
fn g152_get_the_name_and_email_columns() {
    assert_eq!(intent("get the name and email columns"), (Intent::ExtractColumns, 0.6));
}

#[test]
fn g153_select_customer_id_and_amount_fields() {
    assert_eq!(intent("select customer_id and amount fields"), (Intent::ExtractColumns, 0.6));
}

#[test]
fn g154_convert_to_excel() {
    let (i, c) = intent("convert to Excel");
    assert_eq!(i, Intent::ConvertFormat);
    assert!(c > 0.5);
}

#[test]
fn g155_export_as_json_has_a_step() {
    assert_eq!(intent("export as JSON").0, Intent::ConvertFormat);
    assert!(!suggestion("export as JSON", FileType::Xlsx).is_empty());
}

#[test]
fn g156_normalize_requests() {
    assert_eq!(intent("normalize data - uppercase and trim"), (Intent::NormalizeData, 1.0));
    assert_eq!(intent("clean the data").0, Intent::NormalizeData);
    assert_eq!(intent("standardize phone numbers").0, Intent::NormalizeData);
}

#[test]
fn g157_sql_requests() {
    assert_eq!(intent("generate SQL for table users"), (Intent::GenerateSql, 1.0));
    assert_eq!(intent("create insert statements").0, Intent::GenerateSql);
}

#[test]
fn g158_json_requests() {
    assert_eq!(intent("generate JSON"), (Intent::GenerateJson, 1.0));
    assert_eq!(intent("convert to JSON format").0, Intent::GenerateJson);
}

#[test]
fn g159_search_requests() {
    assert_eq!(intent("search for active customers"), (Intent::SearchFilter, 0.7));
    assert_eq!(intent("filter data where amount > 1000").0, Intent::SearchFilter);
}

#[test]
fn g160_bind_requests() {
    assert_eq!(intent("bind data from another file"), (Intent::BindData, 0.7));
    assert_eq!(intent("merge with customer_info.xlsx").0, Intent::BindData);
}

#[test]
fn g161_map_requests() {
    assert_eq!(intent("rename columns"), (Intent::MapColumns, 0.7));
    assert_eq!(intent("map column names").0, Intent::MapColumns);
}

#[test]
fn g162_unknown_requests() {
    assert_eq!(intent("do something random"), (Intent::Unknown, 0.0));
    assert_eq!(intent("xyz abc 123"), (Intent::Unknown, 0.0));
}

#[test]
fn g163_explicit_request_is_more_confident() {
    assert!(intent("extract columns: name, email").1 > intent("I need some columns").1);
}

#[test]
fn g164_extract_and_select_columns() {
    assert!(intent("extract and select columns: name, email").1 > 0.7);
}

#[test]
fn g165_classification_ignores_case() {
    let a = classify("EXTRACT COLUMNS: NAME, EMAIL");
    assert_eq!(a, classify("extract columns: name, email"));
    assert_eq!(a, classify("Extract Columns: Name, Email"));
}

#[test]
fn g166_flags() {
    let p = suggest::extracted_parameters("extract unique values from column", &[]);
    assert_eq!(p.get("remove_duplicates"), Some(&json!(true)));
    assert_eq!(suggest::extracted_parameters("convert to uppercase", &[]).get("case"), Some(&json!("upper")));
    assert_eq!(suggest::extracted_parameters("convert to lowercase", &[]).get("case"), Some(&json!("lower")));
}

#[test]
fn g167_reference_column_extraction() {
    assert_eq!(params::extract_columns("columns: name, email, phone"), ["name", "email", "phone"]);
    assert_eq!(params::extract_columns("extract customer_id, amount from data"), ["customer_id", "amount"]);
}

#[test]
fn g168_column_extraction_keeps_case_and_splits_and() {
    assert_eq!(params::extract_columns("Extract columns: Name, Email"), ["Name", "Email"]);
    assert_eq!(params::extract_columns("get the name and email columns"), ["name", "email"]);
}

#[test]
fn g169_every_step_has_operation_arguments_description() {
    for text in [
        "extract columns: a",
        "convert to JSON",
        "clean the data",
        "generate sql",
        "generate json",
        "search for x",
        "bind data from another file",
        "rename a to b",
    ] {
        let steps = suggestion(text, FileType::Xlsx);
        assert!(!steps.is_empty(), "{text}");
        for s in steps {
            let v = serde_json::to_value(&s).unwrap();
            assert!(v["operation"].is_string() && v["arguments"].is_object() && v["description"].is_string());
        }
    }
}

#[test]
fn g170_conversions_depend_on_the_uploaded_file() {
    let env = Uploads(vec!["sales.csv".into()]);
    let r = say(&mut BotContext::new(), &env, "convert csv to excel");
    assert_eq!(r.suggested_workflow.unwrap()[0].operation, "csv/convert-to-excel");
    let env = Uploads(vec!["book.xlsx".into()]);
    let mut ctx = BotContext::new();
    let r = say(&mut ctx, &env, "convert to csv");
    assert_eq!(r.suggested_workflow, None);
    assert!(!r.requires_confirmation);
    assert_eq!(ctx.pending_workflow, None);
}

#[test]
fn g171_csv_search_with_parsed_conditions() {
    let env = Uploads(vec!["sales.csv".into()]);
    let r = say(&mut BotContext::new(), &env, "search where status = active");
    let step = &r.suggested_workflow.unwrap()[0];
    assert_eq!(step.operation, "csv/search");
    assert_eq!(
        step.arguments["conditions"],
        json!([{"column": "status", "operator": "equals", "value": "active"}])
    );
}

#[test]
fn g172_sql_table_and_dialect() {
    let steps = suggestion("generate SQL for table users", FileType::Xlsx);
    assert_eq!(steps[0].arguments["table_name"], "users");
    let steps = suggestion("generate SQL for table users in mysql", FileType::Xlsx);
    assert_eq!(steps[0].arguments["database_type"], "mysql");
}

#[test]
fn g173_rename_suggests_column_mapping() {
    let steps = suggestion("rename cust_id to customer_id", FileType::Xlsx);
    assert_eq!(steps[0].operation, "excel/map-columns");
    assert_eq!(
        Value::Object(steps[0].arguments.clone())["column_mapping"],
        json!({"cust_id": "customer_id"})
    );
}

#[test]
fn g174_state_rules() {
    let mut ctx = BotContext::new();
    assert_eq!(
        ctx.transition(BotState::Processing, NOW, None),
        Err(TransitionError { from: BotState::Idle, to: BotState::Processing })
    );
    assert_eq!(ctx.current_state, BotState::Idle);
    let mut previous = BotState::Idle;
    for (i, s) in [
        BotState::AwaitingFile,
        BotState::AwaitingConfirmation,
        BotState::Processing,
        BotState::Completed,
        BotState::Idle,
    ]
    .into_iter()
    .enumerate()
    {
        let now = format!("2026-03-01T03:00:0{i}.000000+00:00");
        assert!(ctx.transition(s, &now, None).unwrap().is_some());
        assert_eq!(ctx.previous_state, Some(previous));
        assert_eq!(ctx.last_message_time.as_deref(), Some(now.as_str()));
        previous = s;
    }
    let mut ctx = BotContext { current_state: BotState::Processing, ..BotContext::default() };
    assert!(ctx.transition(BotState::Cancelled, NOW, None).is_ok());
}

#[test]
fn g176_latest_file_and_recent_intents() {
    // The latest upload decides the file type.
    let env = Uploads(vec!["a.csv".into(), "b.xlsx".into()]);
    let r = say(&mut BotContext::new(), &env, "search where x = 1");
    assert_eq!(r.suggested_workflow.unwrap()[0].operation, "excel/search");
    let env = Uploads(vec!["b.xlsx".into(), "a.csv".into()]);
    let r = say(&mut BotContext::new(), &env, "search where x = 1");
    assert_eq!(r.suggested_workflow.unwrap()[0].operation, "csv/search");
    // The five most recent intents, newest last.
    let mut ctx = BotContext::new();
    let texts = ["generate json", "generate sql", "rename a to b", "clean the data", "search for x", "xyz"];
    for t in texts {
        say(&mut ctx, &env, t);
    }
    let recent: Vec<&str> = ctx.recent_intents(5).iter().map(|r| r.intent_type.as_str()).collect();
    assert_eq!(recent, ["generate_sql", "map_columns", "normalize_data", "search_filter", "unknown"]);
}
