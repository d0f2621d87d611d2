//! The workbook reader (operations.md §1.2) for xlsx/xlsm (streamed through calamine's cell reader) and
//! xls, with the zip-bomb and dimension-bomb guards applied before anything is materialised.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use calamine::{Data, DataRef, ExcelDateTime, Reader, Xls, Xlsx};

use super::header::unique_header;
use super::sniff::{detect_kind, FileKind};
use super::{ReadLimits, TextBudget};
use crate::engine::{Phase, StepControl};
use crate::table::cell::{Cell, Table};
use crate::table::error::TableError;
use crate::table::infer::{InferredType, TypeInference};
use crate::table::parse::python_float_text;
use crate::table::spool::{SpoolWriter, SpooledTable};

/// Deflate cannot compress better than about 1032:1; an entry claiming more is lying about its size.
const MAX_COMPRESSION_RATIO: u64 = 1100;
/// Entries smaller than this are never judged by their ratio (tiny parts compress oddly).
const RATIO_CHECK_MIN_BYTES: u64 = 1 << 20;
/// A real workbook has a few dozen parts; thousands of entries is an attack on the central directory.
const MAX_ZIP_ENTRIES: usize = 10_000;

/// One sheet read into a table, plus the workbook's sheet list.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkbookTable {
    /// Every sheet name in workbook order (hidden sheets included).
    pub sheets: Vec<String>,
    /// The sheet that was read.
    pub sheet_name: String,
    pub table: Table,
}

/// Reads the first sheet (or the sheet named `sheet`) of a workbook file. Refuses non-workbooks (415),
/// zip bombs (413) and sheets larger than `limits.max_cells` (422) before building the table.
pub fn read_workbook(
    path: &Path,
    sheet: Option<&str>,
    limits: &ReadLimits,
) -> Result<WorkbookTable, TableError> {
    read_workbook_tracked(path, sheet, limits, &StepControl::NONE)
}

/// [`read_workbook`] for a workflow step: rows read are counted on `control` (reading phase, total from
/// the sheet's declared dimension) and a stop request ends the read between two batches of rows.
pub fn read_workbook_tracked(
    path: &Path,
    sheet: Option<&str>,
    limits: &ReadLimits,
    control: &StepControl,
) -> Result<WorkbookTable, TableError> {
    control.begin(Phase::Reading, None)?;
    let (sheets, sheet_name, table) = read_sheet_into(path, sheet, limits, control, || Ok(Dense::default()))?;
    control.set_input_rows(table.row_count() as u64);
    Ok(WorkbookTable { sheets, sheet_name, table })
}

/// Streams the chosen sheet's non-empty cells into the store `make_store` gives (made once the file is
/// known to be a workbook): (sheet names, sheet read, what the store built).
fn read_sheet_into<S: CellStore>(
    path: &Path,
    sheet: Option<&str>,
    limits: &ReadLimits,
    control: &StepControl,
    make_store: impl FnOnce() -> Result<S, TableError>,
) -> Result<(Vec<String>, String, S::Output), TableError> {
    match detect_kind(path)? {
        FileKind::Xlsx => read_xlsx_into(path, sheet, SheetBuilder::new(limits, make_store()?, control)),
        FileKind::Xls => read_xls_into(path, sheet, SheetBuilder::new(limits, make_store()?, control)),
        other => Err(TableError::UnsupportedKind { expected: "Excel workbook", found: other.describe() }),
    }
}

/// [`read_workbook`]'s columns and rows, with the same checks and errors, without building the table: the
/// rows are spooled to an unnamed temporary file in `spool_dir` as the cells stream by, so memory does not
/// grow with the row count. Rows read back padded exactly as [`read_workbook`] pads them.
pub fn spool_workbook(
    path: &Path,
    sheet: Option<&str>,
    limits: &ReadLimits,
    spool_dir: &Path,
) -> Result<SpooledTable, TableError> {
    spool_workbook_tracked(path, sheet, limits, spool_dir, &StepControl::NONE)
}

/// [`spool_workbook`] for a workflow step: rows read are counted on `control` (reading phase, total from
/// the sheet's declared dimension) and a stop request ends the read between two batches of rows.
pub fn spool_workbook_tracked(
    path: &Path,
    sheet: Option<&str>,
    limits: &ReadLimits,
    spool_dir: &Path,
    control: &StepControl,
) -> Result<SpooledTable, TableError> {
    control.begin(Phase::Reading, None)?;
    let make_store = || Ok(Spooled::new(SpoolWriter::create_in(spool_dir)?));
    let (_, _, table) = read_sheet_into(path, sheet, limits, control, make_store)?;
    control.set_input_rows(table.rows.len() as u64);
    Ok(table)
}

