//! Workflow planning and step execution (chat-workflows.md §9.1–9.4): the request is validated completely
//! before anything runs (argument types, required keys, enum values after alias resolution, files of the
//! conversation), then each step is a thin adapter from its arguments to the same `ops/` functions the
//! standalone endpoints use; only output naming and location are specific to the executor.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::model::{new_uuid, ConversationRow};
use super::names::{extension_of, split_ext, step_output_name, user_output_name};
use super::{Chat, ChatError};
use crate::config::Config;
use crate::engine::{Phase, StepControl};
use crate::ops::json_gen::{plan_json, write_json_rows, JsonGenRequest, NullHandling};
use crate::ops::json_template::{write_template_rows, AggregationMode, JsonTemplate};
use crate::ops::normalize::{normalize_spooled_to_xlsx, parse_steps, streams_by_chunk, NormalizationStep};
use crate::ops::params::ColumnMapping;
use crate::ops::search::{search_rows_to_file, search_to_file, Logic, SearchRequest};
use crate::ops::sql::{write_standard_sql_rows, AutoIncrement, Dialect, StandardSqlRequest};
use crate::ops::sql_template::{strip_outer_quotes, write_custom_sql_rows, CustomSqlGenerator};
use crate::ops::{bind, convert, extract, mapping, OpError};
use crate::table::read::{
    read_csv_table_tracked, read_workbook_tracked, spool_csv_tracked, spool_workbook_tracked, CsvSource,
    ReadLimits,
};
use crate::table::spool::{SpoolWriter, SpooledTable};
use crate::table::write::{make_durable, write_text_atomically, OutputFormat, WorkbookStyle};
use crate::table::{Cell, Table};

/// The 14 operations of §9.4.
pub const OPERATIONS: [&str; 14] = [
    "excel/extract-columns",
    "excel/extract-columns-to-file",
    "excel/map-columns",
    "excel/bind-single-key",
    "excel/bind-multi-key",
    "excel/search",
    "csv/search",
    "csv/convert-to-excel",
    "normalization/apply",
    "sql/generate",
    "sql/generate-to-text",
    "sql/generate-custom-to-text",
    "json/generate",
    "json/generate-with-template",
];

/// `step_result.data` larger than this is omitted (websocket.md C.5).
pub const MAX_EVENT_DATA_BYTES: usize = 64 * 1024;

const OPERATORS: [&str; 15] = [
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "is_empty",
    "is_not_empty",
    "greater_than",
    "greater_than_or_equal",
    "less_than",
    "less_than_or_equal",
    "between",
    "before",
    "after",
];

/// A file of the conversation: its stored-path string and where it is on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRef {
    pub stored: String,
    pub path: PathBuf,
}

impl FileRef {
    pub fn name(&self) -> &str {
        self.stored.rsplit('/').next().unwrap_or(&self.stored)
    }
}

/// Resolved arguments of one step.
#[derive(Debug, Clone)]
pub enum StepOp {
    ExtractColumns {
        params: extract::ExtractParams,
    },
    ExtractToFile {
        columns: Vec<String>,
        remove_duplicates: bool,
    },
    MapColumns {
        mapping: Option<Map<String, Value>>,
        rename: ColumnMapping,
        keep_unmapped: bool,
    },
    BindSingle {
        bind: FileRef,
        key: String,
        columns: Vec<String>,
        source_sheet: Option<String>,
        bind_sheet: Option<String>,
    },
    BindMulti {
        bind: FileRef,
        keys: Vec<String>,
        columns: Vec<String>,
        source_sheet: Option<String>,
        bind_sheet: Option<String>,
    },
    Search {
        request: SearchRequest,
    },
    ConvertToExcel {
        sheet_name: String,
    },
    Normalize {
        steps: Vec<NormalizationStep>,
        return_report: bool,
    },
    SqlGenerate {
        request: StandardSqlRequest,
        columns: Vec<String>,
    },
    SqlText {
        request: StandardSqlRequest,
        columns: Vec<String>,
        remove_duplicates: bool,
    },
    SqlCustom {
        template: String,
        columns: Vec<String>,
        mapping: ColumnMapping,
        auto: AutoIncrement,
    },
    JsonGenerate {
        request: JsonGenRequest,
    },
    JsonTemplate {
        template: Value,
        mapping: ColumnMapping,
        mode: AggregationMode,
        pretty: bool,
    },
}

impl StepOp {
    /// Output suffix and extension (§9.4); `None` for the data-only operation.
    fn output(&self) -> Option<(Option<&'static str>, &'static str)> {
        Some(match self {
            StepOp::ExtractColumns { .. } => return None,
            StepOp::ExtractToFile { .. } => (Some("extracted"), "xlsx"),
            StepOp::MapColumns { .. } => (Some("mapped"), "xlsx"),
            StepOp::BindSingle { .. } | StepOp::BindMulti { .. } => (Some("bound"), "xlsx"),
            StepOp::Search { request } => (Some("search"), request.format.extension()),
            StepOp::ConvertToExcel { .. } => (None, "xlsx"),
            StepOp::Normalize { .. } => (Some("normalized"), "xlsx"),
            StepOp::SqlGenerate { .. } => (Some("sql"), "sql"),
            StepOp::SqlText { .. } => (Some("sql_text"), "sql"),
            StepOp::SqlCustom { .. } => (Some("sql_custom"), "sql"),
            StepOp::JsonGenerate { .. } => (Some("json"), "json"),
            StepOp::JsonTemplate { .. } => (Some("json_template"), "json"),
        })
    }
}

#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub step_id: String,
    /// 1-based.
    pub index: usize,
    pub operation: String,
    /// As submitted (stored verbatim, §2.3).
    pub arguments: Value,
    pub op: StepOp,
    pub input_override: Option<FileRef>,
    pub output_filename: Option<String>,
    /// The output goes to `outputs/` (last file-producing step) rather than `intermediate/`.
    pub final_output: bool,
}

