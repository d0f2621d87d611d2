//! Search (operations.md §6, rest-api.md §7.2.7/§7.2.8): request validation in the documented order,
//! compiled conditions usable on streamed CSV rows and table rows, result files, operator suggestions.

use std::borrow::Cow;
use std::path::Path;

use chrono::NaiveDateTime;
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{json, Value};

use super::OpError;
use crate::engine::{Phase, StepControl};
use crate::table::infer::{suggested_operators, InferredType, STORAGE_TYPE};
use crate::table::parse::{parse_datetime, parse_number, python_float_text};
use crate::table::read::{stream_csv, CsvInput, CsvRow};
use crate::table::write::{search_sink, search_sink_stopped_by, OutputFormat};
use crate::table::{Cell, RowSource, Table, TableError};

const BETWEEN_SHAPE: &str = "For 'between' operator, value must be a list with [min, max]";

/// AND/OR combination of conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Logic {
    #[serde(rename = "AND")]
    And,
    #[serde(rename = "OR")]
    Or,
}

/// One condition as sent by the client (before it is checked against the columns).
#[derive(Debug, Clone, PartialEq)]
pub struct RawCondition {
    pub column: String,
    pub operator: String,
    pub value: Value,
}

/// The validated form fields of a search request (steps before the file is read).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    /// The parsed `conditions` JSON; its shape is checked by [`SearchRequest::compile`] (after the read).
    pub conditions: Value,
    pub logic: Logic,
    pub format: OutputFormat,
    pub output_filename: Option<String>,
}

/// Python truthiness of a JSON value (the reference tests `if not conditions`).
fn is_falsy(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

impl SearchRequest {
    /// Validates the raw form fields in the order of rest-api.md §7.2.7: conditions parsed → non-empty →
    /// logic → output format. `default_format` is `xlsx` for Excel and `csv` for the CSV route. Absent
    /// `logic`/`output_format` take the defaults; empty strings fail.
    pub fn parse(
        conditions: Option<&str>,
        logic: Option<&str>,
        output_format: Option<&str>,
        output_filename: Option<&str>,
        default_format: OutputFormat,
    ) -> Result<SearchRequest, OpError> {
        let conditions = match conditions {
            Some(raw) => super::parse_json_field(raw, "conditions")?,
            None => Value::Array(Vec::new()),
        };
        if is_falsy(&conditions) {
            return Err(OpError::validation_with(
                "At least one search condition is required",
                json!({ "field": "conditions" }),
            ));
        }
        let logic = match logic.map(str::to_uppercase).as_deref() {
            None | Some("AND") => Logic::And,
            Some("OR") => Logic::Or,
            Some(_) => {
                return Err(OpError::validation_with(
                    "Logic must be either 'AND' or 'OR'",
                    json!({ "field": "logic" }),
                ))
            }
        };
        let format = match output_format {
            None => default_format,
            Some(name) => OutputFormat::from_name(&name.to_lowercase()).ok_or_else(|| {
                OpError::validation_with(
                    "Output format must be xlsx, csv, or json",
                    json!({ "field": "output_format" }),
                )
            })?,
        };
        let output_filename = output_filename.filter(|s| !s.is_empty()).map(str::to_string);
        Ok(SearchRequest { conditions, logic, format, output_filename })
    }

    /// The conditions as `{column, operator, value}` records (absent keys: `""`, `""`, `null`); a
    /// non-array or non-object item is a 422.
    pub fn raw_conditions(&self) -> Result<Vec<RawCondition>, OpError> {
        let malformed = || {
            OpError::validation_with(
                "conditions must be a JSON array of objects with column, operator and value",
                json!({ "field": "conditions" }),
            )
        };
        let items = self.conditions.as_array().ok_or_else(malformed)?;
        items
            .iter()
            .map(|item| {
                let obj = item.as_object().ok_or_else(malformed)?;
                let text = |key: &str| obj.get(key).map(value_text).unwrap_or_default();
                Ok(RawCondition {
                    column: text("column"),
                    operator: text("operator"),
                    value: obj.get("value").cloned().unwrap_or(Value::Null),
                })
            })
            .collect()
    }

    /// Checks the conditions against the file's columns, in list order: column exists, operator known,
    /// value shape. The first failure is the 422.
    pub fn compile(&self, columns: &[String]) -> Result<CompiledSearch, OpError> {
        let raw = self.raw_conditions()?;
        let conditions = raw.iter().map(|c| compile_condition(c, columns)).collect::<Result<Vec<_>, _>>()?;
        Ok(CompiledSearch { conditions, logic: self.logic })
    }
}

/// S(v) of §6.2: the value as Python would print it.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "None".to_string(),
        Value::Bool(true) => "True".to_string(),
        Value::Bool(false) => "False".to_string(),
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                n.to_string()
            } else {
                python_float_text(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        other => other.to_string(),
    }
}

