//! Column extraction (operations.md §4): to JSON with statistics (§4.1, rest-api.md §7.2.2) and to a file
//! (§4.2), plus the shared column selection and row de-duplication (§1.4).

use std::collections::HashSet;
use std::path::Path;

use bytes::Bytes;
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::{require_columns, OpError};
use crate::engine::{Phase, StepControl};
use crate::table::infer::STORAGE_TYPE;
use crate::table::parse::parse_number;
use crate::table::spool::SpooledTable;
use crate::table::write::{write_rows_xlsx_tracked, write_table_xlsx_tracked, WorkbookStyle};
use crate::table::{Cell, RowSource, Table};

/// How many leading values the studio shows per column.
const SAMPLE_SIZE: usize = 5;

/// Parameters of `excel/extract-columns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractParams {
    pub columns: Vec<String>,
    pub remove_duplicates: bool,
    pub include_statistics: bool,
}

/// The `data` of `excel/extract-columns`; each column's `values` held as `V`: JSON values (the whole-table
/// code, the workflow step) or [`JsonArrayText`] (the REST answer, written out as it is held).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extraction<V = Vec<Value>> {
    pub extraction_info: ExtractionInfo,
    pub columns: IndexMap<String, ColumnExtract<V>>,
    pub total_rows: usize,
    pub rows_extracted: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtractionInfo {
    pub total_rows: usize,
    pub extracted_columns: Vec<String>,
    pub remove_duplicates: bool,
    pub timestamp: String,
    pub missing_columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnExtract<V = Vec<Value>> {
    pub values: V,
    pub value_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub non_null_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub null_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_count: Option<usize>,
    pub data_type: &'static str,
    pub count: usize,
    pub sample_values: Vec<Value>,
    /// Optional IMPROVE of §4.1: only for columns whose non-empty values are all numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistics: Option<Value>,
}

impl<V: ColumnValues> Extraction<V> {
    /// The answer for `columns` extracted from `total_rows` rows; `rows_extracted` is its longest column.
    fn new(
        params: &ExtractParams,
        timestamp: String,
        total_rows: usize,
        missing_columns: Vec<String>,
        columns: IndexMap<String, ColumnExtract<V>>,
    ) -> Extraction<V> {
        let rows_extracted = columns.values().map(|c| c.value_count).max().unwrap_or(0);
        Extraction {
            extraction_info: ExtractionInfo {
                total_rows,
                extracted_columns: params.columns.clone(),
                remove_duplicates: params.remove_duplicates,
                timestamp,
                missing_columns,
            },
            columns,
            total_rows,
            rows_extracted,
        }
    }

    /// `Successfully extracted {N} columns`, N = the requested list's length.
    pub fn message(&self) -> String {
        format!("Successfully extracted {} columns", self.extraction_info.extracted_columns.len())
    }
}

impl Extraction<JsonArrayText> {
    /// The answer as JSON text with the keys of every object sorted (the order the response envelope
    /// writes), in pieces: each column's `values` is handed on as the blocks it was written in, not
    /// copied, so the answer is not held twice on its way out.
    pub fn into_sorted_json(self) -> Vec<Bytes> {
        let Extraction { extraction_info, columns, total_rows, rows_extracted } = self;
        let mut values = std::collections::HashMap::with_capacity(columns.len());
        let mut heads = Map::new();
        for (name, column) in columns {
            let (text, head) = column.split_values();
            values.insert(name.clone(), text.blocks);
            heads.insert(name, serde_json::to_value(head).unwrap_or(Value::Null));
        }
        let mut data = json!({
            "extraction_info": extraction_info,
            "columns": heads,
            "total_rows": total_rows,
            "rows_extracted": rows_extracted,
        });
        data.sort_all_objects();
        // The objects in `data` written field by field, a column's `values` (a placeholder in `data`) as
        // the text it was written as.
        let mut out = JsonPieces::default();
        out.object(&data, |out, key, value| match (key, value) {
            ("columns", Value::Object(_)) => out.object(value, |out, name, head| {
                out.object(head, |out, field, value| match field {
                    "values" => out.blocks(values.remove(name).unwrap_or_default()),
                    _ => out.json(value),
                })
            }),
            _ => out.json(value),
        });
        out.finish()
    }
}

/// JSON text in pieces: small parts gathered in one buffer, large blocks passed on as they are.
#[derive(Default)]
struct JsonPieces {
    done: Vec<Bytes>,
    current: Vec<u8>,
}

impl JsonPieces {
    fn text(&mut self, text: &[u8]) {
        self.current.extend_from_slice(text);
    }

    fn json(&mut self, value: &(impl Serialize + ?Sized)) {
        // Writing to a Vec fails only for a value that cannot be JSON, which these are not.
        serde_json::to_writer(&mut self.current, value).expect("JSON to a buffer");
    }

    /// `value` (an object) with each field's value written by `field`, keys in their order.
    fn object(&mut self, value: &Value, mut field: impl FnMut(&mut Self, &str, &Value)) {
        let Value::Object(fields) = value else { return self.json(value) };
        self.text(b"{");
        for (i, (key, value)) in fields.iter().enumerate() {
            if i > 0 {
                self.text(b",");
            }
            self.json(key);
            self.text(b":");
            field(self, key, value);
        }
        self.text(b"}");
    }

    fn blocks(&mut self, blocks: Vec<Bytes>) {
        if !self.current.is_empty() {
            self.done.push(Bytes::from(std::mem::take(&mut self.current)));
        }
        self.done.extend(blocks);
    }

    fn finish(mut self) -> Vec<Bytes> {
        self.blocks(Vec::new());
        self.done
    }
}

/// Where a column's values go as they are extracted.
pub trait ColumnValues: Sized {
    fn new(rows: usize) -> Self;
    fn push(&mut self, cell: &Cell);
    fn count(&self) -> usize;
    /// The values once the last one was pushed.
    fn finish(self) -> Self {
        self
    }
}

impl ColumnValues for Vec<Value> {
    fn new(rows: usize) -> Self {
        Vec::with_capacity(rows)
    }

    fn push(&mut self, cell: &Cell) {
        Vec::push(self, cell.to_json());
    }

    fn count(&self) -> usize {
        self.len()
    }
}

/// Bytes per block of [`JsonArrayText`]: large enough that the list of blocks stays short, small enough
/// that the last, partly filled one wastes little.
const TEXT_BLOCK_BYTES: usize = 64 * 1024;

/// A column's values as the text of a JSON array (`["a",null,3]`), exactly as serializing
/// [`Cell::to_json`] values writes them, in blocks of about [`TEXT_BLOCK_BYTES`]: the memory is the
/// answer's own size (plus at most one block), not a JSON value per cell, and no block is copied again
/// when the array grows or when the answer is sent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JsonArrayText {
    blocks: Vec<Bytes>,
    current: Vec<u8>,
    count: usize,
    /// One value's text, before it goes into the current block.
    scratch: Vec<u8>,
}