impl PlannedStep {
    pub fn produces_file(&self) -> bool {
        self.op.output().is_some()
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub row: ConversationRow,
    pub input: FileRef,
    pub steps: Vec<PlannedStep>,
}

/// What a successful step produced.
#[derive(Debug, Clone, Default)]
pub struct StepOutput {
    pub output: Option<FileRef>,
    /// `statistics`, `report` or `data` (merged into the step result).
    pub result: Map<String, Value>,
}

/// Collects validation problems of one request.
struct Problems(Vec<Value>);

impl Problems {
    fn add(&mut self, step: usize, field: &str, error: impl Into<String>) {
        self.0.push(json!({"step": step, "field": field, "error": error.into()}));
    }
}

/// Reads step arguments with aliases (the canonical key wins) and records type problems.
struct Args<'a> {
    map: &'a Map<String, Value>,
    step: usize,
}

impl<'a> Args<'a> {
    fn get(&self, keys: &[&str]) -> Option<(&'a str, &'a Value)> {
        keys.iter()
            .find_map(|k| self.map.get_key_value(*k).filter(|(_, v)| !v.is_null()))
            .map(|(k, v)| (k.as_str(), v))
    }

    fn string(&self, p: &mut Problems, keys: &[&str]) -> Option<String> {
        match self.get(keys)? {
            (_, Value::String(s)) => Some(s.clone()),
            (k, _) => {
                p.add(self.step, k, "must be a string");
                None
            }
        }
    }

    fn boolean(&self, p: &mut Problems, keys: &[&str], default: bool) -> bool {
        match self.get(keys) {
            None => default,
            Some((_, Value::Bool(b))) => *b,
            Some((_, Value::String(s))) if s.eq_ignore_ascii_case("true") => true,
            Some((_, Value::String(s))) if s.eq_ignore_ascii_case("false") => false,
            Some((k, _)) => {
                p.add(self.step, k, "must be a boolean");
                default
            }
        }
    }

    fn list(&self, p: &mut Problems, keys: &[&str]) -> Vec<String> {
        match self.get(keys) {
            None => Vec::new(),
            Some((k, v)) => match crate::ops::params::string_list_from_json(v, k) {
                Ok(l) => l,
                Err(e) => {
                    p.add(self.step, k, e.to_string());
                    Vec::new()
                }
            },
        }
    }

    fn mapping(&self, p: &mut Problems, keys: &[&str]) -> ColumnMapping {
        match self.get(keys) {
            None => Vec::new(),
            Some((k, v)) => match crate::ops::params::mapping_from_json(v, k) {
                Ok(m) => m,
                Err(e) => {
                    p.add(self.step, k, e.to_string());
                    Vec::new()
                }
            },
        }
    }

    fn output_filename(&self, p: &mut Problems) -> Option<String> {
        self.string(p, &["output_filename", "output_file"]).filter(|s| !s.trim().is_empty())
    }
}

fn op_error(p: &mut Problems, step: usize, field: &str, result: Result<(), OpError>) {
    if let Err(e) = result {
        p.add(step, field, e.to_string());
    }
}

fn canonical_operator(op: &str) -> String {
    let lower = op.to_lowercase();
    match lower.as_str() {
        "eq" => "equals",
        "ne" => "not_equals",
        "gt" => "greater_than",
        "gte" => "greater_than_or_equal",
        "lt" => "less_than",
        "lte" => "less_than_or_equal",
        "startswith" => "starts_with",
        "endswith" => "ends_with",
        other => other,
    }
    .to_string()
}

fn normalization_type_alias(t: &str) -> (&str, Option<Value>) {
    match t {
        "trim" => ("trim_whitespace", None),
        "phone_number" | "phone" => ("phone_format", None),
        "email" => ("email_format", None),
        "remove_spaces" => ("regex_replace", Some(json!({"pattern": "\\s+", "replacement": ""}))),
        other => (other, None),
    }
}

/// One normalization rule with the key and type aliases resolved.
fn normalization_rule(rule: &Value) -> Value {
    let Value::Object(obj) = rule else { return rule.clone() };
    let mut out = obj.clone();
    for (alias, canonical) in [("column", "column_name"), ("type", "normalization_type")] {
        if !out.contains_key(canonical) {
            if let Some(v) = out.remove(alias) {
                out.insert(canonical.into(), v);
            }
        } else {
            out.remove(alias);
        }
    }
    if let Some(Value::String(t)) = out.get("normalization_type").cloned() {
        let (name, params) = normalization_type_alias(&t);
        out.insert("normalization_type".into(), Value::String(name.to_string()));
        if let (Some(params), None) = (params, out.get("parameters").filter(|v| !v.is_null())) {
            out.insert("parameters".into(), params);
        }
    }
    Value::Object(out)
}

fn resolve_bind_file(chat: &Chat, row: &ConversationRow, value: &str) -> Result<Option<FileRef>, ChatError> {
    for kind in ["uploaded", "output"] {
        if chat.store.files(&row.chat_id, kind)?.iter().any(|f| f == value) {
            if let Some((_, path)) = chat.storage.resolve_stored(row, value) {
                return Ok(Some(FileRef { stored: value.to_string(), path }));
            }
        }
    }
    let dir = chat.storage.conv_dir(row);
    for folder in super::storage::FOLDERS {
        if let Some(path) = crate::table::names::resolve_in_folder(&dir.join(folder), value) {
            if chat.storage.holds(row, folder, value, &path) {
                return Ok(Some(FileRef { stored: chat.storage.stored_path(row, folder, value), path }));
            }
        }
    }
    Ok(None)
}

/// Resolves an `input_file` (request or step): a stored path or a file name of an upload/output of this
/// conversation (uploads first, newest first).
fn resolve_input(chat: &Chat, row: &ConversationRow, value: &str) -> Result<Option<FileRef>, ChatError> {
    for kind in ["uploaded", "output"] {
        let mut files = chat.store.files(&row.chat_id, kind)?;
        files.reverse();
        let hit = files.into_iter().find(|f| f == value || f.rsplit('/').next() == Some(value));
        if let Some(stored) = hit {
            if let Some((_, path)) = chat.storage.resolve_stored(row, &stored) {
                return Ok(Some(FileRef { stored, path }));
            }
        }
    }
    Ok(None)
}

