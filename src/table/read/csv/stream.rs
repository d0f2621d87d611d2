//! Single-pass CSV streaming for consumers that can start over: the rows are parsed once, optimistically
//! with the header's width and the first configured encoding. When the file turns out to need another
//! encoding, or has surplus fields that add `Unnamed: {i}` columns, the consumer is run again with the
//! facts the two-pass reader ([`CsvSource::open`]) would have used — so results are identical, and the
//! common file is parsed once instead of twice. Rows are lent from reused buffers (no per-cell allocation).

use std::io::{Chain, Cursor, Read};

use super::input::CsvInput;
use super::records::{self, CsvRecords, RawRecord};
use super::{
    candidate_encodings, column_names, detect_delimiter, open_decoded, read_header_prefix, scan, ScanError,
    NO_COLUMNS,
};
use crate::table::cell::Cell;
use crate::table::error::TableError;
use crate::table::read::decode::{is_decode_failure, DecodingReader, TextEncoding};
use crate::table::rows::set_text;

type Input = CsvRecords<Chain<Cursor<Vec<u8>>, DecodingReader<Box<dyn Read>>>>;

/// What a consumer learns before the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvHead {
    /// Final column names (unique, `Unnamed: {i}` for blanks and surplus fields).
    pub columns: Vec<String>,
    /// The delimiter used (`,` unless detection chose `;`, tab or `|`).
    pub delimiter: u8,
    /// The configured encoding name in use.
    pub encoding: String,
}

impl CsvHead {
    pub fn delimiter_text(&self) -> String {
        (self.delimiter as char).to_string()
    }
}

/// Why an attempt has to be abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restart {
    /// The bytes are not valid in this encoding.
    Undecodable,
    /// A row has non-empty fields beyond the header: the columns must be recomputed over the whole file.
    Wider,
}

/// The data rows of one attempt, lent one at a time.
pub struct CsvCursor {
    reader: Input,
    /// Raw fields: the decoder only hands out valid UTF-8, so a field's text is checked only when it is
    /// read (see [`CsvRow`]).
    record: RawRecord,
    row: Vec<Cell>,
    width: usize,
    /// False while the width is a guess (a wider row then abandons the attempt).
    exact: bool,
    rows: u64,
    exhausted: bool,
    restart: Option<Restart>,
}

/// One data row lent by [`CsvCursor::next_record`]: its fields read one at a time, written out as they
/// are, or turned into cells only when needed.
pub struct CsvRow<'a> {
    record: &'a RawRecord,
    width: usize,
    row: &'a mut Vec<Cell>,
}

impl<'a> CsvRow<'a> {
    /// The number of columns (fields beyond the record are empty, surplus empty fields are dropped).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Column `index`'s text (`""` for a short row's missing fields).
    pub fn text(&self, index: usize) -> Result<&'a str, TableError> {
        let record: &'a RawRecord = self.record;
        field_text(record.get(index).unwrap_or_default())
    }

    /// Column `index`'s bytes as parsed (empty for a short row's missing fields); valid UTF-8.
    pub fn field(&self, index: usize) -> &'a [u8] {
        let record: &'a RawRecord = self.record;
        record.get(index).unwrap_or_default()
    }

    /// The row as cells, exactly as wide as the columns (short rows padded with empty text), all Text.
    pub fn into_cells(self) -> Result<&'a [Cell], TableError> {
        // One check of the whole record rather than one per field; fields then are slices of it at
        // their bounds.
        let all = field_text(self.record.as_slice())?;
        let fields = self.record.len().min(self.width);
        for (i, slot) in self.row.iter_mut().enumerate().take(fields) {
            let text = self.record.range(i).and_then(|r| all.get(r));
            set_text(slot, text.ok_or_else(|| TableError::ReadCsv("invalid UTF-8 in a field".to_string()))?);
        }
        for slot in &mut self.row[fields..] {
            set_text(slot, "");
        }
        Ok(self.row)
    }
}

/// The text of a field; the input is valid UTF-8 split at ASCII bytes, so this never fails in practice.
pub(super) fn field_text(field: &[u8]) -> Result<&str, TableError> {
    std::str::from_utf8(field).map_err(|e| TableError::ReadCsv(format!("invalid UTF-8 in a field: {e}")))
}

