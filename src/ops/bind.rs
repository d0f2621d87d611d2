//! Binding tables (operations.md §8): single- and multi-key left joins with their validation and
//! statistics, the positional column copy of `files/bind`, and its preview.

use super::params::{py_list, ColumnMapping};
use super::OpError;
use crate::engine::{Phase, StepControl, CHECK_EVERY_ROWS};
use crate::table::rows::assign;
use crate::table::spool::{RowDigest, SpooledTable};
use crate::table::write::{write_rows_xlsx_tracked, WorkbookStyle};
use crate::table::{Cell, RowSource, Table, TableError};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// A bound table plus the statistics object returned next to `download_url`.
#[derive(Debug, Clone)]
pub struct BindOutcome {
    pub table: Table,
    pub stats: Value,
}

/// Parses a JSON-array form field of column names (`bind_columns`, `comparison_columns`); any other
/// shape → 422 with `invalid_message` (e.g. `bind_columns must be a valid JSON array`).
pub fn parse_column_list(text: &str, field: &str, invalid_message: &str) -> Result<Vec<String>, OpError> {
    let err = || OpError::validation_with(invalid_message, json!({ "field": field }));
    let value: Value = serde_json::from_str(text).map_err(|_| err())?;
    let Value::Array(items) = value else {
        return Err(err());
    };
    items.into_iter().map(|v| v.as_str().map(str::to_owned).ok_or_else(err)).collect()
}

fn missing_in<'a>(names: &'a [String], columns: &[String]) -> Vec<&'a str> {
    names.iter().map(String::as_str).filter(|n| !columns.iter().any(|c| c == n)).collect()
}

/// A key part that can match: non-empty text (IMPROVE: blank keys never match).
fn key_text(cell: &Cell) -> Option<std::borrow::Cow<'_, str>> {
    if cell.is_blank() {
        None
    } else {
        Some(cell.as_text())
    }
}

/// Dedup identity of a key part (blank parts included, Missing distinct from empty).
fn dedup_part(cell: &Cell) -> Option<String> {
    match cell {
        Cell::Missing => None,
        other => Some(other.as_text().into_owned()),
    }
}

fn validate_bind_columns(
    source: &[String],
    bind: &[String],
    keys: &[String],
    bind_columns: &[String],
) -> Result<Vec<String>, OpError> {
    let missing = missing_in(bind_columns, bind);
    if !missing.is_empty() {
        return Err(OpError::validation_with(
            format!("Bind columns not found in bind file: {}", py_list(&missing)),
            json!({ "missing_columns": missing, "available_columns": bind }),
        ));
    }
    // Key columns listed as bind columns are ignored (IMPROVE: the reference crashed).
    let mut effective: Vec<String> = Vec::new();
    for c in bind_columns {
        if !keys.contains(c) && !effective.contains(c) {
            effective.push(c.clone());
        }
    }
    let conflicting: Vec<&str> =
        effective.iter().map(String::as_str).filter(|c| source.iter().any(|s| s == c)).collect();
    if !conflicting.is_empty() {
        return Err(OpError::validation_with(
            format!(
                "Bind columns already exist in source file: {}. This would overwrite existing data.",
                py_list(&conflicting)
            ),
            json!({ "conflicting_columns": conflicting, "source_columns": source }),
        ));
    }
    if effective.is_empty() {
        return Err(OpError::validation_with(
            "At least one bind column must be specified",
            json!({ "field": "bind_columns", "reason": "only key columns were listed" }),
        ));
    }
    Ok(effective)
}

