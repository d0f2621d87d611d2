//! The CSV reader (operations.md §1.3): encoding choice, delimiter detection, header naming and a
//! streaming row iterator, so million-row files are processed with flat memory.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::Path;

use super::decode::{is_decode_failure, DecodingReader, TextEncoding};
use super::header::unique_header;
use super::sniff::{detect_kind_from_head, FileKind, SNIFF_BYTES};
use super::ReadLimits;
use crate::engine::{Phase, StepControl};
use crate::table::cell::{Cell, Table};
use crate::table::error::TableError;
use crate::table::spool::{SpoolWriter, SpooledTable};

/// Longest prefix examined to find the header line for delimiter detection.
const HEADER_SCAN_LIMIT: usize = 1024 * 1024;

mod input;
mod records;
mod stream;

use records::{CsvRecords, RawRecord};

pub use input::{ArrivingFile, CsvInput, NextChunk};

pub use stream::{stream_csv, CsvCursor, CsvHead, CsvRow};

const NO_COLUMNS: &str = "No columns to parse from file";

/// An opened CSV file: everything known after the scanning pass, plus the rows still to stream.
pub struct CsvSource {
    /// Final column names (unique; includes `Unnamed: {i}` columns added for surplus fields).
    pub columns: Vec<String>,
    /// The delimiter used (`,` unless detection chose `;`, tab or `|`).
    pub delimiter: u8,
    /// The configured encoding name that decoded the whole file.
    pub encoding: String,
    /// Number of data rows.
    pub row_count: u64,
    /// The data rows, each exactly `columns.len()` wide, all Text.
    pub rows: CsvRows,
}

impl std::fmt::Debug for CsvSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvSource")
            .field("columns", &self.columns)
            .field("delimiter", &(self.delimiter as char))
            .field("encoding", &self.encoding)
            .field("row_count", &self.row_count)
            .finish_non_exhaustive()
    }
}

/// A fully read CSV table with its reader facts.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvTable {
    pub table: Table,
    pub delimiter: u8,
    pub encoding: String,
}

/// What the scanning pass learns.
struct Scan {
    header: Vec<String>,
    width: usize,
    row_count: u64,
    delimiter: u8,
}

enum ScanError {
    /// The bytes are not valid in this encoding: try the next one.
    Undecodable,
    Fatal(TableError),
}

impl CsvSource {
    /// Opens `path`, refusing non-text content (415), trying `encodings` in order (each attempt is one
    /// streaming pass that decodes and parses), then prepares a second streaming pass for the rows.
    pub fn open(path: &Path, encodings: &[String]) -> Result<CsvSource, TableError> {
        let mut input = path;
        for (name, encoding) in candidate_encodings(&mut input, encodings)? {
            match scan(&mut input, encoding) {
                Ok(scan) => {
                    let columns = column_names(&scan.header, scan.width);
                    let rows = CsvRows::open(path, encoding, scan.delimiter, scan.width)?;
                    return Ok(CsvSource {
                        columns,
                        delimiter: scan.delimiter,
                        encoding: name,
                        row_count: scan.row_count,
                        rows,
                    });
                }
                Err(ScanError::Undecodable) => continue,
                Err(ScanError::Fatal(e)) => return Err(e),
            }
        }
        Err(TableError::Encoding(encodings.to_vec()))
    }

    /// The delimiter as text, as reported by `csv/info`.
    pub fn delimiter_text(&self) -> String {
        (self.delimiter as char).to_string()
    }
}

/// The name reported for a file decoded by its UTF-16 byte-order mark.
const UTF16_NAME: &str = "utf-16";

/// The encodings to try, in order, after refusing content that is not text (415): a UTF-16 byte-order
/// mark decides alone (the configured 8-bit encodings would read it as garbage), a UTF-32 one is refused
/// (415 naming it), otherwise the configured names the decoder knows.
fn candidate_encodings(
    input: &mut dyn CsvInput,
    encodings: &[String],
) -> Result<Vec<(String, TextEncoding)>, TableError> {
    let mut sniffed = Vec::with_capacity(SNIFF_BYTES);
    input.reader()?.take(SNIFF_BYTES as u64).read_to_end(&mut sniffed)?;
    let head = &sniffed[..sniffed.len().min(4)];
    if head.starts_with(b"\xFF\xFE\0\0") {
        return Err(TableError::UnsupportedEncoding("UTF-32LE".to_string()));
    }
    if head.starts_with(b"\0\0\xFE\xFF") {
        return Err(TableError::UnsupportedEncoding("UTF-32BE".to_string()));
    }
    let kind = detect_kind_from_head(&sniffed, || Ok(input.whole_file()?))?;
    if kind != FileKind::Text {
        return Err(TableError::UnsupportedKind { expected: "CSV text file", found: kind.describe() });
    }
    if head.starts_with(b"\xFF\xFE") {
        return Ok(vec![(UTF16_NAME.to_string(), TextEncoding::Other(encoding_rs::UTF_16LE))]);
    }
    if head.starts_with(b"\xFE\xFF") {
        return Ok(vec![(UTF16_NAME.to_string(), TextEncoding::Other(encoding_rs::UTF_16BE))]);
    }
    Ok(encodings
        .iter()
        .filter_map(|name| TextEncoding::from_name(name).map(|encoding| (name.clone(), encoding)))
        .collect())
}

