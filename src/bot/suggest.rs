//! Suggested workflows per intent (chatbot.md §5.1, §5.3), placeholder detection (`missing_parameters`)
//! and the suggestion reply texts (§5.4).

use serde_json::{json, Map, Value};

use super::intent::{FileType, Intent};
use super::params;
use super::state::Step;

pub const DESC_EXTRACT: &str = "Extract specific columns to a new file";
pub const DESC_CSV_TO_EXCEL: &str = "Convert CSV to Excel format";
pub const DESC_TO_JSON: &str = "Convert data to JSON format";
pub const DESC_NORMALIZE: &str = "Apply data normalization rules";
pub const DESC_SQL: &str = "Generate SQL INSERT statements";
pub const DESC_JSON: &str = "Generate JSON output";
pub const DESC_SEARCH: &str = "Search and filter data";
pub const DESC_BIND: &str = "Bind data from another file";
pub const DESC_MAP: &str = "Rename/map columns";

/// Reference placeholder values (used when nothing was extracted).
const PLACEHOLDER_COLUMNS: [&str; 2] = ["column1", "column2"];
const PLACEHOLDER_COLUMN: &str = "column_name";
const PLACEHOLDER_SEARCH_VALUE: &str = "search_value";
const PLACEHOLDER_BIND_FILE: &str = "path_to_bind_file.xlsx";
const PLACEHOLDER_KEY: &str = "id";

/// What a suggestion is built from.
#[derive(Debug, Clone, Copy)]
pub struct SuggestInput<'a> {
    /// The user's text, original case.
    pub text: &'a str,
    pub file_type: FileType,
    /// Stored paths or names of the conversation's uploads (for `bind_file`).
    pub uploads: &'a [String],
}

/// §5.3: the suggested steps for `intent` (empty when nothing applies, e.g. Excel → CSV).
pub fn suggest(intent: Intent, input: SuggestInput<'_>) -> Vec<Step> {
    let text = input.text;
    let lower = text.to_lowercase();
    match intent {
        Intent::ExtractColumns => {
            let columns = params::extract_columns(text);
            let columns = if columns.is_empty() { placeholder_columns() } else { json!(columns) };
            vec![Step::new(
                "excel/extract-columns-to-file",
                json!({"columns": columns, "remove_duplicates": params::wants_unique(text)}),
                DESC_EXTRACT,
            )]
        }
        Intent::ConvertFormat => {
            if lower.contains("json") {
                vec![Step::new("json/generate", json_generate_args(), DESC_TO_JSON)]
            } else if input.file_type == FileType::Csv && (lower.contains("excel") || lower.contains("xlsx"))
            {
                vec![Step::new("csv/convert-to-excel", json!({"sheet_name": "Sheet1"}), DESC_CSV_TO_EXCEL)]
            } else {
                Vec::new()
            }
        }
        Intent::NormalizeData => {
            vec![Step::new(
                "normalization/apply",
                json!({"normalizations": normalization_rules(text), "return_report": true}),
                DESC_NORMALIZE,
            )]
        }
        Intent::GenerateSql => vec![Step::new(
            "sql/generate",
            json!({
                "table_name": params::table_name(text).unwrap_or_else(|| "data".to_string()),
                "database_type": params::database_type(text).unwrap_or("postgresql"),
                "include_transaction": true,
            }),
            DESC_SQL,
        )],
        Intent::GenerateJson => vec![Step::new("json/generate", json_generate_args(), DESC_JSON)],
        Intent::SearchFilter => {
            let csv = input.file_type == FileType::Csv;
            let (conditions, logic) = match params::conditions(text) {
                Some(c) => (Value::Array(c.items.iter().map(params::Condition::to_json).collect()), c.logic),
                None => (
                    json!([{"column": PLACEHOLDER_COLUMN, "operator": "equals", "value": PLACEHOLDER_SEARCH_VALUE}]),
                    "AND",
                ),
            };
            let format = params::output_format(text).unwrap_or(if csv { "csv" } else { "xlsx" });
            vec![Step::new(
                if csv { "csv/search" } else { "excel/search" },
                json!({"conditions": conditions, "logic": logic, "output_format": format}),
                DESC_SEARCH,
            )]
        }
        Intent::BindData => vec![Step::new(
            "excel/bind-single-key",
            json!({
                "bind_file": params::bind_file(text, input.uploads)
                    .unwrap_or_else(|| PLACEHOLDER_BIND_FILE.to_string()),
                "comparison_column": PLACEHOLDER_KEY,
                "bind_columns": placeholder_columns(),
            }),
            DESC_BIND,
        )],
        Intent::MapColumns => {
            let pairs = params::rename_pairs(text);
            let mapping =
                if pairs.is_empty() { json!({"old_name": "new_name"}) } else { Value::Object(pairs) };
            vec![Step::new(
                "excel/map-columns",
                json!({"column_mapping": mapping, "keep_unmapped": true}),
                DESC_MAP,
            )]
        }
        Intent::Unknown => Vec::new(),
    }
}

