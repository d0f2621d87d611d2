//! The CSV width and field-size guard (issue 11 item 9): the raw text is scanned with `csv-core` (the
//! parser under the `csv` crate, same dialect) as it is read, so a record with more fields than Excel's
//! 16,384 columns, or a field longer than Excel's 32,767 characters, is refused while parsing — before
//! the `csv` reader grows a record (or the header its names) to the size of the file. The scan keeps only
//! counters and a small scratch buffer.

use std::io::{self, Read};

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};

use crate::table::error::TableError;
use crate::table::read::{EXCEL_MAX_CELL_CHARS, EXCEL_MAX_COLUMNS};

/// Scratch the record being scanned is unquoted into, from the start of its current field: longer than
/// any field of at most 32,767 characters can be (4 bytes each), so a field filling it is surely over the
/// limit, and characters are only counted for the rare field of more than 32,767 bytes.
const SCRATCH_BYTES: usize = 4 * EXCEL_MAX_CELL_CHARS + 4;

/// Field ends taken from csv-core per call (a wider record just takes more calls).
const ENDS_PER_CALL: usize = 256;

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
///
/// It scans with csv-core's record reader (the fast path the `csv` crate uses too) into a fixed scratch
/// buffer: only the current field's bytes are kept, the field ends give every field's length, and a field
/// is looked at byte by byte only when it is longer than 32,767 bytes.
pub struct CsvGuard<R> {
    inner: R,
    parser: Reader,
    scratch: Box<[u8]>,
    ends: Box<[usize]>,
    /// Offset in the record (csv-core's count of unquoted bytes) of `scratch[0]`, and bytes held after it.
    base: usize,
    held: usize,
    /// Offset in the record where the current field starts (the end of the previous one).
    field_start: usize,
    /// Fields completed in the current record.
    fields: u64,
    /// 1-based number of the record being scanned.
    row: u64,
    ended: bool,
}

impl<R: Read> CsvGuard<R> {
    /// Scans `inner` with the reader's dialect (`delimiter`, `"` quotes, doubled quotes).
    pub fn new(inner: R, delimiter: u8) -> CsvGuard<R> {
        // The default DFA engine, whose field ends count from the record's start across calls (so the
        // output buffer can be reused between calls).
        let parser = ReaderBuilder::new().delimiter(delimiter).quote(b'"').double_quote(true).build();
        CsvGuard {
            inner,
            parser,
            scratch: vec![0; SCRATCH_BYTES].into_boxed_slice(),
            ends: vec![0; ENDS_PER_CALL].into_boxed_slice(),
            base: 0,
            held: 0,
            field_start: 0,
            fields: 0,
            row: 1,
            ended: false,
        }
    }

    /// Scans `input`; an empty `input` is the end of the text (completes the last record).
    /// csv-core returns `End` for it after the last record, so the loop ends.
    fn scan(&mut self, mut input: &[u8]) -> Result<(), LimitReached> {
        let at_end = input.is_empty();
        loop {
            // An empty input means "no more data" to csv-core: only pass one at the real end.
            if input.is_empty() && !at_end {
                return Ok(());
            }
            if self.held == self.scratch.len() {
                self.make_room()?;
            }
            let (result, consumed, written, ended) =
                self.parser.read_record(input, &mut self.scratch[self.held..], &mut self.ends);
            input = &input[consumed..];
            self.held += written;
            for i in 0..ended {
                let end = self.ends[i];
                self.check_field(end)?;
                self.fields += 1;
                if self.fields > EXCEL_MAX_COLUMNS as u64 {
                    return Err(LimitReached::Columns { row: self.row });
                }
                self.field_start = end;
            }
            // The field still open: refused as soon as it is too long, not at its end.
            self.check_field(self.base + self.held)?;
            match result {
                ReadRecordResult::Record => {
                    (self.base, self.held, self.field_start, self.fields) = (0, 0, 0, 0);
                    self.row += 1;
                }
                ReadRecordResult::InputEmpty | ReadRecordResult::End => return Ok(()),
                // Room is made at the top of the loop; the ends were taken.
                ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {}
            }
        }
    }