/// §9.1/§8.5: validates the whole request; nothing runs and nothing is written on error.
pub fn plan(chat: &Chat, row: &ConversationRow, body: &Map<String, Value>) -> Result<Plan, ChatError> {
    let steps = match body.get("steps") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        _ => return Err(ChatError::validation("No steps provided")),
    };
    let max = chat.config.chat_workflows.execution.max_steps;
    if steps.len() > max {
        return Err(ChatError::validation_with(
            format!("Too many steps (max {max})"),
            json!({"max_steps": max}),
        ));
    }
    let mut problems = Problems(Vec::new());
    let mut planned = Vec::with_capacity(steps.len());
    for (i, raw) in steps.iter().enumerate() {
        let index = i + 1;
        let Value::Object(step) = raw else {
            problems.add(index, "step", "must be a JSON object");
            continue;
        };
        let operation = match step.get("operation") {
            Some(Value::String(op)) if OPERATIONS.contains(&op.as_str()) => op.clone(),
            Some(Value::String(op)) => {
                problems.add(index, "operation", format!("Unknown operation: {op}"));
                continue;
            }
            _ => {
                problems.add(index, "operation", "operation is required");
                continue;
            }
        };
        let empty = Map::new();
        let arguments = match step.get("arguments") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(a)) => a,
            Some(_) => {
                problems.add(index, "arguments", "must be a JSON object");
                continue;
            }
        };
        let input_override = match step.get("input_file") {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) => match resolve_input(chat, row, name)? {
                Some(f) => Some(f),
                None => {
                    problems.add(index, "input_file", format!("Input file not found: {name}"));
                    None
                }
            },
            Some(_) => {
                problems.add(index, "input_file", "must be a string");
                None
            }
        };
        let args = Args { map: arguments, step: index };
        let output_filename = args.output_filename(&mut problems);
        let Some(op) = resolve_op(chat, row, &operation, &args, &mut problems)? else { continue };
        planned.push(PlannedStep {
            step_id: new_uuid(),
            index,
            operation,
            arguments: Value::Object(arguments.clone()),
            op,
            input_override,
            output_filename,
            final_output: false,
        });
    }
    if !problems.0.is_empty() {
        let first = &problems.0[0];
        let mut message = format!(
            "Invalid workflow: step {} {}: {}",
            first["step"],
            first["field"].as_str().unwrap_or(""),
            first["error"].as_str().unwrap_or("")
        );
        if problems.0.len() > 1 {
            message.push_str(&format!(" (and {} more)", problems.0.len() - 1));
        }
        return Err(ChatError::validation_with(message, json!({"errors": problems.0})));
    }
    if let Some(last) = planned.iter_mut().rev().find(|s| s.produces_file()) {
        last.final_output = true;
    }
    let input = match body.get("input_file") {
        None | Some(Value::Null) => match chat.store.latest_upload(&row.chat_id)? {
            Some(stored) => {
                let path = chat
                    .storage
                    .resolve_stored(row, &stored)
                    .map(|(_, p)| p)
                    .ok_or_else(|| ChatError::validation("No uploaded file found for processing"))?;
                FileRef { stored, path }
            }
            None => return Err(ChatError::validation("No uploaded file found for processing")),
        },
        Some(Value::String(name)) => resolve_input(chat, row, name)?.ok_or_else(|| {
            ChatError::validation_with(
                format!("Input file not found: {name}"),
                json!({"field": "input_file"}),
            )
        })?,
        Some(_) => {
            return Err(ChatError::validation_with(
                "input_file must be a string",
                json!({"field": "input_file"}),
            ))
        }
    };
    Ok(Plan { row: row.clone(), input, steps: planned })
}

