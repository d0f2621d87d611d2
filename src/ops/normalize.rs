//! Normalization (operations.md §7): the 20 column transformations, the step pipeline with backups,
//! before/after statistics and the report of `normalization/apply`, and the type list of
//! `GET normalization/types`.

use super::clock::now_iso;
use super::params::py_list;
use super::OpError;
use crate::engine::{Phase, StepControl};
use crate::table::parse::{parse_datetime, parse_number, python_strftime};
use crate::table::read::{exceeds_cell_limit, EXCEL_MAX_CELL_CHARS};
use crate::table::rows::assign;
use crate::table::spool::{SpoolWriter, SpooledTable};
use crate::table::write::{RowSink, WorkbookSink, WorkbookStyle};
use crate::table::{Cell, RowSource, Table, TableError};
use regex::Regex;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

/// The implemented types with their descriptions, in the order the studio lists them.
const TYPES: [(&str, &str); 20] = [
    ("uppercase", "Upper-case the text"),
    ("lowercase", "Lower-case the text"),
    ("title_case", "Capitalise each word"),
    ("trim_whitespace", "Strip leading and trailing whitespace"),
    (
        "remove_special_chars",
        "Delete characters matching a pattern (default: anything but letters, digits, spaces)",
    ),
    ("phone_format", "Format 10/11-digit phone numbers in North-American style"),
    ("email_format", "Lower-case and trim e-mail addresses"),
    ("name_format", "Title-case and trim personal names"),
    ("min_max_scale", "Rescale numbers to the 0–1 range"),
    ("z_score", "Standardise numbers (subtract mean, divide by standard deviation)"),
    ("round_decimal", "Round numbers to N decimal places"),
    ("integer_convert", "Convert to whole numbers"),
    ("currency_format", "Strip currency symbols and separators, keep the number"),
    ("date_format", "Re-format dates"),
    ("datetime_format", "Re-format date-times"),
    ("boolean_convert", "Convert yes/no-like text to booleans"),
    ("yes_no_convert", "Convert yes/no-like text to Yes/No"),
    ("regex_replace", "Replace matches of a regular expression"),
    ("fill_null_values", "Fill missing values"),
    ("outlier_removal", "Blank out values outside the IQR fence"),
];

/// Accepted names without an implementation (§7.4): each step using one records an error.
const UNIMPLEMENTED: [&str; 6] = [
    "date_extract_year",
    "date_extract_month",
    "date_extract_day",
    "custom_function",
    "categorical_mapping",
    "remove_duplicates",
];

/// `GET normalization/types`: type name → description (20 entries).
pub fn normalization_types() -> Map<String, Value> {
    TYPES.iter().map(|(k, d)| (k.to_string(), Value::String(d.to_string()))).collect()
}

/// One requested step, shape-checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizationStep {
    pub column_name: String,
    /// As sent (matched case-insensitively).
    pub normalization_type: String,
    pub parameters: Map<String, Value>,
    pub backup_original: bool,
    /// The step object as sent, for `requested_normalizations`.
    raw: Value,
}

fn shape_error(message: String, index: usize) -> OpError {
    OpError::validation_with(message, json!({ "field": "normalizations", "index": index }))
}

/// Parses the `normalizations` field: a non-empty array of step objects (wrong shapes → 422).
pub fn parse_steps(value: &Value) -> Result<Vec<NormalizationStep>, OpError> {
    let Value::Array(items) = value else {
        return Err(OpError::validation_with(
            "normalizations must be a JSON array",
            json!({ "field": "normalizations" }),
        ));
    };
    if items.is_empty() {
        return Err(OpError::validation("No normalization configurations provided"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let Value::Object(obj) = item else {
                return Err(shape_error(format!("normalizations[{i}] must be a JSON object"), i));
            };
            let text = |key: &str| -> Result<String, OpError> {
                match obj.get(key) {
                    None | Some(Value::Null) => Ok(String::new()),
                    Some(Value::String(s)) => Ok(s.clone()),
                    Some(_) => Err(shape_error(format!("normalizations[{i}].{key} must be a string"), i)),
                }
            };
            let parameters = match obj.get("parameters") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(p)) => p.clone(),
                Some(_) => {
                    return Err(shape_error(
                        format!("normalizations[{i}].parameters must be a JSON object"),
                        i,
                    ))
                }
            };
            let backup_original = match obj.get("backup_original") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
                Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
                Some(_) => {
                    return Err(shape_error(
                        format!("normalizations[{i}].backup_original must be a boolean"),
                        i,
                    ))
                }
            };
            Ok(NormalizationStep {
                column_name: text("column_name")?,
                normalization_type: text("normalization_type")?,
                parameters,
                backup_original,
                raw: item.clone(),
            })
        })
        .collect()
}

/// The storage type string of a column (§2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    Object,
    Float64,
    Int64,
    Bool,
}

impl Dtype {
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::Object => "object",
            Dtype::Float64 => "float64",
            Dtype::Int64 => "int64",
            Dtype::Bool => "bool",
        }
    }

    /// For steps that keep cell kinds: what the column holds now, given what it held before.
    fn after_in_place(prev: Dtype, cells: &[Cell]) -> Dtype {
        if prev == Dtype::Object {
            return Dtype::Object;
        }
        let any_missing = cells.iter().any(Cell::is_missing);
        let present = || cells.iter().filter(|c| !c.is_missing());
        if !any_missing && present().all(|c| matches!(c, Cell::Bool(_))) {
            Dtype::Bool
        } else if !any_missing && present().all(|c| matches!(c, Cell::Int(_))) {
            Dtype::Int64
        } else if present().all(|c| matches!(c, Cell::Int(_) | Cell::Float(_))) {
            Dtype::Float64
        } else {
            Dtype::Object
        }
    }
}

#[derive(Hash, PartialEq, Eq)]
enum UniqueKey<'a> {
    Text(&'a str),
    Num(u64),
    Bool(bool),
}

fn unique_key(cell: &Cell) -> Option<UniqueKey<'_>> {
    let num = |f: f64| UniqueKey::Num(if f == 0.0 { 0 } else { f.to_bits() });
    match cell {
        Cell::Missing => None,
        Cell::Text(s) => Some(UniqueKey::Text(s)),
        Cell::Int(i) => Some(num(*i as f64)),
        Cell::Float(f) => Some(num(*f)),
        Cell::Bool(b) => Some(UniqueKey::Bool(*b)),
    }
}

/// `before_stats` / `after_stats`.
pub fn column_stats(cells: &[Cell], dtype: Dtype) -> Value {
    let null_count = cells.iter().filter(|c| c.is_missing()).count();
    let unique: std::collections::HashSet<UniqueKey> = cells.iter().filter_map(unique_key).collect();
    json!({
        "total_values": cells.len(),
        "null_count": null_count,
        "unique_count": unique.len(),
        "data_type": dtype.as_str(),
    })
}

/// Result of [`normalize`]: the transformed table and the report (`data.report`).
#[derive(Debug, Clone)]
pub struct NormalizationOutcome {
    pub table: Table,
    pub report: Value,
}

fn entry(message: String) -> Value {
    json!({ "message": message, "timestamp": now_iso() })
}

/// The columns the pipeline works on: a [`Table`] (rows) or a [`ColumnTable`] (one vector per column,
/// which saves a row vector per row when only a few columns are held).
trait Columns {
    fn names(&self) -> &[String];
    /// Moves one column's cells out, without copying strings; the column must be put back before it is read.
    fn take(&mut self, index: usize) -> Vec<Cell>;
    /// Puts `cells` into column `index`, returning the cells it held.
    fn put(&mut self, index: usize, cells: Vec<Cell>) -> Vec<Cell>;
    fn copy(&self, index: usize) -> Vec<Cell>;
    fn append(&mut self, name: String, cells: Vec<Cell>);
    fn index_of(&self, name: &str) -> Option<usize> {
        self.names().iter().position(|c| c == name)
    }
}

impl Columns for Table {
    fn names(&self) -> &[String] {
        &self.columns
    }

    /// Leaves Missing behind (a row too short gives Missing).
    fn take(&mut self, index: usize) -> Vec<Cell> {
        self.rows
            .iter_mut()
            .map(|row| {
                row.get_mut(index).map(|slot| std::mem::replace(slot, Cell::Missing)).unwrap_or(Cell::Missing)
            })
            .collect()
    }

    fn put(&mut self, index: usize, cells: Vec<Cell>) -> Vec<Cell> {
        self.rows
            .iter_mut()
            .zip(cells)
            .map(|(row, cell)| match row.get_mut(index) {
                Some(slot) => std::mem::replace(slot, cell),
                None => Cell::Missing,
            })
            .collect()
    }

    fn copy(&self, index: usize) -> Vec<Cell> {
        self.column(index).cloned().collect()
    }

    fn append(&mut self, name: String, cells: Vec<Cell>) {
        self.columns.push(name);
        for (row, cell) in self.rows.iter_mut().zip(cells) {
            row.push(cell);
        }
    }
}

/// Columns held one vector each, all `height` long.
struct ColumnTable {
    names: Vec<String>,
    cells: Vec<Vec<Cell>>,
    height: usize,
}

impl Columns for ColumnTable {
    fn names(&self) -> &[String] {
        &self.names
    }

    fn take(&mut self, index: usize) -> Vec<Cell> {
        std::mem::take(&mut self.cells[index])
    }

    fn put(&mut self, index: usize, cells: Vec<Cell>) -> Vec<Cell> {
        std::mem::replace(&mut self.cells[index], cells)
    }

    fn copy(&self, index: usize) -> Vec<Cell> {
        self.cells[index].clone()
    }

    fn append(&mut self, name: String, cells: Vec<Cell>) {
        self.names.push(name);
        self.cells.push(cells);
    }
}

/// The uploaded content of the columns the pipeline has overwritten so far and that a later step backs up
/// (the others are still pristine in the working table, or never copied), so backups always copy the
/// uploaded column without cloning the whole table.
struct Uploaded {
    width: usize,
    saved: HashMap<usize, Vec<Cell>>,
}

impl Uploaded {
    /// Records `old` as the uploaded content of `index` if the column was pristine until now.
    fn overwritten(&mut self, index: usize, old: Vec<Cell>) {
        if index < self.width {
            self.saved.entry(index).or_insert(old);
        }
    }

    fn is_pristine(&self, index: usize) -> bool {
        index < self.width && !self.saved.contains_key(&index)
    }

    /// A copy of the uploaded column `index`; `None` when it was not part of the upload.
    fn copy(&self, work: &impl Columns, index: usize) -> Option<Vec<Cell>> {
        if index >= self.width {
            return None;
        }
        Some(match self.saved.get(&index) {
            Some(cells) => cells.clone(),
            None => work.copy(index),
        })
    }
}

/// Whether a step after the `done`-th backs up column `name`: only then must its uploaded content outlive
/// the step that overwrites it (else the pipeline would hold two states of the column for nothing).
fn backed_up_after(steps: &[NormalizationStep], done: usize, backup_original: bool, name: &str) -> bool {
    steps[done + 1..].iter().any(|s| (s.backup_original || backup_original) && s.column_name == name)
}

/// The message of the 422 that refuses a request with bad steps (rest-api.md §7.4.2).
pub const INVALID_CONFIGURATION: &str = "Invalid normalization configuration";

