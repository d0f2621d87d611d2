//! Column extraction (operations.md §4): to JSON with statistics (§4.1, rest-api.md §7.2.2) and to a file
//! (§4.2), plus the shared column selection and row de-duplication (§1.4).

use std::collections::HashSet;
use std::path::Path;

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{json, Value};

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

/// The `data` of `excel/extract-columns`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extraction {
    pub extraction_info: ExtractionInfo,
    pub columns: IndexMap<String, ColumnExtract>,
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
pub struct ColumnExtract {
    pub values: Vec<Value>,
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

impl Extraction {
    /// The answer for `columns` extracted from `total_rows` rows; `rows_extracted` is its longest column.
    fn new(
        params: &ExtractParams,
        timestamp: String,
        total_rows: usize,
        missing_columns: Vec<String>,
        columns: IndexMap<String, ColumnExtract>,
    ) -> Extraction {
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

    /// The same JSON as serializing it, with each column's `values` moved in rather than copied: the
    /// answer of a million-row extraction is not held twice on its way out.
    pub fn into_value(self) -> Value {
        let Extraction { extraction_info, columns, total_rows, rows_extracted } = self;
        let columns: serde_json::Map<String, Value> = columns
            .into_iter()
            .map(|(name, mut column)| {
                let values = std::mem::take(&mut column.values);
                let mut value = serde_json::to_value(&column).unwrap_or(Value::Null);
                if let Value::Object(fields) = &mut value {
                    // Back in its place (the first field), so the order matches the serialized struct.
                    fields.shift_insert(0, "values".to_string(), Value::Array(values));
                }
                (name, value)
            })
            .collect();
        json!({
            "extraction_info": extraction_info,
            "columns": columns,
            "total_rows": total_rows,
            "rows_extracted": rows_extracted,
        })
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
/// requested column only its answer (the JSON values) and what the statistics need grow. Distinct values
/// (for `remove_duplicates` and `unique_count`) are remembered by a 128-bit keyed digest of their text, 16
/// bytes each, rather than by the text (collision odds as in [`SpooledTable::dedupe`]).
pub fn extract_spooled_columns(
    mut table: SpooledTable,
    params: &ExtractParams,
    timestamp: String,
) -> Result<Extraction, OpError> {
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
    let mut columns: Vec<ColumnAccumulator> =
        names.iter().map(|_| ColumnAccumulator::new(params, total_rows)).collect();
    let mut rows = table.rows.reader()?;
    while let Some(row) = rows.next_row()? {
        for (column, cell) in columns.iter_mut().zip(row) {
            column.push(cell, &digest);
        }
    }
    let columns: IndexMap<String, ColumnExtract> =
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
struct ColumnAccumulator {
    remove_duplicates: bool,
    include_statistics: bool,
    values: Vec<Value>,
    /// Digests of the non-empty values seen (the answered ones when duplicates are removed).
    distinct: HashSet<u128>,
    cells: usize,
    nulls: usize,
    /// The numbers of the column while every non-empty value is one (`include_statistics`).
    numbers: Option<Vec<f64>>,
}

impl ColumnAccumulator {
    fn new(params: &ExtractParams, rows: usize) -> ColumnAccumulator {
        ColumnAccumulator {
            remove_duplicates: params.remove_duplicates,
            include_statistics: params.include_statistics,
            values: Vec::with_capacity(if params.remove_duplicates { 0 } else { rows }),
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
            self.values.push(cell.to_json());
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

    fn finish(self) -> ColumnExtract {
        let values = self.values;
        let stats = self.include_statistics;
        ColumnExtract {
            value_count: values.len(),
            count: values.len(),
            sample_values: values.iter().take(SAMPLE_SIZE).cloned().collect(),
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
    fn selection_keeps_request_order() {
        let t = select_columns(&people(), &["Age".to_string(), "Name".to_string()], false).unwrap();
        assert_eq!(t.columns, vec!["Age", "Name"]);
        assert_eq!(t.rows[1], vec![Cell::text("25"), Cell::text("Jane Smith")]);
    }
}