fn resolve_op(
    chat: &Chat,
    row: &ConversationRow,
    operation: &str,
    a: &Args<'_>,
    p: &mut Problems,
) -> Result<Option<StepOp>, ChatError> {
    let step = a.step;
    let before = p.0.len();
    let op = match operation {
        "excel/extract-columns" => StepOp::ExtractColumns {
            params: extract::ExtractParams {
                columns: a.list(p, &["columns"]),
                remove_duplicates: a.boolean(p, &["remove_duplicates"], false),
                include_statistics: a.boolean(p, &["include_statistics"], true),
            },
        },
        "excel/extract-columns-to-file" => {
            let columns = a.list(p, &["columns"]);
            let wrong_type = a.get(&["columns"]).is_some_and(|(_, v)| !v.is_array());
            if columns.is_empty() && !wrong_type {
                p.add(step, "columns", "columns is required and must not be empty");
            }
            StepOp::ExtractToFile { columns, remove_duplicates: a.boolean(p, &["remove_duplicates"], false) }
        }
        "excel/map-columns" => {
            let mapping = match a.get(&["mapping"]) {
                None => None,
                Some((_, Value::Object(m))) if !m.is_empty() => Some(m.clone()),
                Some((k, _)) => {
                    p.add(step, k, "must be a non-empty JSON object");
                    None
                }
            };
            let rename = if mapping.is_none() { a.mapping(p, &["column_mapping"]) } else { Vec::new() };
            if mapping.is_none() && rename.is_empty() && p.0.len() == before {
                p.add(step, "mapping", "mapping or column_mapping is required");
            }
            StepOp::MapColumns { mapping, rename, keep_unmapped: a.boolean(p, &["keep_unmapped"], true) }
        }
        "excel/bind-single-key" | "excel/bind-multi-key" => {
            let bind = match a.string(p, &["bind_file"]) {
                None => {
                    if a.get(&["bind_file"]).is_none() {
                        p.add(step, "bind_file", "bind_file is required (a file of this conversation)");
                    }
                    None
                }
                Some(v) => match resolve_bind_file(chat, row, &v)? {
                    Some(f) => Some(f),
                    None => {
                        p.add(step, "bind_file", format!("bind_file not found in conversation: {v}"));
                        None
                    }
                },
            };
            let columns = a.list(p, &["bind_columns", "source_columns"]);
            if columns.is_empty() {
                p.add(step, "bind_columns", "At least one bind column must be specified");
            }
            let source_sheet = a.string(p, &["source_sheet"]);
            let bind_sheet = a.string(p, &["bind_sheet"]);
            if operation == "excel/bind-single-key" {
                let key = a.string(p, &["comparison_column", "key_column"]).unwrap_or_default();
                if key.is_empty() {
                    p.add(step, "comparison_column", "comparison_column parameter is required");
                }
                match bind {
                    Some(bind) => StepOp::BindSingle { bind, key, columns, source_sheet, bind_sheet },
                    None => return Ok(None),
                }
            } else {
                let keys = a.list(p, &["comparison_columns", "key_columns"]);
                if keys.is_empty() {
                    p.add(step, "comparison_columns", "At least one comparison column must be specified");
                }
                match bind {
                    Some(bind) => StepOp::BindMulti { bind, keys, columns, source_sheet, bind_sheet },
                    None => return Ok(None),
                }
            }
        }
        "excel/search" | "csv/search" => {
            let conditions = match a.get(&["conditions"]) {
                Some((_, v)) => v.clone(),
                None => match a.get(&["column"]) {
                    Some(_) => json!([{
                        "column": a.map.get("column").cloned().unwrap_or(Value::Null),
                        "operator": a.map.get("operator").cloned().unwrap_or(Value::Null),
                        "value": a.map.get("value").cloned().unwrap_or(Value::Null),
                    }]),
                    None => Value::Null,
                },
            };
            let conditions = match conditions {
                Value::Array(items) if !items.is_empty() => {
                    let mut fixed = Vec::with_capacity(items.len());
                    for item in items {
                        let Value::Object(mut c) = item else {
                            p.add(
                                step,
                                "conditions",
                                "each condition must be an object with column, operator, value",
                            );
                            continue;
                        };
                        match c.get("operator").and_then(Value::as_str).map(canonical_operator) {
                            Some(op) if OPERATORS.contains(&op.as_str()) => {
                                c.insert("operator".into(), Value::String(op));
                            }
                            other => p.add(
                                step,
                                "conditions",
                                format!("Unsupported operator: {}", other.unwrap_or_default()),
                            ),
                        }
                        if !c.get("column").is_some_and(Value::is_string) {
                            p.add(step, "conditions", "each condition needs a column name");
                        }
                        fixed.push(Value::Object(c));
                    }
                    Value::Array(fixed)
                }
                _ => {
                    p.add(step, "conditions", "At least one search condition is required");
                    Value::Null
                }
            };
            let logic = match a.string(p, &["logic"]) {
                Some(l) => match l.to_uppercase().as_str() {
                    "AND" => Logic::And,
                    "OR" => Logic::Or,
                    _ => {
                        p.add(step, "logic", "Logic must be either 'AND' or 'OR'");
                        Logic::And
                    }
                },
                None => {
                    if a.boolean(p, &["match_all"], true) {
                        Logic::And
                    } else {
                        Logic::Or
                    }
                }
            };
            let default = if operation == "csv/search" { OutputFormat::Csv } else { OutputFormat::Xlsx };
            let format = match a.string(p, &["output_format"]) {
                None => default,
                Some(f) => {
                    let f = f.to_lowercase();
                    let f = if f == "excel" { "xlsx".to_string() } else { f };
                    OutputFormat::from_name(&f).unwrap_or_else(|| {
                        p.add(step, "output_format", "Output format must be xlsx, csv, or json");
                        default
                    })
                }
            };
            StepOp::Search { request: SearchRequest { conditions, logic, format, output_filename: None } }
        }
        "csv/convert-to-excel" => {
            let requested = a.string(p, &["sheet_name"]);
            let sheet_name = match convert::resolve_sheet_name(requested.as_deref(), "Sheet1") {
                Ok(s) => s,
                Err(e) => {
                    p.add(step, "sheet_name", e.to_string());
                    String::new()
                }
            };
            StepOp::ConvertToExcel { sheet_name }
        }
        "normalization/apply" => {
            let rules: Vec<Value> = match (a.get(&["normalizations"]), a.get(&["operations"])) {
                (Some((_, Value::Array(items))), _) => items.iter().map(normalization_rule).collect(),
                (Some((k, _)), _) => {
                    p.add(step, k, "normalizations must be a JSON array");
                    Vec::new()
                }
                (None, Some(_)) => {
                    let types = a.list(p, &["operations"]);
                    let columns = a.list(p, &["columns"]);
                    columns
                        .iter()
                        .flat_map(|c| {
                            types.iter().map(move |t| normalization_rule(&json!({"column": c, "type": t})))
                        })
                        .collect()
                }
                (None, None) => Vec::new(),
            };
            let steps = match parse_steps(&Value::Array(rules)) {
                Ok(s) => s,
                Err(e) => {
                    p.add(step, "normalizations", e.to_string());
                    Vec::new()
                }
            };
            StepOp::Normalize { steps, return_report: a.boolean(p, &["return_report"], true) }
        }
        "sql/generate" | "sql/generate-to-text" => {
            let database_type = a.string(p, &["database_type"]).unwrap_or_else(|| "postgresql".into());
            op_error(p, step, "database_type", Dialect::parse(&database_type).map(|_| ()));
            let auto_increment = AutoIncrement::from_json(a.get(&["auto_increment"]).map(|(_, v)| v))
                .unwrap_or_else(|e| {
                    p.add(step, "auto_increment", e.to_string());
                    AutoIncrement::default()
                });
            if auto_increment.enabled {
                op_error(p, step, "auto_increment", auto_increment.kind().map(|_| ()));
            }
            let mut request = StandardSqlRequest {
                table_name: a
                    .string(p, &["table_name"])
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| "data".into()),
                column_mapping: a.mapping(p, &["column_mapping"]),
                database_type,
                include_transaction: true,
                auto_increment,
                template: None,
            };
            let columns = a.list(p, &["columns"]);
            if operation == "sql/generate" {
                request.include_transaction = a.boolean(p, &["include_transaction"], true);
                request.template = a.string(p, &["template"]).filter(|t| !t.is_empty());
                match a.get(&["batch_size"]) {
                    None => {}
                    Some((_, v)) if v.as_i64().is_some_and(|n| n >= 1) => {}
                    Some((k, _)) => p.add(step, k, "batch_size must be an integer of at least 1"),
                }
                StepOp::SqlGenerate { request, columns }
            } else {
                StepOp::SqlText {
                    request,
                    columns,
                    remove_duplicates: a.boolean(p, &["remove_duplicates"], false),
                }
            }
        }
        "sql/generate-custom-to-text" => {
            let template = a.string(p, &["template"]).unwrap_or_default();
            let template = strip_outer_quotes(&template).to_string();
            if template.trim().is_empty() {
                p.add(step, "template", "template is required");
            }
            let auto =
                AutoIncrement::from_json(a.get(&["auto_increment"]).map(|(_, v)| v)).unwrap_or_else(|e| {
                    p.add(step, "auto_increment", e.to_string());
                    AutoIncrement::default()
                });
            StepOp::SqlCustom {
                template,
                columns: a.list(p, &["columns"]),
                mapping: a.mapping(p, &["column_mapping"]),
                auto,
            }
        }
        "json/generate" => {
            let null_handling = a.string(p, &["null_handling"]).unwrap_or_else(|| "include".into());
            let null_handling = NullHandling::parse(&null_handling).unwrap_or_else(|e| {
                p.add(step, "null_handling", e.to_string());
                NullHandling::Include
            });
            StepOp::JsonGenerate {
                request: JsonGenRequest {
                    columns: a.list(p, &["columns"]),
                    column_mapping: a.mapping(p, &["column_mapping"]),
                    null_handling,
                    array_wrapper: a.boolean(p, &["array_wrapper", "array_format"], true),
                    pretty_print: a.boolean(p, &["pretty_print", "pretty"], true),
                },
            }
        }
        "json/generate-with-template" => {
            let template = match a.get(&["template"]) {
                Some((_, v @ Value::Object(o))) if !o.is_empty() => v.clone(),
                Some((_, Value::String(s))) => match crate::ops::json_template::parse_template_text(s) {
                    Ok(v @ Value::Object(_)) => v,
                    Ok(_) => {
                        p.add(step, "template", "Template must be a JSON string or dictionary");
                        Value::Null
                    }
                    Err(e) => {
                        p.add(step, "template", e.to_string());
                        Value::Null
                    }
                },
                _ => {
                    p.add(step, "template", "template is required (a non-empty JSON object)");
                    Value::Null
                }
            };
            let mode = a.string(p, &["aggregation_mode"]).unwrap_or_else(|| "array".into());
            let mode = AggregationMode::parse(&mode).unwrap_or_else(|e| {
                p.add(step, "aggregation_mode", e.to_string());
                AggregationMode::Array
            });
            StepOp::JsonTemplate {
                template,
                mapping: a.mapping(p, &["column_mapping"]),
                mode,
                pretty: a.boolean(p, &["pretty_print", "pretty"], true),
            }
        }
        other => {
            p.add(step, "operation", format!("Unknown operation: {other}"));
            return Ok(None);
        }
    };
    Ok((p.0.len() == before).then_some(op))
}

