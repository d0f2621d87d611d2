//! The CSV width and field-size guard (issue 11 item 9): the raw text is scanned with `csv-core` (the
//! parser under the `csv` crate, same dialect) as it is read, so a record with more fields than Excel's
//! 16,384 columns, or a field longer than Excel's 32,767 characters, is refused while parsing — before
//! the `csv` reader grows a record (or the header its names) to the size of the file. The scan keeps only
//! counters and a small scratch buffer.

use std::io::{self, Read};

use csv_core::{ReadFieldResult, Reader, ReaderBuilder};

use crate::table::error::TableError;
use crate::table::read::{EXCEL_MAX_CELL_CHARS, EXCEL_MAX_COLUMNS};

/// Scratch a field is unquoted into, whole: longer than any field of at most 32,767 characters can be
/// (4 bytes each), so a full scratch is a field surely over the limit, and characters are only counted
/// for the rare field of more than 32,767 bytes.
const SCRATCH_BYTES: usize = 4 * EXCEL_MAX_CELL_CHARS + 4;

/// Marker carried inside the `io::Error` of a read stopped by the guard.
#[derive(Debug, Clone, Copy)]
enum LimitReached {
    /// (1-based record number, header included).
    Columns { row: u64 },
    /// (1-based record and field numbers).
    FieldLength { row: u64, column: u64 },
}

impl std::fmt::Display for LimitReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.table_error())
    }
}

impl std::error::Error for LimitReached {}

impl LimitReached {
    fn table_error(self) -> TableError {
        match self {
            LimitReached::Columns { row } => {
                TableError::TooManyColumns { row, max_columns: EXCEL_MAX_COLUMNS as u64 }
            }
            LimitReached::FieldLength { row, column } => {
                TableError::FieldTooLong { row, column, max_characters: EXCEL_MAX_CELL_CHARS as u64 }
            }
        }
    }
}

/// The table error of a read the guard stopped, if `err` is one.
pub fn guard_error(err: &io::Error) -> Option<TableError> {
    err.get_ref().and_then(|inner| inner.downcast_ref::<LimitReached>()).map(|l| l.table_error())
}

/// A CSV read error as the table layer reports it: a guard refusal keeps its own error (422).
pub fn read_error(err: csv::Error) -> TableError {
    if let csv::ErrorKind::Io(io) = err.kind() {
        if let Some(limit) = guard_error(io) {
            return limit;
        }
    }
    TableError::ReadCsv(err.to_string())
}

/// A `Read` adapter over decoded (UTF-8) CSV text that fails once a record or field is too large.
pub struct CsvGuard<R> {
    inner: R,
    parser: Reader,
    scratch: Box<[u8]>,
    /// Fields completed in the current record, and bytes of the field being scanned (in `scratch`).
    fields: u64,
    field_bytes: usize,
    /// 1-based number of the record being scanned.
    row: u64,
    ended: bool,
}

impl<R: Read> CsvGuard<R> {
    /// Scans `inner` with the reader's dialect (`delimiter`, `"` quotes, doubled quotes).
    pub fn new(inner: R, delimiter: u8) -> CsvGuard<R> {
        let parser = ReaderBuilder::new().delimiter(delimiter).quote(b'"').double_quote(true).build();
        CsvGuard {
            inner,
            parser,
            scratch: vec![0; SCRATCH_BYTES].into_boxed_slice(),
            fields: 0,
            field_bytes: 0,
            row: 1,
            ended: false,
        }
    }