impl CsvCursor {
    /// The next row, exactly as wide as the columns (short rows padded with empty text), all Text.
    pub fn next_row(&mut self) -> Result<Option<&[Cell]>, TableError> {
        match self.next_record()? {
            Some(row) => row.into_cells().map(Some),
            None => Ok(None),
        }
    }

    /// The next row without copying its fields (see [`CsvRow`]).
    pub fn next_record(&mut self) -> Result<Option<CsvRow<'_>>, TableError> {
        if self.exhausted {
            return Ok(None);
        }
        match self.reader.read(&mut self.record) {
            Ok(false) => {
                self.exhausted = true;
                Ok(None)
            }
            Ok(true) => {
                if !self.exact && self.record.len() > self.width && self.wider_than_header() {
                    return Err(self.abandon(Restart::Wider));
                }
                self.rows += 1;
                Ok(Some(CsvRow { record: &self.record, width: self.width, row: &mut self.row }))
            }
            Err(e) if is_decode_failure(&e) => Err(self.abandon(Restart::Undecodable)),
            Err(e) => {
                self.exhausted = true;
                Err(records::read_error(e))
            }
        }
    }

    /// Data rows lent so far.
    pub fn rows_read(&self) -> u64 {
        self.rows
    }

    fn wider_than_header(&self) -> bool {
        self.record.effective_width() > self.width
    }

    fn abandon(&mut self, why: Restart) -> TableError {
        self.restart = Some(why);
        self.exhausted = true;
        TableError::ReadCsv("the file is being read again".to_string())
    }
}

enum Outcome<T, E> {
    Done(Result<T, E>),
    NextEncoding,
    ExactWidth,
}

/// Opens the file for one attempt: header prefix, delimiter, header record, cursor. `width` is the exact
/// width (from a full scan) or `None` for the header's.
fn open_attempt(
    input: &mut dyn CsvInput,
    name: &str,
    encoding: TextEncoding,
    width: Option<usize>,
) -> Result<Result<(CsvHead, CsvCursor), Restart>, TableError> {
    let mut decoded = open_decoded(input, encoding)?;
    let prefix = match read_header_prefix(&mut decoded) {
        Ok(p) => p,
        Err(e) if is_decode_failure(&e) => return Ok(Err(Restart::Undecodable)),
        Err(e) => return Err(e.into()),
    };
    let delimiter = detect_delimiter(&prefix);
    let mut reader = CsvRecords::new(Cursor::new(prefix).chain(decoded), delimiter);
    let mut header = RawRecord::new();
    match reader.read(&mut header) {
        Ok(true) => {}
        Ok(false) => return Err(TableError::ReadCsv(NO_COLUMNS.to_string())),
        Err(e) if is_decode_failure(&e) => return Ok(Err(Restart::Undecodable)),
        Err(e) => return Err(records::read_error(e)),
    }
    let header = header.iter().map(|f| field_text(f).map(str::to_string)).collect::<Result<Vec<_>, _>>()?;
    let exact_width_known = width.is_some();
    let width = width.unwrap_or(header.len());
    let cursor = CsvCursor {
        reader,
        record: RawRecord::new(),
        row: vec![Cell::text(""); width],
        width,
        exact: exact_width_known,
        rows: 0,
        exhausted: false,
        restart: None,
    };
    let head = CsvHead { columns: column_names(&header, width), delimiter, encoding: name.to_string() };
    Ok(Ok((head, cursor)))
}

fn restart_outcome<T, E>(why: Restart) -> Outcome<T, E> {
    match why {
        Restart::Undecodable => Outcome::NextEncoding,
        Restart::Wider => Outcome::ExactWidth,
    }
}