// ---------------------------------------------------------------------------------------------------------
// Execution
// ---------------------------------------------------------------------------------------------------------

/// The prefix of a failing operation's message (§9.2 rule 4).
pub fn family_prefix(operation: &str) -> &'static str {
    match operation.split('/').next() {
        Some("excel") => "Excel operation failed: ",
        Some("csv") => "CSV operation failed: ",
        Some("normalization") => "Normalization operation failed: ",
        Some("sql") => "SQL generation operation failed: ",
        Some("json") => "JSON generation operation failed: ",
        _ => "",
    }
}

/// A step failure as clients see it; internal causes are logged, not sent.
fn op_failure(operation: &str, err: OpError) -> String {
    let text = match &err {
        OpError::Io(e) if crate::table::write::output_cap_reached(e).is_some() => {
            crate::error::ApiError::from_io(e).message
        }
        OpError::Io(e) => {
            log::error!("workflow step {operation}: {e}");
            "internal error while writing the output".to_string()
        }
        OpError::Table(crate::table::TableError::Io(e)) => {
            log::error!("workflow step {operation}: {e}");
            "internal error while reading the input".to_string()
        }
        OpError::Validation { message, details: Some(details) } => match details["errors"].as_array() {
            // A step has no `details`: the listed problems go into its error text.
            Some(errors) => {
                let listed: Vec<String> = errors
                    .iter()
                    .map(|e| {
                        let field = e["field"].as_str().unwrap_or("");
                        format!("step {} {field}: {}", e["step"], e["error"].as_str().unwrap_or(""))
                    })
                    .collect();
                format!("{message}: {}", listed.join("; "))
            }
            None => message.clone(),
        },
        other => other.to_string(),
    };
    format!("{}{text}", family_prefix(operation))
}

/// The standard workbook layout of the configured `excel.*` keys.
pub fn workbook_style(config: &Config) -> WorkbookStyle {
    WorkbookStyle {
        data_sheet_name: config.excel.default_sheet_name.clone(),
        info_sheet_name: config.excel.include_info_sheet.then(|| config.excel.info_sheet_name.clone()),
        max_column_width: config.excel.max_column_width as usize,
    }
}

/// The guards for reading `file`: every `file.*` guard for a client upload; a file the service wrote
/// itself (a step output in `intermediate/` or `outputs/`) is always readable, whatever size or
/// compression ratio the previous step gave it (only the text budget stays).
fn read_limits_for(config: &Config, file: &FileRef) -> ReadLimits {
    let limits = ReadLimits::from_config(&config.file);
    if is_service_output(&file.stored) {
        limits.for_service_output()
    } else {
        limits
    }
}

/// Whether a stored path names a file the service wrote (its folder is `intermediate` or `outputs`).
fn is_service_output(stored: &str) -> bool {
    let mut parts = stored.rsplit('/');
    parts.next();
    matches!(parts.next(), Some("intermediate" | "outputs"))
}