    /// Scans `input`; an empty `input` is the end of the text (completes the last record).
    /// csv-core returns `End` for it after the last field, so the loop ends.
    fn scan(&mut self, mut input: &[u8]) -> Result<(), LimitReached> {
        let at_end = input.is_empty();
        loop {
            // An empty input means "no more data" to csv-core: only pass one at the real end.
            if input.is_empty() && !at_end {
                return Ok(());
            }
            let (result, consumed, written) =
                self.parser.read_field(input, &mut self.scratch[self.field_bytes..]);
            input = &input[consumed..];
            self.field_bytes += written;
            if self.field_bytes > EXCEL_MAX_CELL_CHARS && self.field_is_too_long() {
                return Err(LimitReached::FieldLength { row: self.row, column: self.fields + 1 });
            }
            match result {
                ReadFieldResult::InputEmpty => return Ok(()),
                // Unreachable: a full scratch is a field too long (refused above).
                ReadFieldResult::OutputFull => {}
                ReadFieldResult::Field { record_end } => {
                    self.fields += 1;
                    self.field_bytes = 0;
                    if self.fields > EXCEL_MAX_COLUMNS as u64 {
                        return Err(LimitReached::Columns { row: self.row });
                    }
                    if record_end {
                        self.fields = 0;
                        self.row += 1;
                    }
                }
                ReadFieldResult::End => return Ok(()),
            }
        }
    }
}

impl<R> CsvGuard<R> {
    /// Whether the field in `scratch` has more characters than Excel allows (UTF-8 characters are the
    /// bytes that do not continue a sequence; a full scratch holds more than 4 bytes per allowed one).
    fn field_is_too_long(&self) -> bool {
        let field = &self.scratch[..self.field_bytes];
        field.len() == self.scratch.len()
            || field.iter().filter(|&&b| b & 0xC0 != 0x80).count() > EXCEL_MAX_CELL_CHARS
    }
}

impl<R: Read> Read for CsvGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.scan(&buf[..n]).map_err(io::Error::other)?;
        } else if !buf.is_empty() && !self.ended {
            self.ended = true;
            self.scan(&[]).map_err(io::Error::other)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(text: &[u8]) -> Result<Vec<u8>, TableError> {
        let mut out = Vec::new();
        let mut guard = CsvGuard::new(text, b',');
        match guard.read_to_end(&mut out) {
            Ok(_) => Ok(out),
            Err(e) => Err(guard_error(&e).expect("a guard error")),
        }
    }

    #[test]
    fn normal_text_passes_unchanged() {
        let text = "a,b,\"c,\"\"d\"\"\"\n1,2,3\n\n\"multi\nline\",é,\r\n".as_bytes();
        assert_eq!(scan_all(text).unwrap(), text);
        let exactly = format!("{}\n", "x".repeat(EXCEL_MAX_CELL_CHARS));
        assert!(scan_all(exactly.as_bytes()).is_ok());
        let widest = format!("{}x\n", "x,".repeat(EXCEL_MAX_COLUMNS - 1));
        assert!(scan_all(widest.as_bytes()).is_ok());
    }

    #[test]
    fn too_many_fields_stop_the_read_early() {
        let wide = format!("a\n{}", "a,".repeat(1_000_000));
        let mut guard = CsvGuard::new(wide.as_bytes(), b',');
        let mut buf = [0u8; 8192];
        let mut read = 0;
        let err = loop {
            match guard.read(&mut buf) {
                Ok(0) => panic!("the wide record was not refused"),
                Ok(n) => read += n,
                Err(e) => break guard_error(&e).unwrap(),
            }
        };
        assert!(matches!(err, TableError::TooManyColumns { row: 2, max_columns: 16_384 }), "{err}");
        assert!(read < 64 * 1024, "stopped after {read} bytes");
        // The last record without a line end counts too.
        let at_end = format!("h\n{}x", "x,".repeat(EXCEL_MAX_COLUMNS));
        assert!(matches!(scan_all(at_end.as_bytes()), Err(TableError::TooManyColumns { row: 2, .. })));
    }

    #[test]
    fn long_fields_are_refused_by_characters() {
        let long = format!("a,b\n1,\"{}\"\n", "é".repeat(EXCEL_MAX_CELL_CHARS + 1));
        let err = scan_all(long.as_bytes()).unwrap_err();
        assert!(
            matches!(err, TableError::FieldTooLong { row: 2, column: 2, max_characters: 32_767 }),
            "{err}"
        );
        let semicolons = format!("a;b\n1;{}\n", "x".repeat(40_000));
        let mut guard = CsvGuard::new(semicolons.as_bytes(), b';');
        let err = guard.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(matches!(guard_error(&err), Some(TableError::FieldTooLong { row: 2, column: 2, .. })));
    }
}