impl JsonArrayText {
    /// The whole text (tests and small answers).
    pub fn to_text(&self) -> String {
        let mut text = Vec::new();
        for block in &self.blocks {
            text.extend_from_slice(block);
        }
        text.extend_from_slice(&self.current);
        String::from_utf8(text).expect("JSON text is UTF-8")
    }
}

impl ColumnValues for JsonArrayText {
    fn new(_rows: usize) -> Self {
        JsonArrayText { current: b"[".to_vec(), ..JsonArrayText::default() }
    }

    fn push(&mut self, cell: &Cell) {
        self.scratch.clear();
        if self.count > 0 {
            self.scratch.push(b',');
        }
        let written = match cell {
            Cell::Text(s) => serde_json::to_writer(&mut self.scratch, s),
            Cell::Missing => serde_json::to_writer(&mut self.scratch, &()),
            Cell::Int(i) => serde_json::to_writer(&mut self.scratch, i),
            // Non-finite floats are written as null, as `to_json` makes them.
            Cell::Float(f) => serde_json::to_writer(&mut self.scratch, f),
            Cell::Bool(b) => serde_json::to_writer(&mut self.scratch, b),
        };
        written.expect("JSON to a buffer");
        if !self.current.is_empty() && self.current.len() + self.scratch.len() > TEXT_BLOCK_BYTES {
            let full = std::mem::replace(&mut self.current, Vec::with_capacity(TEXT_BLOCK_BYTES));
            self.blocks.push(Bytes::from(full));
        }
        self.current.extend_from_slice(&self.scratch);
        self.count += 1;
    }