/// Reads an input by its extension (§9.2): CSV, workbook (first or named sheet), or JSON array of objects.
/// Rows read are counted on `control` (reading phase), which may stop the read between two batches.
fn read_table(
    config: &Config,
    file: &FileRef,
    sheet: Option<&str>,
    control: &StepControl,
) -> Result<Table, Result<String, OpError>> {
    let path = file.path.as_path();
    let ext = extension_of(&path.to_string_lossy());
    let limits = read_limits_for(config, file);
    match ext.as_str() {
        ".csv" => read_csv_table_tracked(path, &config.file.supported_encodings, &limits, control)
            .map(|t| t.table)
            .map_err(|e| Err(e.into())),
        ".xlsx" | ".xls" | ".xlsm" => {
            read_workbook_tracked(path, sheet, &limits, control).map(|w| w.table).map_err(|e| Err(e.into()))
        }
        ".json" => {
            control.begin(Phase::Reading, None).map_err(|e| Err(e.into()))?;
            let table = read_json_table(path, &limits).map_err(Err)?;
            control.set_input_rows(table.row_count() as u64);
            Ok(table)
        }
        other => Err(Ok(format!(
            "Unsupported input file type: {}",
            if other.is_empty() { "(none)" } else { other }
        ))),
    }
}

/// [`read_table`]'s columns and rows with the same checks and errors, the rows spooled to an unnamed
/// temporary file next to the input instead of held, so a step's memory does not grow with its input.
fn spool_table(
    config: &Config,
    file: &FileRef,
    sheet: Option<&str>,
    control: &StepControl,
) -> Result<SpooledTable, Result<String, OpError>> {
    let path = file.path.as_path();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let limits = read_limits_for(config, file);
    let spooled = match extension_of(&path.to_string_lossy()).as_str() {
        ".csv" => spool_csv_tracked(path, &config.file.supported_encodings, &limits, dir, control),
        ".xlsx" | ".xls" | ".xlsm" => spool_workbook_tracked(path, sheet, &limits, dir, control),
        // JSON inputs are parsed whole (serde_json), then spooled like the others.
        _ => {
            let table = read_table(config, file, sheet, control)?;
            let spool = || -> Result<SpooledTable, crate::table::TableError> {
                let mut writer = SpoolWriter::create_in(dir)?;
                for row in &table.rows {
                    writer.push(row)?;
                }
                Ok(writer.finish(table.columns.clone())?)
            };
            spool()
        }
    };
    spooled.map_err(|e| Err(e.into()))
}

