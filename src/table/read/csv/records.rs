//! The CSV record reader: one `csv-core` parse (the parser under the `csv` crate, same dialect) that
//! yields each record's fields and, while it parses, enforces Excel's limits (issue 11 item 9): a record
//! with more fields than 16,384 columns, or a field longer than 32,767 characters, is refused as soon as
//! the parse reaches the surplus — before the record (or the header's names) grows to the size of the
//! file. Before, a separate guard scanned the text and the `csv` crate parsed it again.

use std::io::{self, BufRead, BufReader, Read};
use std::ops::Range;

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};

use crate::table::error::TableError;
use crate::table::read::{EXCEL_MAX_CELL_CHARS, EXCEL_MAX_COLUMNS};

/// Bytes of decoded text read from the input at a time.
const INPUT_BUFFER_BYTES: usize = 64 * 1024;

/// Marker carried inside the `io::Error` of a read stopped by a limit.
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

/// The table error of a read stopped by a limit, if `err` is one.
pub fn limit_error(err: &io::Error) -> Option<TableError> {
    err.get_ref().and_then(|inner| inner.downcast_ref::<LimitReached>()).map(|l| l.table_error())
}

/// A CSV read error as the table layer reports it: a refusal by a limit keeps its own error (422).
pub fn read_error(err: io::Error) -> TableError {
    limit_error(&err).unwrap_or_else(|| TableError::ReadCsv(err.to_string()))
}

/// One parsed record: the unquoted bytes of its fields one after another, and where each field ends.
/// Reused from record to record (its buffers only grow).
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// Field bytes; its length is the buffer's size, not the record's.
    bytes: Vec<u8>,
    /// End offsets in `bytes`; only the first `len` belong to the record.
    ends: Vec<usize>,
    len: usize,
}

impl Default for RawRecord {
    fn default() -> Self {
        RawRecord { bytes: vec![0; 1024], ends: vec![0; 32], len: 0 }
    }
}

impl RawRecord {
    pub fn new() -> RawRecord {
        RawRecord::default()
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Where field `index` lies in [`Self::as_slice`].
    pub fn range(&self, index: usize) -> Option<Range<usize>> {
        if index >= self.len {
            return None;
        }
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        Some(start..self.ends[index])
    }

    pub fn get(&self, index: usize) -> Option<&[u8]> {
        self.range(index).map(|r| &self.bytes[r])
    }

    /// All the fields' bytes, one after another.
    pub fn as_slice(&self) -> &[u8] {
        let end = if self.len == 0 { 0 } else { self.ends[self.len - 1] };
        &self.bytes[..end]
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len).map(|i| self.get(i).unwrap_or_default())
    }

    /// Row width ignoring trailing empty fields (surplus empty fields never add columns).
    pub fn effective_width(&self) -> usize {
        (0..self.len).rev().find(|&i| self.range(i).is_some_and(|r| !r.is_empty())).map_or(0, |i| i + 1)
    }

    fn grow_bytes(&mut self) {
        let size = (self.bytes.len() * 2).max(1024);
        self.bytes.resize(size, 0);
    }

    fn grow_ends(&mut self) {
        let size = (self.ends.len() * 2).max(32);
        self.ends.resize(size, 0);
    }
}

/// Parses decoded (UTF-8) CSV text record by record with the reader's dialect (`delimiter`, `"` quotes,
/// doubled quotes, any line end), refusing a record or field over Excel's limits while it is parsed.
pub struct CsvRecords<R> {
    input: BufReader<R>,
    parser: Reader,
    /// 1-based number of the record being parsed (the header is record 1).
    row: u64,
    /// Characters counted so far in the field still open: its index and how many bytes were counted,
    /// so a long field arriving in small pieces is counted once, not once per piece.
    open: OpenField,
    done: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct OpenField {
    index: usize,
    counted_bytes: usize,
    characters: usize,
}

/// UTF-8 characters are the bytes that do not continue a sequence.
fn characters(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b & 0xC0 != 0x80).count()
}

impl<R: Read> CsvRecords<R> {
    pub fn new(inner: R, delimiter: u8) -> CsvRecords<R> {
        // The default DFA engine; its field ends count from the record's start across calls, so a
        // record is parsed in as many calls as its buffers need.
        let parser = ReaderBuilder::new().delimiter(delimiter).quote(b'"').double_quote(true).build();
        CsvRecords {
            input: BufReader::with_capacity(INPUT_BUFFER_BYTES, inner),
            parser,
            row: 1,
            open: OpenField::default(),
            done: false,
        }
    }

    /// Reads the next record into `record`; false at the end of the text. An input error (a decoding
    /// failure included) or a limit's refusal (see [`limit_error`]) ends the reading.
    pub fn read(&mut self, record: &mut RawRecord) -> io::Result<bool> {
        record.len = 0;
        if self.done {
            return Ok(false);
        }
        match self.parse(record) {
            Ok(true) => Ok(true),
            other => {
                self.done = true;
                other
            }
        }
    }