/// Left join of `bind`'s columns onto `source` by the key columns (first match in `bind` wins).
fn left_join(source: &Table, bind: &Table, keys: &[String], columns: &[String]) -> (Table, usize, usize) {
    let src_keys: Vec<usize> = keys.iter().filter_map(|k| source.column_index(k)).collect();
    let bind_keys: Vec<usize> = keys.iter().filter_map(|k| bind.column_index(k)).collect();
    let bind_cols: Vec<usize> = columns.iter().filter_map(|c| bind.column_index(c)).collect();

    // B′: the first row per key tuple, counted with blank tuples included (as the reference does).
    let mut seen: std::collections::HashSet<Vec<Option<String>>> = std::collections::HashSet::new();
    let mut lookup: HashMap<Vec<String>, usize> = HashMap::new();
    for (i, row) in bind.rows.iter().enumerate() {
        let cells: Vec<&Cell> = bind_keys.iter().map(|&k| row.get(k).unwrap_or(&Cell::Missing)).collect();
        if !seen.insert(cells.iter().map(|c| dedup_part(c)).collect()) {
            continue;
        }
        let parts: Option<Vec<String>> = cells.iter().map(|c| key_text(c).map(|t| t.into_owned())).collect();
        if let Some(parts) = parts {
            lookup.entry(parts).or_insert(i);
        }
    }

    let mut columns_out = source.columns.clone();
    columns_out.extend(columns.iter().cloned());
    let mut out = Table::new(columns_out);
    out.rows.reserve(source.rows.len());
    let mut matched = 0;
    for row in &source.rows {
        let parts: Option<Vec<String>> = src_keys
            .iter()
            .map(|&k| key_text(row.get(k).unwrap_or(&Cell::Missing)).map(|t| t.into_owned()))
            .collect();
        let hit = parts.and_then(|p| lookup.get(&p)).and_then(|&i| bind.rows.get(i));
        let mut new_row = row.clone();
        match hit {
            Some(b) => new_row.extend(bind_cols.iter().map(|&c| b.get(c).cloned().unwrap_or(Cell::Missing))),
            None => new_row.extend(std::iter::repeat_n(Cell::Missing, bind_cols.len())),
        }
        if new_row.get(source.columns.len()).is_some_and(|c| !c.is_missing()) {
            matched += 1;
        }
        out.rows.push(new_row);
    }
    (out, matched, seen.len())
}

/// Python `round(x, 2)`: correctly rounded, ties to even on the exact binary value.
fn round2(x: f64) -> f64 {
    format!("{x:.2}").parse().unwrap_or(x)
}

fn join_stats(
    source_rows: usize,
    bind_rows: usize,
    matched: usize,
    unique: usize,
    columns: &[String],
    keys: &BindKeys,
) -> Value {
    let pct = if source_rows == 0 { 0.0 } else { round2(matched as f64 / source_rows as f64 * 100.0) };
    let mut statistics = serde_json::Map::new();
    match keys {
        BindKeys::Single(key) => statistics.insert("comparison_column".into(), json!(key)),
        BindKeys::Multi(keys) => statistics.insert("comparison_columns".into(), json!(keys)),
    };
    statistics.insert("bind_columns".into(), json!(columns));
    statistics.insert("unique_keys_in_bind".into(), json!(unique));
    statistics.insert("duplicate_keys_removed".into(), json!(bind_rows - unique));
    statistics.insert("match_percentage".into(), json!(pct));
    json!({
        "source_rows": source_rows,
        "bind_rows": bind_rows,
        "matched_rows": matched,
        "unmatched_rows": source_rows - matched,
        "columns_bound": columns,
        "statistics": Value::Object(statistics),
    })
}

/// The comparison key(s) of a key-based bind (`excel/bind-single-key`, `excel/bind-multi-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindKeys {
    Single(String),
    Multi(Vec<String>),
}

impl BindKeys {
    fn names(&self) -> Vec<String> {
        match self {
            BindKeys::Single(key) => vec![key.clone()],
            BindKeys::Multi(keys) => keys.clone(),
        }
    }