/// What `excel/info` needs of one sheet, gathered while the cells stream by (nothing materialised).
#[derive(Debug, Clone, PartialEq)]
pub struct SheetSummary {
    /// Every sheet name in workbook order (hidden sheets included).
    pub sheets: Vec<String>,
    /// The sheet that was read.
    pub sheet_name: String,
    /// The columns [`read_workbook`] would give the table.
    pub columns: Vec<String>,
    /// Its number of data rows.
    pub rows: u64,
    /// §2.2 inferred type of each column.
    pub inferred: Vec<InferredType>,
}

/// [`read_workbook`]'s columns, row count and inferred types, with the same checks and errors, without
/// building the table: memory stays flat however long the sheet is.
pub fn summarize_workbook(
    path: &Path,
    sheet: Option<&str>,
    limits: &ReadLimits,
) -> Result<SheetSummary, TableError> {
    let (sheets, sheet_name, summary) =
        read_sheet_into(path, sheet, limits, &StepControl::NONE, || Ok(Summary::default()))?;
    let (columns, rows, inferred) = summary;
    Ok(SheetSummary { sheets, sheet_name, columns, rows, inferred })
}

/// Lists a workbook's sheet names in order, with the same kind and size checks as [`read_workbook`].
pub fn workbook_sheet_names(path: &Path, limits: &ReadLimits) -> Result<Vec<String>, TableError> {
    match detect_kind(path)? {
        FileKind::Xlsx => {
            check_zip_limits(path, limits)?;
            let workbook: Xlsx<BufReader<File>> = calamine::open_workbook(path).map_err(excel_err)?;
            Ok(workbook.sheet_names())
        }
        FileKind::Xls => {
            let workbook: Xls<BufReader<File>> = calamine::open_workbook(path).map_err(excel_err)?;
            Ok(workbook.sheet_names())
        }
        other => Err(TableError::UnsupportedKind { expected: "Excel workbook", found: other.describe() }),
    }
}

fn excel_err(err: impl std::fmt::Display) -> TableError {
    TableError::ReadExcel(err.to_string())
}

/// Zip-bomb guard: the central directory's declared sizes (which the zip crate enforces while reading)
/// must stay under the limit, no entry may claim an impossible compression ratio, and no worksheet or
/// shared-strings part may expand more than `limits.max_compression_ratio` (real sheets stay well below
/// 100:1; a bomb of many identical cells does not). Nothing is decompressed to decide.
pub fn check_zip_limits(path: &Path, limits: &ReadLimits) -> Result<(), TableError> {
    let archive = zip::ZipArchive::new(BufReader::new(File::open(path)?)).map_err(excel_err)?;
    if archive.len() > MAX_ZIP_ENTRIES {
        return Err(TableError::TooLarge(format!("the workbook has {} parts", archive.len())));
    }
    let metadata = archive.metadata();
    let mut total: u64 = 0;
    for i in 0..metadata.len() {
        let entry = metadata.entry(i).map_err(excel_err)?;
        let size = entry.size();
        let compressed = entry.compressed_size();
        if size > RATIO_CHECK_MIN_BYTES && size / compressed.max(1) > MAX_COMPRESSION_RATIO {
            return Err(TableError::TooLarge(format!(
                "a workbook part claims an impossible compression ratio ({} bytes from {})",
                size, compressed
            )));
        }
        let judged = limits.max_compression_ratio > 0 && size >= limits.compression_check_min_bytes.max(1);
        if judged && size / compressed.max(1) > limits.max_compression_ratio {
            let name = entry.name().map_err(excel_err)?;
            if is_cell_part(&name) {
                return Err(TableError::CompressionRatio {
                    part: name.into_owned(),
                    ratio: size / compressed.max(1),
                    max_ratio: limits.max_compression_ratio,
                });
            }
        }
        total = total.saturating_add(size);
        if total > limits.max_uncompressed_bytes {
            return Err(TableError::TooLarge(format!(
                "the workbook decompresses to more than {} bytes",
                limits.max_uncompressed_bytes
            )));
        }
    }
    Ok(())
}