/// N(v) of §6.2 for a JSON value.
fn value_number(value: &Value) -> f64 {
    match value {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => parse_number(s).unwrap_or(f64::NAN),
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => f64::NAN,
    }
}

/// D(v) of §6.2 for a JSON value: strings parsed, numbers read as their text (`2024` → 1 Jan 2024).
fn value_date(value: &Value) -> Option<NaiveDateTime> {
    match value {
        Value::String(s) => parse_datetime(s),
        Value::Number(_) => parse_datetime(&value_text(value)),
        _ => None,
    }
}

/// N(c): Missing and unparsable text are NaN.
fn cell_number(cell: &Cell) -> f64 {
    match cell {
        Cell::Text(s) => parse_number(s).unwrap_or(f64::NAN),
        Cell::Missing => f64::NAN,
        Cell::Int(i) => *i as f64,
        Cell::Float(f) => *f,
        Cell::Bool(b) => f64::from(u8::from(*b)),
    }
}

fn cell_date(cell: &Cell) -> Option<NaiveDateTime> {
    match cell {
        Cell::Missing => None,
        other => parse_datetime(&other.as_text()),
    }
}

/// The bounds of `between`, decided once per request.
#[derive(Debug, Clone, PartialEq)]
enum Range {
    Numbers(f64, f64),
    Dates(NaiveDateTime, NaiveDateTime),
    /// Neither both numbers nor both dates: nothing matches.
    Never,
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Equals(String),
    NotEquals(String),
    /// Needle already lower-cased.
    Contains(String),
    NotContains(String),
    StartsWith(String),
    EndsWith(String),
    IsEmpty,
    IsNotEmpty,
    Greater(f64),
    GreaterEq(f64),
    Less(f64),
    LessEq(f64),
    Between(Range),
    Before(Option<NaiveDateTime>),
    After(Option<NaiveDateTime>),
}

/// One checked condition: a column index and a test.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledCondition {
    index: usize,
    test: Test,
}

/// A validated search: a row predicate for table rows and streamed CSV rows alike.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledSearch {
    conditions: Vec<CompiledCondition>,
    logic: Logic,
}

fn between_bounds(value: &Value) -> Result<(Value, Value), OpError> {
    let shape_error = || OpError::validation_with(BETWEEN_SHAPE, json!({ "field": "conditions" }));
    let pair = |items: &[Value]| match items {
        [lo, hi] => Ok((lo.clone(), hi.clone())),
        _ => Err(shape_error()),
    };
    match value {
        Value::Array(items) => pair(items),
        // IMPROVE: the string forms the studio can send: "[lo, hi]", "lo..hi", "lo,hi".
        Value::String(s) => {
            let s = s.trim();
            if s.starts_with('[') {
                match serde_json::from_str::<Value>(s) {
                    Ok(Value::Array(items)) => pair(&items),
                    _ => Err(shape_error()),
                }
            } else if let Some((lo, hi)) = s.split_once("..").or_else(|| s.split_once(',')) {
                Ok((Value::String(lo.trim().to_string()), Value::String(hi.trim().to_string())))
            } else {
                Err(shape_error())
            }
        }
        _ => Err(shape_error()),
    }
}

fn between_range(lo: &Value, hi: &Value) -> Range {
    let (nlo, nhi) = (value_number(lo), value_number(hi));
    if !nlo.is_nan() && !nhi.is_nan() {
        return Range::Numbers(nlo, nhi);
    }
    match (value_date(lo), value_date(hi)) {
        (Some(a), Some(b)) => Range::Dates(a, b),
        _ => Range::Never,
    }
}

fn compile_condition(raw: &RawCondition, columns: &[String]) -> Result<CompiledCondition, OpError> {
    let index = columns.iter().position(|c| *c == raw.column).ok_or_else(|| {
        OpError::validation_with(
            format!("Column '{}' not found in data", raw.column),
            json!({ "column": raw.column, "available_columns": columns }),
        )
    })?;
    let operator = raw.operator.to_lowercase();
    let value = &raw.value;
    let scalar_required = !matches!(operator.as_str(), "is_empty" | "is_not_empty" | "between");
    let test = match operator.as_str() {
        "equals" => Test::Equals(value_text(value)),
        "not_equals" => Test::NotEquals(value_text(value)),
        "contains" => Test::Contains(value_text(value).to_lowercase()),
        "not_contains" => Test::NotContains(value_text(value).to_lowercase()),
        "starts_with" => Test::StartsWith(value_text(value)),
        "ends_with" => Test::EndsWith(value_text(value)),
        "is_empty" => Test::IsEmpty,
        "is_not_empty" => Test::IsNotEmpty,
        "greater_than" => Test::Greater(value_number(value)),
        "greater_than_or_equal" => Test::GreaterEq(value_number(value)),
        "less_than" => Test::Less(value_number(value)),
        "less_than_or_equal" => Test::LessEq(value_number(value)),
        "between" => {
            let (lo, hi) = between_bounds(value)?;
            Test::Between(between_range(&lo, &hi))
        }
        "before" => Test::Before(value_date(value)),
        "after" => Test::After(value_date(value)),
        _ => {
            return Err(OpError::validation_with(
                format!("Unsupported operator: {}", raw.operator),
                json!({ "operator": raw.operator }),
            ))
        }
    };
    // IMPROVE: objects and arrays are not values (except for `between`, checked above).
    if scalar_required && (value.is_object() || value.is_array()) {
        return Err(OpError::validation_with(
            format!("Value for '{operator}' operator must be a string, number, boolean or null"),
            json!({ "field": "conditions", "column": raw.column }),
        ));
    }
    Ok(CompiledCondition { index, test })
}