    /// The key columns must be in both files; the source file's absence is reported first.
    fn check(&self, source: &[String], bind: &[String]) -> Result<(), OpError> {
        for (columns, which) in [(source, "source file"), (bind, "bind file")] {
            let error = match self {
                BindKeys::Single(key) if !columns.contains(key) => {
                    format!("Comparison column '{key}' not found in {which}")
                }
                BindKeys::Multi(keys) if !missing_in(keys, columns).is_empty() => {
                    format!(
                        "Comparison columns not found in {which}: {}",
                        py_list(&missing_in(keys, columns))
                    )
                }
                _ => continue,
            };
            let missing =
                missing_in(&self.names(), columns).iter().map(|s| s.to_string()).collect::<Vec<_>>();
            return Err(OpError::validation_with(
                error,
                json!({ "missing_columns": missing, "available_columns": columns }),
            ));
        }
        Ok(())
    }
}

/// A key-based bind after both files were read (checks from "key in source" on).
fn bind_by_keys(
    source: &Table,
    bind: &Table,
    keys: &BindKeys,
    bind_columns: &[String],
) -> Result<BindOutcome, OpError> {
    keys.check(&source.columns, &bind.columns)?;
    let names = keys.names();
    let columns = validate_bind_columns(&source.columns, &bind.columns, &names, bind_columns)?;
    let (table, matched, unique) = left_join(source, bind, &names, &columns);
    let stats = join_stats(source.row_count(), bind.row_count(), matched, unique, &columns, keys);
    Ok(BindOutcome { table, stats })
}

/// `excel/bind-single-key` after both files were read (checks from "key in source" on).
pub fn bind_single_key(
    source: &Table,
    bind: &Table,
    comparison_column: &str,
    bind_columns: &[String],
) -> Result<BindOutcome, OpError> {
    bind_by_keys(source, bind, &BindKeys::Single(comparison_column.to_string()), bind_columns)
}

/// `excel/bind-multi-key` after both files were read.
pub fn bind_multi_key(
    source: &Table,
    bind: &Table,
    comparison_columns: &[String],
    bind_columns: &[String],
) -> Result<BindOutcome, OpError> {
    bind_by_keys(source, bind, &BindKeys::Multi(comparison_columns.to_vec()), bind_columns)
}

/// A key-based bind as a stream (design.md "Execution engine"): the bind file's rows are read once into a
/// lookup index (per distinct key: its text and the first matching row's bound cells, plus a 16-byte
/// digest per distinct key tuple for `unique_keys_in_bind`, collision odds as in `SpooledTable::dedupe`),
/// then the source rows stream from their spool, each extended with its match, into the standard workbook
/// writer at `path`. Memory: the index, never either table. The same file and statistics as the
/// whole-table bind, the same errors (422 before anything is written); a failure mid-way leaves nothing at
/// `path`. Progress on `control`: the processing phase (the index), then the writing phase over the source
/// rows; a stop request ends the run between two batches of rows.
pub fn bind_spooled_to_file(
    mut source: SpooledTable,
    mut bind: SpooledTable,
    keys: &BindKeys,
    bind_columns: &[String],
    path: &Path,
    style: &WorkbookStyle,
    control: &StepControl,
) -> Result<Value, OpError> {
    keys.check(&source.columns, &bind.columns)?;
    let names = keys.names();
    let columns = validate_bind_columns(&source.columns, &bind.columns, &names, bind_columns)?;
    let position = |columns: &[String], name: &String| columns.iter().position(|c| c == name);
    let bind_keys: Vec<usize> = names.iter().filter_map(|k| position(&bind.columns, k)).collect();
    let bind_cols: Vec<usize> = columns.iter().filter_map(|c| position(&bind.columns, c)).collect();
    let source_rows = source.rows.len();
    let bind_rows = bind.rows.len();

    control.begin(Phase::Processing, Some(source_rows as u64))?;
    let digest = RowDigest::new();
    let mut seen: HashSet<u128> = HashSet::new();
    let mut lookup: HashMap<Vec<String>, Vec<Cell>> = HashMap::new();
    let mut key_cells: Vec<Cell> = Vec::new();
    let mut rows = bind.rows.reader()?;
    let mut read = 0usize;
    while let Some(row) = rows.next_row()? {
        read += 1;
        if read.is_multiple_of(CHECK_EVERY_ROWS as usize) {
            control.check()?;
        }
        key_cells.clear();
        key_cells.extend(bind_keys.iter().map(|&k| row.get(k).cloned().unwrap_or(Cell::Missing)));
        // B′: the first row per key tuple, counted with blank tuples included.
        if !seen.insert(digest.of(&key_cells)) {
            continue;
        }
        let parts: Option<Vec<String>> =
            key_cells.iter().map(|c| key_text(c).map(|t| t.into_owned())).collect();
        if let Some(parts) = parts {
            lookup.entry(parts).or_insert_with(|| {
                bind_cols.iter().map(|&c| row.get(c).cloned().unwrap_or(Cell::Missing)).collect()
            });
        }
    }
    drop(rows);
    control.advance_to(source_rows as u64)?;

    let source_keys: Vec<usize> = names.iter().filter_map(|k| position(&source.columns, k)).collect();
    let mut out_columns = source.columns.clone();
    out_columns.extend(columns.iter().cloned());
    let mut joined = JoinedRows {
        source: source.rows.reader()?,
        keys: &source_keys,
        lookup: &lookup,
        width: source.columns.len(),
        bound: bind_cols.len(),
        row: Vec::new(),
        matched: 0,
    };
    write_rows_xlsx_tracked(path, &out_columns, &mut joined, source_rows as u64, style, control)?;
    let matched = joined.matched;
    Ok(join_stats(source_rows, bind_rows, matched, seen.len(), &columns, keys))
}

