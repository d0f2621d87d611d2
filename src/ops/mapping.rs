//! Column mapping (operations.md §5, `excel/map-columns`): builds a new table from an ordered mapping of
//! new column names to rules.

use std::path::Path;

use serde_json::{Map, Value};

use super::OpError;
use crate::engine::{Phase, StepControl};
use crate::table::rows::assign;
use crate::table::spool::SpooledTable;
use crate::table::write::{write_rows_xlsx_tracked, write_table_xlsx_tracked, WorkbookStyle};
use crate::table::{Cell, RowSource, Table, TableError};

/// The mapped table plus the source names that did not exist (additive `warnings`).
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub table: Table,
    pub warnings: Vec<String>,
}

/// What one rule resolves to.
enum Rule {
    Copy { index: usize, default: Option<Cell> },
    Constant(Cell),
}

fn resolve_rule(columns: &[String], rule: &Value, warnings: &mut Vec<String>) -> Rule {
    let mut not_found = |name: &str| warnings.push(format!("Source column '{name}' not found"));
    let index_of = |name: &str| columns.iter().position(|c| c == name);
    match rule {
        Value::String(source) => match index_of(source) {
            Some(index) => Rule::Copy { index, default: None },
            None => {
                not_found(source);
                Rule::Constant(Cell::Missing)
            }
        },
        Value::Object(obj) => {
            let default = obj.get("default").filter(|d| !d.is_null()).map(Cell::from_json);
            let source = obj.get("source").and_then(Value::as_str).unwrap_or("");
            match index_of(source).filter(|_| !source.is_empty()) {
                Some(index) => Rule::Copy { index, default },
                None => {
                    if !source.is_empty() {
                        not_found(source);
                    }
                    Rule::Constant(default.unwrap_or(Cell::Missing))
                }
            }
        }
        _ => Rule::Constant(Cell::Missing),
    }
}

/// The rules of `mapping` against the input's `columns`, with the warnings for absent sources.
fn resolve_rules(
    columns: &[String],
    mapping: &Map<String, Value>,
) -> Result<(Vec<Rule>, Vec<String>), OpError> {
    if mapping.is_empty() {
        return Err(OpError::validation("No column mapping provided"));
    }
    let mut warnings = Vec::new();
    let rules = mapping.values().map(|rule| resolve_rule(columns, rule, &mut warnings)).collect();
    Ok((rules, warnings))
}

/// One output row: each rule applied to the input `row`, into `out` (its cells reused).
fn map_row(rules: &[Rule], row: &[Cell], out: &mut Vec<Cell>) {
    out.resize(rules.len(), Cell::Missing);
    for (slot, rule) in out.iter_mut().zip(rules) {
        let cell = match rule {
            Rule::Constant(cell) => cell,
            Rule::Copy { index, default } => {
                let cell = row.get(*index).unwrap_or(&Cell::Missing);
                match default {
                    Some(d) if cell.is_blank() => d,
                    _ => cell,
                }
            }
        };
        assign(slot, cell);
    }
}

/// §5: one output column per mapping key, in mapping order, with the input's row count. IMPROVE: a
/// `default` fills both Missing and empty cells of a copied column.
pub fn map_columns(table: &Table, mapping: &Map<String, Value>) -> Result<Mapped, OpError> {
    let (rules, warnings) = resolve_rules(&table.columns, mapping)?;
    let rows = table
        .rows
        .iter()
        .map(|row| {
            let mut out = Vec::with_capacity(rules.len());
            map_row(&rules, row, &mut out);
            out
        })
        .collect();
    Ok(Mapped { table: Table { columns: mapping.keys().cloned().collect(), rows }, warnings })
}

/// The rows of a source, mapped one at a time through one reused row.
struct MappedRows<'r, S> {
    source: S,
    rules: &'r [Rule],
    row: Vec<Cell>,
}

impl<S: RowSource> RowSource for MappedRows<'_, S> {
    fn next_row(&mut self) -> Result<Option<&[Cell]>, TableError> {
        let Some(row) = self.source.next_row()? else { return Ok(None) };
        map_row(self.rules, row, &mut self.row);
        Ok(Some(&self.row))
    }
}

/// [`map_columns_to_file_tracked`] on a spooled sheet, as a stream (design.md "Execution engine"): each
/// row is mapped as it is read back and goes straight into the standard workbook writer, so memory holds
/// one row whatever the row count. The same file and warnings as the whole-table mapping; progress is the
/// writing phase over the input's rows on `control`, which can stop the run between two batches (nothing
/// is left at `path`).
pub fn map_spooled_to_file(
    mut table: SpooledTable,
    mapping: &Map<String, Value>,
    path: &Path,
    style: &WorkbookStyle,
    control: &StepControl,
) -> Result<Vec<String>, OpError> {
    let total = table.rows.len() as u64;
    map_rows_to_file(&table.columns, &mut table.rows.reader()?, total, mapping, path, style, control)
}