/// The parts whose size decides what reading costs: worksheets and the shared-strings table.
fn is_cell_part(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("xl/worksheets/") || name == "xl/sharedstrings.xml"
}

fn choose_sheet(sheets: &[String], wanted: Option<&str>) -> Result<String, TableError> {
    match wanted {
        Some(name) => sheets
            .iter()
            .find(|s| s.as_str() == name)
            .cloned()
            .ok_or_else(|| TableError::SheetNotFound { name: name.to_string(), available: sheets.to_vec() }),
        None => sheets
            .first()
            .cloned()
            .ok_or_else(|| TableError::ReadExcel("the workbook contains no worksheets".to_string())),
    }
}

fn too_many(rows: u64, columns: u64, limits: &ReadLimits) -> Result<(), TableError> {
    if rows.saturating_mul(columns) > limits.max_cells {
        Err(TableError::TooManyCells { rows, columns, max_cells: limits.max_cells })
    } else {
        Ok(())
    }
}

/// Streams the chosen sheet's non-empty cells into `builder`: (sheet names, sheet read, what it built).
fn read_xlsx_into<S: CellStore>(
    path: &Path,
    sheet: Option<&str>,
    mut builder: SheetBuilder<'_, S>,
) -> Result<(Vec<String>, String, S::Output), TableError> {
    let limits = builder.limits;
    check_zip_limits(path, limits)?;
    let mut workbook: Xlsx<BufReader<File>> = calamine::open_workbook(path).map_err(excel_err)?;
    let sheets = workbook.sheet_names();
    let sheet_name = choose_sheet(&sheets, sheet)?;
    let mut reader = workbook.worksheet_cells_reader(&sheet_name).map_err(excel_err)?;
    // The declared extent (from A1, where the table always starts) is checked before any cell is read.
    let declared = reader.dimensions();
    if declared.end != (0, 0) || declared.start != (0, 0) {
        too_many(u64::from(declared.end.0) + 1, u64::from(declared.end.1) + 1, limits)?;
        // Rows below the header row (the dimension may be absent: the total then stays unknown).
        builder.control.set_total(u64::from(declared.end.0));
    }
    while let Some(cell) = reader.next_cell().map_err(excel_err)? {
        let (row, col) = cell.get_position();
        if let Some(value) = data_ref_cell(cell.get_value()) {
            builder.put(row, col, value)?;
        }
    }
    Ok((sheets, sheet_name, builder.finish()?))
}

fn read_xls_into<S: CellStore>(
    path: &Path,
    sheet: Option<&str>,
    mut builder: SheetBuilder<'_, S>,
) -> Result<(Vec<String>, String, S::Output), TableError> {
    let limits = builder.limits;
    let mut workbook: Xls<BufReader<File>> = calamine::open_workbook(path).map_err(excel_err)?;
    let sheets = workbook.sheet_names();
    let sheet_name = choose_sheet(&sheets, sheet)?;
    let range = workbook.worksheet_range(&sheet_name).map_err(excel_err)?;
    if let Some(end) = range.end() {
        too_many(u64::from(end.0) + 1, u64::from(end.1) + 1, limits)?;
        builder.control.set_total(u64::from(end.0));
    }
    let (row0, col0) = range.start().unwrap_or((0, 0));
    for (r, c, value) in range.used_cells() {
        if let Some(cell) = data_cell(value) {
            // Positions fit in u32: they come from a calamine range of u32 coordinates.
            let row = row0.saturating_add(u32::try_from(r).unwrap_or(u32::MAX));
            let col = col0.saturating_add(u32::try_from(c).unwrap_or(u32::MAX));
            builder.put(row, col, cell)?;
        }
    }
    Ok((sheets, sheet_name, builder.finish()?))
}

/// Takes the non-empty cells of a sheet (row-major for xlsx, any order for xls) once the extent checks
/// have passed, and turns them into a result given the final width and height.
trait CellStore {
    type Output;
    fn put(&mut self, row: usize, col: usize, cell: Cell, width: usize) -> Result<(), TableError>;
    fn finish(self, width: usize, height: usize) -> Result<Self::Output, TableError>;
}

/// Collects non-empty cells at absolute positions, enforcing the cell limit on the extent so far; the
/// store then applies §1.2 (header from row 1, width = right-most used column, trailing empty rows
/// dropped).
struct SheetBuilder<'a, S> {
    limits: &'a ReadLimits,
    /// Cell text materialised so far (shared-string bombs cost little to read but much to hold).
    budget: TextBudget,
    /// Counts rows (data rows below the header) as the extent grows; the stop check rides on it.
    control: &'a StepControl,
    store: S,
    width: u32,
    height: u64,
}

