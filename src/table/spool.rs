//! Row spools: the rows of a sheet written once to an unnamed temporary file as the reader streams them,
//! then read back through one reused row buffer. Generators that must know the row count before their
//! first line (SQL headers, JSON shapes) get it without holding the sheet in memory.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::rows::{assign, set_text, RowSource};
use super::{Cell, TableError};

/// Buffer of the spool file on both sides; large enough that syscalls do not dominate.
const BUFFER_BYTES: usize = 256 * 1024;

// Record format: per row, the byte length of its record (LEB128) then its cells, each a tag byte followed
// by the value: text as LEB128 byte length + UTF-8, numbers as 8 little-endian bytes.
const MISSING: u8 = 0;
const TEXT: u8 = 1;
const INT: u8 = 2;
const FLOAT: u8 = 3;
const FALSE: u8 = 4;
const TRUE: u8 = 5;

/// Rows being written to a spool.
pub struct SpoolWriter {
    out: BufWriter<File>,
    dir: PathBuf,
    rows: usize,
    record: Vec<u8>,
}

impl SpoolWriter {
    /// A spool in an unnamed temporary file in `dir`: nothing to clean up, the OS frees it when the spool is
    /// dropped, even after a crash.
    pub fn create_in(dir: &Path) -> io::Result<SpoolWriter> {
        let file = tempfile::tempfile_in(dir)?;
        Ok(SpoolWriter {
            out: BufWriter::with_capacity(BUFFER_BYTES, file),
            dir: dir.to_path_buf(),
            rows: 0,
            record: Vec::new(),
        })
    }

    /// Appends one row as it is; rows shorter than the table are padded when read back.
    pub fn push(&mut self, row: &[Cell]) -> io::Result<()> {
        self.record.clear();
        for cell in row {
            encode_cell(cell, &mut self.record);
        }
        let (len, n) = varint_bytes(self.record.len() as u64);
        self.out.write_all(&len[..n])?;
        self.out.write_all(&self.record)?;
        self.rows += 1;
        Ok(())
    }

    /// The folder the spool lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The finished table; its rows read back padded with empty text to `columns.len()` cells.
    pub fn finish(self, columns: Vec<String>) -> io::Result<SpooledTable> {
        let file = self.out.into_inner().map_err(io::IntoInnerError::into_error)?;
        let width = columns.len();
        Ok(SpooledTable {
            columns,
            rows: RowSpool { file, dir: self.dir, len: self.rows, width, projection: None },
        })
    }
}

/// A table whose rows live in a spool: the columns in memory, the rows on disk.
pub struct SpooledTable {
    pub columns: Vec<String>,
    pub rows: RowSpool,
}

impl SpooledTable {
    /// Keeps the columns at `indices`, in that order, under the names `columns` (as many). Nothing is
    /// rewritten: the reader picks the cells.
    pub fn select(&mut self, columns: Vec<String>, indices: Vec<usize>) {
        let indices = match &self.rows.projection {
            // An index with no source reads as Missing, like a cell beyond the row.
            Some(earlier) => indices.iter().map(|&i| earlier.get(i).copied().unwrap_or(usize::MAX)).collect(),
            None => indices,
        };
        self.columns = columns;
        self.rows.projection = Some(indices);
    }

    /// Keeps the first occurrence of every row, compared cell by cell as text with Missing unlike `""`
    /// (operations.md §1.4), in a new spool next to this one.
    ///
    /// Memory grows with the number of distinct rows, as it must, but by 16 bytes each: rows are compared
    /// by a 128-bit keyed digest rather than kept whole. With a per-call random key the chance that two
    /// different rows collide (and one is dropped) is about n²/2¹²⁹, below 10⁻²⁶ for a million rows, and
    /// cannot be steered by the file's content.
    pub fn dedupe(mut self) -> Result<SpooledTable, TableError> {
        let mut unique = SpoolWriter::create_in(&self.rows.dir)?;
        let digest = RowDigest::new();
        let mut seen: HashSet<u128> = HashSet::new();
        let mut rows = self.rows.reader()?;
        while let Some(row) = rows.next_row()? {
            if seen.insert(digest.of(row)) {
                unique.push(row)?;
            }
        }
        Ok(unique.finish(self.columns)?)
    }

    /// Every row, padded (test helper and small tables).
    pub fn collect_rows(&mut self) -> Result<Vec<Vec<Cell>>, TableError> {
        let mut out = Vec::with_capacity(self.rows.len());
        let mut rows = self.rows.reader()?;
        while let Some(row) = rows.next_row()? {
            out.push(row.to_vec());
        }
        Ok(out)
    }
}

/// The rows of a [`SpooledTable`] on disk.
pub struct RowSpool {
    file: File,
    dir: PathBuf,
    len: usize,
    /// Cells per row once padded.
    width: usize,
    /// Cells the reader hands out, by index into the stored row; `None` = all.
    projection: Option<Vec<usize>>,
}