fn placeholder_columns() -> Value {
    json!(PLACEHOLDER_COLUMNS)
}

fn json_generate_args() -> Value {
    json!({"pretty_print": true, "null_handling": "include", "array_wrapper": true})
}

/// One rule per extracted column × detected type (column-then-type order), plus the phone rule; default
/// type `trim`, placeholder column `column_name`.
fn normalization_rules(text: &str) -> Vec<Value> {
    let lower = text.to_lowercase();
    let mut types = Vec::new();
    if lower.contains("upper") {
        types.push("uppercase");
    }
    if lower.contains("lower") {
        types.push("lowercase");
    }
    if lower.contains("trim") {
        types.push("trim");
    }
    let phone = lower.contains("phone");
    if types.is_empty() && !phone {
        types.push("trim");
    }
    let mut columns = params::extract_columns(text);
    if columns.is_empty() {
        columns.push(PLACEHOLDER_COLUMN.to_string());
    }
    let mut rules: Vec<Value> = Vec::new();
    for column in &columns {
        for t in &types {
            rules.push(json!({"column": column, "type": t}));
        }
    }
    if phone {
        rules.push(json!({"column": "phone", "type": "phone_number"}));
    }
    rules
}

/// Every parameter the text yields (§5.2), for the intent history and the `parameters` field. Keys only
/// appear when something was found.
pub fn extracted_parameters(text: &str, uploads: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    let columns = params::extract_columns(text);
    if !columns.is_empty() {
        out.insert("columns".into(), json!(columns));
    }
    if params::wants_unique(text) {
        out.insert("remove_duplicates".into(), Value::Bool(true));
    }
    if let Some(case) = params::case_option(text) {
        out.insert("case".into(), json!(case));
    }
    if let Some(t) = params::table_name(text) {
        out.insert("table_name".into(), json!(t));
    }
    if let Some(d) = params::database_type(text) {
        out.insert("database_type".into(), json!(d));
    }
    if let Some(f) = params::bind_file(text, uploads) {
        out.insert("bind_file".into(), json!(f));
    }
    if let Some(c) = params::conditions(text) {
        out.insert(
            "conditions".into(),
            Value::Array(c.items.iter().map(params::Condition::to_json).collect()),
        );
        out.insert("logic".into(), json!(c.logic));
    }
    let renames = params::rename_pairs(text);
    if !renames.is_empty() {
        out.insert("column_mapping".into(), Value::Object(renames));
    }
    if let Some(f) = params::output_format(text) {
        out.insert("output_format".into(), json!(f));
    }
    out
}

fn is_placeholder(name: &str, value: &Value) -> bool {
    let has_placeholder_column = |v: &Value| {
        v.as_array().is_some_and(|items| {
            items.iter().any(|r| {
                r.get("column").and_then(Value::as_str) == Some(PLACEHOLDER_COLUMN)
                    || r.get("value").and_then(Value::as_str) == Some(PLACEHOLDER_SEARCH_VALUE)
            })
        })
    };
    match name {
        "columns" | "bind_columns" => *value == placeholder_columns(),
        "normalizations" | "conditions" => has_placeholder_column(value),
        "bind_file" => value.as_str() == Some(PLACEHOLDER_BIND_FILE),
        "comparison_column" => value.as_str() == Some(PLACEHOLDER_KEY),
        "column_mapping" => *value == json!({"old_name": "new_name"}),
        _ => false,
    }
}

