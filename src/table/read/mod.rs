//! Readers that turn uploaded files into tables: content sniffing, CSV (streaming, encoding and delimiter
//! detection) and workbooks (xlsx/xlsm/xls via calamine) with size guards.

mod csv;
pub mod decode;
mod header;
mod sniff;
mod workbook;

use crate::config::FileConfig;
use crate::table::error::TableError;

pub use self::csv::{
    read_csv_table, read_csv_table_tracked, spool_csv_tracked, stream_csv, ArrivingFile, CsvCursor, CsvHead,
    CsvInput, CsvRow, CsvRows, CsvSource, CsvTable, NextChunk,
};
pub use header::unique_header;
pub use sniff::{detect_kind, FileKind};
pub use workbook::{
    check_zip_limits, number_text, read_workbook, read_workbook_tracked, spool_workbook,
    spool_workbook_tracked, summarize_workbook, workbook_sheet_names, SheetSummary, WorkbookTable,
};

/// Excel's limit on the characters of one cell; longer cells are refused as they are read or produced.
pub const EXCEL_MAX_CELL_CHARS: usize = 32_767;
/// Excel's limit on the columns of a sheet; CSV records with more fields are refused while parsing.
pub const EXCEL_MAX_COLUMNS: usize = 16_384;

/// True when `text` has more than [`EXCEL_MAX_CELL_CHARS`] characters (counted only when the byte length
/// leaves a doubt).
pub fn exceeds_cell_limit(text: &str) -> bool {
    text.len() > EXCEL_MAX_CELL_CHARS
        && (text.len() > 4 * EXCEL_MAX_CELL_CHARS || text.chars().count() > EXCEL_MAX_CELL_CHARS)
}

/// Bounds applied while reading (config `file.max_uncompressed_mb`, `file.max_cells`, `file.max_output_mb`,
/// `file.max_compression_ratio`, `file.compression_check_min_mb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest total uncompressed size of an xlsx package (zip-bomb guard → 413).
    pub max_uncompressed_bytes: u64,
    /// Largest rows × columns a table may have, checked before materialising (→ 422).
    pub max_cells: u64,
    /// Budget on the bytes of cell text materialised from one sheet (shared-string bomb guard → 413).
    pub max_text_bytes: u64,
    /// Largest uncompressed:compressed ratio of a worksheet or shared-strings part (→ 413); 0 = off.
    pub max_compression_ratio: u64,
    /// Parts that decompress to fewer bytes than this are never judged by their ratio.
    pub compression_check_min_bytes: u64,
}

const MB: u64 = 1024 * 1024;

impl ReadLimits {
    /// The limits the `file.*` keys configure, for files a client sent.
    pub fn from_config(file: &FileConfig) -> ReadLimits {
        ReadLimits {
            max_uncompressed_bytes: file.max_uncompressed_mb.saturating_mul(MB),
            max_cells: file.max_cells,
            max_text_bytes: file.max_output_mb.saturating_mul(MB),
            max_compression_ratio: file.max_compression_ratio,
            compression_check_min_bytes: file.compression_check_min_mb.saturating_mul(MB),
        }
    }

    /// The same limits for a file this service wrote itself (a workflow step reading an earlier step's
    /// output): the zip-bomb guards (uncompressed size, compression ratio) and the cell count protect
    /// against clients and must never refuse what a previous step produced, so they are off. The text
    /// budget (`file.max_output_mb`) stays: it bounds what the reading step materialises.
    pub fn for_service_output(self) -> ReadLimits {
        ReadLimits { max_uncompressed_bytes: u64::MAX, max_cells: u64::MAX, max_compression_ratio: 0, ..self }
    }

    /// The `file.max_output_mb` the text budget came from, for error messages.
    pub fn max_output_mb(&self) -> u64 {
        self.max_text_bytes / MB
    }
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits::from_config(&FileConfig::default())
    }
}

/// What one read has materialised so far, charged cell by cell against [`ReadLimits::max_text_bytes`].
#[derive(Debug)]
pub struct TextBudget {
    max_bytes: u64,
    used: u64,
}

impl TextBudget {
    pub fn new(limits: &ReadLimits) -> TextBudget {
        TextBudget { max_bytes: limits.max_text_bytes, used: 0 }
    }

    /// Charges one cell's text read at (`row`, `col`) (0-based): a cell over Excel's character limit is
    /// refused (422), and so is the read once the budget is spent (413).
    pub fn charge_text(&mut self, text: &str, row: u32, col: u32) -> Result<(), TableError> {
        if exceeds_cell_limit(text) {
            return Err(TableError::CellTooLong {
                cell: cell_reference(row, col),
                characters: text.chars().count() as u64,
                max_characters: EXCEL_MAX_CELL_CHARS as u64,
            });
        }
        self.used = self.used.saturating_add(text.len() as u64);
        if self.used > self.max_bytes {
            return Err(TableError::OutputTooLarge { max_mb: self.max_bytes / MB });
        }
        Ok(())
    }
}

/// `A1`-style reference of a 0-based position.
pub fn cell_reference(row: u32, col: u32) -> String {
    let mut letters = Vec::new();
    let mut n = u64::from(col) + 1;
    while n > 0 {
        let rem = ((n - 1) % 26) as u8;
        letters.push(b'A' + rem);
        n = (n - 1) / 26;
    }
    letters.reverse();
    format!("{}{}", String::from_utf8_lossy(&letters), u64::from(row) + 1)
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn cell_references_and_the_character_limit() {
        assert_eq!(cell_reference(0, 0), "A1");
        assert_eq!(cell_reference(6, 1), "B7");
        assert_eq!(cell_reference(0, 25), "Z1");
        assert_eq!(cell_reference(9, 26), "AA10");
        assert_eq!(cell_reference(0, 16_383), "XFD1");
        assert!(!exceeds_cell_limit(&"a".repeat(EXCEL_MAX_CELL_CHARS)));
        assert!(exceeds_cell_limit(&"a".repeat(EXCEL_MAX_CELL_CHARS + 1)));
        // Characters, not bytes: 32,767 two-byte characters fit.
        assert!(!exceeds_cell_limit(&"é".repeat(EXCEL_MAX_CELL_CHARS)));
    }

    #[test]
    fn our_own_files_keep_only_the_text_budget() {
        let limits = ReadLimits::default();
        assert_eq!(limits.max_compression_ratio, 100);
        assert_eq!(limits.compression_check_min_bytes, 16 * MB);
        assert_eq!(limits.max_text_bytes, 1024 * MB);
        let trusted = limits.for_service_output();
        let unlimited = ReadLimits { max_uncompressed_bytes: u64::MAX, max_cells: u64::MAX, ..limits };
        assert_eq!(trusted, ReadLimits { max_compression_ratio: 0, ..unlimited });
    }

    #[test]
    fn the_budget_refuses_long_cells_and_overspending() {
        let limits = ReadLimits { max_text_bytes: 10, ..ReadLimits::default() };
        let mut budget = TextBudget::new(&limits);
        budget.charge_text("hello", 0, 0).unwrap();
        budget.charge_text("world", 0, 1).unwrap();
        assert!(matches!(budget.charge_text("!", 1, 0), Err(TableError::OutputTooLarge { .. })));
        let mut budget = TextBudget::new(&ReadLimits::default());
        let err = budget.charge_text(&"x".repeat(40_000), 6, 1).unwrap_err();
        assert!(
            matches!(err, TableError::CellTooLong { ref cell, characters: 40_000, .. } if cell == "B7"),
            "{err}"
        );
    }
}