impl RowSpool {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The folder the spool lives in (where spools derived from it go).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the rows from the first, through one reused row buffer.
    pub fn reader(&mut self) -> Result<SpoolReader<'_>, TableError> {
        self.file.rewind()?;
        Ok(SpoolReader {
            input: BufReader::with_capacity(BUFFER_BYTES, &self.file),
            remaining: self.len,
            width: self.width,
            projection: self.projection.as_deref(),
            record: Vec::new(),
            row: Vec::new(),
            picked: Vec::new(),
        })
    }
}

/// Reads a spool's rows one at a time; each row is valid until the next call.
pub struct SpoolReader<'a> {
    input: BufReader<&'a File>,
    remaining: usize,
    width: usize,
    projection: Option<&'a [usize]>,
    record: Vec<u8>,
    row: Vec<Cell>,
    picked: Vec<Cell>,
}

impl RowSource for SpoolReader<'_> {
    fn next_row(&mut self) -> Result<Option<&[Cell]>, TableError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        let len = usize::try_from(read_varint(&mut self.input)?).map_err(|_| corrupt())?;
        self.record.resize(len, 0);
        self.input.read_exact(&mut self.record)?;
        decode_row(&self.record, self.width, &mut self.row)?;
        let Some(indices) = self.projection else {
            return Ok(Some(&self.row));
        };
        self.picked.resize(indices.len(), Cell::Missing);
        for (slot, &i) in self.picked.iter_mut().zip(indices) {
            assign(slot, self.row.get(i).unwrap_or(&Cell::Missing));
        }
        Ok(Some(&self.picked))
    }
}

fn encode_cell(cell: &Cell, out: &mut Vec<u8>) {
    match cell {
        Cell::Missing => out.push(MISSING),
        Cell::Text(s) => {
            out.push(TEXT);
            push_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Cell::Int(i) => {
            out.push(INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Cell::Float(f) => {
            out.push(FLOAT);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Cell::Bool(b) => out.push(if *b { TRUE } else { FALSE }),
    }
}

/// Decodes one record into `row` (reusing its cells), padded with empty text to `width` cells.
fn decode_row(mut record: &[u8], width: usize, row: &mut Vec<Cell>) -> io::Result<()> {
    let mut n = 0;
    while let Some((&tag, rest)) = record.split_first() {
        record = rest;
        if n == row.len() {
            row.push(Cell::Missing);
        }
        let slot = &mut row[n];
        match tag {
            MISSING => *slot = Cell::Missing,
            TEXT => {
                let len = usize::try_from(take_varint(&mut record)?).map_err(|_| corrupt())?;
                let bytes = take(&mut record, len)?;
                set_text(slot, std::str::from_utf8(bytes).map_err(|_| corrupt())?);
            }
            INT => *slot = Cell::Int(i64::from_le_bytes(take_8(&mut record)?)),
            FLOAT => *slot = Cell::Float(f64::from_bits(u64::from_le_bytes(take_8(&mut record)?))),
            FALSE => *slot = Cell::Bool(false),
            TRUE => *slot = Cell::Bool(true),
            _ => return Err(corrupt()),
        }
        n += 1;
    }
    let len = n.max(width);
    row.truncate(len);
    for i in n..len {
        match row.get_mut(i) {
            Some(slot) => set_text(slot, ""),
            None => row.push(Cell::text("")),
        }
    }
    Ok(())
}

fn corrupt() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "corrupt row spool")
}

fn take<'r>(record: &mut &'r [u8], len: usize) -> io::Result<&'r [u8]> {
    if record.len() < len {
        return Err(corrupt());
    }
    let (head, rest) = record.split_at(len);
    *record = rest;
    Ok(head)
}

fn take_8(record: &mut &[u8]) -> io::Result<[u8; 8]> {
    take(record, 8)?.try_into().map_err(|_| corrupt())
}

/// LEB128: seven bits a byte, low bits first, the high bit set on every byte but the last.
fn varint_bytes(mut value: u64) -> ([u8; 10], usize) {
    let mut bytes = [0u8; 10];
    let mut n = 0;
    while value >= 0x80 {
        bytes[n] = (value as u8) | 0x80;
        value >>= 7;
        n += 1;
    }
    bytes[n] = value as u8;
    (bytes, n + 1)
}

fn push_varint(out: &mut Vec<u8>, value: u64) {
    let (bytes, n) = varint_bytes(value);
    out.extend_from_slice(&bytes[..n]);
}

fn take_varint(record: &mut &[u8]) -> io::Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = take(record, 1)?[0];
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(corrupt())
}

fn read_varint(input: &mut impl Read) -> io::Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let mut byte = [0u8; 1];
        input.read_exact(&mut byte)?;
        value |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] < 0x80 {
            return Ok(value);
        }
    }
    Err(corrupt())
}

/// A 128-bit digest of a row's §1.4 comparison key: two SipHash runs under one random key, told apart by
/// a leading byte. Cells are length-prefixed, so different rows never feed a hasher the same bytes.
pub(crate) struct RowDigest(RandomState);

impl RowDigest {
    pub(crate) fn new() -> RowDigest {
        RowDigest(RandomState::new())
    }