/// Argument names of `steps` still holding a reference placeholder and not supplied by the user
/// (`supplied` = the context's `workflow_params`). Order of first appearance, no duplicates.
pub fn missing_parameters(steps: &[Step], supplied: &Map<String, Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for step in steps {
        for (name, value) in &step.arguments {
            if is_placeholder(name, value) && !supplied.contains_key(name) && !out.contains(name) {
                out.push(name.clone());
            }
        }
    }
    out
}

/// One sentence per intent saying what the bot can do (§5.4).
pub fn explanation(intent: Intent) -> &'static str {
    match intent {
        Intent::ExtractColumns => "I can extract specific columns from your data into a new file.",
        Intent::ConvertFormat => {
            "I can convert your data to another format (CSV to Excel, or any file to JSON)."
        }
        Intent::NormalizeData => {
            "I can clean and normalize your data (trim spaces, change case, format phone numbers and more)."
        }
        Intent::GenerateSql => "I can generate SQL INSERT statements from your data.",
        Intent::GenerateJson => "I can generate JSON output from your data.",
        Intent::SearchFilter => "I can search and filter your data by conditions.",
        Intent::BindData => "I can bind (merge) data from another file into your data.",
        Intent::MapColumns => "I can rename or map the columns of your data.",
        Intent::Unknown => "I'm not sure what you'd like to do.",
    }
}

fn explanation_with_step(intent: Intent, steps: &[Step]) -> String {
    let mut s = explanation(intent).to_string();
    if let Some(desc) = steps.first().map(step_description) {
        s.push_str(" I suggest: ");
        s.push_str(&desc);
    }
    s
}

fn step_description(step: &Step) -> String {
    match &step.description {
        Some(d) if !d.trim().is_empty() => d.clone(),
        _ => super::catalog::operation(&step.operation)
            .map(|o| o.description.to_string())
            .unwrap_or_else(|| step.operation.clone()),
    }
}

/// The bold heading and one `{n}. {operation}: {description}` line per step (or `No steps`).
pub fn workflow_block(steps: &[Step]) -> String {
    let mut s = String::from("**Suggested Workflow:**\n");
    if steps.is_empty() {
        s.push_str("No steps");
    }
    for (i, step) in steps.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        s.push_str(&format!("{}. {}: {}", i + 1, step.operation, step_description(step)));
    }
    s
}

const QUESTION: &str = "Would you like to proceed with this workflow? Reply **yes** to run it or **no** to \
                        discard it, or tell me what to change (for example `columns: name, email`).";

/// Example value shown for a missing argument.
fn example_for(name: &str) -> &'static str {
    match name {
        "columns" => "columns: Name, Email",
        "bind_columns" => "bind_columns: Region, Segment",
        "comparison_column" => "comparison_column: customer_id",
        "bind_file" => "bind_file: other_file.xlsx",
        "column_mapping" => r#"column_mapping: {"old_name": "new_name"}"#,
        "normalizations" => r#"normalizations: [{"column": "Name", "type": "trim"}]"#,
        "conditions" => r#"conditions: [{"column": "status", "operator": "equals", "value": "active"}]"#,
        _ => "key: value",
    }
}

/// The `key: value` syntax explanation naming `missing` (empty → generic).
pub fn parameter_syntax_hint(missing: &[String]) -> String {
    let mut s = String::from(
        "Send parameters as `key: value` pairs, separated by `;` or new lines (lists are comma-separated, \
         JSON values are accepted)",
    );
    if missing.is_empty() {
        s.push_str(", e.g. `columns: name, email; remove_duplicates: true`.");
    } else {
        s.push_str(", e.g. ");
        let examples: Vec<String> = missing.iter().map(|m| format!("`{}`", example_for(m))).collect();
        s.push_str(&examples.join(" or "));
        s.push('.');
    }
    s
}