/// The source rows of [`bind_spooled_to_file`], each extended with its match (or Missing cells).
struct JoinedRows<'a, S> {
    source: S,
    keys: &'a [usize],
    lookup: &'a HashMap<Vec<String>, Vec<Cell>>,
    /// Cells of a source row.
    width: usize,
    bound: usize,
    row: Vec<Cell>,
    /// Rows whose first bound cell has a value.
    matched: usize,
}

impl<S: RowSource> RowSource for JoinedRows<'_, S> {
    fn next_row(&mut self) -> Result<Option<&[Cell]>, TableError> {
        let Some(row) = self.source.next_row()? else { return Ok(None) };
        let parts: Option<Vec<String>> = self
            .keys
            .iter()
            .map(|&k| key_text(row.get(k).unwrap_or(&Cell::Missing)).map(|t| t.into_owned()))
            .collect();
        let hit = parts.and_then(|p| self.lookup.get(&p));
        let width = self.width;
        self.row.resize(width + self.bound, Cell::Missing);
        for (i, slot) in self.row[..width].iter_mut().enumerate() {
            assign(slot, row.get(i).unwrap_or(&Cell::Missing));
        }
        for (i, slot) in self.row[width..].iter_mut().enumerate() {
            assign(slot, hit.and_then(|cells| cells.get(i)).unwrap_or(&Cell::Missing));
        }
        if self.row.get(width).is_some_and(|c| !c.is_missing()) {
            self.matched += 1;
        }
        Ok(Some(&self.row))
    }
}