    pub(crate) fn of(&self, row: &[Cell]) -> u128 {
        let mut halves = [self.0.build_hasher(), self.0.build_hasher()];
        for (domain, h) in halves.iter_mut().enumerate() {
            h.write_u8(domain as u8);
            h.write_usize(row.len());
        }
        for cell in row {
            let text = match cell {
                Cell::Missing => None,
                other => Some(other.as_text()),
            };
            for h in &mut halves {
                match &text {
                    None => h.write_u8(0),
                    Some(t) => {
                        h.write_u8(1);
                        h.write_usize(t.len());
                        h.write(t.as_bytes());
                    }
                }
            }
        }
        let [a, b] = halves;
        (u128::from(a.finish()) << 64) | u128::from(b.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(dir: &Path, columns: &[&str], rows: &[Vec<Cell>]) -> SpooledTable {
        let mut w = SpoolWriter::create_in(dir).unwrap();
        for row in rows {
            w.push(row).unwrap();
        }
        assert_eq!(w.rows(), rows.len());
        w.finish(columns.iter().map(|c| c.to_string()).collect()).unwrap()
    }

    fn t(s: &str) -> Cell {
        Cell::text(s)
    }

    #[test]
    fn every_cell_kind_round_trips_and_short_rows_are_padded() {
        let dir = tempfile::tempdir().unwrap();
        let long = "x".repeat(300);
        let rows = vec![
            vec![t("a"), Cell::Missing, t(""), t("Zürich 'q' \\ \"{x}\"")],
            vec![Cell::Int(-7), Cell::Float(1.5), Cell::Bool(true), Cell::Bool(false)],
            vec![],
            vec![t(&long)],
            vec![Cell::Float(f64::NAN), Cell::Int(i64::MIN)],
        ];
        let mut table = spool(dir.path(), &["a", "b", "c", "d"], &rows);
        assert_eq!(table.rows.len(), 5);
        let got = table.collect_rows().unwrap();
        assert_eq!(got[0], rows[0]);
        assert_eq!(got[1], rows[1]);
        assert_eq!(got[2], vec![t(""), t(""), t(""), t("")]);
        assert_eq!(got[3], vec![t(&long), t(""), t(""), t("")]);
        assert!(matches!(got[4][0], Cell::Float(f) if f.is_nan()));
        assert_eq!(got[4][1..], [Cell::Int(i64::MIN), t(""), t("")]);
        // A spool can be read again from the start; nothing is left in the folder.
        assert_eq!(table.collect_rows().unwrap().len(), 5);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_empty_spool_has_no_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = spool(dir.path(), &[], &[]);
        assert!(table.rows.is_empty());
        assert_eq!(table.rows.reader().unwrap().next_row().unwrap(), None);
    }

    #[test]
    fn selection_picks_and_reorders_and_composes() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = spool(dir.path(), &["a", "b", "c"], &[vec![t("1"), t("2"), t("3")], vec![t("4")]]);
        table.select(vec!["c".into(), "a".into()], vec![2, 0]);
        assert_eq!(table.columns, ["c", "a"]);
        assert_eq!(table.collect_rows().unwrap(), vec![vec![t("3"), t("1")], vec![t(""), t("4")]]);
        table.select(vec!["a".into()], vec![1]);
        assert_eq!(table.collect_rows().unwrap(), vec![vec![t("1")], vec![t("4")]]);
    }

    #[test]
    fn dedupe_keeps_first_occurrences_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![
            vec![t("1"), t("x"), t("p")],
            vec![t("1"), t("x"), t("q")],
            vec![t("2"), Cell::Missing, t("r")],
            vec![t("2"), t(""), t("s")],
            vec![t("1"), t("x"), t("z")],
            vec![t("2"), Cell::Missing, t("t")],
            // Cell boundaries count: "ab","" is not "a","b".
            vec![t("ab"), t(""), t("u")],
            vec![t("a"), t("b"), t("u")],
        ];
        let mut table = spool(dir.path(), &["a", "b", "c"], &rows);
        table.select(vec!["a".into(), "b".into()], vec![0, 1]);
        let mut unique = table.dedupe().unwrap();
        assert_eq!(unique.columns, ["a", "b"]);
        assert_eq!(unique.rows.len(), 5);
        assert_eq!(
            unique.collect_rows().unwrap(),
            vec![
                vec![t("1"), t("x")],
                vec![t("2"), Cell::Missing],
                vec![t("2"), t("")],
                vec![t("ab"), t("")],
                vec![t("a"), t("b")],
            ]
        );
        // Same rule as the in-memory dedupe: a number equals its text.
        let mut mixed = spool(dir.path(), &["n"], &[vec![Cell::Int(1)], vec![t("1")], vec![t("2")]]);
        assert_eq!(mixed.rows.len(), 3);
        mixed = mixed.dedupe().unwrap();
        assert_eq!(mixed.collect_rows().unwrap(), vec![vec![Cell::Int(1)], vec![t("2")]]);
    }

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            push_varint(&mut buf, v);
            assert_eq!(take_varint(&mut buf.as_slice()).unwrap(), v);
            assert_eq!(read_varint(&mut buf.as_slice()).unwrap(), v);
        }
        let mut unfinished: &[u8] = &[0x80];
        assert!(take_varint(&mut unfinished).is_err());
    }
}
