//! Readers that turn uploaded files into tables: content sniffing, CSV (streaming, encoding and delimiter
//! detection) and workbooks (xlsx/xlsm/xls via calamine) with size guards.

mod csv;
pub mod decode;
mod header;
mod sniff;
mod workbook;

pub use self::csv::{
    read_csv_table, read_csv_table_tracked, stream_csv, CsvCursor, CsvHead, CsvRow, CsvRows, CsvSource,
    CsvTable,
};
pub use header::unique_header;
pub use sniff::{detect_kind, FileKind};
pub use workbook::{
    check_zip_limits, number_text, read_workbook, read_workbook_tracked, spool_workbook, summarize_workbook,
    workbook_sheet_names, SheetSummary, WorkbookTable,
};

/// Bounds applied while reading (config `file.max_uncompressed_mb` and the cells-per-request limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest total uncompressed size of an xlsx package (zip-bomb guard → 413).
    pub max_uncompressed_bytes: u64,
    /// Largest rows × columns a table may have, checked before materialising (→ 422).
    pub max_cells: u64,
}

impl ReadLimits {
    /// For files the service wrote itself (workflow step outputs read by the next step): the zip-bomb
    /// and size guards protect against clients, and must never refuse what a previous step produced.
    pub fn for_service_output() -> ReadLimits {
        ReadLimits { max_uncompressed_bytes: u64::MAX, max_cells: u64::MAX }
    }
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits { max_uncompressed_bytes: 500 * 1024 * 1024, max_cells: 50_000_000 }
    }
}