    fn count(&self) -> usize {
        self.count
    }

    fn finish(mut self) -> Self {
        self.current.push(b']');
        self.current.shrink_to_fit();
        self.blocks.push(Bytes::from(std::mem::take(&mut self.current)));
        self.scratch = Vec::new();
        self
    }
}

impl<V> ColumnExtract<V> {
    /// The values, and the column with `null` in their place (the small part of the answer).
    fn split_values(self) -> (V, ColumnExtract<Value>) {
        let ColumnExtract {
            values,
            value_count,
            total_count,
            non_null_count,
            null_count,
            unique_count,
            data_type,
            count,
            sample_values,
            statistics,
        } = self;
        let head = ColumnExtract {
            values: Value::Null,
            value_count,
            total_count,
            non_null_count,
            null_count,
            unique_count,
            data_type,
            count,
            sample_values,
            statistics,
        };
        (values, head)
    }
}

/// Identity of a cell for distinctness: Missing is its own value, everything else compares as text.
fn cell_key(cell: &Cell) -> Option<String> {
    match cell {
        Cell::Missing => None,
        other => Some(other.as_text().into_owned()),
    }
}

/// §4.1 extraction to JSON. Unknown names are skipped (and listed in `missing_columns`).
pub fn extract_columns(
    table: &Table,
    params: &ExtractParams,
    timestamp: String,
) -> Result<Extraction, OpError> {
    if params.columns.is_empty() {
        return Err(OpError::validation("No columns specified for extraction"));
    }
    let total_rows = table.row_count();
    let mut columns = IndexMap::new();
    let mut missing_columns = Vec::new();
    for name in &params.columns {
        let Some(index) = table.column_index(name) else {
            missing_columns.push(name.clone());
            continue;
        };
        if columns.contains_key(name) {
            continue;
        }
        columns.insert(name.clone(), extract_one(table, index, params));
    }
    Ok(Extraction::new(params, timestamp, total_rows, missing_columns, columns))
}

fn extract_one(table: &Table, index: usize, params: &ExtractParams) -> ColumnExtract {
    let cells: Vec<&Cell> = table.column(index).collect();
    let values: Vec<Value> = if params.remove_duplicates {
        let mut seen = HashSet::new();
        cells
            .iter()
            .filter(|c| !c.is_missing())
            .filter(|c| seen.insert(cell_key(c)))
            .map(|c| c.to_json())
            .collect()
    } else {
        cells.iter().map(|c| c.to_json()).collect()
    };
    let mut extract = ColumnExtract {
        value_count: values.len(),
        count: values.len(),
        sample_values: values.iter().take(SAMPLE_SIZE).cloned().collect(),
        values,
        total_count: None,
        non_null_count: None,
        null_count: None,
        unique_count: None,
        data_type: STORAGE_TYPE,
        statistics: None,
    };
    if params.include_statistics {
        let null_count = cells.iter().filter(|c| c.is_missing()).count();
        let unique: HashSet<Option<String>> =
            cells.iter().filter(|c| !c.is_missing()).map(|c| cell_key(c)).collect();
        extract.total_count = Some(cells.len());
        extract.non_null_count = Some(cells.len() - null_count);
        extract.null_count = Some(null_count);
        extract.unique_count = Some(unique.len());
        extract.statistics = numeric_statistics(&cells);
    }
    extract
}

fn number_or_null(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
}

/// `mean`, `median`, `min`, `max`, `std` (sample) when every non-empty value is a number; `null`s for a
/// column without values.
fn numeric_statistics(cells: &[&Cell]) -> Option<Value> {
    let mut numbers = Vec::new();
    for cell in cells {
        if !push_number(&mut numbers, cell) {
            return None;
        }
    }
    Some(statistics_of(numbers))
}