/// A top-level array of flat objects → a table whose columns are the union of keys in first-seen order.
fn read_json_table(path: &Path, limits: &ReadLimits) -> Result<Table, OpError> {
    let size = std::fs::metadata(path)?.len();
    if size > limits.max_uncompressed_bytes {
        return Err(OpError::validation("JSON input is too large"));
    }
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let value: Value = serde_json::from_reader(file)
        .map_err(|e| OpError::validation(format!("Failed to read JSON file: {e}")))?;
    let Value::Array(items) = value else {
        return Err(OpError::validation("JSON input must be an array of objects"));
    };
    let mut columns: Vec<String> = Vec::new();
    for item in &items {
        let Value::Object(o) = item else {
            return Err(OpError::validation("JSON input must be an array of objects"));
        };
        for k in o.keys() {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    if (items.len() as u64).saturating_mul(columns.len().max(1) as u64) > limits.max_cells {
        return Err(OpError::validation("JSON input has too many cells"));
    }
    let rows = items
        .iter()
        .map(|item| columns.iter().map(|c| item.get(c).map_or(Cell::Missing, Cell::from_json)).collect())
        .collect();
    Ok(Table { columns, rows })
}

/// Everything a step needs besides its own arguments.
pub struct StepContext<'a> {
    pub config: &'a Config,
    pub chat: &'a Chat,
    pub row: &'a ConversationRow,
    /// Progress counters and the stop token shared with the job runner.
    pub control: &'a StepControl,
}

impl StepContext<'_> {
    /// Runs one step on `input` (blocking). `Err` is the client-visible step error text.
    pub fn run(&self, step: &PlannedStep, input: &FileRef) -> Result<StepOutput, String> {
        let operation = step.operation.as_str();
        let fail = |e: Result<String, OpError>| match e {
            Ok(text) => text,
            Err(op) => op_failure(operation, op),
        };
        // The output location is decided before the operation runs (§9.3, §5.5).
        let target = step.op.output().map(|(suffix, ext)| {
            let folder_name = if step.final_output { "outputs" } else { "intermediate" };
            let folder = self.chat.storage.conv_dir(self.row).join(folder_name);
            let name = step
                .output_filename
                .as_deref()
                .and_then(|n| user_output_name(n, ext))
                .unwrap_or_else(|| step_output_name(input.name(), suffix, ext));
            let name = self.chat.storage.unique_name(self.row, folder_name, &name);
            FileRef {
                stored: self.chat.storage.stored_path(self.row, folder_name, &name),
                path: folder.join(name),
            }
        });
        // Inputs kept in a file store are fetched to the local working copy for this step only.
        let bind = match &step.op {
            StepOp::BindSingle { bind, .. } | StepOp::BindMulti { bind, .. } => Some(bind),
            _ => None,
        };
        let files = std::iter::once(input).chain(bind).map(|f| (f.stored.as_str(), f.path.as_path()));
        let _spool = match self.chat.storage.fetch_inputs(self.row, files) {
            Ok(spool) => spool,
            Err(e) => return Err(format!("{}cannot read the input file: {e}", family_prefix(operation))),
        };
        let result = match &target {
            Some(t) => {
                // Never re-create the folder of a conversation deleted during the run.
                if !t.path.parent().is_some_and(Path::is_dir) {
                    return Err(format!(
                        "{}the conversation folder no longer exists",
                        family_prefix(operation)
                    ));
                }
                self.execute(&step.op, input, &t.path)
            }
            None => self.execute(&step.op, input, Path::new("")),
        };
        // Conversation files are recorded in SQLite after this returns: their content is made durable first.
        let result = result.and_then(|r| match &target {
            Some(t) => make_durable(&t.path).map(|()| r).map_err(|e| Err(OpError::from(e))),
            None => Ok(r),
        });
        // With a file store the output is put there (and its local copy removed) before it is recorded.
        let result = result.and_then(|r| match &target {
            Some(t) => self.chat.storage.publish(self.row, &t.stored, &t.path).map(|()| r).map_err(|e| {
                let prefix = family_prefix(operation);
                Ok(match e {
                    ChatError::NotFound(_) => format!("{prefix}the conversation folder no longer exists"),
                    other => format!("{prefix}cannot store the output file: {other}"),
                })
            }),
            None => Ok(r),
        });
        match result {
            Ok(result) => Ok(StepOutput { output: target, result }),
            Err(e) => {
                if let Some(t) = &target {
                    let _ = std::fs::remove_file(&t.path);
                }
                Err(fail(e))
            }
        }
    }

    /// The input's rows in a spool (see [`spool_table`]).
    fn spooled(&self, file: &FileRef, sheet: Option<&str>) -> Result<SpooledTable, Result<String, OpError>> {
        spool_table(self.config, file, sheet, self.control)
    }

    fn execute(
        &self,
        op: &StepOp,
        input: &FileRef,
        out: &Path,
    ) -> Result<Map<String, Value>, Result<String, OpError>> {
        let style = workbook_style(self.config);
        let control = self.control;
        let stopped = |e: crate::engine::Cancelled| Err(OpError::from(e));
        let mut result = Map::new();
        match op {
            StepOp::ExtractColumns { params } => {
                control.plan(&[Phase::Reading, Phase::Processing]);
                let table = self.spooled(input, None)?;
                let data: extract::Extraction =
                    extract::extract_spooled_columns(table, params, crate::ops::clock::now_iso(), control)
                        .map_err(Err)?;
                result.insert("data".into(), serde_json::to_value(&data).unwrap_or(Value::Null));
            }
            StepOp::ExtractToFile { columns, remove_duplicates } => {
                let table = self.spooled(input, None)?;
                extract::extract_spooled_to_file(table, columns, *remove_duplicates, out, &style, control)
                    .map_err(Err)?;
            }
            StepOp::MapColumns { mapping: m, rename, keep_unmapped } => {
                // Rows stream from the spool through the mapping into the writer.
                control.plan(&[Phase::Reading, Phase::Writing]);
                let table = self.spooled(input, None)?;
                let mapping = match m {
                    Some(m) => m.clone(),
                    None => rename_mapping(&table.columns, rename, *keep_unmapped),
                };
                let warnings =
                    mapping::map_spooled_to_file(table, &mapping, out, &style, control).map_err(Err)?;
                if !warnings.is_empty() {
                    result.insert("warnings".into(), json!(warnings));
                }
            }
            StepOp::BindSingle { bind: b, key, columns, source_sheet, bind_sheet } => {
                let (source, other) = self.bind_inputs(input, b, source_sheet, bind_sheet)?;
                let keys = bind::BindKeys::Single(key.clone());
                let stats = bind::bind_spooled_to_file(source, other, &keys, columns, out, &style, control)
                    .map_err(Err)?;
                result.insert("statistics".into(), stats);
            }
            StepOp::BindMulti { bind: b, keys, columns, source_sheet, bind_sheet } => {
                let (source, other) = self.bind_inputs(input, b, source_sheet, bind_sheet)?;
                let keys = bind::BindKeys::Multi(keys.clone());
                let stats = bind::bind_spooled_to_file(source, other, &keys, columns, out, &style, control)
                    .map_err(Err)?;
                result.insert("statistics".into(), stats);
            }
            StepOp::Search { request } => {
                let outcome = if extension_of(input.name()) == ".csv" {
                    // CSV inputs are streamed: memory stays flat whatever the row count.
                    control.plan(&[Phase::Processing]);
                    control.begin(Phase::Processing, None).map_err(stopped)?;
                    let source = CsvSource::open(&input.path, &self.config.file.supported_encodings)
                        .map_err(|e| Err(e.into()))?;
                    control.set_total(source.row_count);
                    control.set_input_rows(source.row_count);
                    let compiled = request.compile(&source.columns).map_err(Err)?;
                    let columns = source.columns.clone();
                    let rows = counted(control, source.rows);
                    search_to_file(&columns, rows, &compiled, request.format, out).map_err(Err)?
                } else {
                    control.plan(&[Phase::Reading, Phase::Processing]);
                    let mut table = self.spooled(input, None)?;
                    let compiled = request.compile(&table.columns).map_err(Err)?;
                    let total = table.rows.len() as u64;
                    let rows = &mut table.rows.reader().map_err(|e| Err(e.into()))?;
                    search_rows_to_file(&table.columns, rows, total, &compiled, request.format, out, control)
                        .map_err(Err)?
                };
                result.insert(
                    "statistics".into(),
                    json!({"total_rows": outcome.total_rows, "filtered_rows": outcome.filtered_rows}),
                );
            }
            StepOp::ConvertToExcel { sheet_name } => {
                if extension_of(input.name()) != ".csv" {
                    return Err(Err(OpError::validation("Input file is not a CSV file")));
                }
                control.plan(&[Phase::Processing]);
                control.begin(Phase::Processing, None).map_err(stopped)?;
                let source = CsvSource::open(&input.path, &self.config.file.supported_encodings)
                    .map_err(|e| Err(e.into()))?;
                let style = WorkbookStyle { data_sheet_name: sheet_name.clone(), ..style };
                convert::csv_to_xlsx_tracked(source, out, &style, control).map_err(Err)?;
            }
            StepOp::Normalize { steps, return_report } => {
                // Cell-by-cell rules: read ‖ normalize ‖ write, one chunk in memory. Rules over whole
                // columns: only the columns they touch are held, a column group at a time.
                if streams_by_chunk(steps) {
                    control.plan(&[Phase::Reading, Phase::Processing]);
                }
                let table = self.spooled(input, None)?;
                let backup = self.config.normalization.backup_original;
                let max_output = self.config.max_output_bytes();
                let report = normalize_spooled_to_xlsx(
                    table,
                    steps,
                    backup,
                    *return_report,
                    max_output,
                    out,
                    &style,
                    control,
                )
                .map_err(Err)?;
                result.insert("report".into(), if *return_report { report } else { Value::Null });
            }
            StepOp::SqlGenerate { request, columns } | StepOp::SqlText { request, columns, .. } => {
                let remove_duplicates = matches!(op, StepOp::SqlText { remove_duplicates: true, .. });
                control.plan(&[Phase::Reading, Phase::Writing]);
                let mut table = select(self.spooled(input, None)?, columns, remove_duplicates)?;
                let request = with_identity(request, &table.columns);
                let at = crate::ops::clock::now_iso();
                let count = table.rows.len();
                control.begin(Phase::Writing, Some(count as u64)).map_err(stopped)?;
                write_text_atomically(out, self.config.max_output_bytes(), |w| {
                    let mut rows = control.track(table.rows.reader()?);
                    write_standard_sql_rows(&table.columns, &mut rows, count, &request, &at, w)
                })
                .map_err(Err)?;
            }
            StepOp::SqlCustom { template, columns, mapping: m, auto } => {
                control.plan(&[Phase::Reading, Phase::Writing]);
                let mut table = select(self.spooled(input, None)?, columns, false)?;
                let m = if m.is_empty() { identity(&table.columns) } else { m.clone() };
                let at = crate::ops::clock::now_iso();
                let mut gen = CustomSqlGenerator::new(template, &m, &table.columns, auto).map_err(Err)?;
                let count = table.rows.len();
                control.begin(Phase::Writing, Some(count as u64)).map_err(stopped)?;
                write_text_atomically(out, self.config.max_output_bytes(), |w| {
                    let mut rows = control.track(table.rows.reader()?);
                    write_custom_sql_rows(&mut gen, &mut rows, count, &at, w)
                })
                .map_err(Err)?;
            }
            StepOp::JsonGenerate { request } => {
                control.plan(&[Phase::Reading, Phase::Writing]);
                let mut table = self.spooled(input, None)?;
                let count = table.rows.len();
                let plan = plan_json(&table.columns, count, request).map_err(Err)?;
                control.begin(Phase::Writing, Some(count as u64)).map_err(stopped)?;
                let summary = write_text_atomically(out, self.config.max_output_bytes(), |w| {
                    let mut rows = control.track(table.rows.reader()?);
                    write_json_rows(&plan, &mut rows, count, w)
                })
                .map_err(Err)?;
                result.insert("statistics".into(), json!({"total_records": summary.total_records}));
            }
            StepOp::JsonTemplate { template, mapping: m, mode, pretty } => {
                control.plan(&[Phase::Reading, Phase::Writing]);
                let mut table = self.spooled(input, None)?;
                let m = if m.is_empty() { identity(&table.columns) } else { m.clone() };
                let compiled = JsonTemplate::compile(template, &m, &table.columns).map_err(Err)?;
                let count = table.rows.len();
                control.begin(Phase::Writing, Some(count as u64)).map_err(stopped)?;
                let summary = write_text_atomically(out, self.config.max_output_bytes(), |w| {
                    let mut rows = control.track(table.rows.reader()?);
                    write_template_rows(&compiled, *mode, &mut rows, count, *pretty, w)
                })
                .map_err(Err)?;
                result.insert("statistics".into(), json!({"total_records": summary.total_records}));
            }
        }
        Ok(result)
    }

    /// The source and bind tables of a bind step (both read in the reading phase), then the processing
    /// phase begins over the source rows.
    fn bind_inputs(
        &self,
        input: &FileRef,
        bind_file: &FileRef,
        source_sheet: &Option<String>,
        bind_sheet: &Option<String>,
    ) -> Result<(SpooledTable, SpooledTable), Result<String, OpError>> {
        let source = self.spooled(input, source_sheet.as_deref())?;
        let other = self.spooled(bind_file, bind_sheet.as_deref())?;
        // The step's input is the source, whatever the bind file's size.
        self.control.set_input_rows(source.rows.len() as u64);
        Ok((source, other))
    }
}