/// §5.4: explanation, the workflow block, the placeholder note (when any), and the yes/no question.
pub fn suggestion_reply(intent: Intent, steps: &[Step], missing: &[String]) -> String {
    let mut s = explanation_with_step(intent, steps);
    s.push_str("\n\n");
    s.push_str(&workflow_block(steps));
    s.push_str("\n\n");
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|m| format!("`{m}`")).collect();
        s.push_str(&format!(
            "⚠️ These arguments still hold placeholder values: {}. {}\n\n",
            names.join(", "),
            parameter_syntax_hint(missing)
        ));
    }
    s.push_str(QUESTION);
    s
}

/// The pending workflow presented again (after parameter changes or an upload).
pub fn workflow_reply(lead: &str, steps: &[Step], missing: &[String]) -> String {
    let mut s = format!("{lead}\n\n{}\n\n", workflow_block(steps));
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|m| format!("`{m}`")).collect();
        s.push_str(&format!(
            "⚠️ These arguments still hold placeholder values: {}. {}\n\n",
            names.join(", "),
            parameter_syntax_hint(missing)
        ));
    }
    s.push_str(QUESTION);
    s
}

/// §5.4 "a file is still needed": explanation, blank line, 📎 upload request.
pub fn file_needed_reply(intent: Intent, steps: &[Step]) -> String {
    format!(
        "{}\n\n📎 Please upload your file (CSV, Excel or JSON) first. As soon as it arrives I'll show you the \
         suggested workflow to confirm.",
        explanation_with_step(intent, steps)
    )
}