/// Checks every step against the sheet's `columns` before any row is transformed (§7.1, new 2026-12):
/// the type must be implemented, the column must exist (the pipeline's own `{c}_original` backups count
/// from the step that creates them on), and the parameters must work. Every bad step is listed in
/// `details.errors` as `{step, field, error, valid?}` (`step` is the index in `normalizations`); problems
/// that only show while converting values stay notes of the report.
pub fn validate_steps(
    columns: &[String],
    steps: &[NormalizationStep],
    backup_original: bool,
) -> Result<(), OpError> {
    let implemented: Vec<&str> = TYPES.iter().map(|(k, _)| *k).collect();
    let mut known = columns.to_vec();
    let mut errors = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let c = &step.column_name;
        let lowered = step.normalization_type.to_lowercase();
        let type_error = if implemented.contains(&lowered.as_str()) {
            None
        } else if UNIMPLEMENTED.contains(&lowered.as_str()) {
            Some(format!("Unsupported normalization type: {lowered}. It is recognised but not implemented"))
        } else {
            Some(format!("Invalid normalization type: '{}'", step.normalization_type))
        };
        let oversized = oversized_parameters(&step.parameters);
        for (key, characters) in &oversized {
            errors.push(json!({
                "step": i,
                "field": format!("parameters.{key}"),
                "error": format!(
                    "parameter '{key}' has {characters} characters, more than Excel's cell limit of \
                     {EXCEL_MAX_CELL_CHARS}"
                ),
            }));
        }
        if let Some(error) = type_error {
            errors.push(
                json!({"step": i, "field": "normalization_type", "error": error, "valid": implemented}),
            );
        } else if !oversized.is_empty() {
            // Already listed; not compiled or run.
        } else if let Err(error) = apply(&lowered, &step.parameters, &[], Dtype::Object) {
            // Run on no cells, a transformation can only fail on its parameters.
            errors.push(json!({"step": i, "field": "parameters", "error": error}));
        }
        if known.contains(c) {
            let backup = format!("{c}_original");
            if (step.backup_original || backup_original) && !known.contains(&backup) {
                known.push(backup);
            }
        } else {
            errors.push(json!({
                "step": i,
                "field": "column_name",
                "error": format!("Column '{c}' not found"),
                "valid": known,
            }));
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(OpError::validation_with(INVALID_CONFIGURATION, json!({ "errors": errors })))
}

/// [`validate_steps`], then [`normalize_owned`]: what `normalization/apply` and its workflow step run.
/// `max_output_bytes` is `file.max_output_mb`: no step may produce a column of more text.
pub fn normalize_checked(
    table: Table,
    steps: &[NormalizationStep],
    backup_original: bool,
    with_stats: bool,
    max_output_bytes: u64,
) -> Result<NormalizationOutcome, OpError> {
    normalize_checked_tracked(table, steps, backup_original, with_stats, max_output_bytes, &StepControl::NONE)
}

/// [`normalize_checked`] for a workflow step: the processing phase counts rows rule by rule on
/// `control`, and a stop request ends the run between two rules.
pub fn normalize_checked_tracked(
    table: Table,
    steps: &[NormalizationStep],
    backup_original: bool,
    with_stats: bool,
    max_output_bytes: u64,
    control: &StepControl,
) -> Result<NormalizationOutcome, OpError> {
    validate_steps(&table.columns, steps, backup_original)?;
    normalize_tracked(table, steps, backup_original, with_stats, max_output_bytes, control)
}

/// Runs the pipeline (§7.1) on a copy of `table`, without an output budget.
pub fn normalize(
    table: &Table,
    steps: &[NormalizationStep],
    backup_original: bool,
) -> Result<NormalizationOutcome, OpError> {
    normalize_owned(table.clone(), steps, backup_original, true, u64::MAX)
}

/// [`normalize`] consuming the table: cells are moved, not copied, except into backup columns.
/// `with_stats` false leaves `before_stats`/`after_stats` null, for callers that discard the report (the
/// per-column unique counts are the costly part of it). Step failures are recorded in the report and
/// never fail the call; what fails it is a step that would produce more than `max_output_bytes` of text
/// (413, judged before the step runs) or a value longer than Excel's 32,767 characters (422).
pub fn normalize_owned(
    table: Table,
    steps: &[NormalizationStep],
    backup_original: bool,
    with_stats: bool,
    max_output_bytes: u64,
) -> Result<NormalizationOutcome, OpError> {
    normalize_tracked(table, steps, backup_original, with_stats, max_output_bytes, &StepControl::NONE)
}

fn normalize_tracked(
    table: Table,
    steps: &[NormalizationStep],
    backup_original: bool,
    with_stats: bool,
    max_output_bytes: u64,
    control: &StepControl,
) -> Result<NormalizationOutcome, OpError> {
    let mut budget = OutputBudget::new(max_output_bytes, steps.len());
    normalize_part(table, steps, backup_original, with_stats, &mut budget, 0, None, control)
}

/// What the steps of one pipeline may still produce (`file.max_output_mb` per step), charged part by part
/// when the table goes through in chunks.
struct OutputBudget {
    max_bytes: u64,
    /// Projected bytes of each step's output so far.
    used: Vec<u64>,
}

impl OutputBudget {
    fn new(max_bytes: u64, steps: usize) -> OutputBudget {
        OutputBudget { max_bytes, used: vec![0; steps] }
    }
}

/// The pipeline on `table`, which is the whole table or the part of it starting at data row `first_row`
/// (for the rows named in errors); `budget` carries what earlier parts produced.
#[allow(clippy::too_many_arguments)]
fn normalize_part(
    table: Table,
    steps: &[NormalizationStep],
    backup_original: bool,
    with_stats: bool,
    budget: &mut OutputBudget,
    first_row: usize,
    collector: Option<&mut StatsCollector>,
    control: &StepControl,
) -> Result<NormalizationOutcome, OpError> {
    let started_at = now_iso();
    let total_rows = table.row_count();
    let mut work = table;
    // Rules work a whole column at a time: progress moves by one column's rows per rule.
    control.begin(Phase::Processing, Some(total_rows as u64))?;
    let per_rule = |done: usize| (total_rows * done / steps.len().max(1)) as u64;
    let mut before_step = |done: usize| -> Result<(), OpError> {
        control.advance_to(per_rule(done))?;
        Ok(control.check()?)
    };
    let pipeline = PipelineRun { steps, backup_original, with_stats, first_row, control };
    let run = pipeline.run(&mut work, budget, collector, &mut before_step).map_err(|(_, e)| e)?;
    let report = report_of(started_at, total_rows, steps, run.outcomes);
    control.advance_to(total_rows as u64)?;
    Ok(NormalizationOutcome { table: work, report })
}

/// What one step left in the report.
enum StepOutcome {
    /// Its `columns_processed` entry.
    Processed(Value),
    /// Its entry in `errors` (the column kept its previous state).
    Failed(Value),
    /// Its entry in `warnings`.
    NotFound(Value),
}

/// What [`PipelineRun::run`] did, step by step.
struct StepsDone {
    outcomes: Vec<StepOutcome>,
    /// The step that appended each column the run added (backups), in the order they were added.
    appended_by: Vec<usize>,
}

/// The steps of one pipeline and how to run them.
struct PipelineRun<'a> {
    steps: &'a [NormalizationStep],
    backup_original: bool,
    with_stats: bool,
    first_row: usize,
    control: &'a StepControl,
}

impl PipelineRun<'_> {
    /// Runs the steps on `work` in order; `before_step(i)` comes before step i (progress, stop). An error
    /// that ends the run comes with the index of the step it ended in.
    fn run(
        &self,
        work: &mut impl Columns,
        budget: &mut OutputBudget,
        mut collector: Option<&mut StatsCollector>,
        before_step: &mut dyn FnMut(usize) -> Result<(), OpError>,
    ) -> Result<StepsDone, (usize, OpError)> {
        let mut done = StepsDone { outcomes: Vec::with_capacity(self.steps.len()), appended_by: Vec::new() };
        let mut uploaded = Uploaded { width: work.names().len(), saved: HashMap::new() };
        let mut dtypes = vec![Dtype::Object; work.names().len()];
        for (i, step) in self.steps.iter().enumerate() {
            let outcome = self
                .step(
                    i,
                    step,
                    work,
                    &mut uploaded,
                    &mut dtypes,
                    budget,
                    collector.as_deref_mut(),
                    before_step,
                )
                .map_err(|e| (i, e))?;
            if work.names().len() > uploaded.width + done.appended_by.len() {
                done.appended_by.push(i);
            }
            done.outcomes.push(outcome);
        }
        Ok(done)
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &self,
        done: usize,
        step: &NormalizationStep,
        work: &mut impl Columns,
        uploaded: &mut Uploaded,
        dtypes: &mut Vec<Dtype>,
        budget: &mut OutputBudget,
        mut collector: Option<&mut StatsCollector>,
        before_step: &mut dyn FnMut(usize) -> Result<(), OpError>,
    ) -> Result<StepOutcome, OpError> {
        let (steps, control, backup_original) = (self.steps, self.control, self.backup_original);
        let stats = |cells: &[Cell], dtype: Dtype| {
            if self.with_stats {
                column_stats(cells, dtype)
            } else {
                Value::Null
            }
        };
        before_step(done)?;
        let c = &step.column_name;
        let Some(index) = work.index_of(c) else {
            return Ok(StepOutcome::NotFound(entry(format!("Column '{c}' not found"))));
        };
        if step.backup_original || backup_original {
            // The uploaded column, not the current state (a backup of a backup falls back to the current one).
            let source = uploaded.copy(work, index).unwrap_or_else(|| work.copy(index));
            let name = format!("{c}_original");
            match work.index_of(&name) {
                Some(b) => {
                    let old = work.put(b, source);
                    if backed_up_after(steps, done, backup_original, &name) {
                        uploaded.overwritten(b, old);
                    }
                    dtypes[b] = Dtype::Object;
                }
                None => {
                    work.append(name, source);
                    dtypes.push(Dtype::Object);
                }
            }
        }
        // A rule over a whole column takes a fraction of a second per million rows at each stage: a stop
        // is looked at between stages, not only between rules.
        control.check()?;
        let before = work.take(index);
        let before_stats = stats(&before, dtypes[index]);
        if let Some(c) = collector.as_deref_mut() {
            c.steps[done].0.add(&before, dtypes[index]);
        }
        control.check()?;
        let lowered = step.normalization_type.to_lowercase();
        check_projection(c, &lowered, &step.parameters, &before, budget.max_bytes, &mut budget.used[done])?;
        control.check()?;
        let result = if TYPES.iter().any(|(k, _)| *k == lowered) {
            apply(&lowered, &step.parameters, &before, dtypes[index])
        } else if UNIMPLEMENTED.contains(&lowered.as_str()) {
            Err(format!(
                "Unsupported normalization type: {lowered}. It is recognised but not implemented; \
                 GET normalization/types lists the available types"
            ))
        } else {
            let mut known: Vec<&str> = TYPES.iter().map(|(k, _)| *k).collect();
            known.extend(UNIMPLEMENTED);
            Err(format!(
                "Invalid normalization type: '{}'. Valid types are: {}",
                step.normalization_type,
                py_list(&known)
            ))
        };
        match result {
            Ok((cells, dtype)) => {
                // The uploaded state is kept only for a later backup; otherwise it goes before the
                // new column is checked and counted.
                let keep = uploaded.is_pristine(index) && backed_up_after(steps, done, backup_original, c);
                let before = if keep { Some(before) } else { None };
                control.check()?;
                check_cell_lengths(c, &cells, self.first_row)?;
                let after_stats = stats(&cells, dtype);
                if let Some(c) = collector {
                    c.steps[done].1.add(&cells, dtype);
                    c.succeeded[done] = true;
                }
                control.check()?;
                work.put(index, cells);
                if let Some(before) = before {
                    uploaded.overwritten(index, before);
                }
                dtypes[index] = dtype;
                Ok(StepOutcome::Processed(json!({
                    "column_name": c,
                    "normalization_type": step.normalization_type,
                    "parameters": Value::Object(step.parameters.clone()),
                    "before_stats": before_stats,
                    "after_stats": after_stats,
                    "success": true,
                })))
            }
            Err(detail) => {
                // The column keeps its previous state.
                work.put(index, before);
                Ok(StepOutcome::Failed(entry(format!("Error normalizing '{c}': {detail}"))))
            }
        }
    }
}