impl<'a, S: CellStore> SheetBuilder<'a, S> {
    fn new(limits: &'a ReadLimits, store: S, control: &'a StepControl) -> Self {
        SheetBuilder { limits, budget: TextBudget::new(limits), control, store, width: 0, height: 0 }
    }

    /// Stores a non-empty cell (empty ones never change the extent), charged against the text budget.
    fn put(&mut self, row: u32, col: u32, cell: Cell) -> Result<(), TableError> {
        if let Cell::Text(text) = &cell {
            self.budget.charge_text(text, row, col)?;
        }
        let width = self.width.max(col.saturating_add(1));
        let height = self.height.max(u64::from(row) + 1);
        too_many(height, u64::from(width), self.limits)?;
        if height > self.height {
            self.control.advance_to(height - 1)?;
        }
        self.width = width;
        self.height = height;
        self.store.put(row as usize, col as usize, cell, width as usize)
    }

    fn finish(self) -> Result<S::Output, TableError> {
        // The height is bounded by the cell limit checked in `put`.
        self.store.finish(self.width as usize, self.height as usize)
    }
}

/// Column names from the header row's cells (blank and non-text cells are unnamed).
fn header_names(header: impl IntoIterator<Item = Cell>) -> Vec<String> {
    let raw = header
        .into_iter()
        .map(|c| match c {
            Cell::Text(s) if !s.is_empty() => Some(s),
            _ => None,
        })
        .collect();
    unique_header(raw)
}

/// Sets cell `col` of a row kept as long as its right-most non-empty cell (gaps are empty text).
fn place(cells: &mut Vec<Cell>, col: usize, cell: Cell, width: usize) {
    if cells.capacity() == 0 {
        // Rows are usually as wide as the ones before: one allocation per row.
        cells.reserve_exact(width);
    }
    if col >= cells.len() {
        cells.resize(col + 1, Cell::text(""));
    }
    cells[col] = cell;
}

/// The whole sheet as a table.
#[derive(Default)]
struct Dense {
    /// Dense rows, each as long as its right-most non-empty cell (padded to the width at the end).
    rows: Vec<Vec<Cell>>,
}

impl CellStore for Dense {
    type Output = Table;

    fn put(&mut self, row: usize, col: usize, cell: Cell, width: usize) -> Result<(), TableError> {
        if row >= self.rows.len() {
            self.rows.resize_with(row + 1, Vec::new);
        }
        place(&mut self.rows[row], col, cell, width);
        Ok(())
    }

    fn finish(self, width: usize, _height: usize) -> Result<Table, TableError> {
        let mut dense = self.rows.into_iter().map(|mut row| {
            row.resize(width, Cell::text(""));
            row
        });
        let Some(header) = dense.next() else {
            return Ok(Table::default());
        };
        Ok(Table { columns: header_names(header), rows: dense.collect() })
    }
}

/// The sheet in a row spool, with the same columns and rows as [`Dense`]: only the header and the row
/// being read stay in memory. Each row goes to the spool, unpadded, once a cell of a later row arrives
/// (rows skipped in between go as empty rows); the last row when the sheet ends. Rows after the last
/// non-empty cell are never seen, so trailing empty rows are dropped as in [`Dense`], and the reader pads
/// every row to the final width, known only at the end.
///
/// xlsx cells arrive in document order and xls ranges are row-major, so rows come in order; a sheet whose
/// XML lists rows out of order switches to [`Dense`] (memory as before, same result).
struct Spooled {
    spool: SpoolWriter,
    header: Vec<Cell>,
    /// The row being collected and its cells so far.
    at: usize,
    current: Vec<Cell>,
    fallback: Option<Dense>,
}

impl Spooled {
    fn new(spool: SpoolWriter) -> Spooled {
        Spooled { spool, header: Vec::new(), at: 0, current: Vec::new(), fallback: None }
    }

    fn flush_current(&mut self) -> Result<(), TableError> {
        if self.at == 0 {
            self.header = std::mem::take(&mut self.current);
        } else {
            self.spool.push(&self.current)?;
            self.current.clear();
        }
        Ok(())
    }