/// One run of the consumer. In the optimistic mode every way the guess could be wrong is checked
/// before a result (or a consumer error) is accepted.
fn attempt<T, E: From<TableError>>(
    input: &mut dyn CsvInput,
    name: &str,
    encoding: TextEncoding,
    exact_width: Option<usize>,
    consume: &mut impl FnMut(&CsvHead, &mut CsvCursor) -> Result<T, E>,
) -> Result<Outcome<T, E>, TableError> {
    let (head, mut cursor) = match open_attempt(input, name, encoding, exact_width)? {
        Ok(opened) => opened,
        Err(why) => return Ok(restart_outcome(why)),
    };
    let result = consume(&head, &mut cursor);
    if let Some(why) = cursor.restart {
        return Ok(restart_outcome(why));
    }
    if cursor.exact {
        return Ok(Outcome::Done(result));
    }
    match result {
        Ok(value) => {
            // A consumer that stopped early has not seen every row: check the rest.
            while !cursor.exhausted {
                if let Err(e) = cursor.next_record() {
                    return match cursor.restart {
                        Some(why) => Ok(restart_outcome(why)),
                        None => Err(e),
                    };
                }
            }
            Ok(Outcome::Done(Ok(value)))
        }
        Err(err) => {
            // The error may come from the guess (a column that a wider header would have), and a read
            // failure outranks a validation error: decide with a full scan (error path only).
            match scan(input, encoding) {
                Err(ScanError::Undecodable) => Ok(Outcome::NextEncoding),
                Err(ScanError::Fatal(e)) => Err(e),
                Ok(s) if s.width > head.columns.len() => Ok(Outcome::ExactWidth),
                Ok(_) => Ok(Outcome::Done(Err(err))),
            }
        }
    }
}

/// Streams a CSV file (a path, or an upload as it arrives: see [`CsvInput`]) through `consume`, which
/// may be called more than once (each call must start from scratch; partial outputs of an abandoned call
/// are the caller's to discard, e.g. by dropping an uncommitted sink). The result equals running
/// `consume` once over [`CsvSource::open`]'s rows.
pub fn stream_csv<T, E: From<TableError>>(
    mut input: impl CsvInput,
    encodings: &[String],
    mut consume: impl FnMut(&CsvHead, &mut CsvCursor) -> Result<T, E>,
) -> Result<T, E> {
    let input: &mut dyn CsvInput = &mut input;
    // `utf-8` and `utf-8-sig` read alike: an encoding that failed is not tried again under another name.
    let mut failed: Vec<TextEncoding> = Vec::new();
    for (name, encoding) in candidate_encodings(input, encodings)? {
        let name = name.as_str();
        if failed.contains(&encoding) {
            continue;
        }
        failed.push(encoding);
        match attempt(input, name, encoding, None, &mut consume)? {
            Outcome::Done(result) => return result,
            Outcome::NextEncoding => continue,
            Outcome::ExactWidth => {}
        }
        let width = match scan(input, encoding) {
            Ok(s) => s.width,
            Err(ScanError::Undecodable) => continue,
            Err(ScanError::Fatal(e)) => return Err(e.into()),
        };
        match attempt(input, name, encoding, Some(width), &mut consume)? {
            Outcome::Done(result) => return result,
            Outcome::NextEncoding => continue,
            Outcome::ExactWidth => unreachable_exact()?,
        }
    }
    Err(TableError::Encoding(encodings.to_vec()).into())
}