/// The report of a run whose steps had `outcomes` (in step order).
fn report_of(
    started_at: String,
    total_rows: usize,
    steps: &[NormalizationStep],
    outcomes: impl IntoIterator<Item = StepOutcome>,
) -> Value {
    let (mut processed, mut errors, mut warnings) = (Vec::new(), Vec::new(), Vec::new());
    for outcome in outcomes {
        match outcome {
            StepOutcome::Processed(v) => processed.push(v),
            StepOutcome::Failed(v) => errors.push(v),
            StepOutcome::NotFound(v) => warnings.push(v),
        }
    }
    let requested: Vec<Value> = steps
        .iter()
        .map(|s| {
            json!({
                "column": s.raw.get("column_name").cloned().unwrap_or_else(|| Value::String(String::new())),
                "type": s.raw.get("normalization_type").cloned().unwrap_or_else(|| Value::String(String::new())),
                "parameters": s.raw.get("parameters").cloned().unwrap_or_else(|| json!({})),
            })
        })
        .collect();
    json!({
        "started_at": started_at,
        "completed_at": now_iso(),
        "success": errors.is_empty(),
        "total_rows": total_rows,
        "requested_normalizations": requested,
        "columns_processed": processed,
        "errors": errors,
        "warnings": warnings,
    })
}

/// Rows the streamed pipeline transforms at a time: small enough that a chunk costs a few MB and a stop
/// request is seen within milliseconds, large enough that per-chunk work is noise.
pub const CHUNK_ROWS: usize = 4096;

/// Types whose output for a cell depends on that cell alone (and on the parameters): a table run through
/// them in chunks gives exactly the cells the whole-table run gives. The others look at the whole column
/// (min/max, mean and deviation, quartiles, fills from the column's statistics or its neighbours).
const CELL_BY_CELL: [&str; 16] = [
    "uppercase",
    "lowercase",
    "title_case",
    "trim_whitespace",
    "remove_special_chars",
    "phone_format",
    "email_format",
    "name_format",
    "round_decimal",
    "integer_convert",
    "currency_format",
    "date_format",
    "datetime_format",
    "boolean_convert",
    "yes_no_convert",
    "regex_replace",
];

/// Whether [`normalize_rows_to_xlsx`] can run `steps`: every type works cell by cell.
pub fn streams_by_chunk(steps: &[NormalizationStep]) -> bool {
    steps.iter().all(|s| CELL_BY_CELL.contains(&s.normalization_type.to_lowercase().as_str()))
}

/// The report's `before_stats`/`after_stats` of a streamed run, added up chunk by chunk. Distinct values
/// are remembered by a 128-bit keyed digest (16 bytes each, collision odds as in `SpooledTable::dedupe`),
/// so the sets cost at most 2 × 16 bytes per row per step.
struct StatsCollector {
    /// (before, after) of each step.
    steps: Vec<(PartStats, PartStats)>,
    succeeded: Vec<bool>,
}

#[derive(Default)]
struct PartStats {
    total: usize,
    nulls: usize,
    distinct: std::collections::HashSet<u128>,
    dtype: Option<Dtype>,
}

impl PartStats {
    fn add(&mut self, cells: &[Cell], dtype: Dtype) {
        self.total += cells.len();
        self.dtype = Some(dtype);
        for cell in cells {
            match unique_key(cell) {
                None => self.nulls += 1,
                Some(key) => {
                    self.distinct.insert(key_digest(&key));
                }
            }
        }
    }

    /// What [`column_stats`] gives for the whole column.
    fn to_json(&self) -> Value {
        json!({
            "total_values": self.total,
            "null_count": self.nulls,
            "unique_count": self.distinct.len(),
            "data_type": self.dtype.unwrap_or(Dtype::Object).as_str(),
        })
    }
}