    /// Everything so far as [`Dense`] rows: the header, the spooled rows, the current row.
    fn take_dense(&mut self) -> Result<Dense, TableError> {
        let fresh = SpoolWriter::create_in(self.spool.dir())?;
        let spool = std::mem::replace(&mut self.spool, fresh);
        // No columns: the rows read back as they were pushed, unpadded.
        let mut spooled = spool.finish(Vec::new())?;
        let mut rows = Vec::with_capacity(spooled.rows.len() + 2);
        rows.push(std::mem::take(&mut self.header));
        rows.extend(spooled.collect_rows()?);
        rows.push(std::mem::take(&mut self.current));
        Ok(Dense { rows })
    }
}

impl CellStore for Spooled {
    type Output = SpooledTable;

    fn put(&mut self, row: usize, col: usize, cell: Cell, width: usize) -> Result<(), TableError> {
        if self.fallback.is_none() && row < self.at {
            self.fallback = Some(self.take_dense()?);
        }
        if let Some(dense) = &mut self.fallback {
            return dense.put(row, col, cell, width);
        }
        if row > self.at {
            self.flush_current()?;
            for _ in self.at + 1..row {
                self.spool.push(&[])?;
            }
            self.at = row;
        }
        place(&mut self.current, col, cell, width);
        Ok(())
    }

    fn finish(mut self, width: usize, height: usize) -> Result<SpooledTable, TableError> {
        if let Some(dense) = self.fallback.take() {
            let table = dense.finish(width, height)?;
            for row in &table.rows {
                self.spool.push(row)?;
            }
            return Ok(self.spool.finish(table.columns)?);
        }
        if height == 0 {
            return Ok(self.spool.finish(Vec::new())?);
        }
        self.flush_current()?;
        let mut header = std::mem::take(&mut self.header);
        header.resize(width, Cell::text(""));
        Ok(self.spool.finish(header_names(header))?)
    }
}

/// Only the header, the extent and per-column type inference (padding cells are empty text, which
/// inference ignores, so they need not be seen).
#[derive(Default)]
struct Summary {
    header: Vec<Cell>,
    inference: Vec<TypeInference>,
}

impl CellStore for Summary {
    /// (columns, data rows, inferred types)
    type Output = (Vec<String>, u64, Vec<InferredType>);

    fn put(&mut self, row: usize, col: usize, cell: Cell, _width: usize) -> Result<(), TableError> {
        if row == 0 {
            if col >= self.header.len() {
                self.header.resize(col + 1, Cell::text(""));
            }
            self.header[col] = cell;
        } else {
            if col >= self.inference.len() {
                self.inference.resize_with(col + 1, TypeInference::new);
            }
            self.inference[col].push(&cell);
        }
        Ok(())
    }

    fn finish(mut self, width: usize, height: usize) -> Result<Self::Output, TableError> {
        if height == 0 {
            return Ok((Vec::new(), 0, Vec::new()));
        }
        self.header.resize(width, Cell::text(""));
        self.inference.resize_with(width, TypeInference::new);
        let inferred = self.inference.iter().map(TypeInference::finish).collect();
        Ok((header_names(self.header), (height - 1) as u64, inferred))
    }
}

/// Cell text of a streamed xlsx value; `None` for cells that count as empty.
fn data_ref_cell(value: &DataRef<'_>) -> Option<Cell> {
    let cell = match value {
        DataRef::Empty => return None,
        DataRef::String(s) => Cell::text(s.as_str()),
        DataRef::SharedString(s) => Cell::text(*s),
        DataRef::Int(i) => Cell::Text(i.to_string()),
        DataRef::Float(f) => Cell::Text(number_text(*f)),
        DataRef::Bool(b) => Cell::text(if *b { "True" } else { "False" }),
        DataRef::DateTime(dt) => Cell::Text(excel_datetime_text(dt)),
        DataRef::DateTimeIso(s) => Cell::Text(iso_datetime_text(s)),
        DataRef::DurationIso(s) => Cell::text(s.as_str()),
        DataRef::Error(_) => Cell::Missing,
    };
    non_empty(cell)
}

/// Cell text of an xls value; `None` for cells that count as empty.
fn data_cell(value: &Data) -> Option<Cell> {
    let cell = match value {
        Data::Empty => return None,
        Data::String(s) => Cell::text(s.as_str()),
        Data::Int(i) => Cell::Text(i.to_string()),
        Data::Float(f) => Cell::Text(number_text(*f)),
        Data::Bool(b) => Cell::text(if *b { "True" } else { "False" }),
        Data::DateTime(dt) => Cell::Text(excel_datetime_text(dt)),
        Data::DateTimeIso(s) => Cell::Text(iso_datetime_text(s)),
        Data::DurationIso(s) => Cell::text(s.as_str()),
        Data::Error(_) => Cell::Missing,
    };
    non_empty(cell)
}

