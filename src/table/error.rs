//! The error type of the table layer (readers and writers). Each variant documents the HTTP status the
//! HTTP layer is expected to map it to (rest-api.md §4.2).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TableError {
    /// 400: the workbook is of the right kind but could not be read (corrupt, encrypted, ...).
    #[error("Failed to read Excel file: {0}")]
    ReadExcel(String),

    /// 400: the CSV could not be parsed (including the empty file: "No columns to parse from file").
    #[error("Failed to read CSV file: {0}")]
    ReadCsv(String),

    /// 400: no configured encoding decodes the whole file. Holds the encoding names tried, in order.
    #[error("Unable to read CSV file with supported encodings: {}", python_list(.0))]
    Encoding(Vec<String>),

    /// 415: the content is not the kind the endpoint needs (a CSV sent to an Excel endpoint, a PDF, ...).
    #[error("Unsupported file type: expected {expected}, found {found}")]
    UnsupportedKind { expected: &'static str, found: String },

    /// 413: the workbook would decompress to more than the configured limit (zip bomb guard).
    #[error("File too large: {0}")]
    TooLarge(String),

    /// 422: the sheet claims or holds more cells than the configured limit (dimension bomb guard).
    #[error("Sheet too large: {rows} rows x {columns} columns exceeds the limit of {max_cells} cells")]
    TooManyCells { rows: u64, columns: u64, max_cells: u64 },

    /// 413: an operation would materialise or write more text than `file.max_output_mb` allows
    /// (shared-string and amplification bombs).
    #[error(
        "Output too large: the operation would produce more than {max_mb} MB of text (config file.max_output_mb)"
    )]
    OutputTooLarge { max_mb: u64 },

    /// 413: a workbook part decompresses far more than real spreadsheets do (deflate bomb under the size
    /// limits), refused from the zip directory before parsing.
    #[error(
        "File too large: workbook part '{part}' expands {ratio}:1 when unzipped, more than the allowed \
         {max_ratio}:1 (config file.max_compression_ratio)"
    )]
    CompressionRatio { part: String, ratio: u64, max_ratio: u64 },

    /// 422: a cell longer than Excel's 32,767-character limit, refused when it is read.
    #[error("Cell {cell} has {characters} characters, more than Excel's limit of {max_characters}")]
    CellTooLong { cell: String, characters: u64, max_characters: u64 },

    /// 422: a CSV record with more fields than Excel's column limit, refused while parsing.
    #[error("CSV row {row} has more than {max_columns} columns (Excel's limit)")]
    TooManyColumns { row: u64, max_columns: u64 },

    /// 422: a CSV field longer than Excel's 32,767-character limit, refused while parsing.
    #[error("CSV row {row}, column {column} is longer than Excel's limit of {max_characters} characters")]
    FieldTooLong { row: u64, column: u64, max_characters: u64 },

    /// 415: a text encoding the readers do not decode (a UTF-32 byte-order mark).
    #[error(
        "Unsupported file encoding: {0} (CSV files must be UTF-8, UTF-16 or a configured 8-bit encoding)"
    )]
    UnsupportedEncoding(String),

    /// 422: a named sheet does not exist; `available` lists the workbook's sheets in order.
    #[error("Worksheet named '{name}' not found. Available sheets: {}", available.join(", "))]
    SheetNotFound { name: String, available: Vec<String> },

    /// 422: a sheet name Excel would refuse (rest-api.md §7.3.2).
    #[error("Invalid sheet name '{name}': {reason}")]
    InvalidSheetName { name: String, reason: String },

    /// 400: writing an output workbook failed.
    #[error("Failed to write Excel file: {0}")]
    WriteExcel(String),

    /// 400: writing an output CSV or JSON file failed.
    #[error("Failed to write file: {0}")]
    WriteFile(String),

    /// 503: the workflow step reading or writing this was stopped (cancel, step timeout, shutdown). REST
    /// endpoints never stop their work, so they never see it.
    #[error("Processing was stopped")]
    Cancelled,

    /// 507: the disk filled up while an output (or its temporary files) was written; the partial output
    /// is removed.
    #[error("Insufficient storage: the disk is full, the output file could not be written")]
    StorageFull,

    /// 500: an unexpected I/O failure (temp files, ...); the detail is for the log only (a full disk is
    /// 507, see [`is_storage_full`]).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// True when `err` says the disk (or the user's quota) is full.
pub fn is_storage_full(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::StorageFull
        || err.kind() == std::io::ErrorKind::QuotaExceeded
        || err.raw_os_error().is_some_and(|code| code == libc::ENOSPC || code == libc::EDQUOT)
}

/// Renders names like a Python list repr: `['utf-8', 'latin1']`.
pub(crate) fn python_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_the_spec() {
        let cases: Vec<(TableError, &str)> = vec![
            (
                TableError::ReadCsv("No columns to parse from file".into()),
                "Failed to read CSV file: No columns to parse from file",
            ),
            (TableError::ReadExcel("bad zip".into()), "Failed to read Excel file: bad zip"),
            (TableError::WriteExcel("x".into()), "Failed to write Excel file: x"),
            (
                TableError::Encoding(vec!["utf-8".into(), "cp1252".into()]),
                "Unable to read CSV file with supported encodings: ['utf-8', 'cp1252']",
            ),
            (
                TableError::SheetNotFound { name: "X".into(), available: vec!["A".into(), "B".into()] },
                "Worksheet named 'X' not found. Available sheets: A, B",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }
}