/// The per-process keyed 128-bit digest of a [`UniqueKey`] (two SipHash runs told apart by a byte).
fn key_digest(key: &UniqueKey<'_>) -> u128 {
    use std::hash::{BuildHasher, Hasher};
    static STATE: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    let state = STATE.get_or_init(std::collections::hash_map::RandomState::new);
    let mut halves = [state.build_hasher(), state.build_hasher()];
    for (domain, h) in halves.iter_mut().enumerate() {
        h.write_u8(domain as u8);
        match key {
            UniqueKey::Text(s) => {
                h.write_u8(0);
                h.write(s.as_bytes());
            }
            UniqueKey::Num(n) => {
                h.write_u8(1);
                h.write_u64(*n);
            }
            UniqueKey::Bool(b) => {
                h.write_u8(2);
                h.write_u8(u8::from(*b));
            }
        }
    }
    let [a, b] = halves;
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// `normalization/apply` as a stream (design.md "Execution engine"): rows come from `rows` in chunks of
/// [`CHUNK_ROWS`], each chunk goes through the pipeline and straight into the standard workbook writer at
/// `path`, so memory holds one chunk whatever the row count (plus, `with_stats`, the digests of distinct
/// values, see `StatsCollector`). Only for plans [`streams_by_chunk`] accepts; the result is the same file
/// and report as [`normalize_checked`] followed by `write_table_xlsx`. Steps are checked first (422,
/// nothing written); a failure mid-way leaves nothing at `path`. Progress: one processing phase over
/// `total_rows` on `control`, whose stop request ends the run between two chunks.
#[allow(clippy::too_many_arguments)]
pub fn normalize_rows_to_xlsx(
    columns: &[String],
    rows: &mut dyn RowSource,
    total_rows: u64,
    steps: &[NormalizationStep],
    backup_original: bool,
    with_stats: bool,
    max_output_bytes: u64,
    path: &Path,
    style: &WorkbookStyle,
    control: &StepControl,
) -> Result<Value, OpError> {
    debug_assert!(streams_by_chunk(steps));
    validate_steps(columns, steps, backup_original)?;
    let started_at = now_iso();
    let mut budget = OutputBudget::new(max_output_bytes, steps.len());
    // The run on no rows gives the output columns and the report: for cell-by-cell types neither depends
    // on the rows (parameter problems were refused above).
    let none = StepControl::NONE;
    let mut stats = with_stats.then(|| StatsCollector {
        steps: steps.iter().map(|_| Default::default()).collect(),
        succeeded: vec![false; steps.len()],
    });
    let empty = Table::new(columns.to_vec());
    let shape = normalize_part(empty, steps, backup_original, false, &mut budget, 0, stats.as_mut(), &none)?;
    let mut sink = WorkbookSink::create(path, style, &shape.table.columns)?.stopped_by(control);
    control.begin(Phase::Processing, Some(total_rows))?;
    let mut done = 0usize;
    loop {
        let mut chunk = Table::new(columns.to_vec());
        while chunk.rows.len() < CHUNK_ROWS {
            match rows.next_row()? {
                Some(row) => chunk.rows.push(row.to_vec()),
                None => break,
            }
        }
        if chunk.rows.is_empty() {
            break;
        }
        let n = chunk.rows.len();
        let out =
            normalize_part(chunk, steps, backup_original, false, &mut budget, done, stats.as_mut(), &none)?;
        for row in &out.table.rows {
            sink.push_row(row)?;
        }
        done += n;
        control.advance_to(done as u64)?;
        control.check()?;
    }
    Box::new(sink).finish()?;
    let mut report = shape.report;
    if let Value::Object(fields) = &mut report {
        fields.insert("started_at".into(), Value::String(started_at));
        fields.insert("completed_at".into(), Value::String(now_iso()));
        fields.insert("total_rows".into(), json!(done));
        if let (Some(stats), Some(Value::Array(processed))) = (&stats, fields.get_mut("columns_processed")) {
            // One entry per step that succeeded, in step order.
            let succeeded = stats.steps.iter().zip(&stats.succeeded).filter(|(_, ok)| **ok);
            for (entry, ((before, after), _)) in processed.iter_mut().zip(succeeded) {
                entry["before_stats"] = before.to_json();
                entry["after_stats"] = after.to_json();
            }
        }
    }
    Ok(report)
}

/// `normalization/apply` of a spooled table, for the REST endpoint and the workflow step alike. A plan of
/// cell-by-cell rules streams chunk by chunk ([`normalize_rows_to_xlsx`]). A plan with rules whose output
/// for a cell depends on the whole column (min_max_scale, z_score, fill_null_values, outlier_removal; see
/// [`CELL_BY_CELL`]) goes as far as a stream can (design.md "Execution engine"). A step reads and writes
/// only its column and that column's `{c}_original` backup, so the plan splits into groups of steps that
/// share columns (see [`step_groups`]) and no group sees another's cells. One group at a time, its input columns are read
/// from the spool into a narrow column-major table and run through the pipeline (the same code as the
/// whole-table run, so cells, types and report entries are its own); its resulting columns go to a
/// temporary spool of their own and leave memory. Then every row is put back together from the input
/// spool and the groups' spools and streams into the standard workbook writer at `path`; the report
/// lists the groups' entries in step order.
///
/// Memory: one group's columns at a time (about 32 bytes per row and column plus the text, with the
/// state before and after the rule running), never the other columns. Steps are checked first (422,
/// nothing written); a failure mid-way leaves nothing at `path`, and the groups' spools are unnamed
/// temporary files that go when dropped. An error that ends the run is the one of the earliest step, as
/// in the whole-table run. Progress on `control`: the processing phase rule by rule (counted in the
/// order the rules run), then the writing phase over the rows; a stop request ends the run between two
/// batches of rows or two stages of a rule.
#[allow(clippy::too_many_arguments)]
pub fn normalize_spooled_to_xlsx(
    mut table: SpooledTable,
    steps: &[NormalizationStep],
    backup_original: bool,
    with_stats: bool,
    max_output_bytes: u64,
    path: &Path,
    style: &WorkbookStyle,
    control: &StepControl,
) -> Result<Value, OpError> {
    if streams_by_chunk(steps) {
        let total = table.rows.len() as u64;
        let rows = &mut table.rows.reader()?;
        return normalize_rows_to_xlsx(
            &table.columns,
            rows,
            total,
            steps,
            backup_original,
            with_stats,
            max_output_bytes,
            path,
            style,
            control,
        );
    }
    validate_steps(&table.columns, steps, backup_original)?;
    let groups = step_groups(&table.columns, steps, backup_original);
    let started_at = now_iso();
    let total = table.rows.len();
    control.begin(Phase::Processing, Some(total as u64))?;
    let mut outcomes: Vec<Option<StepOutcome>> = steps.iter().map(|_| None).collect();
    // Per group: its spool and the columns it appended, each with the step that appended it.
    let mut results: Vec<(SpooledTable, Vec<usize>)> = Vec::with_capacity(groups.len());
    // The earliest step whose error ends the run: later groups only run the steps before it.
    let mut failure: Option<(usize, OpError)> = None;
    let mut rules_run = 0usize;
    for group in &groups {
        let limit = failure.as_ref().map_or(steps.len(), |(at, _)| *at);
        let indices: Vec<usize> = group.steps.iter().copied().filter(|&k| k < limit).collect();
        if indices.is_empty() {
            continue;
        }
        control.check()?;
        let mut work = ColumnTable {
            names: group.inputs.iter().map(|&i| table.columns[i].clone()).collect(),
            cells: group.inputs.iter().map(|_| Vec::with_capacity(total)).collect(),
            height: total,
        };
        {
            let mut rows = table.rows.reader()?;
            let mut n = 0usize;
            while let Some(row) = rows.next_row()? {
                for (column, &i) in work.cells.iter_mut().zip(&group.inputs) {
                    column.push(row[i].clone());
                }
                n += 1;
                if n.is_multiple_of(CHUNK_ROWS) {
                    control.check()?;
                }
            }
        }
        let group_steps: Vec<NormalizationStep> = indices.iter().map(|&k| steps[k].clone()).collect();
        let pipeline =
            PipelineRun { steps: &group_steps, backup_original, with_stats, first_row: 0, control };
        // Progress counts the rules in the order they run, so it never goes back.
        let mut before_step = |_: usize| -> Result<(), OpError> {
            control.advance_to((total * rules_run / steps.len().max(1)) as u64)?;
            rules_run += 1;
            Ok(control.check()?)
        };
        let mut budget = OutputBudget::new(max_output_bytes, group_steps.len());
        let done = match pipeline.run(&mut work, &mut budget, None, &mut before_step) {
            Ok(done) => done,
            Err((_, e @ OpError::Table(TableError::Cancelled))) => return Err(e),
            Err((at, e)) => {
                failure = Some((indices[at], e));
                continue;
            }
        };
        if failure.is_some() {
            // Nothing is written after a failure; the run only looks for an earlier one.
            continue;
        }
        for (&k, outcome) in indices.iter().zip(done.outcomes) {
            outcomes[k] = Some(outcome);
        }
        let appended_by = done.appended_by.iter().map(|&at| indices[at]).collect();
        results.push((spool_columns(work, table.rows.dir(), control)?, appended_by));
    }
    if let Some((_, e)) = failure {
        return Err(e);
    }
    // Every group ran all its steps: `results` follows `groups`.
    debug_assert_eq!(results.len(), groups.len());
    let report = report_of(started_at, total, steps, outcomes.into_iter().flatten());
    control.advance_to(total as u64)?;

    // Each output column: an untouched input column, or a group's; the columns the groups appended (the
    // backups they created) come after the input's in the order of the steps that created them, as in the
    // whole-table run.
    let mut columns = table.columns.clone();
    let mut input = Vec::new();
    let mut from_groups: Vec<Vec<(usize, usize)>> = results.iter().map(|_| Vec::new()).collect();
    for out in 0..table.columns.len() {
        let owner = groups
            .iter()
            .enumerate()
            .find_map(|(r, g)| g.inputs.iter().position(|&i| i == out).map(|at| (r, at)));
        match owner {
            Some((r, at)) => from_groups[r].push((out, at)),
            None => input.push((out, out)),
        }
    }
    let mut appended: Vec<(usize, usize, usize)> = Vec::new();
    for (r, (spool, appended_by)) in results.iter().enumerate() {
        let first = spool.columns.len() - appended_by.len();
        appended.extend(appended_by.iter().enumerate().map(|(j, &k)| (k, r, first + j)));
    }
    appended.sort_unstable();
    for (_, r, at) in appended {
        from_groups[r].push((columns.len(), at));
        columns.push(results[r].0.columns[at].clone());
    }
    let mut readers = Vec::with_capacity(results.len());
    for (spool, _) in &mut results {
        readers.push(spool.rows.reader()?);
    }
    let mut rows = MergedRows {
        input: table.rows.reader()?,
        input_cells: input,
        groups: readers.into_iter().zip(from_groups).collect(),
        row: vec![Cell::Missing; columns.len()],
    };
    crate::table::write::write_rows_xlsx_tracked(path, &columns, &mut rows, total as u64, style, control)?;
    Ok(report)
}

/// Steps that share columns, and the input columns they read.
struct Group {
    /// Indices into the plan, in order.
    steps: Vec<usize>,
    /// Indices into the sheet's columns, in sheet order.
    inputs: Vec<usize>,
}

/// Splits a plan into groups no step of which reads or writes another group's columns, in the order of
/// their first steps. A step touches its column and, when it backs it up, `{c}_original`; steps that
/// touch a common column (directly or through a chain of backups of backups) are in one group. The
/// pipeline has no other link between steps: a step's failure keeps its own column as it was.
fn step_groups(columns: &[String], steps: &[NormalizationStep], backup_original: bool) -> Vec<Group> {
    // (names touched, steps), merged whenever a step touches names of more than one.
    let mut sets: Vec<(Vec<String>, Vec<usize>)> = Vec::new();
    for (k, step) in steps.iter().enumerate() {
        let mut names = vec![step.column_name.clone()];
        if step.backup_original || backup_original {
            names.push(format!("{}_original", step.column_name));
        }
        let mut merged = (names, vec![k]);
        let mut i = 0;
        while i < sets.len() {
            if sets[i].0.iter().any(|n| merged.0.contains(n)) {
                let (names, indices) = sets.remove(i);
                merged.0.extend(names);
                merged.1.extend(indices);
            } else {
                i += 1;
            }
        }
        merged.1.sort_unstable();
        sets.push(merged);
    }
    // First steps are distinct: this is the order of the groups' first steps.
    sets.sort_by_key(|(_, indices)| indices[0]);
    sets.into_iter()
        .map(|(names, steps)| Group {
            steps,
            inputs: (0..columns.len()).filter(|&i| names.contains(&columns[i])).collect(),
        })
        .collect()
}

/// Moves a group's columns into a temporary spool next to `dir`'s, row by row (each row's cells leave
/// memory as they are written).
fn spool_columns(mut work: ColumnTable, dir: &Path, control: &StepControl) -> Result<SpooledTable, OpError> {
    let mut out = SpoolWriter::create_in(dir).map_err(TableError::from)?;
    let mut row = Vec::with_capacity(work.cells.len());
    for r in 0..work.height {
        row.extend(work.cells.iter_mut().map(|column| std::mem::replace(&mut column[r], Cell::Missing)));
        out.push(&row).map_err(TableError::from)?;
        row.clear();
        if (r + 1).is_multiple_of(CHUNK_ROWS) {
            control.check()?;
        }
    }
    drop(work.cells);
    Ok(out.finish(work.names).map_err(TableError::from)?)
}

/// The output rows of [`normalize_spooled_to_xlsx`], put together one at a time in one reused row from
/// the input and the groups' spools: (output column, column of the source) pairs for each.
struct MergedRows<S> {
    input: S,
    input_cells: Vec<(usize, usize)>,
    groups: Vec<(S, Vec<(usize, usize)>)>,
    row: Vec<Cell>,
}

impl<S: RowSource> RowSource for MergedRows<S> {
    fn next_row(&mut self) -> Result<Option<&[Cell]>, TableError> {
        let Some(input) = self.input.next_row()? else {
            return Ok(None);
        };
        for &(out, i) in &self.input_cells {
            assign(&mut self.row[out], input.get(i).unwrap_or(&Cell::Missing));
        }
        for (source, cells) in &mut self.groups {
            let Some(row) = source.next_row()? else {
                return Ok(None);
            };
            for &(out, i) in cells.iter() {
                assign(&mut self.row[out], row.get(i).unwrap_or(&Cell::Missing));
            }
        }
        Ok(Some(&self.row))
    }
}

/// Parameters (at any depth) whose text is longer than Excel's cell limit: (key, characters).
fn oversized_parameters(params: &Map<String, Value>) -> Vec<(String, usize)> {
    fn longest(value: &Value) -> usize {
        match value {
            Value::String(s) if exceeds_cell_limit(s) => s.chars().count(),
            Value::Array(items) => items.iter().map(longest).max().unwrap_or(0),
            Value::Object(map) => map.values().map(longest).max().unwrap_or(0),
            _ => 0,
        }
    }
    params
        .iter()
        .map(|(key, value)| (key.clone(), longest(value)))
        .filter(|(_, characters)| *characters > 0)
        .collect()
}

/// What a step would produce, judged before it runs for the types whose output can outgrow their input
/// (replacements, fill values, date formats): the column's total bytes and its longest value's bytes.
/// `None` for the others (their output is at most a few times the input, which the reader budgeted).
fn projected_output(kind: &str, params: &Map<String, Value>, cells: &[Cell]) -> Option<(u64, u64)> {
    let text_len = |c: &Cell| match c {
        Cell::Text(s) => s.len() as u64,
        Cell::Missing => 0,
        // Numbers and booleans print short.
        _ => 32,
    };
    let mut total = 0u64;
    let mut longest = 0u64;
    let mut add = |bytes: u64| {
        total = total.saturating_add(bytes);
        longest = longest.max(bytes);
    };
    match kind {
        "regex_replace" | "remove_special_chars" => {
            let default = if kind == "regex_replace" { "" } else { r"[^\p{L}\p{N}\s]" };
            let re = compile_python_regex(param_text(params, "pattern", default).ok()?).ok()?;
            let replacement = param_text(params, "replacement", "").ok()?;
            let repl = translate_replacement(replacement, &re).ok()?;
            // Each group reference expands to at most the match it is in.
            let references = repl.matches('$').count() as u64;
            for cell in cells {
                let Cell::Text(s) = cell else {
                    add(text_len(cell));
                    continue;
                };
                let mut bytes = s.len() as u64;
                for m in re.find_iter(s) {
                    let matched = m.len() as u64;
                    bytes = bytes.saturating_add(repl.len() as u64 + references * matched) - matched;
                    if bytes > max_cell_bytes() {
                        break;
                    }
                }
                add(bytes);
            }
        }
        "fill_null_values" => {
            let value = params.get("value").map_or(0, |v| text_len(&Cell::from_json(v)));
            // A mode/mean/median fill is a value of the column (or a number).
            let fill = value.max(cells.iter().map(text_len).max().unwrap_or(0));
            for cell in cells {
                add(if is_blank_for_fill(cell) { fill } else { text_len(cell) });
            }
        }
        "date_format" | "datetime_format" => {
            let format = param_text(params, "format", "").ok()?;
            // A two-character directive prints at most about 30 characters (`%c`).
            let per_cell = format.len() as u64 * 16 + 32;
            for cell in cells {
                add(if cell.is_missing() { 0 } else { per_cell });
            }
        }
        _ => return None,
    }
    Some((total, longest))
}

/// No value can have more characters than bytes / 4; a projection beyond this is surely too long.
fn max_cell_bytes() -> u64 {
    4 * EXCEL_MAX_CELL_CHARS as u64
}

/// Refuses a step before it runs when its projected output is over the budget (413) or has a value
/// that must be longer than Excel's limit (422).
/// `used` is what the step projected for earlier parts of the table (see [`OutputBudget`]).
fn check_projection(
    column: &str,
    kind: &str,
    params: &Map<String, Value>,
    cells: &[Cell],
    max_output_bytes: u64,
    used: &mut u64,
) -> Result<(), OpError> {
    let Some((total, longest)) = projected_output(kind, params, cells) else {
        return Ok(());
    };
    if longest > max_cell_bytes() {
        return Err(value_too_long(column, None, longest / 4));
    }
    *used = used.saturating_add(total);
    if *used > max_output_bytes {
        return Err(TableError::OutputTooLarge { max_mb: max_output_bytes / (1024 * 1024) }.into());
    }
    Ok(())
}

/// A produced value longer than Excel's limit fails the call (422), as writing it would.
fn check_cell_lengths(column: &str, cells: &[Cell], first_row: usize) -> Result<(), OpError> {
    for (row, cell) in cells.iter().enumerate() {
        if let Cell::Text(s) = cell {
            if exceeds_cell_limit(s) {
                return Err(value_too_long(column, Some(first_row + row), s.chars().count() as u64));
            }
        }
    }
    Ok(())
}

/// `row` is the 0-based data row when the value exists (else the refusal is a projection: at least
/// `characters`).
fn value_too_long(column: &str, row: Option<usize>, characters: u64) -> OpError {
    OpError::validation_with(
        format!(
            "Normalizing column '{column}' would produce a value longer than Excel's limit of \
             {EXCEL_MAX_CELL_CHARS} characters"
        ),
        json!({
            "column": column,
            "row": row.map(|r| r + 1),
            "characters": characters,
            "max_characters": EXCEL_MAX_CELL_CHARS,
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

fn param_text<'a>(p: &'a Map<String, Value>, key: &str, default: &'a str) -> Result<&'a str, String> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("parameter '{key}' must be a string")),
    }
}

fn param_int(p: &Map<String, Value>, key: &str, default: i64) -> Result<i64, String> {
    let err = || format!("parameter '{key}' must be an integer");
    match p.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 1e15).map(|f| f as i64))
            .ok_or_else(err),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| err()),
        Some(_) => Err(err()),
    }
}