/// Reads a whole CSV file into a table (refusing tables above `limits.max_cells` before building them).
pub fn read_csv_table(
    path: &Path,
    encodings: &[String],
    limits: &ReadLimits,
) -> Result<CsvTable, TableError> {
    read_csv_table_tracked(path, encodings, limits, &StepControl::NONE)
}

/// Opens `path` for a workflow step's read: the scanning pass runs under the reading phase, then its row
/// count becomes the phase's total, and a file declaring more cells than `limits.max_cells` is refused.
fn open_tracked(
    path: &Path,
    encodings: &[String],
    limits: &ReadLimits,
    control: &StepControl,
) -> Result<CsvSource, TableError> {
    control.begin(Phase::Reading, None)?;
    let source = CsvSource::open(path, encodings)?;
    control.begin(Phase::Reading, Some(source.row_count))?;
    let columns = source.columns.len() as u64;
    if source.row_count.saturating_mul(columns.max(1)) > limits.max_cells {
        return Err(TableError::TooManyCells {
            rows: source.row_count,
            columns,
            max_cells: limits.max_cells,
        });
    }
    Ok(source)
}

/// [`read_csv_table`] for a workflow step: rows are counted on `control` (reading phase; the total is
/// the scanning pass's row count) and a stop request ends the read between two batches of rows.
pub fn read_csv_table_tracked(
    path: &Path,
    encodings: &[String],
    limits: &ReadLimits,
    control: &StepControl,
) -> Result<CsvTable, TableError> {
    let source = open_tracked(path, encodings, limits, control)?;
    let mut table = Table::new(source.columns);
    table.rows.reserve(usize::try_from(source.row_count).unwrap_or(0));
    for row in source.rows {
        table.rows.push(row?);
        control.advance_to(table.rows.len() as u64)?;
    }
    control.set_input_rows(table.rows.len() as u64);
    Ok(CsvTable { table, delimiter: source.delimiter, encoding: source.encoding })
}

/// [`read_csv_table_tracked`]'s columns and rows, with the same checks and errors, spooled to an unnamed
/// temporary file in `spool_dir` instead of held: memory stays flat however long the file is.
pub fn spool_csv_tracked(
    path: &Path,
    encodings: &[String],
    limits: &ReadLimits,
    spool_dir: &Path,
    control: &StepControl,
) -> Result<SpooledTable, TableError> {
    let source = open_tracked(path, encodings, limits, control)?;
    let mut spool = SpoolWriter::create_in(spool_dir)?;
    for row in source.rows {
        spool.push(&row?)?;
        control.advance_to(spool.rows() as u64)?;
    }
    control.set_input_rows(spool.rows() as u64);
    Ok(spool.finish(source.columns)?)
}

fn csv_error(err: io::Error) -> ScanError {
    if is_decode_failure(&err) {
        return ScanError::Undecodable;
    }
    ScanError::Fatal(records::read_error(err))
}

fn open_decoded_file(path: &Path, encoding: TextEncoding) -> io::Result<DecodingReader<BufReader<File>>> {
    Ok(DecodingReader::new(BufReader::with_capacity(64 * 1024, File::open(path)?), encoding))
}

fn open_decoded(
    input: &mut dyn CsvInput,
    encoding: TextEncoding,
) -> io::Result<DecodingReader<Box<dyn Read>>> {
    Ok(DecodingReader::new(input.reader()?, encoding))
}