/// A conversion no operation performs (e.g. Excel → CSV): nothing is stored.
pub fn conversion_not_supported_reply() -> String {
    "🔄 I can't perform that conversion. Supported conversions:\n\
     - CSV → Excel (`csv/convert-to-excel`, needs a CSV file)\n\
     - CSV, Excel or JSON → JSON (`json/generate`)\n\n\
     Try `convert to JSON`, or upload a CSV file and say `convert to Excel`."
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::intent::classify;

    fn sug(text: &str, ft: FileType) -> Vec<Step> {
        let uploads = vec!["./w/c/uploads/customer_info.xlsx".to_string()];
        suggest(classify(text).intent, SuggestInput { text, file_type: ft, uploads: &uploads })
    }

    fn args(steps: &[Step]) -> Value {
        Value::Object(steps[0].arguments.clone())
    }

    #[test]
    fn one_suggestion_per_intent() {
        use FileType::*;
        #[rustfmt::skip]
        let cases: Vec<(&str, FileType, &str, Value, &str)> = vec![
            ("extract columns: Name, Email", Xlsx, "excel/extract-columns-to-file",
                json!({"columns": ["Name", "Email"], "remove_duplicates": false}), DESC_EXTRACT),
            ("extract unique values from column", Xlsx, "excel/extract-columns-to-file",
                json!({"columns": ["column1", "column2"], "remove_duplicates": true}), DESC_EXTRACT),
            ("convert to JSON", Xlsx, "json/generate",
                json!({"pretty_print": true, "null_handling": "include", "array_wrapper": true}), DESC_TO_JSON),
            ("export as JSON", Csv, "json/generate",
                json!({"pretty_print": true, "null_handling": "include", "array_wrapper": true}), DESC_TO_JSON),
            ("convert csv to excel", Csv, "csv/convert-to-excel", json!({"sheet_name": "Sheet1"}), DESC_CSV_TO_EXCEL),
            ("convert to Excel", Csv, "csv/convert-to-excel", json!({"sheet_name": "Sheet1"}), DESC_CSV_TO_EXCEL),
            ("normalize data - uppercase and trim", Xlsx, "normalization/apply",
                json!({"normalizations": [{"column": "column_name", "type": "uppercase"},
                                          {"column": "column_name", "type": "trim"}], "return_report": true}),
                DESC_NORMALIZE),
            ("clean the data", Xlsx, "normalization/apply",
                json!({"normalizations": [{"column": "column_name", "type": "trim"}], "return_report": true}),
                DESC_NORMALIZE),
            ("standardize phone numbers", Xlsx, "normalization/apply",
                json!({"normalizations": [{"column": "phone", "type": "phone_number"}], "return_report": true}),
                DESC_NORMALIZE),
            ("normalize columns: name, city - lowercase", Xlsx, "normalization/apply",
                json!({"normalizations": [{"column": "name", "type": "lowercase"},
                                          {"column": "city", "type": "lowercase"}], "return_report": true}),
                DESC_NORMALIZE),
            ("generate SQL for table users", Xlsx, "sql/generate",
                json!({"table_name": "users", "database_type": "postgresql", "include_transaction": true}), DESC_SQL),
            ("generate mysql insert statements", Xlsx, "sql/generate",
                json!({"table_name": "data", "database_type": "mysql", "include_transaction": true}), DESC_SQL),
            ("generate JSON", Xlsx, "json/generate",
                json!({"pretty_print": true, "null_handling": "include", "array_wrapper": true}), DESC_JSON),
            ("search where status = active", Csv, "csv/search",
                json!({"conditions": [{"column": "status", "operator": "equals", "value": "active"}],
                       "logic": "AND", "output_format": "csv"}), DESC_SEARCH),
            ("search for active customers", Xlsx, "excel/search",
                json!({"conditions": [{"column": "column_name", "operator": "equals", "value": "search_value"}],
                       "logic": "AND", "output_format": "xlsx"}), DESC_SEARCH),
            ("filter where a = 1 or b = 2 as json", Xlsx, "excel/search",
                json!({"conditions": [{"column": "a", "operator": "equals", "value": "1"},
                                      {"column": "b", "operator": "equals", "value": "2"}],
                       "logic": "OR", "output_format": "json"}), DESC_SEARCH),
            ("merge with customer_info.xlsx", Xlsx, "excel/bind-single-key",
                json!({"bind_file": "customer_info.xlsx", "comparison_column": "id",
                       "bind_columns": ["column1", "column2"]}), DESC_BIND),
            ("bind data from another file", Xlsx, "excel/bind-single-key",
                json!({"bind_file": "path_to_bind_file.xlsx", "comparison_column": "id",
                       "bind_columns": ["column1", "column2"]}), DESC_BIND),
            ("rename cust_id to customer_id", Xlsx, "excel/map-columns",
                json!({"column_mapping": {"cust_id": "customer_id"}, "keep_unmapped": true}), DESC_MAP),
            ("rename columns", Xlsx, "excel/map-columns",
                json!({"column_mapping": {"old_name": "new_name"}, "keep_unmapped": true}), DESC_MAP),
        ];
        for (text, ft, op, expected, desc) in cases {
            let steps = sug(text, ft);
            assert_eq!(steps.len(), 1, "{text}");
            assert_eq!(steps[0].operation, op, "{text}");
            assert_eq!(args(&steps), expected, "{text}");
            assert_eq!(steps[0].description.as_deref(), Some(desc), "{text}");
        }
    }

    #[test]
    fn unsupported_conversions_suggest_nothing() {
        // acceptance 170: XLSX upload + "convert to csv" → no step
        assert!(sug("convert to csv", FileType::Xlsx).is_empty());
        assert!(sug("convert to Excel", FileType::Xlsx).is_empty());
        assert!(suggest(Intent::Unknown, SuggestInput { text: "x", file_type: FileType::Csv, uploads: &[] })
            .is_empty());
    }

    #[test]
    fn acceptance_169_every_step_has_operation_arguments_description() {
        for text in [
            "extract columns: a",
            "convert to JSON",
            "normalize data",
            "generate sql",
            "generate json",
            "search for x",
            "merge with y",
            "rename a to b",
        ] {
            for step in sug(text, FileType::Xlsx) {
                let v = serde_json::to_value(&step).unwrap();
                assert!(
                    v["operation"].is_string() && v["arguments"].is_object() && v["description"].is_string(),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn suggestions_pass_the_catalog() {
        // Every argument a suggestion writes is one the operation declares.
        for text in [
            "extract columns: a",
            "convert csv to excel",
            "convert to JSON",
            "normalize data - upper",
            "generate SQL for table t",
            "generate json",
            "search where a = 1",
            "merge with y",
            "rename a to b",
        ] {
            for step in sug(text, FileType::Csv) {
                for name in step.arguments.keys() {
                    assert!(
                        crate::bot::catalog::find_argument(&step.operation, name).is_some(),
                        "{text}: {name}"
                    );
                }
            }
        }
    }

    #[test]
    fn missing_parameters_report_placeholders_not_supplied() {
        let steps = sug("bind data from another file", FileType::Xlsx);
        assert_eq!(
            missing_parameters(&steps, &Map::new()),
            ["bind_file", "comparison_column", "bind_columns"]
        );
        let mut supplied = Map::new();
        supplied.insert("comparison_column".into(), json!("id"));
        assert_eq!(missing_parameters(&steps, &supplied), ["bind_file", "bind_columns"]);
        assert!(missing_parameters(&sug("extract columns: Name", FileType::Xlsx), &Map::new()).is_empty());
        assert_eq!(missing_parameters(&sug("I need some columns", FileType::Xlsx), &Map::new()), ["columns"]);
        assert_eq!(
            missing_parameters(&sug("clean the data", FileType::Xlsx), &Map::new()),
            ["normalizations"]
        );
        assert_eq!(missing_parameters(&sug("search for x", FileType::Xlsx), &Map::new()), ["conditions"]);
        assert_eq!(
            missing_parameters(&sug("rename columns", FileType::Xlsx), &Map::new()),
            ["column_mapping"]
        );
        assert!(missing_parameters(&sug("generate sql", FileType::Xlsx), &Map::new()).is_empty());
    }

    #[test]
    fn extracted_parameter_map() {
        let p = extracted_parameters("extract unique values from column", &[]);
        assert_eq!(p.get("remove_duplicates"), Some(&json!(true)));
        assert_eq!(extracted_parameters("convert to uppercase", &[]).get("case"), Some(&json!("upper")));
        assert_eq!(extracted_parameters("convert to lowercase", &[]).get("case"), Some(&json!("lower")));
        let p = extracted_parameters("generate SQL for table users in mysql", &[]);
        assert_eq!(p.get("table_name"), Some(&json!("users")));
        assert_eq!(p.get("database_type"), Some(&json!("mysql")));
        let p = extracted_parameters("extract columns: name, email, phone", &[]);
        assert_eq!(p.get("columns"), Some(&json!(["name", "email", "phone"])));
        assert!(extracted_parameters("hello", &[]).is_empty());
    }

    #[test]
    fn reply_texts_follow_section_5_4() {
        let steps = sug("extract columns: Name", FileType::Xlsx);
        let r = suggestion_reply(Intent::ExtractColumns, &steps, &[]);
        assert!(r.starts_with("I can extract specific columns from your data into a new file. I suggest: Extract specific columns to a new file\n\n**Suggested Workflow:**\n1. excel/extract-columns-to-file: Extract specific columns to a new file\n\n"), "{r}");
        assert!(r.contains("**yes**") && r.contains("**no**"));
        assert!(!r.contains("placeholder"));

        let steps = sug("I need some columns", FileType::Xlsx);
        let r = suggestion_reply(Intent::ExtractColumns, &steps, &["columns".to_string()]);
        assert!(
            r.contains("`columns`") && r.contains("`columns: Name, Email`") && r.contains("key: value"),
            "{r}"
        );

        let r = file_needed_reply(Intent::ExtractColumns, &steps);
        assert!(r.contains("\n\n📎 "), "{r}");
        assert!(r.starts_with("I can extract"));
        assert_eq!(workflow_block(&[]), "**Suggested Workflow:**\nNo steps");
        let two = [sug("convert csv to excel", FileType::Csv), sug("generate json", FileType::Xlsx)].concat();
        assert!(workflow_block(&two).ends_with("2. json/generate: Generate JSON output"));
        assert!(conversion_not_supported_reply().contains("csv/convert-to-excel"));
    }
}