    /// Drops the completed fields from the scratch; a current field that fills it alone is too long.
    fn make_room(&mut self) -> Result<(), LimitReached> {
        let done = self.field_start - self.base;
        if done == 0 {
            return Err(self.field_too_long());
        }
        self.scratch.copy_within(done..self.held, 0);
        self.held -= done;
        self.base = self.field_start;
        Ok(())
    }

    /// Checks the field from `field_start` to the record offset `end` (its bytes are in the scratch).
    fn check_field(&self, end: usize) -> Result<(), LimitReached> {
        if end - self.field_start <= EXCEL_MAX_CELL_CHARS {
            return Ok(());
        }
        // UTF-8 characters are the bytes that do not continue a sequence.
        let field = &self.scratch[self.field_start - self.base..end - self.base];
        if field.iter().filter(|&&b| b & 0xC0 != 0x80).count() > EXCEL_MAX_CELL_CHARS {
            return Err(self.field_too_long());
        }
        Ok(())
    }

    fn field_too_long(&self) -> LimitReached {
        LimitReached::FieldLength { row: self.row, column: self.fields + 1 }
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

    /// Reads in 8 KiB steps until the guard refuses: its error and the bytes read before.
    fn read_until_refused(text: &[u8]) -> (TableError, usize) {
        let mut guard = CsvGuard::new(text, b',');
        let mut buf = [0u8; 8192];
        let mut read = 0;
        loop {
            match guard.read(&mut buf) {
                Ok(0) => panic!("the text was not refused"),
                Ok(n) => read += n,
                Err(e) => return (guard_error(&e).unwrap(), read),
            }
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
        let (err, read) = read_until_refused(wide.as_bytes());
        assert!(matches!(err, TableError::TooManyColumns { row: 2, max_columns: 16_384 }), "{err}");
        assert!(read < 64 * 1024, "stopped after {read} bytes");
        // The last record without a line end counts too.
        let at_end = format!("h\n{}x", "x,".repeat(EXCEL_MAX_COLUMNS));
        assert!(matches!(scan_all(at_end.as_bytes()), Err(TableError::TooManyColumns { row: 2, .. })));
    }

    #[test]
    fn records_longer_than_the_scratch_are_checked_field_by_field() {
        // 3,000 fields of 100 bytes, then a field of exactly the limit in 2-byte characters, then more:
        // the record is several times the scratch, so completed fields are dropped from it on the way.
        let filler = "x".repeat(100);
        let fields: Vec<String> = (0..3_000).map(|_| filler.clone()).collect();
        let legal = format!(
            "h\n{},\"{}\",{}\nnext\n",
            fields.join(","),
            "é".repeat(EXCEL_MAX_CELL_CHARS),
            fields.join(",")
        );
        assert!(legal.len() > 4 * SCRATCH_BYTES);
        assert_eq!(scan_all(legal.as_bytes()).unwrap(), legal.as_bytes());
        // The same with one character more is refused, naming its record and column.
        let over = format!("h\n{},{}\n", fields.join(","), "é".repeat(EXCEL_MAX_CELL_CHARS + 1));
        let err = scan_all(over.as_bytes()).unwrap_err();
        assert!(matches!(err, TableError::FieldTooLong { row: 2, column: 3_001, .. }), "{err}");
        // A field without end is refused once it outgrows the limit, not at the end of the text.
        let endless = format!("h\n1,\"{}", "x".repeat(10_000_000));
        let (err, read) = read_until_refused(endless.as_bytes());
        assert!(matches!(err, TableError::FieldTooLong { row: 2, column: 2, .. }), "{err}");
        assert!(read < 64 * 1024, "stopped after {read} bytes");
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
