//! CSV to workbook conversion (`csv/convert-to-excel`, rest-api.md §7.3.2), streamed row by row.

use std::path::Path;

use serde_json::json;

use super::OpError;
use crate::engine::{Phase, StepControl};
use crate::table::read::{stream_csv, CsvInput, CsvSource};
use crate::table::write::{validate_sheet_name, RowSink, WorkbookSink, WorkbookStyle};
use crate::table::TableError;

/// The data sheet name: the requested one (validated up front, 422) or the configured default when the
/// field is absent or empty.
pub fn resolve_sheet_name(requested: Option<&str>, default: &str) -> Result<String, OpError> {
    let name = requested.filter(|s| !s.is_empty()).unwrap_or(default);
    validate_sheet_name(name).map_err(|e| match e {
        TableError::InvalidSheetName { reason, .. } => OpError::validation_with(
            format!("Invalid sheet_name '{name}': {reason}"),
            json!({ "field": "sheet_name" }),
        ),
        other => OpError::Table(other),
    })?;
    Ok(name.to_string())
}

/// Streams every CSV row into a standard workbook (§11.1) at `path`; returns the rows written.
pub fn csv_to_xlsx(source: CsvSource, path: &Path, style: &WorkbookStyle) -> Result<u64, OpError> {
    csv_to_xlsx_tracked(source, path, style, &StepControl::NONE)
}

/// [`csv_to_xlsx`] for a workflow step: one processing phase over the source's rows, stoppable between
/// two batches of rows (nothing is left at `path` then).
pub fn csv_to_xlsx_tracked(
    source: CsvSource,
    path: &Path,
    style: &WorkbookStyle,
    control: &StepControl,
) -> Result<u64, OpError> {
    control.begin(Phase::Processing, Some(source.row_count))?;
    control.set_input_rows(source.row_count);
    let mut sink = Box::new(WorkbookSink::create(path, style, &source.columns)?.stopped_by(control));
    for (i, row) in source.rows.enumerate() {
        sink.push_row(&row?)?;
        control.advance_to(i as u64 + 1)?;
    }
    control.check()?;
    Ok(sink.finish()?)
}

/// [`csv_to_xlsx`] in a single streamed pass over the file (`stream_csv`); rows go straight from the
/// reader's buffers into the constant-memory workbook.
pub fn csv_file_to_xlsx(
    input: impl CsvInput,
    encodings: &[String],
    path: &Path,
    style: &WorkbookStyle,
) -> Result<u64, OpError> {
    stream_csv(input, encodings, |head, cursor| {
        let mut sink = Box::new(WorkbookSink::create(path, style, &head.columns)?);
        while let Some(row) = cursor.next_row()? {
            sink.push_row(row)?;
        }
        Ok(sink.finish()?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::read::{read_workbook, ReadLimits};
    use crate::table::Cell;

    #[test]
    fn sheet_names_are_validated_up_front() {
        assert_eq!(resolve_sheet_name(None, "Sheet1").unwrap(), "Sheet1");
        assert_eq!(resolve_sheet_name(Some(""), "Sheet1").unwrap(), "Sheet1");
        assert_eq!(resolve_sheet_name(Some("TestSheet"), "Sheet1").unwrap(), "TestSheet");
        let err = resolve_sheet_name(Some("a/b"), "Sheet1").unwrap_err();
        assert!(matches!(err, OpError::Validation { .. }));
        assert_eq!(
            err.to_string(),
            "Invalid sheet_name 'a/b': the character / is not allowed in a sheet name"
        );
        assert!(resolve_sheet_name(Some(&"x".repeat(32)), "Sheet1").is_err());
    }

    #[test]
    fn converts_the_three_row_csv() {
        // Acceptance §13.1 fact 5.
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("contacts.csv");
        std::fs::write(
            &input,
            "name,email,age\nJohn,j@x.com,30\nJane,ja@x.com,25\nBob,=HYPERLINK(\"x\"),041\n",
        )
        .unwrap();
        let source = CsvSource::open(&input, &["utf-8".to_string()]).unwrap();
        let out = dir.path().join("out.xlsx");
        let style = WorkbookStyle { data_sheet_name: "TestSheet".into(), ..WorkbookStyle::default() };
        assert_eq!(csv_to_xlsx(source, &out, &style).unwrap(), 3);
        let single = dir.path().join("single.xlsx");
        assert_eq!(csv_file_to_xlsx(&input, &["utf-8".to_string()], &single, &style).unwrap(), 3);
        let read_single = read_workbook(&single, Some("TestSheet"), &ReadLimits::default()).unwrap();
        let read = read_workbook(&out, Some("TestSheet"), &ReadLimits::default()).unwrap();
        assert_eq!(read_single.table, read.table);
        assert_eq!(read.sheets, vec!["TestSheet", "Info"]);
        assert_eq!(read.table.row_count(), 3);
        assert_eq!(
            read.table.rows[2],
            vec![Cell::text("Bob"), Cell::text("=HYPERLINK(\"x\")"), Cell::text("041")]
        );
    }
}