    fn parse(&mut self, record: &mut RawRecord) -> io::Result<bool> {
        let (mut written, mut ended) = (0usize, 0usize);
        loop {
            let input = self.input.fill_buf()?;
            let (result, consumed, wrote, new_ends) =
                self.parser.read_record(input, &mut record.bytes[written..], &mut record.ends[ended..]);
            self.input.consume(consumed);
            for field in ended..ended + new_ends {
                let start = if field == 0 { 0 } else { record.ends[field - 1] };
                self.check_field(&record.bytes[start..record.ends[field]], field)?;
            }
            ended += new_ends;
            written += wrote;
            if ended > EXCEL_MAX_COLUMNS {
                return Err(io::Error::other(LimitReached::Columns { row: self.row }));
            }
            // The field still open: refused as soon as it is too long, not at its end.
            let open_start = if ended == 0 { 0 } else { record.ends[ended - 1] };
            self.check_open_field(&record.bytes[open_start..written], ended)?;
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => record.grow_bytes(),
                ReadRecordResult::OutputEndsFull => record.grow_ends(),
                ReadRecordResult::Record => {
                    record.len = ended;
                    self.row += 1;
                    self.open = OpenField::default();
                    return Ok(true);
                }
                ReadRecordResult::End => return Ok(false),
            }
        }
    }

    /// Refuses field number `index` (0-based) of the current record when it is over the length limit.
    /// Characters are counted only for the rare field of more than 32,767 bytes.
    fn check_field(&self, field: &[u8], index: usize) -> io::Result<()> {
        if field.len() > EXCEL_MAX_CELL_CHARS && characters(field) > EXCEL_MAX_CELL_CHARS {
            return Err(self.field_too_long(index));
        }
        Ok(())
    }

    /// [`Self::check_field`] for the field still being parsed, counting only the bytes added since the
    /// last call.
    fn check_open_field(&mut self, field: &[u8], index: usize) -> io::Result<()> {
        if field.len() <= EXCEL_MAX_CELL_CHARS {
            return Ok(());
        }
        if self.open.index != index || self.open.counted_bytes > field.len() {
            self.open = OpenField { index, ..OpenField::default() };
        }
        // A cut inside a multi-byte character is harmless: continuation bytes are never counted.
        self.open.characters += characters(&field[self.open.counted_bytes..]);
        self.open.counted_bytes = field.len();
        if self.open.characters > EXCEL_MAX_CELL_CHARS {
            return Err(self.field_too_long(index));
        }
        Ok(())
    }

    fn field_too_long(&self, index: usize) -> io::Error {
        io::Error::other(LimitReached::FieldLength { row: self.row, column: index as u64 + 1 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record of `text` as its fields, or the limit that refused it.
    fn records(text: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, TableError> {
        let mut reader = CsvRecords::new(text, b',');
        let mut record = RawRecord::new();
        let mut all = Vec::new();
        loop {
            match reader.read(&mut record) {
                Ok(true) => all.push(record.iter().map(<[u8]>::to_vec).collect()),
                Ok(false) => return Ok(all),
                Err(e) => return Err(limit_error(&e).expect("a limit error")),
            }
        }
    }

    /// Counts the bytes taken from a text.
    struct Counted<'a> {
        text: &'a [u8],
        taken: std::rc::Rc<std::cell::Cell<usize>>,
    }

    impl Read for Counted<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.text.read(buf)?;
            self.taken.set(self.taken.get() + n);
            Ok(n)
        }
    }

    /// Reads records until a limit refuses one: its error and the bytes taken from the text by then.
    fn read_until_refused(text: &[u8]) -> (TableError, usize) {
        let taken = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut reader = CsvRecords::new(Counted { text, taken: taken.clone() }, b',');
        let mut record = RawRecord::new();
        loop {
            match reader.read(&mut record) {
                Ok(true) => {}
                Ok(false) => panic!("the text was not refused"),
                Err(e) => return (limit_error(&e).unwrap(), taken.get()),
            }
        }
    }

    fn fields(items: &[&str]) -> Vec<Vec<u8>> {
        items.iter().map(|f| f.as_bytes().to_vec()).collect()
    }

    /// The same records as the `csv` crate reads with this dialect.
    #[test]
    fn records_are_the_csv_crates() {
        let texts: [&[u8]; 5] = [
            "a,b,\"c,\"\"d\"\"\"\n1,2,3\n\n\"multi\nline\",é,\r\n".as_bytes(),
            b"x\r\ny\rz\n\"\"\n,\n",
            b"a,\"unterminated\nstill",
            b"no line end",
            b"",
        ];
        for text in texts {
            let mut csv = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text);
            let want: Vec<Vec<Vec<u8>>> =
                csv.byte_records().map(|r| r.unwrap().iter().map(<[u8]>::to_vec).collect()).collect();
            assert_eq!(records(text).unwrap(), want, "{}", String::from_utf8_lossy(text));
        }
        assert_eq!(records(b"a,,b\n").unwrap(), vec![fields(&["a", "", "b"])]);
        let mut record = RawRecord::new();
        let mut reader = CsvRecords::new(&b"h1;h2\nx;\"y;z\"\n"[..], b';');
        assert!(reader.read(&mut record).unwrap());
        assert!(reader.read(&mut record).unwrap());
        assert_eq!((record.len(), record.get(1), record.as_slice()), (2, Some(&b"y;z"[..]), &b"xy;z"[..]));
        assert_eq!(record.range(1), Some(1..4));
        assert!(!reader.read(&mut record).unwrap());
        assert_eq!(record.len(), 0);
    }

    #[test]
    fn the_limits_themselves_pass() {
        let exactly = format!("{}\n", "x".repeat(EXCEL_MAX_CELL_CHARS));
        assert!(records(exactly.as_bytes()).is_ok());
        let widest = format!("{}x\n", "x,".repeat(EXCEL_MAX_COLUMNS - 1));
        assert_eq!(records(widest.as_bytes()).unwrap()[0].len(), EXCEL_MAX_COLUMNS);
    }

    #[test]
    fn too_many_fields_stop_the_read_early() {
        let wide = format!("a\n{}", "a,".repeat(1_000_000));
        let (err, read) = read_until_refused(wide.as_bytes());
        assert!(matches!(err, TableError::TooManyColumns { row: 2, max_columns: 16_384 }), "{err}");
        assert!(read <= 2 * INPUT_BUFFER_BYTES, "stopped after {read} bytes");
        // The last record without a line end counts too.
        let at_end = format!("h\n{}x", "x,".repeat(EXCEL_MAX_COLUMNS));
        assert!(matches!(records(at_end.as_bytes()), Err(TableError::TooManyColumns { row: 2, .. })));
    }

    #[test]
    fn long_records_are_checked_field_by_field() {
        // 3,000 fields of 100 bytes, then a field of exactly the limit in 2-byte characters, then more.
        let filler = "x".repeat(100);
        let fields: Vec<String> = (0..3_000).map(|_| filler.clone()).collect();
        let legal = format!(
            "h\n{},\"{}\",{}\nnext\n",
            fields.join(","),
            "é".repeat(EXCEL_MAX_CELL_CHARS),
            fields.join(",")
        );
        let read = records(legal.as_bytes()).unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!(read[1].len(), 6_001);
        assert_eq!(read[1][3_000], "é".repeat(EXCEL_MAX_CELL_CHARS).into_bytes());
        // The same with one character more is refused, naming its record and column.
        let over = format!("h\n{},{}\n", fields.join(","), "é".repeat(EXCEL_MAX_CELL_CHARS + 1));
        let err = records(over.as_bytes()).unwrap_err();
        assert!(matches!(err, TableError::FieldTooLong { row: 2, column: 3_001, .. }), "{err}");
        // A field without end is refused once it outgrows the limit, not at the end of the text.
        let endless = format!("h\n1,\"{}", "x".repeat(10_000_000));
        let (err, read) = read_until_refused(endless.as_bytes());
        assert!(matches!(err, TableError::FieldTooLong { row: 2, column: 2, .. }), "{err}");
        assert!(read <= 2 * INPUT_BUFFER_BYTES, "stopped after {read} bytes");
    }

    #[test]
    fn long_fields_are_refused_by_characters() {
        let long = format!("a,b\n1,\"{}\"\n", "é".repeat(EXCEL_MAX_CELL_CHARS + 1));
        let err = records(long.as_bytes()).unwrap_err();
        assert!(
            matches!(err, TableError::FieldTooLong { row: 2, column: 2, max_characters: 32_767 }),
            "{err}"
        );
        let semicolons = format!("a;b\n1;{}\n", "x".repeat(40_000));
        let mut reader = CsvRecords::new(semicolons.as_bytes(), b';');
        let mut record = RawRecord::new();
        assert!(reader.read(&mut record).unwrap());
        let err = reader.read(&mut record).unwrap_err();
        assert!(matches!(limit_error(&err), Some(TableError::FieldTooLong { row: 2, column: 2, .. })));
        // The reading has ended.
        assert!(!reader.read(&mut record).unwrap());
    }

    /// A long field arriving a few bytes at a time is counted once, and cut inside its characters it
    /// is still counted right.
    #[test]
    fn a_field_arriving_in_pieces_is_counted_right() {
        struct Pieces<'a>(&'a [u8]);
        impl Read for Pieces<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(3).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let read_all = |text: &[u8]| {
            let mut reader = CsvRecords::new(Pieces(text), b',');
            let mut record = RawRecord::new();
            let mut count = 0;
            loop {
                match reader.read(&mut record) {
                    Ok(true) => count += 1,
                    Ok(false) => return Ok(count),
                    Err(e) => return Err(limit_error(&e).unwrap()),
                }
            }
        };
        let legal = format!("h\n\"{}\"\n", "€".repeat(EXCEL_MAX_CELL_CHARS));
        assert_eq!(read_all(legal.as_bytes()).unwrap(), 2);
        let over = format!("h\n\"{}\"\n", "€".repeat(EXCEL_MAX_CELL_CHARS + 1));
        assert!(matches!(read_all(over.as_bytes()), Err(TableError::FieldTooLong { row: 2, column: 1, .. })));
    }
}