/// The scanning pass: decodes with `encoding`, detects the delimiter, parses every record to learn the
/// header, the final width and the row count.
fn scan(input: &mut dyn CsvInput, encoding: TextEncoding) -> Result<Scan, ScanError> {
    let mut decoded = open_decoded(input, encoding).map_err(|e| ScanError::Fatal(e.into()))?;
    let prefix = read_header_prefix(&mut decoded).map_err(|e| {
        if is_decode_failure(&e) {
            ScanError::Undecodable
        } else {
            ScanError::Fatal(e.into())
        }
    })?;
    let delimiter = detect_delimiter(&prefix);
    let mut reader = CsvRecords::new(Cursor::new(prefix).chain(decoded), delimiter);
    let mut record = RawRecord::new();
    if !reader.read(&mut record).map_err(csv_error)? {
        return Err(ScanError::Fatal(TableError::ReadCsv(NO_COLUMNS.to_string())));
    }
    let header: Vec<String> = record.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
    let mut width = header.len();
    let mut row_count = 0u64;
    while reader.read(&mut record).map_err(csv_error)? {
        row_count += 1;
        if record.len() > width {
            width = width.max(record.effective_width());
        }
    }
    Ok(Scan { header, width, row_count, delimiter })
}

/// Final column names: header fields, `Unnamed: {i}` for blanks and for surplus columns, made unique.
fn column_names(header: &[String], width: usize) -> Vec<String> {
    let raw: Vec<Option<String>> =
        (0..width).map(|i| header.get(i).filter(|h| !h.is_empty()).cloned()).collect();
    unique_header(raw)
}

/// Reads decoded text up to the end of the first non-blank line (quotes may span lines), bounded.
fn read_header_prefix<R: Read>(input: &mut R) -> io::Result<Vec<u8>> {
    let mut prefix = Vec::new();
    let mut chunk = [0u8; 8 * 1024];
    let mut scanned = 0;
    let mut in_quotes = false;
    let mut line_has_content = false;
    loop {
        let n = input.read(&mut chunk)?;
        if n == 0 {
            return Ok(prefix);
        }
        prefix.extend_from_slice(&chunk[..n]);
        while scanned < prefix.len() {
            let b = prefix[scanned];
            scanned += 1;
            match b {
                b'"' => {
                    in_quotes = !in_quotes;
                    line_has_content = true;
                }
                b'\n' | b'\r' if !in_quotes => {
                    if line_has_content {
                        return Ok(prefix);
                    }
                }
                _ => line_has_content = true,
            }
        }
        if prefix.len() >= HEADER_SCAN_LIMIT {
            return Ok(prefix);
        }
    }
}

/// §1.3 IMPROVE: a header line without a comma (outside quotes) but with `;`, tab or `|` uses the most
/// frequent of those; ties go to `;`, then tab, then `|`.
fn detect_delimiter(prefix: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let candidates = [b';', b'\t', b'|'];
    let mut in_quotes = false;
    let mut started = false;
    for &b in prefix {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\n' | b'\r' if !in_quotes => {
                if started {
                    break;
                }
                continue;
            }
            b',' if !in_quotes => return b',',
            _ if !in_quotes => {
                if let Some(i) = candidates.iter().position(|&c| c == b) {
                    counts[i] += 1;
                }
            }
            _ => {}
        }
        started = true;
    }
    let mut best = None;
    for (i, &count) in counts.iter().enumerate() {
        if count > 0 && best.is_none_or(|(_, c)| count > c) {
            best = Some((i, count));
        }
    }
    best.map_or(b',', |(i, _)| candidates[i])
}

/// The streaming pass over the data rows.
pub struct CsvRows {
    reader: CsvRecords<DecodingReader<BufReader<File>>>,
    record: RawRecord,
    width: usize,
    header_skipped: bool,
    done: bool,
}

impl CsvRows {
    fn open(path: &Path, encoding: TextEncoding, delimiter: u8, width: usize) -> Result<CsvRows, TableError> {
        let reader = CsvRecords::new(open_decoded_file(path, encoding)?, delimiter);
        Ok(CsvRows { reader, record: RawRecord::new(), width, header_skipped: false, done: false })
    }

    fn next_record(&mut self) -> Result<bool, TableError> {
        self.reader.read(&mut self.record).map_err(records::read_error)
    }

    /// The current record as a row of Text cells, exactly `width` wide.
    fn row(&self) -> Result<Vec<Cell>, TableError> {
        let mut row = Vec::with_capacity(self.width);
        for field in self.record.iter().take(self.width) {
            row.push(Cell::text(stream::field_text(field)?));
        }
        row.resize(self.width, Cell::text(""));
        Ok(row)
    }
}