/// What the tests read from a cell: T(c), N(c), D(c) and blankness — from a [`Cell`], or from the text of
/// a streamed CSV field (a Text cell without the cell).
trait Operand {
    fn text(&self) -> Cow<'_, str>;
    fn number(&self) -> f64;
    fn date(&self) -> Option<NaiveDateTime>;
    fn is_blank(&self) -> bool;
}

impl Operand for Cell {
    /// T(c): Missing reads as "" (IMPROVE).
    fn text(&self) -> Cow<'_, str> {
        self.as_text()
    }

    fn number(&self) -> f64 {
        cell_number(self)
    }

    fn date(&self) -> Option<NaiveDateTime> {
        cell_date(self)
    }

    fn is_blank(&self) -> bool {
        Cell::is_blank(self)
    }
}

impl Operand for str {
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }

    fn number(&self) -> f64 {
        parse_number(self).unwrap_or(f64::NAN)
    }

    fn date(&self) -> Option<NaiveDateTime> {
        parse_datetime(self)
    }

    fn is_blank(&self) -> bool {
        self.is_empty()
    }
}

impl CompiledCondition {
    fn matches(&self, row: &[Cell]) -> bool {
        self.test(row.get(self.index).unwrap_or(&Cell::Missing))
    }

    fn test<O: Operand + ?Sized>(&self, cell: &O) -> bool {
        let text = || cell.text();
        let cmp = |op: fn(f64, f64) -> bool, v: f64| {
            let c = cell.number();
            !c.is_nan() && !v.is_nan() && op(c, v)
        };
        match &self.test {
            Test::Equals(v) => text() == v.as_str(),
            Test::NotEquals(v) => text() != v.as_str(),
            Test::Contains(v) => text().to_lowercase().contains(v.as_str()),
            Test::NotContains(v) => !text().to_lowercase().contains(v.as_str()),
            Test::StartsWith(v) => text().starts_with(v.as_str()),
            Test::EndsWith(v) => text().ends_with(v.as_str()),
            Test::IsEmpty => cell.is_blank(),
            Test::IsNotEmpty => !cell.is_blank(),
            Test::Greater(v) => cmp(|c, v| c > v, *v),
            Test::GreaterEq(v) => cmp(|c, v| c >= v, *v),
            Test::Less(v) => cmp(|c, v| c < v, *v),
            Test::LessEq(v) => cmp(|c, v| c <= v, *v),
            Test::Between(Range::Numbers(lo, hi)) => {
                let c = cell.number();
                !c.is_nan() && *lo <= c && c <= *hi
            }
            Test::Between(Range::Dates(lo, hi)) => cell.date().is_some_and(|d| *lo <= d && d <= *hi),
            Test::Between(Range::Never) => false,
            Test::Before(v) => matches!((cell.date(), v), (Some(d), Some(v)) if d < *v),
            Test::After(v) => matches!((cell.date(), v), (Some(d), Some(v)) if d > *v),
        }
    }
}

impl CompiledSearch {
    /// True when the row satisfies all (AND) or any (OR) conditions.
    pub fn matches(&self, row: &[Cell]) -> bool {
        match self.combine(|c| Ok::<bool, std::convert::Infallible>(c.matches(row))) {
            Ok(hit) => hit,
            Err(never) => match never {},
        }
    }

    /// [`Self::matches`] for a streamed CSV row (all Text): only the columns the conditions name are read.
    pub fn matches_csv_row(&self, row: &CsvRow<'_>) -> Result<bool, TableError> {
        self.combine(|c| Ok(c.test(row.text(c.index)?)))
    }