/// Adds a cell's number to `numbers` (empty cells add nothing); false when the cell is not a number.
fn push_number(numbers: &mut Vec<f64>, cell: &Cell) -> bool {
    match cell {
        Cell::Missing => {}
        Cell::Int(i) => numbers.push(*i as f64),
        Cell::Float(f) => numbers.push(*f),
        Cell::Bool(_) => return false,
        Cell::Text(s) if s.trim().is_empty() => {}
        Cell::Text(s) => match parse_number(s) {
            Some(x) => numbers.push(x),
            None => return false,
        },
    }
    true
}

fn statistics_of(mut numbers: Vec<f64>) -> Value {
    if numbers.is_empty() {
        return json!({"mean": null, "median": null, "min": null, "max": null, "std": null});
    }
    let n = numbers.len() as f64;
    let mean = numbers.iter().sum::<f64>() / n;
    numbers.sort_by(f64::total_cmp);
    let mid = numbers.len() / 2;
    let median =
        if numbers.len().is_multiple_of(2) { (numbers[mid - 1] + numbers[mid]) / 2.0 } else { numbers[mid] };
    let std = if numbers.len() > 1 {
        number_or_null((numbers.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt())
    } else {
        Value::Null
    };
    json!({
        "mean": number_or_null(mean),
        "median": number_or_null(median),
        "min": number_or_null(numbers[0]),
        "max": number_or_null(numbers[numbers.len() - 1]),
        "std": std,
    })
}

/// §1.4: keeps the first occurrence of every row, compared cell by cell as text (Missing ≠ empty).
pub fn dedupe_rows(rows: Vec<Vec<Cell>>) -> Vec<Vec<Cell>> {
    let mut seen: HashSet<Vec<Option<String>>> = HashSet::new();
    rows.into_iter().filter(|row| seen.insert(row.iter().map(cell_key).collect())).collect()
}

/// §1.4/§4.2: the named columns in request order (all must exist, else 422), optionally de-duplicated.
pub fn select_columns(table: &Table, columns: &[String], remove_duplicates: bool) -> Result<Table, OpError> {
    require_columns(&table.columns, columns.iter().map(String::as_str))?;
    let indices: Vec<usize> = columns.iter().filter_map(|c| table.column_index(c)).collect();
    let rows: Vec<Vec<Cell>> = table
        .rows
        .iter()
        .map(|row| indices.iter().map(|&i| row.get(i).cloned().unwrap_or(Cell::Missing)).collect())
        .collect();
    let rows = if remove_duplicates { dedupe_rows(rows) } else { rows };
    Ok(Table { columns: columns.to_vec(), rows })
}

/// `excel/extract-columns-to-file` (§4.2): validates, selects and writes with the standard writer; the
/// data sheet is always `Sheet1`. Returns the number of rows written.
pub fn extract_columns_to_file(
    table: &Table,
    columns: &[String],
    remove_duplicates: bool,
    path: &Path,
    style: &WorkbookStyle,
) -> Result<u64, OpError> {
    extract_columns_to_file_tracked(table, columns, remove_duplicates, path, style, &StepControl::NONE)
}

/// [`extract_columns_to_file`] for a workflow step (selection = processing, then the tracked writer).
pub fn extract_columns_to_file_tracked(
    table: &Table,
    columns: &[String],
    remove_duplicates: bool,
    path: &Path,
    style: &WorkbookStyle,
    control: &StepControl,
) -> Result<u64, OpError> {
    if columns.is_empty() {
        return Err(OpError::validation("No columns specified for extraction"));
    }
    control.begin(Phase::Processing, Some(table.row_count() as u64))?;
    let selected = select_columns(table, columns, remove_duplicates)?;
    control.advance_to(table.row_count() as u64)?;
    let style = WorkbookStyle { data_sheet_name: "Sheet1".to_string(), ..style.clone() };
    Ok(write_table_xlsx_tracked(path, &selected, &style, control)?)
}

/// The named columns of a spooled sheet in request order (all must exist, else 422 as
/// [`select_columns`]), optionally de-duplicated into a new spool (§1.4; memory: a 16-byte digest per
/// distinct row, see [`SpooledTable::dedupe`]).
pub fn select_spooled(
    mut table: SpooledTable,
    columns: &[String],
    remove_duplicates: bool,
) -> Result<SpooledTable, OpError> {
    require_columns(&table.columns, columns.iter().map(String::as_str))?;
    let indices: Vec<usize> =
        columns.iter().filter_map(|c| table.columns.iter().position(|name| name == c)).collect();
    table.select(columns.to_vec(), indices);
    Ok(if remove_duplicates { table.dedupe()? } else { table })
}

/// [`extract_columns`] on a spooled sheet, in one pass over the rows without building a table: per
/// requested column only its answer (the values as `V`) and what the statistics need grow. Distinct values
/// (for `remove_duplicates` and `unique_count`) are remembered by a 128-bit keyed digest of their text, 16
/// bytes each (about 35 in the hash set), rather than by the text (collision odds as in
/// [`SpooledTable::dedupe`]); the numbers of a numeric column take 8 bytes each for the statistics.
/// The rows are counted on `control` (processing phase), which can stop the pass between two batches.
pub fn extract_spooled_columns<V: ColumnValues>(
    mut table: SpooledTable,
    params: &ExtractParams,
    timestamp: String,
    control: &StepControl,
) -> Result<Extraction<V>, OpError> {
    if params.columns.is_empty() {
        return Err(OpError::validation("No columns specified for extraction"));
    }
    let total_rows = table.rows.len();
    let mut names: Vec<String> = Vec::new();
    let mut missing_columns = Vec::new();
    for name in &params.columns {
        if !table.columns.contains(name) {
            missing_columns.push(name.clone());
        } else if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let indices = names.iter().filter_map(|c| table.columns.iter().position(|name| name == c)).collect();
    table.select(names.clone(), indices);
    let digest = TextDigest::new();
    let mut columns: Vec<ColumnAccumulator<V>> =
        names.iter().map(|_| ColumnAccumulator::new(params, total_rows)).collect();
    control.begin(Phase::Processing, Some(total_rows as u64))?;
    let mut rows = control.track(table.rows.reader()?);
    while let Some(row) = rows.next_row()? {
        for (column, cell) in columns.iter_mut().zip(row) {
            column.push(cell, &digest);
        }
    }
    drop(rows);
    let columns: IndexMap<String, ColumnExtract<V>> =
        names.into_iter().zip(columns).map(|(name, c)| (name, c.finish())).collect();
    Ok(Extraction::new(params, timestamp, total_rows, missing_columns, columns))
}

/// A 128-bit digest of a cell's text under a per-call random key (two SipHash runs told apart by a
/// leading byte), so the set of distinct values costs 16 bytes per value.
struct TextDigest(std::collections::hash_map::RandomState);

impl TextDigest {
    fn new() -> TextDigest {
        TextDigest(std::collections::hash_map::RandomState::new())
    }

    fn of(&self, text: &str) -> u128 {
        use std::hash::{BuildHasher, Hasher};
        let mut halves = [self.0.build_hasher(), self.0.build_hasher()];
        for (domain, h) in halves.iter_mut().enumerate() {
            h.write_u8(domain as u8);
            h.write(text.as_bytes());
        }
        let [a, b] = halves;
        (u128::from(a.finish()) << 64) | u128::from(b.finish())
    }
}

/// One column of [`extract_spooled_columns`], fed cell by cell with what [`extract_one`] computes.
struct ColumnAccumulator<V> {
    remove_duplicates: bool,
    include_statistics: bool,
    values: V,
    /// The first answered values (the studio's sample).
    sample: Vec<Value>,
    /// Digests of the non-empty values seen (the answered ones when duplicates are removed).
    distinct: HashSet<u128>,
    cells: usize,
    nulls: usize,
    /// The numbers of the column while every non-empty value is one (`include_statistics`).
    numbers: Option<Vec<f64>>,
}

impl<V: ColumnValues> ColumnAccumulator<V> {
    fn new(params: &ExtractParams, rows: usize) -> ColumnAccumulator<V> {
        ColumnAccumulator {
            remove_duplicates: params.remove_duplicates,
            include_statistics: params.include_statistics,
            values: V::new(if params.remove_duplicates { 0 } else { rows }),
            sample: Vec::new(),
            distinct: HashSet::new(),
            cells: 0,
            nulls: 0,
            numbers: params.include_statistics.then(Vec::new),
        }
    }

    fn push(&mut self, cell: &Cell, digest: &TextDigest) {
        self.cells += 1;
        let key = (!cell.is_missing()).then(|| digest.of(&cell.as_text()));
        let first = key
            .is_some_and(|k| (self.remove_duplicates || self.include_statistics) && self.distinct.insert(k));
        if !self.remove_duplicates || first {
            self.values.push(cell);
            if self.sample.len() < SAMPLE_SIZE {
                self.sample.push(cell.to_json());
            }
        }
        if key.is_none() {
            self.nulls += 1;
        }
        if let Some(numbers) = &mut self.numbers {
            if !push_number(numbers, cell) {
                self.numbers = None;
            }
        }
    }

    fn finish(self) -> ColumnExtract<V> {
        let values = self.values.finish();
        let stats = self.include_statistics;
        ColumnExtract {
            value_count: values.count(),
            count: values.count(),
            sample_values: self.sample,
            values,
            total_count: stats.then_some(self.cells),
            non_null_count: stats.then_some(self.cells - self.nulls),
            null_count: stats.then_some(self.nulls),
            unique_count: stats.then_some(self.distinct.len()),
            data_type: STORAGE_TYPE,
            statistics: self.numbers.map(statistics_of),
        }
    }
}

/// [`extract_columns_to_file_tracked`] on a spooled sheet: the selection is a projection of the spool
/// (plus a de-duplicated spool when asked), the rows stream into the writer; memory stays flat.
pub fn extract_spooled_to_file(
    table: SpooledTable,
    columns: &[String],
    remove_duplicates: bool,
    path: &Path,
    style: &WorkbookStyle,
    control: &StepControl,
) -> Result<u64, OpError> {
    if columns.is_empty() {
        return Err(OpError::validation("No columns specified for extraction"));
    }
    let total = table.rows.len() as u64;
    control.begin(Phase::Processing, Some(total))?;
    let mut selected = select_spooled(table, columns, remove_duplicates)?;
    control.advance_to(total)?;
    let style = WorkbookStyle { data_sheet_name: "Sheet1".to_string(), ..style.clone() };
    let count = selected.rows.len() as u64;
    let rows = &mut selected.rows.reader()?;
    Ok(write_rows_xlsx_tracked(path, &selected.columns, rows, count, &style, control)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::read::{read_workbook, ReadLimits};

    fn table(columns: &[&str], rows: &[&[&str]]) -> Table {
        Table {
            columns: columns.iter().map(|s| s.to_string()).collect(),
            rows: rows.iter().map(|r| r.iter().map(|v| Cell::text(*v)).collect()).collect(),
        }
    }

    fn params(columns: &[&str], remove_duplicates: bool, include_statistics: bool) -> ExtractParams {
        ExtractParams {
            columns: columns.iter().map(|s| s.to_string()).collect(),
            remove_duplicates,
            include_statistics,
        }
    }

    fn people() -> Table {
        // The table of acceptance §13.5.
        table(
            &["Name", "Email", "Phone", "Age"],
            &[
                &["John Doe", "john@test.com", "555-0101", "30"],
                &["Jane Smith", "jane@test.com", "555-0102", "25"],
                &["Bob Wilson", "bob@test.com", "555-0103", "35"],
                &["John Doe", "john@test.com", "555-0101", "30"],
            ],
        )
    }

    #[test]
    fn extraction_to_json_matches_the_documented_example() {
        let mut t = table(
            &["customer", "amount"],
            &[&["Acme", "10"], &["Globex", "20"], &["", "x"], &["Acme", "10"]],
        );
        t.rows[1][1] = Cell::Missing;
        let result = extract_columns(&t, &params(&["customer", "nope"], false, true), "T".into()).unwrap();
        let value = serde_json::to_value(&result).unwrap();
        assert_eq!(
            value,
            json!({
                "extraction_info": {
                    "total_rows": 4,
                    "extracted_columns": ["customer", "nope"],
                    "remove_duplicates": false,
                    "timestamp": "T",
                    "missing_columns": ["nope"]
                },
                "columns": {
                    "customer": {
                        "values": ["Acme", "Globex", "", "Acme"],
                        "value_count": 4,
                        "total_count": 4,
                        "non_null_count": 4,
                        "null_count": 0,
                        "unique_count": 3,
                        "data_type": "object",
                        "count": 4,
                        "sample_values": ["Acme", "Globex", "", "Acme"]
                    }
                },
                "total_rows": 4,
                "rows_extracted": 4
            })
        );
        assert_eq!(result.message(), "Successfully extracted 2 columns");
    }

    #[test]
    fn missing_cells_and_duplicates() {
        let mut t = table(&["a"], &[&["x"], &["x"], &[""], &["y"], &[""], &["z"], &["w"]]);
        t.rows.insert(1, vec![Cell::Missing]);
        let plain = extract_columns(&t, &params(&["a"], false, true), String::new()).unwrap();
        let a = &plain.columns["a"];
        assert_eq!(a.values[1], Value::Null);
        assert_eq!(
            (a.total_count, a.non_null_count, a.null_count, a.unique_count),
            (Some(8), Some(7), Some(1), Some(5))
        );
        assert_eq!(a.sample_values.len(), 5);

        let dedup = extract_columns(&t, &params(&["a"], true, false), String::new()).unwrap();
        let a = &dedup.columns["a"];
        assert_eq!(a.values, vec![json!("x"), json!(""), json!("y"), json!("z"), json!("w")]);
        assert_eq!((a.value_count, a.count), (5, 5));
        assert_eq!(a.total_count, None, "no statistics when not asked");
        assert_eq!(a.data_type, "object", "data_type stays for the studio");
        assert_eq!(dedup.rows_extracted, 5);
        let value = serde_json::to_value(a).unwrap();
        assert!(value.get("null_count").is_none() && value.get("statistics").is_none());
    }

    #[test]
    fn numeric_statistics_when_every_value_is_a_number() {
        let t = table(&["n", "s", "e"], &[&["1", "a", ""], &["2", "1", ""], &["", "2", ""], &["6", "3", ""]]);
        let result = extract_columns(&t, &params(&["n", "s", "e"], false, true), String::new()).unwrap();
        assert_eq!(
            result.columns["n"].statistics,
            Some(json!({"mean": 3.0, "median": 2.0, "min": 1.0, "max": 6.0, "std": 2.6457513110645907}))
        );
        assert_eq!(result.columns["s"].statistics, None);
        assert_eq!(
            result.columns["e"].statistics,
            Some(json!({"mean": null, "median": null, "min": null, "max": null, "std": null}))
        );
    }

    #[test]
    fn empty_request_and_unknown_only() {
        let err = extract_columns(&people(), &params(&[], false, true), String::new()).unwrap_err();
        assert_eq!(err.to_string(), "No columns specified for extraction");
        let none = extract_columns(&people(), &params(&["zzz"], false, true), String::new()).unwrap();
        assert!(none.columns.is_empty());
        assert_eq!((none.rows_extracted, none.total_rows), (0, 4));
    }

    #[test]
    fn extraction_to_file() {
        // Acceptance §13.5 facts 29–31.
        let dir = tempfile::tempdir().unwrap();
        let cols = vec!["Name".to_string(), "Email".to_string()];
        let style = WorkbookStyle { data_sheet_name: "Custom".into(), ..WorkbookStyle::default() };

        let path = dir.path().join("all.xlsx");
        assert_eq!(extract_columns_to_file(&people(), &cols, false, &path, &style).unwrap(), 4);
        let read = read_workbook(&path, None, &ReadLimits::default()).unwrap();
        assert_eq!(read.sheets, vec!["Sheet1", "Info"]);
        assert_eq!(read.table.columns, cols);
        assert_eq!(read.table.row_count(), 4);

        let path = dir.path().join("dedup.xlsx");
        assert_eq!(extract_columns_to_file(&people(), &cols, true, &path, &style).unwrap(), 3);
        let read = read_workbook(&path, None, &ReadLimits::default()).unwrap();
        assert_eq!(read.table.row_count(), 3);

        let path = dir.path().join("bad.xlsx");
        let bad = vec!["Name".to_string(), "Nope".to_string(), "Gone".to_string()];
        match extract_columns_to_file(&people(), &bad, false, &path, &style).unwrap_err() {
            OpError::Validation { message, details } => {
                assert_eq!(message, "Columns not found in data: Nope, Gone");
                assert_eq!(details.unwrap()["missing_columns"], json!(["Nope", "Gone"]));
            }
            other => panic!("{other}"),
        }
        assert!(!path.exists());
    }

    #[test]
    fn row_dedupe_compares_whole_rows_as_text() {
        let rows = vec![
            vec![Cell::text("a"), Cell::Missing],
            vec![Cell::text("a"), Cell::text("")],
            vec![Cell::text("a"), Cell::Missing],
            vec![Cell::text("a"), Cell::text("")],
            vec![Cell::text("b"), Cell::text("")],
        ];
        let kept = dedupe_rows(rows);
        assert_eq!(
            kept,
            vec![
                vec![Cell::text("a"), Cell::Missing],
                vec![Cell::text("a"), Cell::text("")],
                vec![Cell::text("b"), Cell::text("")],
            ]
        );
    }

    #[test]
    fn json_text_values_are_the_serialized_json_values() {
        let mut cells = vec![
            Cell::text("plain"),
            Cell::text("quote \" back \\ tab \t nul \u{0} Zürich 😀"),
            Cell::text(""),
            Cell::Missing,
            Cell::Int(-42),
            Cell::Int(i64::MAX),
            Cell::Float(1.25),
            Cell::Float(1e300),
            Cell::Float(0.1 + 0.2),
            Cell::Float(f64::NAN),
            Cell::Float(f64::NEG_INFINITY),
            Cell::Bool(true),
            Cell::Bool(false),
        ];
        // Past one block, so the text is split and joined again.
        cells.extend((0..20_000).map(|i| Cell::text(format!("value {i}"))));
        let mut text = <JsonArrayText as ColumnValues>::new(cells.len());
        let mut values = <Vec<Value> as ColumnValues>::new(cells.len());
        for cell in &cells {
            ColumnValues::push(&mut text, cell);
            ColumnValues::push(&mut values, cell);
        }
        let text = text.finish();
        assert!(text.blocks.len() > 2, "{} blocks", text.blocks.len());
        assert!(text.blocks.iter().all(|b| b.len() <= TEXT_BLOCK_BYTES + 1));
        assert_eq!((text.count(), values.count()), (cells.len(), cells.len()));
        assert_eq!(text.to_text(), serde_json::to_string(&values).unwrap());
        let empty = <JsonArrayText as ColumnValues>::new(0).finish();
        assert_eq!((empty.to_text().as_str(), empty.count()), ("[]", 0));
    }

    #[test]
    fn the_sorted_json_answer_is_the_answer_with_sorted_keys() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["zeta", "a\"b", "Ärger", "values", "count"];
        let mut t = Table::new(names.map(String::from).to_vec());
        for i in 0..3000 {
            let row: Vec<Cell> = (0..names.len())
                .map(|c| match (i + c) % 4 {
                    0 => Cell::Missing,
                    1 => Cell::text(format!("{}", i % 7)),
                    2 => Cell::text(""),
                    _ => Cell::text(format!("v{i}")),
                })
                .collect();
            t.rows.push(row);
        }
        for (dedupe, stats) in [(false, true), (true, false), (true, true)] {
            let p = params(&["values", "zeta", "nope", "count", "a\"b", "Ärger"], dedupe, stats);
            let mut table = crate::table::spool::SpoolWriter::create_in(dir.path()).unwrap();
            for row in &t.rows {
                table.push(row).unwrap();
            }
            let table = table.finish(t.columns.clone()).unwrap();
            let got: Extraction<JsonArrayText> =
                extract_spooled_columns(table, &p, "T".into(), &StepControl::NONE).unwrap();
            let mut expected = serde_json::to_value(extract_columns(&t, &p, "T".into()).unwrap()).unwrap();
            expected.sort_all_objects();
            let got = got.into_sorted_json().concat();
            assert_eq!(String::from_utf8(got).unwrap(), serde_json::to_string(&expected).unwrap());
        }
    }

    #[test]
    fn selection_keeps_request_order() {
        let t = select_columns(&people(), &["Age".to_string(), "Name".to_string()], false).unwrap();
        assert_eq!(t.columns, vec!["Age", "Name"]);
        assert_eq!(t.rows[1], vec![Cell::text("25"), Cell::text("Jane Smith")]);
    }
}