impl Iterator for CsvRows {
    type Item = Result<Vec<Cell>, TableError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if !self.header_skipped {
            self.header_skipped = true;
            match self.next_record() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        match self.next_record() {
            Ok(true) => {
                let row = self.row();
                self.done = row.is_err();
                Some(row)
            }
            Ok(false) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_ENCODINGS: [&str; 5] = ["utf-8", "utf-8-sig", "cp1252", "latin1", "iso-8859-1"];

    fn encodings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn limits() -> ReadLimits {
        ReadLimits { max_uncompressed_bytes: 500 << 20, max_cells: 10_000_000, ..ReadLimits::default() }
    }

    fn read_bytes(bytes: &[u8]) -> Result<CsvTable, TableError> {
        read_with(bytes, &DEFAULT_ENCODINGS)
    }

    fn read_with(bytes: &[u8], names: &[&str]) -> Result<CsvTable, TableError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        std::fs::write(&path, bytes).unwrap();
        read_csv_table(&path, &encodings(names), &limits())
    }

    fn rows(t: &Table) -> Vec<Vec<String>> {
        t.rows.iter().map(|r| r.iter().map(|c| c.as_text().into_owned()).collect()).collect()
    }

    #[test]
    fn reads_a_simple_file() {
        // Acceptance §13.1 fact 1.
        let t = read_bytes(b"name,email,age\nJohn,j@x.com,30\nJane,jane@x.com,25\nBob,b@x.com,41\n").unwrap();
        assert_eq!(t.table.columns, vec!["name", "email", "age"]);
        assert_eq!(t.table.row_count(), 3);
        assert_eq!(t.delimiter, b',');
        assert_eq!(t.encoding, "utf-8");
        assert_eq!(rows(&t.table)[2], vec!["Bob", "b@x.com", "41"]);
    }

    #[test]
    fn leading_zeros_stay_text() {
        // Acceptance §13.1 fact 2.
        let t = read_bytes(
            b"zip_code,phone,product_code,customer_id\n021201,0123456789,000456,00001234\n00123,1,2,3\n",
        )
        .unwrap();
        assert_eq!(rows(&t.table)[0], vec!["021201", "0123456789", "000456", "00001234"]);
        assert_eq!(t.table.rows[1][0], Cell::text("00123"));
        assert!(t.table.rows.iter().flatten().all(|c| matches!(c, Cell::Text(_))));
    }

    #[test]
    fn encodings_are_tried_in_order() {
        let utf8 = read_bytes("name\nCafé €\n".as_bytes()).unwrap();
        assert_eq!((utf8.encoding.as_str(), utf8.table.rows[0][0].clone()), ("utf-8", Cell::text("Café €")));

        let bom = read_bytes("\u{feff}name,x\nA,1\n".as_bytes()).unwrap();
        assert_eq!(bom.table.columns, vec!["name", "x"]);
        assert_eq!(bom.encoding, "utf-8");

        // Windows text: € (0x80), curly quotes, é — cp1252 wins over latin1.
        let cp = read_bytes(b"name\n\x80 \x93hi\x94 caf\xE9\n").unwrap();
        assert_eq!(cp.encoding, "cp1252");
        assert_eq!(cp.table.rows[0][0], Cell::text("€ \u{201c}hi\u{201d} café"));

        // 0x81 is unassigned in cp1252, so Latin-1 takes over (U+0081).
        let latin = read_bytes(b"name\n\x81\xE9\n").unwrap();
        assert_eq!(latin.encoding, "latin1");
        assert_eq!(latin.table.rows[0][0], Cell::text("\u{81}é"));

        // Reference order: latin1 before cp1252 means latin1 wins.
        let reference = read_with(b"name\n\x80\n", &["utf-8", "utf-8-sig", "latin1", "cp1252"]).unwrap();
        assert_eq!(reference.encoding, "latin1");
        assert_eq!(reference.table.rows[0][0], Cell::text("\u{80}"));

        let err = read_with(b"name\n\xE9\n", &["utf-8", "utf-8-sig"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unable to read CSV file with supported encodings: ['utf-8', 'utf-8-sig']"
        );
        let err = read_with(b"name\n\x81\n", &["cp1252"]).unwrap_err();
        assert!(matches!(err, TableError::Encoding(_)));
    }

    #[test]
    fn empty_files_have_no_columns() {
        for bytes in [&b""[..], b"\n\n\r\n", b"\xEF\xBB\xBF"] {
            let err = read_bytes(bytes).unwrap_err();
            assert_eq!(
                err.to_string(),
                "Failed to read CSV file: No columns to parse from file",
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn dialect_quotes_line_endings_and_blank_lines() {
        let t =
            read_bytes(b"\n\na,b\r\n\"x, \"\"y\"\"\",\"multi\nline\"\r\n\r\n  pad ,\rlast,row\n,\n").unwrap();
        assert_eq!(t.table.columns, vec!["a", "b"]);
        assert_eq!(
            rows(&t.table),
            vec![vec!["x, \"y\"", "multi\nline"], vec!["  pad ", ""], vec!["last", "row"], vec!["", ""],]
        );
        let t = read_bytes(b"a,b\nNA,null\nNaN,\n").unwrap();
        assert_eq!(rows(&t.table), vec![vec!["NA", "null"], vec!["NaN", ""]]);
        assert!(t.table.rows.iter().flatten().all(|c| !c.is_missing()));
    }

    #[test]
    fn header_names_are_filled_and_deduplicated() {
        let t = read_bytes(b"a,,a,a,b,\n1,2,3,4,5,6\n").unwrap();
        assert_eq!(t.table.columns, vec!["a", "Unnamed: 1", "a.1", "a.2", "b", "Unnamed: 5"]);
        let t = read_bytes(b"a,a.1,a\n").unwrap();
        assert_eq!(t.table.columns, vec!["a", "a.1", "a.2"]);
        assert_eq!(t.table.row_count(), 0, "header-only file has no rows");
    }

    #[test]
    fn short_and_long_rows() {
        let t = read_bytes(b"a,b,c\n1\n1,2,3,,\n1,2,3,4,,\n").unwrap();
        assert_eq!(t.table.columns, vec!["a", "b", "c", "Unnamed: 3"]);
        assert_eq!(
            rows(&t.table),
            vec![vec!["1", "", "", ""], vec!["1", "2", "3", ""], vec!["1", "2", "3", "4"]]
        );
        // No shifting even when the first data row has exactly one surplus field.
        let t = read_bytes(b"a,b\nidx,1,2\n").unwrap();
        assert_eq!(t.table.columns, vec!["a", "b", "Unnamed: 2"]);
        assert_eq!(rows(&t.table), vec![vec!["idx", "1", "2"]]);
    }

    #[test]
    fn delimiter_detection() {
        let cases: Vec<(&[u8], u8, Vec<&str>)> = vec![
            (b"a;b;c\n1;2;3\n", b';', vec!["a", "b", "c"]),
            (b"a\tb\n1\t2\n", b'\t', vec!["a", "b"]),
            (b"a|b\n1|2\n", b'|', vec!["a", "b"]),
            (b"a;b,c\n1;2,3\n", b',', vec!["a;b", "c"]),
            (b"\"x,y\";b\n1;2\n", b';', vec!["x,y", "b"]),
            (b"a;b;c|d\n", b';', vec!["a", "b", "c|d"]),
            (b"single\nv\n", b',', vec!["single"]),
            (b"\n\na\tb\n", b'\t', vec!["a", "b"]),
        ];
        for (bytes, delim, columns) in cases {
            let t = read_bytes(bytes).unwrap();
            assert_eq!(t.delimiter, delim, "{:?}", String::from_utf8_lossy(bytes));
            assert_eq!(t.table.columns, columns);
        }
        let t = read_bytes(b"a;b\n1;2\n").unwrap();
        assert_eq!(rows(&t.table), vec![vec!["1", "2"]]);
    }

    #[test]
    fn streaming_source_reports_facts_before_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.csv");
        let mut data = String::from("id;name\n");
        for i in 0..5000 {
            data.push_str(&format!("{i};n{i}\n"));
        }
        std::fs::write(&path, data).unwrap();
        let source = CsvSource::open(&path, &encodings(&DEFAULT_ENCODINGS)).unwrap();
        assert_eq!(source.columns, vec!["id", "name"]);
        assert_eq!(source.row_count, 5000);
        assert_eq!(source.delimiter_text(), ";");
        let mut count = 0;
        for (i, row) in source.rows.enumerate() {
            let row = row.unwrap();
            assert_eq!(row[0], Cell::text(i.to_string()));
            count += 1;
        }
        assert_eq!(count, 5000);
    }

    #[test]
    fn workbooks_and_binary_are_refused_with_415() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        std::fs::write(&path, b"%PDF-1.4 junk").unwrap();
        let err = CsvSource::open(&path, &encodings(&DEFAULT_ENCODINGS)).unwrap_err();
        assert!(matches!(err, TableError::UnsupportedKind { .. }), "{err}");
    }

    #[test]
    fn table_limit_is_checked_before_materialising() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        std::fs::write(&path, b"a,b\n1,2\n3,4\n5,6\n").unwrap();
        let small = ReadLimits { max_uncompressed_bytes: 1 << 20, max_cells: 5, ..ReadLimits::default() };
        let err = read_csv_table(&path, &encodings(&["utf-8"]), &small).unwrap_err();
        assert!(matches!(err, TableError::TooManyCells { rows: 3, columns: 2, max_cells: 5 }), "{err}");
    }
}