/// Counts the rows of a row iterator on `control` (and stops it between two batches of rows).
fn counted<'c, I, R>(
    control: &'c StepControl,
    rows: I,
) -> impl Iterator<Item = Result<R, crate::table::TableError>> + 'c
where
    I: IntoIterator<Item = Result<R, crate::table::TableError>>,
    I::IntoIter: 'c,
{
    let mut n = 0u64;
    rows.into_iter().map(move |row| {
        control.advance_to(n)?;
        n += 1;
        row
    })
}

/// `{new: old}` rules of the ops mapping for a rename (`column_mapping` old → new, §9.4).
fn rename_mapping(columns: &[String], rename: &ColumnMapping, keep_unmapped: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for c in columns {
        match rename.iter().find(|(old, _)| old == c) {
            Some((_, new)) => {
                out.insert(new.clone(), Value::String(c.clone()));
            }
            None if keep_unmapped => {
                out.entry(c.clone()).or_insert_with(|| Value::String(c.clone()));
            }
            None => {}
        }
    }
    out
}

fn identity(columns: &[String]) -> ColumnMapping {
    columns.iter().map(|c| (c.clone(), c.clone())).collect()
}

/// An empty `column_mapping` maps every column to itself.
fn with_identity(request: &StandardSqlRequest, columns: &[String]) -> StandardSqlRequest {
    let mut r = request.clone();
    if r.column_mapping.is_empty() {
        r.column_mapping = identity(columns);
    }
    r
}

/// The generation steps' `columns` (all must exist) and `remove_duplicates`; no columns: the table as is.
fn select(
    table: SpooledTable,
    columns: &[String],
    remove_duplicates: bool,
) -> Result<SpooledTable, Result<String, OpError>> {
    if columns.is_empty() {
        return Ok(table);
    }
    extract::select_spooled(table, columns, remove_duplicates).map_err(Err)
}

/// `data` of a step result for events: omitted (with `data_truncated`) above 64 KiB.
pub fn event_result(result: &Map<String, Value>) -> Map<String, Value> {
    let mut out = result.clone();
    if let Some(data) = out.get("data") {
        if data.to_string().len() > MAX_EVENT_DATA_BYTES {
            out.remove("data");
            out.insert("data_truncated".into(), Value::Bool(true));
        }
    }
    out
}

/// The stem of a stored path's file name (for messages and logs).
pub fn file_stem(stored: &str) -> &str {
    split_ext(stored.rsplit('/').next().unwrap_or(stored)).0
}