/// `files/bind`: copies source columns into target columns by row position (§8.3).
/// `mapping` is target column → source column.
pub fn bind_positional(
    source: &Table,
    target: &Table,
    mapping: &ColumnMapping,
) -> Result<BindOutcome, OpError> {
    let missing_source: Vec<&str> =
        mapping.iter().map(|(_, s)| s.as_str()).filter(|s| source.column_index(s).is_none()).collect();
    let missing_target: Vec<&str> =
        mapping.iter().map(|(t, _)| t.as_str()).filter(|t| target.column_index(t).is_none()).collect();
    if !missing_source.is_empty() || !missing_target.is_empty() {
        return Err(OpError::validation_with(
            "Column mapping validation failed",
            json!({ "missing_source_columns": missing_source, "missing_target_columns": missing_target }),
        ));
    }
    let mut out = target.clone();
    let mut binding_stats = serde_json::Map::new();
    let (src_rows, tgt_rows) = (source.row_count(), target.row_count());
    for (t, s) in mapping {
        let (Some(ti), Some(si)) = (target.column_index(t), source.column_index(s)) else {
            continue;
        };
        for (i, row) in out.rows.iter_mut().enumerate() {
            let value = source.rows.get(i).and_then(|r| r.get(si)).cloned().unwrap_or(Cell::Missing);
            if let Some(slot) = row.get_mut(ti) {
                *slot = value;
            }
        }
        binding_stats.insert(
            t.clone(),
            json!({
                "source_column": s,
                "values_bound": src_rows.min(tgt_rows),
                "null_filled": tgt_rows.saturating_sub(src_rows),
            }),
        );
    }
    let columns_bound: Vec<&str> = mapping.iter().map(|(t, _)| t.as_str()).collect();
    let stats = json!({
        "source_rows": src_rows,
        "target_rows": tgt_rows,
        "result_rows": out.row_count(),
        "columns_bound": columns_bound,
        "binding_stats": Value::Object(binding_stats),
    });
    Ok(BindOutcome { table: out, stats })
}

