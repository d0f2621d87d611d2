//! File information (operations.md §3.1) for `excel/info` and `csv/info`, plus per-column inferred types
//! computed from a table or a streamed CSV.

use indexmap::IndexMap;
use serde::Serialize;

use crate::table::infer::{InferredType, TypeInference, STORAGE_TYPE};
use crate::table::names::display_file_name;
use crate::table::read::{stream_csv, CsvCursor, CsvInput, CsvSource, SheetSummary};
use crate::table::{Table, TableError};

/// The `data` of the info endpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileInfo {
    pub file_name: String,
    pub file_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sheets: Option<Vec<String>>,
    pub rows: u64,
    pub columns: usize,
    pub column_names: Vec<String>,
    pub data_types: IndexMap<String, String>,
    pub inferred_types: IndexMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

impl FileInfo {
    fn new(client_name: &str, columns: &[String], rows: u64, inferred: &[InferredType]) -> FileInfo {
        let file_name = display_file_name(client_name);
        FileInfo {
            // Never the real temporary path (rest-api.md §7.2.1 IMPROVE).
            file_path: format!("uploads/{file_name}"),
            file_name,
            sheets: None,
            rows,
            columns: columns.len(),
            column_names: columns.to_vec(),
            data_types: columns.iter().map(|c| (c.clone(), STORAGE_TYPE.to_string())).collect(),
            inferred_types: columns
                .iter()
                .zip(inferred)
                .map(|(c, t)| (c.clone(), t.as_str().to_string()))
                .collect(),
            delimiter: None,
            encoding: None,
        }
    }
}

/// §2.2 inferred type of every column of a table.
pub fn table_inferred_types(table: &Table) -> Vec<InferredType> {
    let mut inference = vec![TypeInference::new(); table.columns.len()];
    for row in &table.rows {
        for (slot, cell) in inference.iter_mut().zip(row) {
            slot.push(cell);
        }
    }
    inference.iter().map(TypeInference::finish).collect()
}

/// §2.2 inferred types of streamed rows (flat memory), plus the number of rows seen.
pub fn stream_inferred_types<I>(width: usize, rows: I) -> Result<(Vec<InferredType>, u64), TableError>
where
    I: IntoIterator<Item = Result<Vec<crate::table::Cell>, TableError>>,
{
    let mut inference = vec![TypeInference::new(); width];
    let mut count = 0u64;
    for row in rows {
        let row = row?;
        for (slot, cell) in inference.iter_mut().zip(&row) {
            slot.push(cell);
        }
        count += 1;
    }
    Ok((inference.iter().map(TypeInference::finish).collect(), count))
}

/// `excel/info`: facts of the first sheet plus all sheet names, from a streamed summary of the sheet.
pub fn excel_info(client_name: &str, sheet: &SheetSummary) -> FileInfo {
    let mut info = FileInfo::new(client_name, &sheet.columns, sheet.rows, &sheet.inferred);
    info.sheets = Some(sheet.sheets.clone());
    info
}

/// §2.2 inferred types of the rows still in `cursor` (reused row buffers, flat memory).
fn cursor_inferred_types(width: usize, cursor: &mut CsvCursor) -> Result<Vec<InferredType>, TableError> {
    let mut inference = vec![TypeInference::new(); width];
    while let Some(row) = cursor.next_row()? {
        for (slot, cell) in inference.iter_mut().zip(row) {
            slot.push(cell);
        }
    }
    Ok(inference.iter().map(TypeInference::finish).collect())
}

/// `csv/info` in a single streamed pass over the file or the arriving upload (`stream_csv`); same result
/// as [`csv_info`].
pub fn csv_file_info(
    client_name: &str,
    input: impl CsvInput,
    encodings: &[String],
) -> Result<FileInfo, TableError> {
    stream_csv(input, encodings, |head, cursor| {
        let inferred = cursor_inferred_types(head.columns.len(), cursor)?;
        let mut info = FileInfo::new(client_name, &head.columns, cursor.rows_read(), &inferred);
        info.delimiter = Some(head.delimiter_text());
        info.encoding = Some(head.encoding.clone());
        Ok(info)
    })
}