fn param_float(p: &Map<String, Value>, key: &str, default: f64) -> Result<f64, String> {
    let err = || format!("parameter '{key}' must be a number");
    match p.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n.as_f64().ok_or_else(err),
        Some(Value::String(s)) => parse_number(s).ok_or_else(err),
        Some(_) => Err(err()),
    }
}

fn param_flag(p: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => Ok(crate::table::parse::is_truthy_flag(s)),
        Some(_) => Err(format!("parameter '{key}' must be a boolean")),
    }
}

fn param_true_values(p: &Map<String, Value>, default: &[&str]) -> Result<Vec<String>, String> {
    match p.get("true_values") {
        None | Some(Value::Null) => Ok(default.iter().map(|s| s.to_string()).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.to_lowercase()),
                Value::Bool(b) => Ok(if *b { "true" } else { "false" }.to_string()),
                Value::Number(n) => Ok(Cell::from_json(&Value::Number(n.clone())).as_text().to_lowercase()),
                _ => Err("parameter 'true_values' must be a list of strings".to_string()),
            })
            .collect(),
        Some(_) => Err("parameter 'true_values' must be a list of strings".to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Cell helpers (§7.2)
// ---------------------------------------------------------------------------------------------

/// N(c): §12.1 parse of the cell text; Missing, empty and unparsable → NaN.
fn number_of(cell: &Cell) -> f64 {
    match cell {
        Cell::Missing => f64::NAN,
        Cell::Int(i) => *i as f64,
        Cell::Float(f) => *f,
        other => parse_number(&other.as_text()).unwrap_or(f64::NAN),
    }
}

fn float_cell(f: f64) -> Cell {
    if f.is_nan() {
        Cell::Missing
    } else {
        Cell::Float(f)
    }
}

/// Text-producing transformation; Missing stays Missing (IMPROVE: no `nan` text).
fn map_text(cells: &[Cell], f: impl Fn(&str) -> String) -> Vec<Cell> {
    cells
        .iter()
        .map(|c| match c {
            Cell::Missing => Cell::Missing,
            other => Cell::Text(f(&other.as_text())),
        })
        .collect()
}

/// Python `str.isspace()` characters (Rust's set plus the ASCII separators U+001C–U+001F).
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn python_strip(s: &str) -> &str {
    s.trim_matches(is_python_space)
}

fn is_blank_for_fill(cell: &Cell) -> bool {
    match cell {
        Cell::Missing => true,
        Cell::Text(s) => python_strip(s).is_empty(),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Python title-casing
// ---------------------------------------------------------------------------------------------

fn is_titlecase_letter(c: char) -> bool {
    matches!(c as u32, 0x01C5 | 0x01C8 | 0x01CB | 0x01F2 | 0x1F88..=0x1F8F | 0x1F98..=0x1F9F | 0x1FA8..=0x1FAF | 0x1FBC | 0x1FCC | 0x1FFC)
}

/// Unicode "Cased": lower-case, upper-case or title-case letters.
fn is_cased(c: char) -> bool {
    c.is_lowercase() || c.is_uppercase() || is_titlecase_letter(c)
}

fn is_case_ignorable(c: char) -> bool {
    matches!(
        c,
        '\'' | '.'
            | ':'
            | '^'
            | '`'
            | '\u{00AD}'
            | '\u{00B7}'
            | '\u{2018}'
            | '\u{2019}'
            | '\u{2024}'
            | '\u{2027}'
    ) || matches!(c as u32, 0x02B0..=0x02FF | 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

/// Title-case mapping where it differs from upper-casing.
fn special_title(c: char) -> Option<&'static str> {
    Some(match c {
        'Ǆ' | 'ǅ' | 'ǆ' => "ǅ",
        'Ǉ' | 'ǈ' | 'ǉ' => "ǈ",
        'Ǌ' | 'ǋ' | 'ǌ' => "ǋ",
        'Ǳ' | 'ǲ' | 'ǳ' => "ǲ",
        'ß' => "Ss",
        'ﬀ' => "Ff",
        'ﬁ' => "Fi",
        'ﬂ' => "Fl",
        'ﬃ' => "Ffi",
        'ﬄ' => "Ffl",
        'ﬅ' | 'ﬆ' => "St",
        'և' => "Եւ",
        'ﬓ' => "Մն",
        'ﬔ' => "Մե",
        'ﬕ' => "Մի",
        'ﬖ' => "Վն",
        'ﬗ' => "Մխ",
        _ => return None,
    })
}

fn push_title(c: char, out: &mut String) {
    let u = c as u32;
    // Greek letters with iota subscript title-case to the prosgegrammeni forms.
    let greek = match u {
        0x1F80..=0x1F87 | 0x1F90..=0x1F97 | 0x1FA0..=0x1FA7 => char::from_u32(u + 8),
        0x1F88..=0x1F8F | 0x1F98..=0x1F9F | 0x1FA8..=0x1FAF | 0x1FBC | 0x1FCC | 0x1FFC => Some(c),
        0x1FB3 => Some('\u{1FBC}'),
        0x1FC3 => Some('\u{1FCC}'),
        0x1FF3 => Some('\u{1FFC}'),
        _ => None,
    };
    if let Some(g) = greek {
        out.push(g);
    } else if let Some(s) = special_title(c) {
        out.push_str(s);
    } else {
        out.extend(c.to_uppercase());
    }
}

/// Python `str.title()`.
pub fn python_title(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut previous_is_cased = false;
    for (i, &c) in chars.iter().enumerate() {
        if previous_is_cased {
            if c == 'Σ' {
                out.push(if final_sigma(&chars, i) { 'ς' } else { 'σ' });
            } else {
                out.extend(c.to_lowercase());
            }
        } else {
            push_title(c, &mut out);
        }
        previous_is_cased = is_cased(c);
    }
    out
}

fn final_sigma(chars: &[char], i: usize) -> bool {
    let before = chars[..i].iter().rev().find(|c| !is_case_ignorable(**c));
    if !before.is_some_and(|c| is_cased(*c)) {
        return false;
    }
    let after = chars[i + 1..].iter().find(|c| !is_case_ignorable(**c));
    !after.is_some_and(|c| is_cased(*c))
}

// ---------------------------------------------------------------------------------------------
// Regular expressions (Python syntax on the `regex` engine)
// ---------------------------------------------------------------------------------------------

fn compile_python_regex(pattern: &str) -> Result<Regex, String> {
    // `\Z` is Python's end of text; the engine spells it `\z`.
    let mut translated = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('Z') => translated.push_str("\\z"),
                Some(n) => {
                    translated.push('\\');
                    translated.push(n);
                }
                None => translated.push('\\'),
            }
        } else {
            translated.push(c);
        }
    }
    Regex::new(&translated).map_err(|e| {
        let text = e.to_string();
        if text.contains("look-around") {
            format!("look-ahead and look-behind are not supported in pattern '{pattern}'")
        } else if text.contains("backreferences") {
            format!("backreferences are not supported in pattern '{pattern}'")
        } else {
            format!("invalid regular expression '{pattern}': {}", text.lines().last().unwrap_or("").trim())
        }
    })
}

/// Translates a Python replacement (`\1`, `\g<1>`, `\g<name>`, `\n`, `\\`) for the engine.
fn translate_replacement(repl: &str, re: &Regex) -> Result<String, String> {
    let names: Vec<&str> = re.capture_names().flatten().collect();
    let groups = re.captures_len();
    let mut out = String::with_capacity(repl.len());
    let chars: Vec<char> = repl.chars().collect();
    let mut i = 0;
    let check_group = |g: &str| -> Result<String, String> {
        match g.parse::<usize>() {
            Ok(n) if n < groups => Ok(format!("${{{n}}}")),
            Ok(_) => Err(format!("invalid group reference {g}")),
            Err(_) if names.contains(&g) => Ok(format!("${{{g}}}")),
            Err(_) => Err(format!("unknown group name '{g}'")),
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '$' => out.push_str("$$"),
            '\\' => {
                let Some(&n) = chars.get(i + 1) else {
                    return Err("bad escape (end of pattern)".to_string());
                };
                i += 1;
                match n {
                    'g' => {
                        if chars.get(i + 1) != Some(&'<') {
                            return Err("missing < in group reference".to_string());
                        }
                        let close = chars[i + 2..]
                            .iter()
                            .position(|&c| c == '>')
                            .ok_or("missing >, unterminated name")?;
                        let name: String = chars[i + 2..i + 2 + close].iter().collect();
                        out.push_str(&check_group(&name)?);
                        i += 2 + close;
                    }
                    d if d.is_ascii_digit() => {
                        let mut digits = d.to_string();
                        if let Some(&d2) = chars.get(i + 1) {
                            if d2.is_ascii_digit() {
                                digits.push(d2);
                                i += 1;
                            }
                        }
                        out.push_str(&check_group(&digits)?);
                    }
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'f' => out.push('\u{0c}'),
                    'v' => out.push('\u{0b}'),
                    'a' => out.push('\u{07}'),
                    'b' => out.push('\u{08}'),
                    '\\' => out.push('\\'),
                    l if l.is_ascii_alphabetic() => return Err(format!("bad escape \\{l}")),
                    other => {
                        out.push('\\');
                        if other == '$' {
                            out.push_str("$$");
                        } else {
                            out.push(other);
                        }
                    }
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    Ok(out)
}

fn regex_replace(cells: &[Cell], pattern: &str, replacement: &str) -> Result<Vec<Cell>, String> {
    let re = compile_python_regex(pattern)?;
    let repl = translate_replacement(replacement, &re)?;
    Ok(map_text(cells, |s| re.replace_all(s, repl.as_str()).into_owned()))
}

fn non_digit_regex() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\D+").ok()).as_ref()
}

// ---------------------------------------------------------------------------------------------
// The transformations
// ---------------------------------------------------------------------------------------------

fn phone_format(text: &str) -> String {
    let digits: String = match non_digit_regex() {
        Some(re) => re.replace_all(text, "").into_owned(),
        None => text.chars().filter(char::is_ascii_digit).collect(),
    };
    let d: Vec<char> = digits.chars().collect();
    let part = |a: usize, b: usize| d[a..b].iter().collect::<String>();
    match d.len() {
        10 => format!("({}) {}-{}", part(0, 3), part(3, 6), part(6, 10)),
        11 if d[0] == '1' => format!("+1 ({}) {}-{}", part(1, 4), part(4, 7), part(7, 11)),
        _ => text.to_string(),
    }
}

/// numpy `round`: scale, round half to even on the binary value, scale back.
pub fn round_half_even(x: f64, decimals: i64) -> f64 {
    let Ok(d) = i32::try_from(decimals.clamp(-400, 400)) else {
        return x;
    };
    if d >= 0 {
        let scale = 10f64.powi(d);
        let y = (x * scale).round_ties_even() / scale;
        if y.is_finite() || !x.is_finite() {
            y
        } else {
            x
        }
    } else {
        let scale = 10f64.powi(-d);
        (x / scale).round_ties_even() * scale
    }
}

fn currency_value(text: &str, separator: char, parentheses_negative: bool) -> f64 {
    let kept: String = text
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '-' || *c == separator || (separator == '.' && *c == '.'))
        .map(|c| if c == separator { '.' } else { c })
        .collect();
    let value = parse_number(&kept).unwrap_or(f64::NAN);
    let t = text.trim();
    if parentheses_negative && t.starts_with('(') && t.ends_with(')') {
        -value.abs()
    } else {
        value
    }
}

/// numpy's linear-interpolation percentile of sorted values (`p` in 0..=1).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let (a, b, t) = (sorted[lo], sorted[hi], h - lo as f64);
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

fn sorted_numbers(cells: &[Cell]) -> Vec<f64> {
    let mut v: Vec<f64> = cells.iter().map(number_of).filter(|f| !f.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Sort order for the `mode` tie-break: numbers (by value) before booleans before text.
fn mode_rank(cell: &Cell) -> (u8, f64, String) {
    match cell {
        Cell::Int(i) => (0, *i as f64, String::new()),
        Cell::Float(f) => (0, *f, String::new()),
        Cell::Bool(b) => (1, f64::from(u8::from(*b)), String::new()),
        other => (2, 0.0, other.as_text().into_owned()),
    }
}

fn mode_of(cells: &[Cell]) -> Option<Cell> {
    let mut counts: HashMap<UniqueKey, (usize, &Cell)> = HashMap::new();
    for c in cells.iter().filter(|c| !is_blank_for_fill(c)) {
        if let Some(k) = unique_key(c) {
            counts.entry(k).or_insert((0, c)).0 += 1;
        }
    }
    let best = counts.values().map(|(n, _)| *n).max()?;
    counts
        .values()
        .filter(|(n, _)| *n == best)
        .map(|(_, c)| *c)
        .min_by(|a, b| {
            let (ra, rb) = (mode_rank(a), mode_rank(b));
            ra.0.cmp(&rb.0).then(ra.1.total_cmp(&rb.1)).then(ra.2.cmp(&rb.2))
        })
        .cloned()
}

fn fill_null_values(cells: &[Cell], params: &Map<String, Value>) -> Result<Vec<Cell>, String> {
    let value = match params.get("value") {
        None => Cell::text(""),
        Some(v) => Cell::from_json(v),
    };
    let method = param_text(params, "method", "value")?;
    let numbers = || sorted_numbers(cells);
    let fill = match method {
        "mode" => mode_of(cells).unwrap_or(value),
        "mean" => {
            let v = numbers();
            if v.is_empty() {
                value
            } else {
                float_cell(v.iter().sum::<f64>() / v.len() as f64)
            }
        }
        "median" => {
            let v = numbers();
            match v.len() {
                0 => value,
                n if n % 2 == 1 => Cell::Float(v[n / 2]),
                n => Cell::Float((v[n / 2 - 1] + v[n / 2]) / 2.0),
            }
        }
        _ => value,
    };
    Ok(cells.iter().map(|c| if is_blank_for_fill(c) { fill.clone() } else { c.clone() }).collect())
}

fn outlier_removal(cells: &[Cell], multiplier: f64) -> Vec<Cell> {
    let sorted = sorted_numbers(cells);
    if sorted.is_empty() {
        return cells.to_vec();
    }
    let (q1, q3) = (percentile(&sorted, 0.25), percentile(&sorted, 0.75));
    let iqr = q3 - q1;
    let (low, high) = (q1 - multiplier * iqr, q3 + multiplier * iqr);
    cells
        .iter()
        .map(|c| {
            let x = number_of(c);
            if !x.is_nan() && (x < low || x > high) {
                Cell::Missing
            } else {
                c.clone()
            }
        })
        .collect()
}

/// Applies one implemented type to a column. `Err` is the step error detail.
fn apply(
    kind: &str,
    params: &Map<String, Value>,
    cells: &[Cell],
    dtype: Dtype,
) -> Result<(Vec<Cell>, Dtype), String> {
    let text = |v: Vec<Cell>| Ok((v, Dtype::Object));
    let floats = |v: Vec<f64>| Ok((v.into_iter().map(float_cell).collect(), Dtype::Float64));
    let numbers = || cells.iter().map(number_of).collect::<Vec<f64>>();
    match kind {
        "uppercase" => text(map_text(cells, str::to_uppercase)),
        "lowercase" => text(map_text(cells, str::to_lowercase)),
        "title_case" => text(map_text(cells, python_title)),
        "trim_whitespace" => text(map_text(cells, |s| python_strip(s).to_string())),
        "remove_special_chars" => {
            let pattern = param_text(params, "pattern", r"[^\p{L}\p{N}\s]")?;
            let replacement = param_text(params, "replacement", "")?;
            text(regex_replace(cells, pattern, replacement)?)
        }
        "phone_format" => text(
            cells
                .iter()
                .map(|c| match c {
                    Cell::Missing => Cell::text(""),
                    other => Cell::Text(phone_format(&other.as_text())),
                })
                .collect(),
        ),
        "email_format" => text(map_text(cells, |s| python_strip(&s.to_lowercase()).to_string())),
        "name_format" => text(map_text(cells, |s| python_strip(&python_title(s)).to_string())),
        "min_max_scale" => {
            let xs = numbers();
            let valid = xs.iter().copied().filter(|x| !x.is_nan());
            let min = valid.clone().fold(f64::INFINITY, f64::min);
            let max = valid.fold(f64::NEG_INFINITY, f64::max);
            floats(xs.into_iter().map(|x| if max != min { (x - min) / (max - min) } else { x }).collect())
        }
        "z_score" => {
            let xs = numbers();
            let valid: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
            let n = valid.len() as f64;
            let mean = valid.iter().sum::<f64>() / n;
            let std = if valid.len() > 1 {
                (valid.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
            } else {
                f64::NAN
            };
            // An undefined (NaN) std counts as non-zero, as in the reference.
            floats(xs.into_iter().map(|x| if std != 0.0 { (x - mean) / std } else { x - mean }).collect())
        }
        "round_decimal" => {
            let decimals = param_int(params, "decimals", 2)?;
            floats(numbers().into_iter().map(|x| round_half_even(x, decimals)).collect())
        }
        "integer_convert" => Ok((
            numbers()
                .into_iter()
                .map(|x| {
                    let t = x.trunc();
                    // NaN, infinities and out-of-range values become 0 (IMPROVE).
                    Cell::Int(
                        if t.is_finite() && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&t)
                        {
                            t as i64
                        } else {
                            0
                        },
                    )
                })
                .collect(),
            Dtype::Int64,
        )),
        "currency_format" => {
            let separator = match param_text(params, "decimal_separator", ".")? {
                "." => '.',
                "," => ',',
                other => {
                    return Err(format!("parameter 'decimal_separator' must be '.' or ',' (got '{other}')"))
                }
            };
            let negative = param_flag(params, "parentheses_negative")?;
            floats(
                cells
                    .iter()
                    .map(|c| match c {
                        Cell::Missing => f64::NAN,
                        other => currency_value(&other.as_text(), separator, negative),
                    })
                    .collect(),
            )
        }
        "date_format" | "datetime_format" => {
            let default = if kind == "date_format" { "%Y-%m-%d" } else { "%Y-%m-%d %H:%M:%S" };
            let format = param_text(params, "format", default)?;
            text(
                cells
                    .iter()
                    .map(|c| match c {
                        Cell::Missing => Cell::Missing,
                        other => parse_datetime(&other.as_text())
                            .map_or(Cell::Missing, |dt| Cell::Text(python_strftime(&dt, format))),
                    })
                    .collect(),
            )
        }
        "boolean_convert" | "yes_no_convert" => {
            let defaults: &[&str] = if kind == "boolean_convert" {
                &["true", "1", "yes", "y", "on"]
            } else {
                &["true", "1", "yes", "y"]
            };
            let truthy = param_true_values(params, defaults)?;
            let is_true = |c: &Cell| truthy.iter().any(|t| *t == c.as_text().to_lowercase());
            if kind == "boolean_convert" {
                Ok((cells.iter().map(|c| Cell::Bool(!c.is_missing() && is_true(c))).collect(), Dtype::Bool))
            } else {
                text(
                    cells
                        .iter()
                        .map(|c| match c {
                            Cell::Missing => Cell::Missing,
                            other => Cell::text(if is_true(other) { "Yes" } else { "No" }),
                        })
                        .collect(),
                )
            }
        }
        "regex_replace" => {
            let pattern = param_text(params, "pattern", "")?;
            let replacement = param_text(params, "replacement", "")?;
            text(regex_replace(cells, pattern, replacement)?)
        }
        "fill_null_values" => {
            let filled = fill_null_values(cells, params)?;
            let d = Dtype::after_in_place(dtype, &filled);
            Ok((filled, d))
        }
        "outlier_removal" => {
            let multiplier = param_float(params, "multiplier", 1.5)?;
            let out = outlier_removal(cells, multiplier);
            let d = Dtype::after_in_place(dtype, &out);
            Ok((out, d))
        }
        other => Err(format!("Unsupported normalization type: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Cell {
        Cell::text(s)
    }

    fn texts(values: &[&str]) -> Vec<Cell> {
        values.iter().map(|s| t(s)).collect()
    }

    fn params(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// Applies one type to a text column.
    fn run(kind: &str, p: Value, cells: Vec<Cell>) -> Vec<Cell> {
        apply(kind, &params(p), &cells, Dtype::Object).unwrap().0
    }

    fn one_column(values: &[&str]) -> Table {
        Table { columns: vec!["c".into()], rows: values.iter().map(|s| vec![t(s)]).collect() }
    }

    fn steps(v: Value) -> Vec<NormalizationStep> {
        parse_steps(&v).unwrap()
    }

    #[test]
    fn bad_steps_are_refused_together_before_anything_runs() {
        let table = one_column(&["a"]);
        let s = steps(json!([
            {"column_name": "c", "normalization_type": "UPPERCASE", "backup_original": true},
            {"column_name": "c_original", "normalization_type": "bogus"},
            {"column_name": "ghost", "normalization_type": "date_extract_year"},
            {"column_name": "c", "normalization_type": "regex_replace", "parameters": {"pattern": "["}},
            {"column_name": "c", "normalization_type": "round_decimal", "parameters": {"decimals": "x"}},
            {"column_name": "c", "normalization_type": "fill_null_values", "parameters": {"value": "n/a"}},
        ]));
        let err = normalize_checked(table.clone(), &s, false, true, u64::MAX).unwrap_err();
        let OpError::Validation { message, details: Some(details) } = err else { panic!("{err}") };
        assert_eq!(message, INVALID_CONFIGURATION);
        let errors = details["errors"].as_array().unwrap();
        let listed: Vec<(u64, &str)> =
            errors.iter().map(|e| (e["step"].as_u64().unwrap(), e["field"].as_str().unwrap())).collect();
        assert_eq!(
            listed,
            [
                (1, "normalization_type"),
                (2, "normalization_type"),
                (2, "column_name"),
                (3, "parameters"),
                (4, "parameters")
            ]
        );
        assert_eq!(errors[0]["error"], "Invalid normalization type: 'bogus'");
        assert_eq!(errors[0]["valid"].as_array().map(Vec::len), Some(20));
        assert!(errors[1]["error"].as_str().unwrap().starts_with("Unsupported normalization type"));
        // The backup made by step 0 is a column from then on.
        assert_eq!(errors[2]["valid"], json!(["c", "c_original"]));
        assert_eq!(errors[2]["error"], "Column 'ghost' not found");
        assert!(errors[3]["error"].as_str().unwrap().starts_with("invalid regular expression"));
        assert_eq!(errors[4]["error"], "parameter 'decimals' must be an integer");

        // The valid steps alone run; a backup column before its step is still unknown.
        let out = normalize_checked(table.clone(), &s[..1], false, true, u64::MAX).unwrap();
        assert_eq!(out.table.rows[0], vec![t("A"), t("a")]);
        let early = steps(json!([{"column_name": "c_original", "normalization_type": "uppercase"}]));
        assert!(validate_steps(&table.columns, &early, true).is_err());
        let late = steps(json!([
            {"column_name": "c", "normalization_type": "uppercase"},
            {"column_name": "c_original", "normalization_type": "lowercase"},
        ]));
        assert!(validate_steps(&table.columns, &late, true).is_ok(), "the global backup creates it");
    }

    #[test]
    fn types_list_has_the_20_contract_keys() {
        let types = normalization_types();
        assert_eq!(types.len(), 20);
        for key in [
            "uppercase",
            "lowercase",
            "trim_whitespace",
            "outlier_removal",
            "fill_null_values",
            "regex_replace",
        ] {
            assert!(types.contains_key(key), "{key}");
        }
        for key in UNIMPLEMENTED {
            assert!(!types.contains_key(key), "{key}");
        }
    }

    #[test]
    fn text_types() {
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            ("uppercase", json!({}), "  john doe  ", "  JOHN DOE  "),
            ("uppercase", json!({}), "straße", "STRASSE"),
            ("lowercase", json!({}), "ΟΔΟΣ", "οδος"),
            ("lowercase", json!({}), "JOHN@TEST.COM", "john@test.com"),
            ("title_case", json!({}), "o'neil-smith jr", "O'Neil-Smith Jr"),
            ("title_case", json!({}), "it's", "It'S"),
            ("title_case", json!({}), "3rd x2y", "3Rd X2Y"),
            ("title_case", json!({}), "ǆemal", "ǅemal"),
            ("title_case", json!({}), "ÉCOLE ünï 3rd", "École Ünï 3Rd"),
            ("title_case", json!({}), "ΟΔΟΣ ΣΑΣ", "Οδος Σας"),
            ("title_case", json!({}), "ßa ﬁne", "Ssa Fine"),
            ("trim_whitespace", json!({}), "  john doe  ", "john doe"),
            ("trim_whitespace", json!({}), "\u{a0}\u{3000}x\u{1f}\t", "x"),
            ("trim_whitespace", json!({}), "\u{200b}x", "\u{200b}x"),
            ("email_format", json!({}), "  JOHN@TEST.COM ", "john@test.com"),
            ("name_format", json!({}), "  mary-jane o'neil ", "Mary-Jane O'Neil"),
            ("remove_special_chars", json!({}), "o'neil-smith jr", "oneilsmith jr"),
            ("remove_special_chars", json!({}), "ÉCOLE ünï 3rd!", "ÉCOLE ünï 3rd"),
            ("remove_special_chars", json!({"pattern": "[^a-zA-Z0-9\\s]"}), "ÉCOLE ünï 3rd", "COLE n 3rd"),
            ("remove_special_chars", json!({"pattern": "\\d", "replacement": "#"}), "a1b22", "a#b##"),
            ("phone_format", json!({}), "0912 345 678", "(091) 234-5678"),
            ("phone_format", json!({}), "1-800-555-1234", "+1 (800) 555-1234"),
            ("phone_format", json!({}), "+84 912 345 678", "+84 912 345 678"),
            ("phone_format", json!({}), "(555) 123-4567", "(555) 123-4567"),
            ("phone_format", json!({}), "12345", "12345"),
            (
                "regex_replace",
                json!({"pattern": "(\\w+)@(\\w+)", "replacement": "\\2 at \\1"}),
                "me@host x",
                "host at me x",
            ),
            (
                "regex_replace",
                json!({"pattern": "(?P<y>\\d{4})-(?P<m>\\d\\d)", "replacement": "\\g<m>/\\g<y>"}),
                "2024-05",
                "05/2024",
            ),
            ("regex_replace", json!({"pattern": "a", "replacement": "$1\\\\"}), "cat", "c$1\\t"),
            ("regex_replace", json!({"pattern": "b+?", "replacement": "-"}), "abbc", "a--c"),
            ("regex_replace", json!({}), "abc", "abc"),
            ("regex_replace", json!({"pattern": "", "replacement": "-"}), "ab", "-a-b-"),
            ("regex_replace", json!({"pattern": "x\\Z", "replacement": "!"}), "xx", "x!"),
            ("yes_no_convert", json!({}), "on", "No"),
            ("yes_no_convert", json!({}), "Y", "Yes"),
            ("yes_no_convert", json!({"true_values": ["oui"]}), "OUI", "Yes"),
            ("date_format", json!({}), "2024-01-15 10:30:00", "2024-01-15"),
            ("date_format", json!({"format": "%d/%m/%Y"}), "2024-01-15", "15/01/2024"),
            ("datetime_format", json!({}), "2024-02-01 08:05:00", "2024-02-01 08:05:00"),
            ("datetime_format", json!({}), "2024-01-15", "2024-01-15 00:00:00"),
        ];
        for (kind, p, input, want) in cases {
            assert_eq!(run(kind, p.clone(), texts(&[input])), texts(&[want]), "{kind} {p} {input:?}");
        }
    }

    #[test]
    fn missing_cells_in_text_types() {
        for kind in
            ["uppercase", "title_case", "trim_whitespace", "regex_replace", "yes_no_convert", "date_format"]
        {
            assert_eq!(run(kind, json!({}), vec![Cell::Missing]), vec![Cell::Missing], "{kind}");
        }
        assert_eq!(run("phone_format", json!({}), vec![Cell::Missing]), texts(&[""]));
        assert_eq!(run("date_format", json!({}), texts(&["yesterday"])), vec![Cell::Missing]);
        // Per-value date parsing (IMPROVE): mixed formats all survive.
        assert_eq!(
            run("date_format", json!({}), texts(&["2024-01-15", "2024-02-01 08:05:00"])),
            texts(&["2024-01-15", "2024-02-01"])
        );
    }

    #[test]
    fn numeric_types() {
        let f = |x: f64| Cell::Float(x);
        let m = Cell::Missing;
        let cases: Vec<(&str, Value, Vec<&str>, Vec<Cell>)> = vec![
            (
                "min_max_scale",
                json!({}),
                vec!["10", "20", "30", "x"],
                vec![f(0.0), f(0.5), f(1.0), m.clone()],
            ),
            ("min_max_scale", json!({}), vec!["5", "5"], vec![f(5.0), f(5.0)]),
            ("min_max_scale", json!({}), vec!["", "a"], vec![m.clone(), m.clone()]),
            ("z_score", json!({}), vec!["1", "2", "3"], vec![f(-1.0), f(0.0), f(1.0)]),
            ("z_score", json!({}), vec!["4", "4"], vec![f(0.0), f(0.0)]),
            ("z_score", json!({}), vec!["4", ""], vec![m.clone(), m.clone()]),
            (
                "round_decimal",
                json!({}),
                vec!["2.675", "0.125", "0.375", "abc"],
                vec![f(2.68), f(0.12), f(0.38), m.clone()],
            ),
            ("round_decimal", json!({"decimals": 1}), vec!["2.25", "2.35"], vec![f(2.2), f(2.4)]),
            ("round_decimal", json!({"decimals": 3}), vec!["1.23456"], vec![f(1.235)]),
            ("round_decimal", json!({"decimals": -2}), vec!["1250", "1351"], vec![f(1200.0), f(1400.0)]),
            ("round_decimal", json!({"decimals": "0"}), vec!["2.5"], vec![f(2.0)]),
            (
                "integer_convert",
                json!({}),
                vec!["3.14159", "-2.5", "", "abc", "10", "1e3", ".5", "1,000", "inf", "1e30"],
                vec![
                    Cell::Int(3),
                    Cell::Int(-2),
                    Cell::Int(0),
                    Cell::Int(0),
                    Cell::Int(10),
                    Cell::Int(1000),
                    Cell::Int(0),
                    Cell::Int(0),
                    Cell::Int(0),
                    Cell::Int(0),
                ],
            ),
            (
                "currency_format",
                json!({}),
                vec!["$1,234.56", "(100)", "€1.234,56", "1 000", "5-", ""],
                vec![f(1234.56), f(100.0), f(1.23456), f(1000.0), m.clone(), m.clone()],
            ),
            (
                "currency_format",
                json!({"decimal_separator": ",", "parentheses_negative": true}),
                vec!["€1.234,56", "(100)"],
                vec![f(1234.56), f(-100.0)],
            ),
        ];
        for (kind, p, input, want) in cases {
            let got = run(kind, p.clone(), texts(&input));
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                match (g, w) {
                    (Cell::Float(a), Cell::Float(b)) => {
                        assert!((a - b).abs() < 1e-12, "{kind} {input:?}: {a} vs {b}")
                    }
                    _ => assert_eq!(g, w, "{kind} {p} {input:?}"),
                }
            }
        }
    }

    #[test]
    fn boolean_convert() {
        let got = run("boolean_convert", json!({}), texts(&["Yes", "no", "", "TRUE", "1", "on", "y"]));
        let want: Vec<Cell> =
            [true, false, false, true, true, true, true].iter().map(|b| Cell::Bool(*b)).collect();
        assert_eq!(got, want);
        assert_eq!(run("boolean_convert", json!({}), vec![Cell::Missing]), vec![Cell::Bool(false)]);
        assert_eq!(
            run("boolean_convert", json!({"true_values": ["Sí"]}), texts(&["sí", "yes"])),
            vec![Cell::Bool(true), Cell::Bool(false)]
        );
    }

    #[test]
    fn fill_null_values_methods() {
        let col = vec![t("a"), Cell::Missing, t(""), t("  "), t("b"), t("b"), t("a")];
        let cases = [
            (json!({"value": "N/A"}), vec!["a", "N/A", "N/A", "N/A", "b", "b", "a"]),
            (json!({}), vec!["a", "", "", "", "b", "b", "a"]),
            (json!({"method": "mode"}), vec!["a", "a", "a", "a", "b", "b", "a"]),
            (json!({"method": "mean", "value": "x"}), vec!["a", "x", "x", "x", "b", "b", "a"]),
            (json!({"method": "other", "value": "z"}), vec!["a", "z", "z", "z", "b", "b", "a"]),
        ];
        for (p, want) in cases {
            assert_eq!(run("fill_null_values", p.clone(), col.clone()), texts(&want), "{p}");
        }
        let nums = vec![t("1"), t(""), t("2"), Cell::Missing, t("6"), t("n/a")];
        assert_eq!(
            run("fill_null_values", json!({"method": "mean"}), nums.clone()),
            vec![t("1"), Cell::Float(3.0), t("2"), Cell::Float(3.0), t("6"), t("n/a")]
        );
        assert_eq!(run("fill_null_values", json!({"method": "median"}), nums)[1], Cell::Float(2.0));
        assert_eq!(run("fill_null_values", json!({"value": 0}), vec![Cell::Missing]), vec![Cell::Int(0)]);
    }

    #[test]
    fn outlier_removal_blanks_values_outside_the_fence() {
        let got =
            run("outlier_removal", json!({}), texts(&["10", "12", "11", "13", "1000", "abc", "", "-500"]));
        assert_eq!(
            got,
            vec![t("10"), t("12"), t("11"), t("13"), Cell::Missing, t("abc"), t(""), Cell::Missing]
        );
        assert_eq!(run("outlier_removal", json!({}), texts(&["a", "b"])), texts(&["a", "b"]));
        let wide = run("outlier_removal", json!({"multiplier": 1000}), texts(&["10", "12", "1000"]));
        assert_eq!(wide, texts(&["10", "12", "1000"]));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.25), 1.75);
    }

    #[test]
    fn invalid_parameters_are_step_errors() {
        let cases = [
            ("regex_replace", json!({"pattern": "("})),
            ("regex_replace", json!({"pattern": "(?<=a)b"})),
            ("regex_replace", json!({"pattern": "a", "replacement": "\\2"})),
            ("regex_replace", json!({"pattern": "a", "replacement": "\\q"})),
            ("round_decimal", json!({"decimals": "two"})),
            ("boolean_convert", json!({"true_values": "yes"})),
            ("date_format", json!({"format": 5})),
            ("outlier_removal", json!({"multiplier": []})),
        ];
        for (kind, p) in cases {
            assert!(apply(kind, &params(p.clone()), &texts(&["a"]), Dtype::Object).is_err(), "{kind} {p}");
        }
    }

    #[test]
    fn pipeline_report_and_backups() {
        let table = Table {
            columns: vec!["name".into(), "email".into(), "amount".into()],
            rows: vec![
                vec![t("  john doe  "), t("JOHN@TEST.COM"), t("10")],
                vec![t("jane"), t("Jane@x.org"), t("")],
            ],
        };
        let s = steps(json!([
            {"column_name": "name", "normalization_type": "trim_whitespace"},
            {"column_name": "name", "normalization_type": "TITLE_CASE", "backup_original": true},
            {"column_name": "email", "normalization_type": "lowercase", "parameters": {}},
            {"column_name": "ghost", "normalization_type": "uppercase"},
            {"column_name": "amount", "normalization_type": "round_decimal", "parameters": {"decimals": 3}},
            {"column_name": "amount", "normalization_type": "integer_convert"},
        ]));
        let out = normalize(&table, &s, false).unwrap();
        assert_eq!(out.table.columns, vec!["name", "email", "amount", "name_original"]);
        assert_eq!(
            out.table.rows[0],
            vec![t("John Doe"), t("john@test.com"), Cell::Int(10), t("  john doe  ")]
        );
        assert_eq!(out.table.rows[1], vec![t("Jane"), t("jane@x.org"), Cell::Int(0), t("jane")]);
        let r = &out.report;
        assert_eq!(r["success"], json!(true));
        assert_eq!(r["total_rows"], json!(2));
        assert_eq!(r["columns_processed"].as_array().map(Vec::len), Some(5));
        assert_eq!(r["columns_processed"][1]["normalization_type"], json!("TITLE_CASE"));
        assert_eq!(r["columns_processed"][3]["parameters"], json!({"decimals": 3}));
        assert_eq!(
            r["columns_processed"][3]["after_stats"],
            json!({"total_values": 2, "null_count": 1, "unique_count": 1, "data_type": "float64"})
        );
        assert_eq!(r["columns_processed"][4]["before_stats"]["data_type"], json!("float64"));
        assert_eq!(
            r["columns_processed"][4]["after_stats"],
            json!({"total_values": 2, "null_count": 0, "unique_count": 2, "data_type": "int64"})
        );
        assert_eq!(
            r["columns_processed"][0]["before_stats"],
            json!({"total_values": 2, "null_count": 0, "unique_count": 2, "data_type": "object"})
        );
        assert_eq!(r["warnings"][0]["message"], json!("Column 'ghost' not found"));
        assert!(r["warnings"][0]["timestamp"].as_str().is_some_and(|s| s.ends_with("+00:00")));
        assert_eq!(
            r["requested_normalizations"][0],
            json!({"column": "name", "type": "trim_whitespace", "parameters": {}})
        );
        assert_eq!(r["requested_normalizations"][4]["parameters"], json!({"decimals": 3}));
        assert_eq!(r["errors"], json!([]));
    }

    #[test]
    fn global_backup_and_errors_do_not_stop_the_pipeline() {
        let table = one_column(&["a", "b"]);
        let s = steps(json!([
            {"column_name": "c", "normalization_type": "uppercase"},
            {"column_name": "c", "normalization_type": "bogus"},
            {"column_name": "c", "normalization_type": "date_extract_year"},
            {"column_name": "c", "normalization_type": "regex_replace", "parameters": {"pattern": "["}},
            {"column_name": "c", "normalization_type": "lowercase"},
            {"column_name": "c", "normalization_type": "", "parameters": {}},
        ]));
        let out = normalize(&table, &s, true).unwrap();
        assert_eq!(out.table.columns, vec!["c", "c_original"]);
        assert_eq!(out.table.rows[0], vec![t("a"), t("a")]);
        let r = &out.report;
        assert_eq!(r["success"], json!(false));
        let errors: Vec<&str> =
            r["errors"].as_array().unwrap().iter().filter_map(|e| e["message"].as_str()).collect();
        assert_eq!(errors.len(), 3 + 1);
        assert!(errors[0].starts_with(
            "Error normalizing 'c': Invalid normalization type: 'bogus'. Valid types are: ['uppercase', "
        ));
        assert!(errors[0].contains("'remove_duplicates']"));
        assert!(errors[1]
            .starts_with("Error normalizing 'c': Unsupported normalization type: date_extract_year."));
        assert!(errors[2].starts_with("Error normalizing 'c': invalid regular expression"));
        assert!(errors[3].starts_with("Error normalizing 'c': Invalid normalization type: ''."));
        assert_eq!(r["columns_processed"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn backup_overwrites_existing_column_in_place() {
        let table = Table {
            columns: vec!["c".into(), "c_original".into(), "z".into()],
            rows: vec![vec![t("x"), t("old"), t("z")]],
        };
        let s =
            steps(json!([{"column_name": "c", "normalization_type": "uppercase", "backup_original": true}]));
        let out = normalize(&table, &s, false).unwrap();
        assert_eq!(out.table.columns, vec!["c", "c_original", "z"]);
        assert_eq!(out.table.rows[0], vec![t("X"), t("x"), t("z")]);
    }

    #[test]
    fn backups_always_copy_the_uploaded_column_and_failed_steps_keep_the_column() {
        let table = Table {
            columns: vec!["c".into(), "c_original".into()],
            rows: vec![vec![t(" x "), t("old")], vec![t("y"), Cell::Missing]],
        };
        let s = steps(json!([
            {"column_name": "c", "normalization_type": "uppercase", "backup_original": true},
            {"column_name": "c", "normalization_type": "trim_whitespace", "backup_original": true},
            {"column_name": "c_original", "normalization_type": "uppercase", "backup_original": true},
            {"column_name": "c", "normalization_type": "regex_replace", "parameters": {"pattern": "("}},
        ]));
        let out = normalize_owned(table.clone(), &s, false, true, u64::MAX).unwrap();
        assert_eq!(out.table.columns, vec!["c", "c_original", "c_original_original"]);
        // `c_original` was overwritten by the backup of `c`, then upper-cased; its own backup holds the upload.
        assert_eq!(out.table.rows[0], vec![t("X"), t(" X "), t("old")]);
        assert_eq!(out.table.rows[1], vec![t("Y"), t("Y"), Cell::Missing]);
        assert_eq!(out.report["errors"].as_array().unwrap().len(), 1);
        assert_eq!(out.report["total_rows"], 2);
        // The borrowed and the owned entry points agree.
        assert_eq!(normalize(&table, &s, false).unwrap().table, out.table);
        // Without stats: the same table and report, the stats left null.
        let lean = normalize_owned(table.clone(), &s, false, false, u64::MAX).unwrap();
        assert_eq!(lean.table, out.table);
        let strip = |mut report: Value| {
            for entry in report["columns_processed"].as_array_mut().unwrap() {
                entry["before_stats"] = Value::Null;
                entry["after_stats"] = Value::Null;
            }
            for key in ["started_at", "completed_at"] {
                report[key] = Value::Null;
            }
            for entry in report["errors"].as_array_mut().unwrap() {
                entry["timestamp"] = Value::Null;
            }
            report
        };
        assert_eq!(strip(lean.report), strip(out.report));
    }

    #[test]
    fn steps_split_into_groups_by_the_columns_they_touch() {
        let columns: Vec<String> = ["a", "b", "a_original", "c", "d"].iter().map(|c| c.to_string()).collect();
        let plan = steps(json!([
            {"column_name": "b", "normalization_type": "z_score"},
            {"column_name": "c", "normalization_type": "lowercase", "backup_original": true},
            {"column_name": "a_original", "normalization_type": "z_score"},
            {"column_name": "b", "normalization_type": "uppercase"},
            // Its backup `a_original` is the column step 2 transforms: one group.
            {"column_name": "a", "normalization_type": "min_max_scale", "backup_original": true},
            // A backup of the backup step 1 creates: still `c`'s group.
            {"column_name": "c_original", "normalization_type": "uppercase", "backup_original": true}
        ]));
        let shape = |g: Vec<Group>| g.into_iter().map(|g| (g.steps, g.inputs)).collect::<Vec<_>>();
        assert_eq!(
            shape(step_groups(&columns, &plan, false)),
            vec![(vec![0, 3], vec![1]), (vec![1, 5], vec![3]), (vec![2, 4], vec![0, 2])]
        );
        // A global backup links every column to its `_original`; `d` is touched by no step.
        assert_eq!(
            shape(step_groups(&columns, &plan[..3], true)),
            vec![(vec![0], vec![1]), (vec![1], vec![3]), (vec![2], vec![2])]
        );
    }

    #[test]
    fn step_shapes() {
        assert_eq!(
            parse_steps(&json!([])).unwrap_err().to_string(),
            "No normalization configurations provided"
        );
        for bad in [
            json!({"column_name": "a"}),
            json!(["x"]),
            json!([{"column_name": 5}]),
            json!([{"column_name": "a", "parameters": []}]),
            json!([{"column_name": "a", "backup_original": "maybe"}]),
        ] {
            assert_eq!(parse_steps(&bad).unwrap_err().status_code(), 422, "{bad}");
        }
        let s = parse_steps(&json!([{"column_name": "a", "normalization_type": "uppercase"}])).unwrap();
        assert_eq!((s[0].column_name.as_str(), s[0].parameters.len(), s[0].backup_original), ("a", 0, false));
    }

    #[test]
    fn stats_count_missing_and_unique() {
        let cells = vec![t("a"), t("a"), t(""), Cell::Missing, Cell::Float(1.0), Cell::Int(1)];
        assert_eq!(
            column_stats(&cells, Dtype::Object),
            json!({"total_values": 6, "null_count": 1, "unique_count": 3, "data_type": "object"})
        );
    }
}