/// An exact-width attempt never asks for a wider one; report it as a read error rather than panic.
fn unreachable_exact() -> Result<(), TableError> {
    Err(TableError::ReadCsv("inconsistent row width".to_string()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::table::read::{ArrivingFile, CsvSource, NextChunk};

    const ENCODINGS: [&str; 4] = ["utf-8", "utf-8-sig", "cp1252", "latin1"];

    fn encodings() -> Vec<String> {
        ENCODINGS.iter().map(|s| s.to_string()).collect()
    }

    /// Everything `stream_csv` yields, and the runs it needed.
    fn streamed(path: &Path) -> (CsvHead, Vec<Vec<Cell>>, u64, usize) {
        let mut calls = 0;
        let (head, rows, count) = stream_csv(path, &encodings(), |head, cursor| {
            calls += 1;
            let mut rows = Vec::new();
            while let Some(row) = cursor.next_row()? {
                rows.push(row.to_vec());
            }
            Ok::<_, TableError>((head.clone(), rows, cursor.rows_read()))
        })
        .unwrap();
        (head, rows, count, calls)
    }

    fn two_pass(path: &Path) -> (CsvHead, Vec<Vec<Cell>>) {
        let source = CsvSource::open(path, &encodings()).unwrap();
        let head = CsvHead {
            columns: source.columns.clone(),
            delimiter: source.delimiter,
            encoding: source.encoding,
        };
        (head, source.rows.map(Result::unwrap).collect())
    }

    #[test]
    fn matches_the_two_pass_reader_and_restarts_only_when_needed() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&[u8], usize); 6] = [
            (b"a,b\n1,2\n3\n", 1),
            (b"a;b\n1;2\n\n3;4\n", 1),
            (b"a,b\n1,2,,\n", 1),
            // Surplus non-empty field late in the file: one more run with the exact width.
            (b"a,b\n1,2\n3,4,5\n6\n", 2),
            // Undecodable as UTF-8 in the first decoded chunk: found before the consumer runs.
            (b"name,price\nx,1\nCaf\xe9,\x80 5\n", 1),
            (b"caf\xe9,x\n1,2\n", 1),
        ];
        // Undecodable as UTF-8 far into the file (after the first decoded chunk): the next encoding.
        let mut late = b"name,price\n".to_vec();
        for i in 0..40_000 {
            late.extend_from_slice(format!("x{i},{i}\n").as_bytes());
        }
        late.extend_from_slice(b"Caf\xe9,\x80 5\n");
        let mut cases: Vec<(&[u8], usize)> = cases.to_vec();
        cases.push((&late, 2));
        for (i, (bytes, runs)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("{i}.csv"));
            std::fs::write(&path, bytes).unwrap();
            let (head, rows, count, calls) = streamed(&path);
            let (want_head, want_rows) = two_pass(&path);
            assert_eq!((&head, &rows), (&want_head, &want_rows), "case {i}");
            assert_eq!(count as usize, rows.len());
            assert_eq!(calls, *runs, "case {i}");
        }
    }

    #[test]
    fn consumer_errors_are_checked_against_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        // The column `Unnamed: 2` exists only once the late surplus field is seen.
        let path = dir.path().join("wide.csv");
        std::fs::write(&path, b"a,b\n1,2\n3,4,5\n").unwrap();
        let found = stream_csv(&path, &encodings(), |head, _| {
            head.columns
                .iter()
                .position(|c| c == "Unnamed: 2")
                .ok_or_else(|| TableError::ReadCsv("no such column".into()))
        })
        .unwrap();
        assert_eq!(found, 2);
        // A read failure outranks the consumer's error (utf-8 only: the file cannot be read at all).
        let path = dir.path().join("bad.csv");
        std::fs::write(&path, b"a,b\n1,\xff\n").unwrap();
        let err = stream_csv(&path, &["utf-8".to_string()], |_, _| {
            Err::<(), _>(TableError::ReadCsv("validation".into()))
        })
        .unwrap_err();
        assert!(matches!(err, TableError::Encoding(_)), "{err}");
        // A real consumer error is returned as is.
        let path = dir.path().join("ok.csv");
        std::fs::write(&path, b"a,b\n1,2\n").unwrap();
        let err =
            stream_csv(&path, &encodings(), |_, _| Err::<(), _>(TableError::ReadCsv("validation".into())))
                .unwrap_err();
        assert_eq!(err.to_string(), "Failed to read CSV file: validation");
    }

    #[test]
    fn early_stop_still_sees_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("late.csv");
        let mut bytes = b"a\n".to_vec();
        for i in 1..50_000 {
            bytes.extend_from_slice(format!("{i}\n").as_bytes());
        }
        bytes.extend_from_slice(b"\xe9\n");
        std::fs::write(&path, bytes).unwrap();
        let (encoding, first) = stream_csv(&path, &encodings(), |head, cursor| {
            let first = cursor.next_row()?.map(|r| r.to_vec());
            Ok::<_, TableError>((head.encoding.clone(), first))
        })
        .unwrap();
        assert_eq!(encoding, "cp1252");
        assert_eq!(first, Some(vec![Cell::text("1")]));
    }

    #[test]
    fn empty_and_binary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.csv");
        std::fs::write(&path, b"").unwrap();
        let err = stream_csv(&path, &encodings(), |_, _| Ok::<(), TableError>(())).unwrap_err();
        assert_eq!(err.to_string(), "Failed to read CSV file: No columns to parse from file");
        let path = dir.path().join("x.csv");
        std::fs::write(&path, b"%PDF-1.4").unwrap();
        let err = stream_csv(&path, &encodings(), |_, _| Ok::<(), TableError>(())).unwrap_err();
        assert!(matches!(err, TableError::UnsupportedKind { .. }), "{err}");
    }

    /// Everything `stream_csv` yields for `input` (or its error), and the runs it needed.
    fn outcome(input: impl CsvInput, names: &[String]) -> Result<(CsvHead, Vec<Vec<Cell>>, usize), String> {
        let mut calls = 0;
        stream_csv(input, names, |head, cursor| {
            calls += 1;
            let mut rows = Vec::new();
            while let Some(row) = cursor.next_row()? {
                rows.push(row.to_vec());
            }
            Ok::<_, TableError>((head.clone(), rows))
        })
        .map(|(head, rows)| (head, rows, calls))
        .map_err(|e| e.to_string())
    }

    /// An upload of `bytes` arriving in pieces of `sizes` (cycled), spooled to `spool`.
    fn arriving(bytes: &[u8], sizes: &[usize], spool: &Path) -> ArrivingFile {
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(spool).unwrap();
        let (data, sizes) = (bytes.to_vec(), sizes.to_vec());
        let (mut at, mut i) = (0usize, 0usize);
        let next: NextChunk = Box::new(move || {
            if at >= data.len() {
                return Ok(None);
            }
            let n = sizes[i % sizes.len()].min(data.len() - at);
            i += 1;
            at += n;
            Ok(Some(bytes::Bytes::copy_from_slice(&data[at - n..at])))
        });
        ArrivingFile::new(next, file, spool.to_path_buf())
    }

    /// The CSV parsed as it arrives answers exactly as the stored file does (same facts, rows, errors and
    /// number of runs), however the bytes are cut: pieces that end inside a multi-byte character, inside
    /// a quoted field, between CR and LF, inside the BOM; restarts for another encoding or a wider row
    /// re-read what already arrived from the spool.
    #[test]
    fn an_arriving_upload_reads_as_the_stored_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut inputs: Vec<Vec<u8>> = vec![
            "\u{feff}name,note\r\n\"Zoë\",\"multi\r\nline, \"\"quoted\"\"\"\r\nJosé,€ 5\r\n".into(),
            "id;text\n1;\"a;b\nc\"\n2;日本語テキスト😀\n".into(),
            b"name,price\nx,1\nCaf\xe9,\x80 5\n".to_vec(),
            b"a,b\n1,2\n3,4,5\n6\n".to_vec(),
            b"\xff\xfea\0,\0b\0\n\x001\0,\x002\0\n\0".to_vec(),
            b"".to_vec(),
            b"%PDF-1.4 binary".to_vec(),
            b"PK\x03\x04 not really a zip".to_vec(),
            b"a,b\n\"unterminated,1\n".to_vec(),
        ];
        // Long enough for many chunks, then a late surprise: a non-UTF-8 byte, then a wider row.
        let mut late = "name,city\n".to_string();
        for i in 0..30_000 {
            late.push_str(&format!("\"n{i}\",Zürich 😀 {i}\n"));
        }
        let mut late_bytes = late.clone().into_bytes();
        late_bytes.extend_from_slice(b"caf\xe9,x\n");
        inputs.push(late_bytes);
        late.push_str("w,x,wider\n");
        inputs.push(late.into_bytes());
        let names = encodings();
        let utf8_only = vec!["utf-8".to_string()];
        for (i, bytes) in inputs.iter().enumerate() {
            let stored = dir.path().join(format!("{i}.csv"));
            std::fs::write(&stored, bytes).unwrap();
            for names in [&names, &utf8_only] {
                let want = outcome(stored.as_path(), names);
                for (j, sizes) in
                    [&[1usize][..], &[2, 3], &[7, 1, 4096], &[32 * 1024], &[usize::MAX]].iter().enumerate()
                {
                    let spool = dir.path().join(format!("{i}-{j}-{}.spool", names.len()));
                    let input = arriving(bytes, sizes, &spool);
                    let got = outcome(input.clone(), names);
                    assert_eq!(got, want, "input {i}, pieces {sizes:?}, encodings {names:?}");
                    input.receive_rest().unwrap();
                    assert_eq!(
                        std::fs::read(&spool).unwrap(),
                        *bytes,
                        "input {i}: the spool is the whole upload"
                    );
                }
            }
        }
    }
}