/// Column names and §2.2 inferred types of a CSV file, in a single streamed pass.
pub fn csv_file_inferred_types(
    input: impl CsvInput,
    encodings: &[String],
) -> Result<(Vec<String>, Vec<InferredType>), TableError> {
    stream_csv(input, encodings, |head, cursor| {
        Ok((head.columns.clone(), cursor_inferred_types(head.columns.len(), cursor)?))
    })
}

/// `csv/info`: streams the rows once for the inferred types; reports delimiter and encoding.
pub fn csv_info(client_name: &str, source: CsvSource) -> Result<FileInfo, TableError> {
    let CsvSource { columns, delimiter, encoding, rows, .. } = source;
    let (inferred, count) = stream_inferred_types(columns.len(), rows)?;
    let mut info = FileInfo::new(client_name, &columns, count, &inferred);
    info.delimiter = Some((delimiter as char).to_string());
    info.encoding = Some(encoding);
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::read::ReadLimits;
    use serde_json::json;

    fn csv(dir: &std::path::Path, bytes: &[u8]) -> CsvSource {
        let path = dir.join("in.csv");
        std::fs::write(&path, bytes).unwrap();
        CsvSource::open(&path, &["utf-8".to_string(), "latin1".to_string()]).unwrap()
    }

    #[test]
    fn csv_info_reports_counts_names_types_delimiter_and_encoding() {
        // Acceptance §13.1 fact 1.
        let dir = tempfile::tempdir().unwrap();
        let source = csv(dir.path(), b"name;email;age\nJohn;j@x;30\nJane;ja@x;25\nBob;b@x;41\n");
        let info = csv_info("my contacts.csv", source).unwrap();
        let value = serde_json::to_value(&info).unwrap();
        assert_eq!(
            value,
            json!({
                "file_name": "my_contacts.csv",
                "file_path": "uploads/my_contacts.csv",
                "rows": 3,
                "columns": 3,
                "column_names": ["name", "email", "age"],
                "data_types": {"name": "object", "email": "object", "age": "object"},
                "inferred_types": {"name": "string", "email": "string", "age": "integer"},
                "delimiter": ";",
                "encoding": "utf-8"
            })
        );
        assert!(info.column_names.contains(&"name".to_string()));
    }

    #[test]
    fn single_pass_info_equals_the_two_pass_one() {
        let dir = tempfile::tempdir().unwrap();
        for bytes in [&b"name;email;age\nJohn;j@x;30\nJane;ja@x;25\n"[..], b"a,b\n1,2\n3,4,5\n", b"x\n\xe9\n"]
        {
            let path = dir.path().join("in.csv");
            std::fs::write(&path, bytes).unwrap();
            let encodings = ["utf-8".to_string(), "latin1".to_string()];
            let two_pass = csv_info("f.csv", CsvSource::open(&path, &encodings).unwrap()).unwrap();
            assert_eq!(csv_file_info("f.csv", &path, &encodings).unwrap(), two_pass);
            let (columns, inferred) = csv_file_inferred_types(&path, &encodings).unwrap();
            assert_eq!(columns, two_pass.column_names);
            let names: Vec<&str> = inferred.iter().map(|t| t.as_str()).collect();
            assert_eq!(names, two_pass.inferred_types.values().map(String::as_str).collect::<Vec<_>>());
        }
    }

    #[test]
    fn leading_zero_columns_are_text_typed() {
        // Acceptance §13.1 fact 2: every column's type is text.
        let dir = tempfile::tempdir().unwrap();
        let source = csv(dir.path(), b"zip_code,customer_id\n021201,00001234\n00123,00000001\n");
        let info = csv_info("x.csv", source).unwrap();
        assert!(info.data_types.values().all(|t| t == "object"));
        assert!(info.inferred_types.values().all(|t| t == "string"));
    }

    #[test]
    fn excel_info_lists_sheets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.xlsx");
        let mut wb = rust_xlsxwriter::Workbook::new();
        let ws = wb.add_worksheet();
        ws.set_name("Orders").unwrap();
        ws.write_string(0, 0, "order_no").unwrap();
        ws.write_string(0, 1, "amount").unwrap();
        ws.write_string(1, 0, "A1").unwrap();
        ws.write_string(1, 1, "10.5").unwrap();
        wb.add_worksheet().set_name("Lookup").unwrap();
        wb.save(&path).unwrap();
        let read = crate::table::read::summarize_workbook(&path, None, &ReadLimits::default()).unwrap();
        let info = excel_info("../sales_q1.xlsx", &read);
        assert_eq!(info.file_name, "sales_q1.xlsx");
        assert_eq!(info.sheets, Some(vec!["Orders".to_string(), "Lookup".to_string()]));
        assert_eq!((info.rows, info.columns), (1, 2));
        assert_eq!(info.inferred_types["amount"], "number");
        assert_eq!(info.delimiter, None);
        let value = serde_json::to_value(&info).unwrap();
        assert!(value.get("delimiter").is_none() && value.get("encoding").is_none());
    }

    /// The streamed summary equals reading the table and inferring over it, on awkward sheets.
    #[test]
    fn sheet_summary_matches_the_materialised_table() {
        use crate::table::read::{read_workbook, summarize_workbook};
        let dir = tempfile::tempdir().unwrap();
        let mut wb = rust_xlsxwriter::Workbook::new();
        // Blank and duplicate header names, ragged rows, a number header, a column that only appears late.
        let ws = wb.add_worksheet();
        ws.write_string(0, 0, "a").unwrap();
        ws.write_string(0, 2, "a").unwrap();
        ws.write_number(0, 3, 7.0).unwrap();
        ws.write_number(1, 0, 1.0).unwrap();
        ws.write_string(1, 1, "x").unwrap();
        ws.write_string(2, 0, "007").unwrap();
        ws.write_boolean(2, 2, true).unwrap();
        ws.write_string(3, 5, "2024-01-02").unwrap();
        ws.write_string(4, 1, "").unwrap();
        // Only a header.
        wb.add_worksheet().write_string(0, 0, "only").unwrap();
        // Empty.
        wb.add_worksheet();
        // Data starting below and right of A1, with an error-like formula result left empty.
        let ws = wb.add_worksheet();
        ws.write_number(3, 2, 2.5).unwrap();
        ws.write_string(5, 4, " true ").unwrap();
        let path = dir.path().join("odd.xlsx");
        wb.save(&path).unwrap();
        let limits = ReadLimits::default();
        for sheet in ["Sheet1", "Sheet2", "Sheet3", "Sheet4"] {
            let read = read_workbook(&path, Some(sheet), &limits).unwrap();
            let summary = summarize_workbook(&path, Some(sheet), &limits).unwrap();
            assert_eq!(summary.sheets, read.sheets);
            assert_eq!(summary.sheet_name, read.sheet_name);
            assert_eq!(summary.columns, read.table.columns, "{sheet}");
            assert_eq!(summary.rows, read.table.row_count() as u64, "{sheet}");
            assert_eq!(summary.inferred, table_inferred_types(&read.table), "{sheet}");
        }
        // The cell limit is enforced alike.
        let tight = ReadLimits { max_cells: 5, ..limits };
        let a = read_workbook(&path, Some("Sheet1"), &tight).unwrap_err().to_string();
        let b = summarize_workbook(&path, Some("Sheet1"), &tight).unwrap_err().to_string();
        assert_eq!(a, b);
    }

    #[test]
    fn unsanitizable_names_become_file() {
        let info = FileInfo::new("....", &[], 0, &[]);
        assert_eq!((info.file_name.as_str(), info.file_path.as_str()), ("file", "uploads/file"));
    }
}