/// [`map_spooled_to_file`] on any source of the input's `total_rows` rows under `columns`.
pub fn map_rows_to_file(
    columns: &[String],
    rows: &mut dyn RowSource,
    total_rows: u64,
    mapping: &Map<String, Value>,
    path: &Path,
    style: &WorkbookStyle,
    control: &StepControl,
) -> Result<Vec<String>, OpError> {
    let (rules, warnings) = resolve_rules(columns, mapping)?;
    let names: Vec<String> = mapping.keys().cloned().collect();
    let mut mapped = MappedRows { source: rows, rules: &rules, row: Vec::new() };
    write_rows_xlsx_tracked(path, &names, &mut mapped, total_rows, style, control)?;
    Ok(warnings)
}

/// `excel/map-columns` end to end: maps and writes with the standard writer. Returns the warnings.
pub fn map_columns_to_file(
    table: &Table,
    mapping: &Map<String, Value>,
    path: &Path,
    style: &WorkbookStyle,
) -> Result<Vec<String>, OpError> {
    map_columns_to_file_tracked(table, mapping, path, style, &StepControl::NONE)
}

/// [`map_columns_to_file`] for a workflow step (mapping = processing, then the tracked writer).
pub fn map_columns_to_file_tracked(
    table: &Table,
    mapping: &Map<String, Value>,
    path: &Path,
    style: &WorkbookStyle,
    control: &StepControl,
) -> Result<Vec<String>, OpError> {
    control.begin(Phase::Processing, Some(table.row_count() as u64))?;
    let mapped = map_columns(table, mapping)?;
    control.advance_to(table.row_count() as u64)?;
    write_table_xlsx_tracked(path, &mapped.table, style, control)?;
    Ok(mapped.warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input() -> Table {
        Table {
            columns: vec!["name".into(), "city".into(), "score".into()],
            rows: vec![
                vec![Cell::text("Ann"), Cell::text("Oslo"), Cell::text("7")],
                vec![Cell::text("Bob"), Cell::text(""), Cell::Missing],
                vec![Cell::text("Cy"), Cell::text(" "), Cell::text("9")],
            ],
        }
    }

    fn mapping(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn every_rule_kind() {
        let m = mapping(json!({
            "Full Name": "name",
            "Ghost": "nope",
            "Town": {"source": "city", "default": "Unknown"},
            "Points": {"source": "score", "default": 0},
            "Plain": {"source": "score"},
            "Const": {"default": 1.5},
            "EmptySource": {"source": "", "default": "x"},
            "MissingSource": {"source": "zzz", "default": true},
            "NullDefault": {"source": "zzz", "default": null},
            "Number": 5,
            "Array": ["name"],
            "Null": null,
            "Bool": true
        }));
        let mapped = map_columns(&input(), &m).unwrap();
        assert_eq!(
            mapped.table.columns,
            vec![
                "Full Name",
                "Ghost",
                "Town",
                "Points",
                "Plain",
                "Const",
                "EmptySource",
                "MissingSource",
                "NullDefault",
                "Number",
                "Array",
                "Null",
                "Bool"
            ]
        );
        let m = Cell::Missing;
        let t = |s: &str| Cell::text(s);
        assert_eq!(
            mapped.table.rows,
            vec![
                vec![
                    t("Ann"),
                    m.clone(),
                    t("Oslo"),
                    t("7"),
                    t("7"),
                    Cell::Float(1.5),
                    t("x"),
                    Cell::Bool(true),
                    m.clone(),
                    m.clone(),
                    m.clone(),
                    m.clone(),
                    m.clone()
                ],
                vec![
                    t("Bob"),
                    m.clone(),
                    t("Unknown"),
                    Cell::Int(0),
                    m.clone(),
                    Cell::Float(1.5),
                    t("x"),
                    Cell::Bool(true),
                    m.clone(),
                    m.clone(),
                    m.clone(),
                    m.clone(),
                    m.clone()
                ],
                vec![
                    t("Cy"),
                    m.clone(),
                    t(" "),
                    t("9"),
                    t("9"),
                    Cell::Float(1.5),
                    t("x"),
                    Cell::Bool(true),
                    m.clone(),
                    m.clone(),
                    m.clone(),
                    m.clone(),
                    m.clone()
                ],
            ]
        );
        assert_eq!(
            mapped.warnings,
            vec![
                "Source column 'nope' not found",
                "Source column 'zzz' not found",
                "Source column 'zzz' not found"
            ]
        );
    }

    #[test]
    fn empty_mapping_is_rejected() {
        let err = map_columns(&input(), &Map::new()).unwrap_err();
        assert_eq!(err.to_string(), "No column mapping provided");
    }

    #[test]
    fn writes_the_mapped_workbook() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.xlsx");
        let warnings = map_columns_to_file(
            &input(),
            &mapping(json!({"b": "city", "a": "name"})),
            &path,
            &WorkbookStyle::default(),
        )
        .unwrap();
        assert!(warnings.is_empty());
        let read = crate::table::read::read_workbook(&path, None, &Default::default()).unwrap();
        assert_eq!(read.table.columns, vec!["b", "a"]);
        assert_eq!(read.table.row_count(), 3);
        assert_eq!(read.table.rows[0], vec![Cell::text("Oslo"), Cell::text("Ann")]);
    }
}