    /// All (AND) or any (OR) of the conditions, each decided by `hit`, stopping at the first that settles it.
    fn combine<E>(&self, mut hit: impl FnMut(&CompiledCondition) -> Result<bool, E>) -> Result<bool, E> {
        let all = self.logic == Logic::And;
        for condition in &self.conditions {
            if hit(condition)? != all {
                return Ok(!all);
            }
        }
        Ok(all)
    }

    pub fn condition_count(&self) -> usize {
        self.conditions.len()
    }

    /// The matching rows of a table, in order, with all columns.
    pub fn filter_table(&self, table: &Table) -> Table {
        Table {
            columns: table.columns.clone(),
            rows: table.rows.iter().filter(|r| self.matches(r)).cloned().collect(),
        }
    }
}

/// The `data` of the search endpoints, without `download_url` (the HTTP layer adds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SearchOutcome {
    pub total_rows: u64,
    pub filtered_rows: u64,
    pub conditions_applied: usize,
}

impl SearchOutcome {
    pub fn message(&self) -> String {
        format!("Search completed successfully. {} rows matched.", self.filtered_rows)
    }
}

/// Streams `rows` through the search into a result file of `format` at `path` (written atomically).
/// Works for a streamed CSV (`CsvSource::rows`) and for a table (`table.rows.iter().map(Ok)`).
pub fn search_to_file<I, R>(
    columns: &[String],
    rows: I,
    search: &CompiledSearch,
    format: OutputFormat,
    path: &Path,
) -> Result<SearchOutcome, OpError>
where
    I: IntoIterator<Item = Result<R, TableError>>,
    R: AsRef<[Cell]>,
{
    let mut sink = search_sink(format, path, columns)?;
    let mut total_rows = 0u64;
    for row in rows {
        let row = row?;
        total_rows += 1;
        if search.matches(row.as_ref()) {
            sink.push_row(row.as_ref())?;
        }
    }
    let filtered_rows = sink.finish()?;
    Ok(SearchOutcome { total_rows, filtered_rows, conditions_applied: search.condition_count() })
}

/// [`search_to_file`] over a row source (a spooled sheet, whose reader reuses one row buffer): the rows
/// are counted on `control` (processing phase over `total_rows`), which may stop the search between two
/// batches of rows; nothing is left at `path` then.
pub fn search_rows_to_file(
    columns: &[String],
    rows: &mut dyn RowSource,
    total_rows: u64,
    search: &CompiledSearch,
    format: OutputFormat,
    path: &Path,
    control: &StepControl,
) -> Result<SearchOutcome, OpError> {
    control.begin(Phase::Processing, Some(total_rows))?;
    let mut sink = search_sink_stopped_by(format, path, columns, control)?;
    let mut total = 0u64;
    let mut rows = control.track(rows);
    while let Some(row) = rows.next_row()? {
        total += 1;
        if search.matches(row) {
            sink.push_row(row)?;
        }
    }
    drop(rows);
    control.check()?;
    let filtered_rows = sink.finish()?;
    Ok(SearchOutcome { total_rows: total, filtered_rows, conditions_applied: search.condition_count() })
}

/// `csv/search` in a single streamed pass over the file (`stream_csv`): the conditions are checked
/// against the header, then every row is tested straight from the reader's buffers.
pub fn search_csv_file(
    input: impl CsvInput,
    encodings: &[String],
    request: &SearchRequest,
    path: &Path,
) -> Result<SearchOutcome, OpError> {
    stream_csv(input, encodings, |head, cursor| {
        let search = request.compile(&head.columns)?;
        let mut sink = search_sink(request.format, path, &head.columns)?;
        while let Some(row) = cursor.next_record()? {
            if search.matches_csv_row(&row)? {
                sink.push_csv_row(row)?;
            }
        }
        let filtered_rows = sink.finish()?;
        Ok(SearchOutcome {
            total_rows: cursor.rows_read(),
            filtered_rows,
            conditions_applied: search.condition_count(),
        })
    })
}

/// One entry of the suggest-operators response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperatorSuggestion {
    #[serde(rename = "type")]
    pub type_name: String,
    pub operators: Vec<&'static str>,
    pub inferred_type: &'static str,
}

/// rest-api.md §7.2.8: per column, the storage type, the eight text operators plus extras for the
/// inferred type (§2.3 IMPROVE), and the inferred type.
pub fn suggest_operators(
    columns: &[String],
    inferred: &[InferredType],
) -> IndexMap<String, OperatorSuggestion> {
    columns
        .iter()
        .zip(inferred)
        .map(|(name, t)| {
            let suggestion = OperatorSuggestion {
                type_name: STORAGE_TYPE.to_string(),
                operators: suggested_operators(STORAGE_TYPE, *t),
                inferred_type: t.as_str(),
            };
            (name.clone(), suggestion)
        })
        .collect()
}

#[cfg(test)]
mod tests;