/// `files/bind/preview` data (api §7.7.3).
pub fn bind_preview(source: &Table, target: &Table, mapping: &ColumnMapping) -> Value {
    let mut issues = Vec::new();
    for (t, s) in mapping {
        if source.column_index(s).is_none() {
            issues.push(format!("Source column '{s}' not found"));
        }
        if target.column_index(t).is_none() {
            issues.push(format!("Target column '{t}' not found"));
        }
    }
    json!({
        "source_columns": source.columns,
        "target_columns": target.columns,
        "source_rows": source.row_count(),
        "target_rows": target.row_count(),
        "mapping_valid": issues.is_empty(),
        "issues": issues,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(columns: &[&str], rows: &[&[&str]]) -> Table {
        Table {
            columns: columns.iter().map(|s| s.to_string()).collect(),
            rows: rows.iter().map(|r| r.iter().map(|s| Cell::text(*s)).collect()).collect(),
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn t(s: &str) -> Cell {
        Cell::text(s)
    }

    #[test]
    fn single_key_first_match_wins_and_blank_keys_never_match() {
        let source = table(
            &["id", "name"],
            &[&["A", "a1"], &["C", "c1"], &["A", "a2"], &["", "blank"], &["001", "z"]],
        );
        let bind = table(
            &["id", "val", "other"],
            &[&["A", "va", "x"], &["A", "va_dup", "y"], &["", "from blank", "w"], &["1", "one", "q"]],
        );
        let out = bind_single_key(&source, &bind, "id", &names(&["val"])).unwrap();
        assert_eq!(out.table.columns, names(&["id", "name", "val"]));
        let vals: Vec<Cell> = out.table.rows.iter().map(|r| r[2].clone()).collect();
        assert_eq!(vals, vec![t("va"), Cell::Missing, t("va"), Cell::Missing, Cell::Missing]);
        assert_eq!(
            out.stats,
            json!({
                "source_rows": 5, "bind_rows": 4, "matched_rows": 2, "unmatched_rows": 3, "columns_bound": ["val"],
                "statistics": {"comparison_column": "id", "bind_columns": ["val"], "unique_keys_in_bind": 3,
                    "duplicate_keys_removed": 1, "match_percentage": 40.0}
            })
        );
    }

    #[test]
    fn single_key_validation_order_and_messages() {
        let source = table(&["id", "name"], &[&["1", "a"]]);
        let bind = table(&["id", "val", "name"], &[&["1", "v", "n"]]);
        let cases: Vec<(&str, Vec<&str>, &str)> = vec![
            ("nope", vec!["val"], "Comparison column 'nope' not found in source file"),
            ("id", vec!["val", "ghost", "gone"], "Bind columns not found in bind file: ['ghost', 'gone']"),
            (
                "id",
                vec!["val", "name"],
                "Bind columns already exist in source file: ['name']. This would overwrite existing data.",
            ),
            ("id", vec!["id"], "At least one bind column must be specified"),
        ];
        for (key, cols, want) in cases {
            let e = bind_single_key(&source, &bind, key, &names(&cols)).unwrap_err();
            assert_eq!((e.status_code(), e.to_string().as_str()), (422, want), "{key} {cols:?}");
        }
        let only_source = table(&["key", "name"], &[]);
        let e = bind_single_key(&only_source, &bind, "key", &names(&["val"])).unwrap_err();
        assert_eq!(e.to_string(), "Comparison column 'key' not found in bind file");
        assert_eq!(e.details().unwrap()["available_columns"], json!(["id", "val", "name"]));
        let e = bind_single_key(&source, &bind, "id", &names(&["ghost"])).unwrap_err();
        assert_eq!(e.details().unwrap()["missing_columns"], json!(["ghost"]));
        // The key listed among the bind columns is ignored.
        let out = bind_single_key(&source, &bind, "id", &names(&["id", "val"])).unwrap();
        assert_eq!(out.table.columns, names(&["id", "name", "val"]));
        assert_eq!(out.stats["columns_bound"], json!(["val"]));
    }

    #[test]
    fn matched_rows_count_missing_first_values_as_unmatched_and_empty_source() {
        let source = table(&["id"], &[&["A"], &["B"]]);
        let mut bind = table(&["id", "v", "w"], &[&["A", "", "x"], &["B", "b", "y"]]);
        bind.rows[0][1] = Cell::Missing;
        let out = bind_single_key(&source, &bind, "id", &names(&["v", "w"])).unwrap();
        assert_eq!(out.table.rows[0], vec![t("A"), Cell::Missing, t("x")]);
        assert_eq!(out.stats["matched_rows"], json!(1));
        assert_eq!(out.stats["statistics"]["match_percentage"], json!(50.0));

        let empty = table(&["id"], &[]);
        let out = bind_single_key(&empty, &bind, "id", &names(&["v"])).unwrap();
        assert_eq!(out.stats["statistics"]["match_percentage"], json!(0.0));
        assert_eq!(out.table.row_count(), 0);

        let three = table(&["id"], &[&["A"], &["B"], &["C"]]);
        let out = bind_single_key(&three, &bind, "id", &names(&["w"])).unwrap();
        assert_eq!(out.stats["statistics"]["match_percentage"], json!(66.67));
    }

    #[test]
    fn multi_key_join() {
        let source = table(
            &["first", "last", "x"],
            &[&["Ana", "Lee", "1"], &["Ana", "Kim", "2"], &["Bo", "", "3"], &["ana", "Lee", "4"]],
        );
        let bind = table(
            &["first", "last", "city"],
            &[
                &["Ana", "Lee", "Lisboa"],
                &["Ana", "Lee", "Porto"],
                &["Ana", "Kim", "Seoul"],
                &["Bo", "", "Nowhere"],
            ],
        );
        let keys = names(&["first", "last"]);
        let out = bind_multi_key(&source, &bind, &keys, &names(&["city", "last"])).unwrap();
        assert_eq!(out.table.columns, names(&["first", "last", "x", "city"]));
        let cities: Vec<Cell> = out.table.rows.iter().map(|r| r[3].clone()).collect();
        assert_eq!(cities, vec![t("Lisboa"), t("Seoul"), Cell::Missing, Cell::Missing]);
        assert_eq!(out.stats["statistics"]["comparison_columns"], json!(["first", "last"]));
        assert_eq!(out.stats["statistics"]["unique_keys_in_bind"], json!(3));
        assert_eq!(out.stats["statistics"]["duplicate_keys_removed"], json!(1));
        assert_eq!(out.stats["matched_rows"], json!(2));

        let e = bind_multi_key(&source, &bind, &names(&["first", "nope", "gone"]), &names(&["city"]))
            .unwrap_err();
        assert_eq!(e.to_string(), "Comparison columns not found in source file: ['nope', 'gone']");
        let e = bind_multi_key(&source, &bind, &names(&["first", "x"]), &names(&["city"])).unwrap_err();
        assert_eq!(e.to_string(), "Comparison columns not found in bind file: ['x']");
    }

    #[test]
    fn positional_bind() {
        let source = table(&["sku", "price"], &[&["s1", "10"], &["s2", "20"]]);
        let target = table(&["SKU", "Price", "Stock"], &[&["a", "", "5"], &["b", "", "6"], &["c", "", "7"]]);
        let mapping =
            vec![("Price".to_string(), "price".to_string()), ("SKU".to_string(), "sku".to_string())];
        let out = bind_positional(&source, &target, &mapping).unwrap();
        assert_eq!(out.table.columns, names(&["SKU", "Price", "Stock"]));
        assert_eq!(out.table.rows[0], vec![t("s1"), t("10"), t("5")]);
        assert_eq!(out.table.rows[2], vec![Cell::Missing, Cell::Missing, t("7")]);
        assert_eq!(
            out.stats,
            json!({"source_rows": 2, "target_rows": 3, "result_rows": 3, "columns_bound": ["Price", "SKU"],
                "binding_stats": {"Price": {"source_column": "price", "values_bound": 2, "null_filled": 1},
                                  "SKU": {"source_column": "sku", "values_bound": 2, "null_filled": 1}}})
        );
        // More source rows than target rows: extras are ignored.
        let short = table(&["SKU"], &[&["only"]]);
        let out = bind_positional(&source, &short, &vec![("SKU".to_string(), "sku".to_string())]).unwrap();
        assert_eq!(out.table.rows, vec![vec![t("s1")]]);
        assert_eq!(
            out.stats["binding_stats"]["SKU"],
            json!({"source_column": "sku", "values_bound": 1, "null_filled": 0})
        );

        let bad = vec![("Name".to_string(), "title".to_string()), ("SKU".to_string(), "cost".to_string())];
        let e = bind_positional(&source, &target, &bad).unwrap_err();
        assert_eq!((e.status_code(), e.to_string().as_str()), (422, "Column mapping validation failed"));
        assert_eq!(
            e.details().unwrap(),
            &json!({"missing_source_columns": ["title", "cost"], "missing_target_columns": ["Name"]})
        );
    }

    #[test]
    fn preview_lists_issues_in_mapping_order() {
        let source =
            table(&["sku", "title", "price"], &[&["1", "a", "2"], &["2", "b", "3"], &["3", "c", "4"]]);
        let row: &[&str] = &["x", "y", "z"];
        let target = table(&["SKU", "Name", "Stock"], &[row; 5]);
        let mapping = vec![("SKU".to_string(), "sku".to_string()), ("Price".to_string(), "cost".to_string())];
        assert_eq!(
            bind_preview(&source, &target, &mapping),
            json!({"source_columns": ["sku", "title", "price"], "target_columns": ["SKU", "Name", "Stock"],
                "source_rows": 3, "target_rows": 5, "mapping_valid": false,
                "issues": ["Source column 'cost' not found", "Target column 'Price' not found"]})
        );
        assert_eq!(bind_preview(&source, &target, &Vec::new())["mapping_valid"], json!(true));
    }

    #[test]
    fn column_list_fields() {
        assert_eq!(
            parse_column_list(r#"["a","b"]"#, "bind_columns", "bind_columns must be a valid JSON array")
                .unwrap(),
            names(&["a", "b"])
        );
        for bad in ["a,b", "{\"a\":1}", "[1]", ""] {
            let e = parse_column_list(bad, "bind_columns", "bind_columns must be a valid JSON array")
                .unwrap_err();
            assert_eq!(e.to_string(), "bind_columns must be a valid JSON array", "{bad}");
        }
    }

    #[test]
    fn python_rounding_of_percentages() {
        for (x, want) in [(66.666_666, 66.67), (12.345, 12.35), (0.125, 0.12), (100.0, 100.0), (2.675, 2.67)]
        {
            assert_eq!(round2(x), want, "{x}");
        }
    }
}