/// Empty strings do not extend the sheet (the reference trims them like absent cells).
fn non_empty(cell: Cell) -> Option<Cell> {
    match &cell {
        Cell::Text(s) if s.is_empty() => None,
        _ => Some(cell),
    }
}

/// §1.2: integral numbers print as plain integers (exact value, `-0` → `0`), others as Python floats.
pub fn number_text(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 {
        if value == 0.0 {
            return "0".to_string();
        }
        // Exact in i64 (and far faster than the exact decimal expansion below).
        if value.abs() < 9.0e15 {
            return (value as i64).to_string();
        }
        // `{:.0}` prints the exact decimal value of the double, like Python's int(float).
        return format!("{value:.0}");
    }
    python_float_text(value)
}

const MS_PER_DAY: f64 = 86_400_000.0;

/// §1.2 date cells: `YYYY-MM-DD HH:MM:SS[.ffffff]`, or `HH:MM:SS[.ffffff]` for values in [0, 1).
/// Durations print like Python's timedelta (`1 day, 2:00:00`).
fn excel_datetime_text(dt: &ExcelDateTime) -> String {
    let value = dt.as_f64();
    if dt.is_duration() {
        return duration_text(value);
    }
    if (0.0..1.0).contains(&value) {
        let ms = (value * MS_PER_DAY).round() as u64;
        if ms < 86_400_000 {
            return clock_text(ms, true);
        }
    }
    match dt.as_datetime() {
        Some(datetime) => naive_datetime_text(&datetime),
        None => number_text(value),
    }
}

fn naive_datetime_text(datetime: &chrono::NaiveDateTime) -> String {
    use chrono::{Datelike, Timelike};
    // Written by hand for speed; years outside 0..=9999 keep chrono's own rendering.
    let base = if (0..=9999).contains(&datetime.year()) {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            datetime.year(),
            datetime.month(),
            datetime.day(),
            datetime.hour(),
            datetime.minute(),
            datetime.second()
        )
    } else {
        datetime.format("%Y-%m-%d %H:%M:%S").to_string()
    };
    let micros = chrono::Timelike::nanosecond(datetime) / 1000;
    if micros == 0 {
        base
    } else {
        format!("{base}.{micros:06}")
    }
}

/// `HH:MM:SS[.ffffff]` from milliseconds; `pad_hours` false gives Python timedelta's `H:MM:SS`.
fn clock_text(ms: u64, pad_hours: bool) -> String {
    let (h, rem) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rem) = (rem / 60_000, rem % 60_000);
    let (s, milli) = (rem / 1000, rem % 1000);
    let mut text = if pad_hours { format!("{h:02}:{m:02}:{s:02}") } else { format!("{h}:{m:02}:{s:02}") };
    if milli != 0 {
        text.push_str(&format!(".{:06}", milli * 1000));
    }
    text
}

fn duration_text(days: f64) -> String {
    let negative = days < 0.0;
    let total_ms = (days.abs() * MS_PER_DAY).round() as u64;
    let (d, ms) = (total_ms / 86_400_000, total_ms % 86_400_000);
    let clock = clock_text(ms, false);
    let body = match d {
        0 => clock,
        1 => format!("1 day, {clock}"),
        _ => format!("{d} days, {clock}"),
    };
    if negative {
        format!("-{body}")
    } else {
        body
    }
}

/// ISO date cells (`t="d"`) are normalised to the same text as serial dates when they parse.
fn iso_datetime_text(text: &str) -> String {
    let formats = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"];
    for fmt in formats {
        if let Ok(datetime) = chrono::NaiveDateTime::parse_from_str(text, fmt) {
            return naive_datetime_text(&datetime);
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return naive_datetime_text(&date.and_time(chrono::NaiveTime::MIN));
    }
    if let Ok(time) = chrono::NaiveTime::parse_from_str(text, "%H:%M:%S%.f") {
        let ms = u64::from(chrono::Timelike::num_seconds_from_midnight(&time)) * 1000
            + u64::from(chrono::Timelike::nanosecond(&time) / 1_000_000);
        return clock_text(ms, true);
    }
    text.to_string()
}

#[cfg(test)]
mod tests;
