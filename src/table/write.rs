//! Writers for output files: the standard workbook (operations.md §11.1), the search workbook, CSV and JSON
//! (§6.3). All are streaming sinks that write to a temporary file in the target folder and rename it into
//! place on `finish`, so readers never see partial files.
//!
//! Outputs are not fsynced here: a REST output is derived, re-creatable data with a retention of hours, and
//! an fsync per request costs more than the rest of a small request (tens of ms, serialised on the disk's
//! journal). Files that must survive a power loss (conversation files recorded in SQLite) are made durable
//! by their owner with [`make_durable`] before they are recorded.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rust_xlsxwriter::{Format, FormatAlign, FormatBorder, Workbook, XlsxError};
use tempfile::NamedTempFile;

use super::cell::{Cell, Table};
use super::error::TableError;
use super::parse::python_float_text;
use super::read::CsvRow;
use super::rows::RowSource;
use crate::engine::{Phase, StepControl};

/// Excel's hard limits.
const MAX_SHEET_ROWS: u32 = 1_048_576;
const MAX_SHEET_COLUMNS: usize = 16_384;
const MAX_SHEET_NAME_UNITS: usize = 31;

/// How the standard writer lays out a workbook (config `excel.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkbookStyle {
    /// Name of the data sheet (`excel.default_sheet_name`, or the endpoint's own).
    pub data_sheet_name: String,
    /// Name of the info sheet (`excel.info_sheet_name`), `None` when `excel.include_info_sheet` is false.
    pub info_sheet_name: Option<String>,
    /// Cap for automatic column widths (`excel.max_column_width`).
    pub max_column_width: usize,
}

impl Default for WorkbookStyle {
    fn default() -> Self {
        WorkbookStyle {
            data_sheet_name: "Sheet1".to_string(),
            info_sheet_name: Some("Info".to_string()),
            max_column_width: 50,
        }
    }
}

/// Output file formats of the search endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Xlsx,
    Csv,
    Json,
}

impl OutputFormat {
    /// Parses an already lower-cased format name.
    pub fn from_name(name: &str) -> Option<OutputFormat> {
        match name {
            "xlsx" => Some(OutputFormat::Xlsx),
            "csv" => Some(OutputFormat::Csv),
            "json" => Some(OutputFormat::Json),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Xlsx => "xlsx",
            OutputFormat::Csv => "csv",
            OutputFormat::Json => "json",
        }
    }
}

/// rest-api.md §7.3.2 IMPROVE: 1–31 characters, none of `/ \ ? * : [ ]`, not starting or ending with `'`.
pub fn validate_sheet_name(name: &str) -> Result<(), TableError> {
    let invalid = |reason: &str| {
        Err(TableError::InvalidSheetName { name: name.to_string(), reason: reason.to_string() })
    };
    let units = name.encode_utf16().count();
    if units == 0 {
        return invalid("a sheet name cannot be empty");
    }
    if units > MAX_SHEET_NAME_UNITS {
        return invalid("a sheet name can have at most 31 characters");
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '/' | '\\' | '?' | '*' | ':' | '[' | ']')) {
        return invalid(&format!("the character {c} is not allowed in a sheet name"));
    }
    if name.starts_with('\'') || name.ends_with('\'') {
        return invalid("a sheet name cannot start or end with an apostrophe");
    }
    Ok(())
}

/// §11.1: the info sheet gets `1` appended when the data sheet already has its name (Excel compares
/// sheet names case-insensitively).
pub fn info_sheet_name_for(data_sheet: &str, info_sheet: &str) -> String {
    if data_sheet.to_lowercase() == info_sheet.to_lowercase() {
        format!("{info_sheet}1")
    } else {
        info_sheet.to_string()
    }
}

/// Removes characters XML 1.0 forbids (controls other than tab, LF, CR, and U+FFFE/U+FFFF).
pub fn xml_safe_text(text: &str) -> Cow<'_, str> {
    let forbidden =
        |c: char| (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}';
    // Byte pre-check (most cells): a forbidden char is a control byte or starts with 0xEF (U+FFFE/U+FFFF).
    let suspect = |b: &u8| *b < b' ' || *b == 0xEF;
    if text.as_bytes().iter().any(suspect) && text.chars().any(forbidden) {
        Cow::Owned(text.chars().filter(|&c| !forbidden(c)).collect())
    } else {
        Cow::Borrowed(text)
    }
}

/// §11.1 width contribution of one cell, in characters.
fn cell_width(cell: &Cell) -> usize {
    match cell {
        Cell::Text(s) => s.chars().count(),
        Cell::Missing => 3,
        Cell::Int(i) => i.to_string().len(),
        Cell::Float(f) => python_float_text(*f).len(),
        Cell::Bool(true) => 4,
        Cell::Bool(false) => 5,
    }
}

fn xlsx_err(err: XlsxError) -> TableError {
    match err {
        XlsxError::IoError(e) if super::error::is_storage_full(&e) => TableError::StorageFull,
        other => TableError::WriteExcel(other.to_string()),
    }
}

/// What rust_xlsxwriter panics with when it cannot write a worksheet's temporary file (constant-memory
/// mode spills rows to one): on a full disk that write fails, and the crate panics instead of returning
/// an error.
const XLSX_TEMP_WRITE_PANIC: &str = "Couldn't write to xml file";

/// Runs one call into the workbook writer, turning its panic on a failed temporary-file write into
/// [`TableError::StorageFull`] (the only way that failure surfaces). The caller then drops the sink, which
/// removes the partial output and the writer's temporary files. Any other panic stays a write failure.
fn xlsx_guarded<T>(call: impl FnOnce() -> Result<T, TableError>) -> Result<T, TableError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(result) => result,
        Err(payload) => {
            let text = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("");
            if text.starts_with(XLSX_TEMP_WRITE_PANIC) {
                log::error!("workbook writer: {text}");
                Err(TableError::StorageFull)
            } else {
                Err(TableError::WriteExcel(format!("the workbook writer failed: {text}")))
            }
        }
    }
}

/// A temporary file next to the final path, renamed into place by [`AtomicFile::commit`]; dropped
/// uncommitted, it deletes itself.
struct AtomicFile {
    temp: NamedTempFile,
    target: PathBuf,
}

impl AtomicFile {
    fn create(target: &Path) -> std::io::Result<AtomicFile> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(crate::leftovers::PARTIAL_PREFIX)
            .suffix(crate::leftovers::PARTIAL_SUFFIX)
            .tempfile_in(dir)?;
        Ok(AtomicFile { temp, target: target.to_path_buf() })
    }

    fn dir(&self) -> PathBuf {
        self.temp.path().parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
    }

    fn commit(self) -> std::io::Result<()> {
        self.temp.persist(&self.target).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Buffer of the text writers (SQL, JSON): large enough that a write is rarely a syscall per row.
const TEXT_WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// What the text writers write into: a buffered, size-capped temporary file.
pub type TextOut<'a> = BufWriter<CappedWriter<&'a File>>;

/// Marker carried inside the `io::Error` of a write past the output cap (`file.max_output_mb`).
#[derive(Debug)]
struct OutputCapReached {
    max_mb: u64,
}

impl std::fmt::Display for OutputCapReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the output exceeds {} MB (file.max_output_mb)", self.max_mb)
    }
}

impl std::error::Error for OutputCapReached {}

/// The configured cap (in MB) when `err` is a write stopped by [`CappedWriter`], also when a serializer
/// wrapped that error in its own (serde_json does).
pub fn output_cap_reached(err: &std::io::Error) -> Option<u64> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = err.get_ref().map(|inner| inner as _);
    while let Some(current) = cause {
        if let Some(cap) = current.downcast_ref::<OutputCapReached>() {
            return Some(cap.max_mb);
        }
        cause = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => current.source(),
        };
    }
    None
}

/// A writer that refuses (with an error [`output_cap_reached`] recognises) to write more than `max_bytes`.
pub struct CappedWriter<W> {
    inner: W,
    left: u64,
    max_bytes: u64,
}

impl<W: Write> CappedWriter<W> {
    pub fn new(inner: W, max_bytes: u64) -> CappedWriter<W> {
        CappedWriter { inner, left: max_bytes, max_bytes }
    }
}

impl<W: Write> Write for CappedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            let max_mb = self.max_bytes / (1024 * 1024);
            return Err(std::io::Error::other(OutputCapReached { max_mb }));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Streams a text output into a temporary file next to `path` and renames it into place only when `write`
/// succeeds; on any error (including more than `max_bytes` written, see [`output_cap_reached`]) nothing is
/// left behind. Returns `write`'s value.
pub fn write_text_atomically<T, E: From<std::io::Error>>(
    path: &Path,
    max_bytes: u64,
    write: impl FnOnce(&mut TextOut<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let file = AtomicFile::create(path)?;
    let value = {
        let capped = CappedWriter::new(file.temp.as_file(), max_bytes);
        let mut out = BufWriter::with_capacity(TEXT_WRITE_BUFFER_BYTES, capped);
        let value = write(&mut out)?;
        out.flush()?;
        value
    };
    file.commit()?;
    Ok(value)
}

/// Flushes a finished file and its directory entry to disk, so that a record pointing at it (committed
/// after this returns) never outlives the file's content in a power loss.
pub fn make_durable(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()?;
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A sink for rows, so operations can stream results into any output format.
pub trait RowSink {
    fn push_row(&mut self, row: &[Cell]) -> Result<(), TableError>;
    /// A streamed CSV row; the same as `push_row` of its cells (sinks that can write its fields
    /// without making cells first do so).
    fn push_csv_row(&mut self, row: CsvRow<'_>) -> Result<(), TableError> {
        self.push_row(row.into_cells()?)
    }
    /// Completes the file and moves it into place; returns the number of data rows written.
    fn finish(self: Box<Self>) -> Result<u64, TableError>;
}

/// Opens the sink for `format` at `path` (search outputs, §6.3).
pub fn search_sink(
    format: OutputFormat,
    path: &Path,
    columns: &[String],
) -> Result<Box<dyn RowSink>, TableError> {
    search_sink_stopped_by(format, path, columns, &StepControl::NONE)
}

/// [`search_sink`] whose workbook assembly a stop request on `control` ends.
pub fn search_sink_stopped_by(
    format: OutputFormat,
    path: &Path,
    columns: &[String],
    control: &StepControl,
) -> Result<Box<dyn RowSink>, TableError> {
    Ok(match format {
        OutputFormat::Xlsx => Box::new(WorkbookSink::create_search(path, columns)?.stopped_by(control)),
        OutputFormat::Csv => Box::new(CsvSink::create(path, columns)?),
        OutputFormat::Json => Box::new(JsonSink::create(path, columns)?),
    })
}

/// Streaming xlsx writer in constant-memory mode: memory stays flat however many rows are pushed.
pub struct WorkbookSink {
    workbook: Workbook,
    file: AtomicFile,
    columns: Vec<String>,
    /// Running §11.1 widths; `None` for the search layout (no width adjustment).
    widths: Option<Vec<usize>>,
    max_column_width: usize,
    info_sheet: Option<String>,
    next_row: u32,
    /// A stop request on it ends `finish` (the zip assembly, seconds for a large sheet) at its next write.
    control: StepControl,
}

impl WorkbookSink {
    /// Lets a stop request on `control` end the writing of the file, not only the pushing of rows.
    pub fn stopped_by(mut self, control: &StepControl) -> WorkbookSink {
        self.control = control.clone();
        self
    }

    /// The standard writer (§11.1): plain header, capped auto widths, optional info sheet.
    pub fn create(
        path: &Path,
        style: &WorkbookStyle,
        columns: &[String],
    ) -> Result<WorkbookSink, TableError> {
        validate_sheet_name(&style.data_sheet_name)?;
        let info_sheet =
            style.info_sheet_name.as_deref().map(|info| info_sheet_name_for(&style.data_sheet_name, info));
        if let Some(info) = &info_sheet {
            validate_sheet_name(info)?;
        }
        let widths = Some(columns.iter().map(|c| c.chars().count()).collect());
        xlsx_guarded(|| {
            Self::open(
                path,
                &style.data_sheet_name,
                columns,
                None,
                widths,
                style.max_column_width,
                info_sheet,
            )
        })
    }

    /// The search writer (§6.3): sheet `Sheet1`, bold bordered centred header, no widths, no info sheet.
    pub fn create_search(path: &Path, columns: &[String]) -> Result<WorkbookSink, TableError> {
        let header = Format::new().set_bold().set_border(FormatBorder::Thin).set_align(FormatAlign::Center);
        xlsx_guarded(|| Self::open(path, "Sheet1", columns, Some(header), None, 0, None))
    }

    fn open(
        path: &Path,
        sheet_name: &str,
        columns: &[String],
        header_format: Option<Format>,
        widths: Option<Vec<usize>>,
        max_column_width: usize,
        info_sheet: Option<String>,
    ) -> Result<WorkbookSink, TableError> {
        if columns.len() > MAX_SHEET_COLUMNS {
            return Err(TableError::WriteExcel(format!(
                "{} columns exceed Excel's limit of {MAX_SHEET_COLUMNS}",
                columns.len()
            )));
        }
        let file = AtomicFile::create(path)?;
        let mut workbook = Workbook::new();
        // Spill rows next to the output rather than in a possibly memory-backed system temp dir.
        workbook.set_tempdir(file.dir()).map_err(xlsx_err)?;
        let sheet = workbook.add_worksheet_with_constant_memory().map_err(xlsx_err)?;
        sheet.set_name(sheet_name).map_err(xlsx_err)?;
        for (i, name) in columns.iter().enumerate() {
            let col = i as u16;
            let text = xml_safe_text(name);
            if text.is_empty() {
                continue;
            }
            match &header_format {
                Some(format) => sheet.write_string_with_format(0, col, text.as_ref(), format),
                None => sheet.write_string(0, col, text.as_ref()),
            }
            .map_err(xlsx_err)?;
        }
        Ok(WorkbookSink {
            workbook,
            file,
            columns: columns.to_vec(),
            widths,
            max_column_width,
            info_sheet,
            next_row: 1,
            control: StepControl::NONE,
        })
    }

    fn write_info_sheet(&mut self, name: &str, rows: u64) -> Result<(), TableError> {
        let file_name =
            self.file.target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let created = chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string();
        let column_names = xml_safe_text(&self.columns.join(", ")).into_owned();
        let sheet = self.workbook.add_worksheet();
        sheet.set_name(name).map_err(xlsx_err)?;
        let texts = [("Property", "Value"), ("File", file_name.as_str()), ("Created", created.as_str())];
        for (row, (key, value)) in texts.iter().enumerate() {
            sheet.write_string(row as u32, 0, *key).map_err(xlsx_err)?;
            sheet.write_string(row as u32, 1, *value).map_err(xlsx_err)?;
        }
        sheet.write_string(3, 0, "Rows").map_err(xlsx_err)?;
        sheet.write_number(3, 1, rows as f64).map_err(xlsx_err)?;
        sheet.write_string(4, 0, "Columns").map_err(xlsx_err)?;
        sheet.write_number(4, 1, self.columns.len() as f64).map_err(xlsx_err)?;
        sheet.write_string(5, 0, "Column Names").map_err(xlsx_err)?;
        // An empty string cell would be skipped by Excel anyway; write it only when there is text.
        if !column_names.is_empty() {
            sheet.write_string(5, 1, column_names).map_err(xlsx_err)?;
        }
        Ok(())
    }
}

impl RowSink for WorkbookSink {
    fn push_row(&mut self, row: &[Cell]) -> Result<(), TableError> {
        xlsx_guarded(|| self.write_row(row))
    }

    fn finish(self: Box<Self>) -> Result<u64, TableError> {
        xlsx_guarded(|| self.assemble())
    }
}

impl WorkbookSink {
    fn write_row(&mut self, row: &[Cell]) -> Result<(), TableError> {
        if self.next_row >= MAX_SHEET_ROWS {
            return Err(TableError::WriteExcel(format!(
                "more than {} data rows do not fit in one worksheet",
                MAX_SHEET_ROWS - 1
            )));
        }
        let r = self.next_row;
        let sheet = self.workbook.worksheet_from_index(0).map_err(xlsx_err)?;
        for (i, cell) in row.iter().enumerate().take(self.columns.len()) {
            let col = i as u16;
            match cell {
                Cell::Missing => {}
                Cell::Text(s) => {
                    let text = xml_safe_text(s);
                    if !text.is_empty() {
                        // Always a string cell: text starting with `=` never becomes a formula.
                        sheet
                            .write_string(r, col, text.as_ref())
                            .map_err(|e| cell_error(e, &self.columns[i]))?;
                    }
                }
                Cell::Int(v) => {
                    sheet.write_number(r, col, *v as f64).map_err(xlsx_err)?;
                }
                Cell::Float(v) if v.is_nan() => {}
                Cell::Float(v) if v.is_infinite() => {
                    sheet.write_string(r, col, python_float_text(*v)).map_err(xlsx_err)?;
                }
                Cell::Float(v) => {
                    sheet.write_number(r, col, *v).map_err(xlsx_err)?;
                }
                Cell::Bool(b) => {
                    sheet.write_boolean(r, col, *b).map_err(xlsx_err)?;
                }
            }
            if let Some(widths) = self.widths.as_mut() {
                let w = cell_width(cell);
                if w > widths[i] {
                    widths[i] = w;
                }
            }
        }
        if let Some(widths) = self.widths.as_mut() {
            // Short rows: the missing cells are blank, measured as Missing (3) like the reference's `nan`.
            for w in widths.iter_mut().skip(row.len()) {
                *w = (*w).max(3);
            }
        }
        self.next_row += 1;
        Ok(())
    }

    /// Widths, info sheet, then the zip assembly into the temporary file, renamed into place.
    fn assemble(mut self: Box<Self>) -> Result<u64, TableError> {
        let rows = u64::from(self.next_row - 1);
        if let Some(widths) = self.widths.take() {
            let cap = self.max_column_width;
            let sheet = self.workbook.worksheet_from_index(0).map_err(xlsx_err)?;
            for (i, w) in widths.iter().enumerate() {
                let width = (w + 2).min(cap);
                sheet.set_column_width(i as u16, width as f64).map_err(xlsx_err)?;
            }
        }
        if let Some(info) = self.info_sheet.clone() {
            self.write_info_sheet(&info, rows)?;
        }
        let WorkbookSink { mut workbook, mut file, control, .. } = *self;
        let mut out = BufWriter::new(StopWriter { inner: file.temp.as_file_mut(), control: &control });
        let saved = workbook.save_to_writer(&mut out);
        // A write refused because the step was stopped: the temporary file goes with `file`.
        control.check()?;
        saved.map_err(xlsx_err)?;
        out.flush()?;
        drop(out);
        file.commit()?;
        Ok(rows)
    }
}

/// Passes writes through until the step is asked to stop, then refuses them.
struct StopWriter<'c, W> {
    inner: W,
    control: &'c StepControl,
}

impl<W: Write> Write for StopWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.control.check().is_err() {
            return Err(std::io::Error::other("the step was stopped"));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn cell_error(err: XlsxError, column: &str) -> TableError {
    match err {
        XlsxError::MaxStringLengthExceeded => TableError::WriteExcel(format!(
            "a value in column '{column}' is longer than Excel's limit of 32767 characters"
        )),
        other => xlsx_err(other),
    }
}

/// Streaming CSV writer (§6.3): UTF-8 without BOM, `\n`, comma, minimal quoting, Missing → empty.
pub struct CsvSink {
    writer: csv::Writer<BufWriter<File>>,
    file: AtomicFile,
    rows: u64,
    /// Reused for every row: a whole record goes through the csv writer's fast path.
    record: csv::ByteRecord,
}

impl CsvSink {
    pub fn create(path: &Path, columns: &[String]) -> Result<CsvSink, TableError> {
        let file = AtomicFile::create(path)?;
        let handle = file.temp.reopen()?;
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .quote_style(csv::QuoteStyle::Necessary)
            .from_writer(BufWriter::new(handle));
        writer.write_record(columns).map_err(csv_write_err)?;
        Ok(CsvSink { writer, file, rows: 0, record: csv::ByteRecord::new() })
    }
}

fn csv_write_err(err: csv::Error) -> TableError {
    TableError::WriteFile(err.to_string())
}

impl RowSink for CsvSink {
    fn push_row(&mut self, row: &[Cell]) -> Result<(), TableError> {
        // One reused record rather than field by field: the same bytes, through the writer's fast path.
        self.record.clear();
        for cell in row {
            self.record.push_field(cell.as_text().as_bytes());
        }
        self.writer.write_byte_record(&self.record).map_err(csv_write_err)?;
        self.rows += 1;
        Ok(())
    }

    /// The fields as parsed (every CSV cell is Text, written as its bytes), padded or cut like the
    /// row's cells, through the writer's whole-record fast path.
    fn push_csv_row(&mut self, row: CsvRow<'_>) -> Result<(), TableError> {
        self.writer.write_record((0..row.width()).map(|i| row.field(i))).map_err(csv_write_err)?;
        self.rows += 1;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<u64, TableError> {
        let CsvSink { writer, file, rows, .. } = *self;
        let mut inner = writer.into_inner().map_err(|e| TableError::WriteFile(e.to_string()))?;
        inner.flush()?;
        drop(inner);
        file.commit()?;
        Ok(rows)
    }
}

/// Streaming JSON writer (§6.3): an array of objects, keys in column order, two-space indentation.
pub struct JsonSink {
    out: BufWriter<File>,
    file: AtomicFile,
    /// Column names pre-encoded as JSON strings.
    keys: Vec<String>,
    rows: u64,
}

impl JsonSink {
    pub fn create(path: &Path, columns: &[String]) -> Result<JsonSink, TableError> {
        let file = AtomicFile::create(path)?;
        let mut out = BufWriter::new(file.temp.reopen()?);
        out.write_all(b"[")?;
        let keys = columns.iter().map(|c| serde_json::Value::String(c.clone()).to_string()).collect();
        Ok(JsonSink { out, file, keys, rows: 0 })
    }
}

impl RowSink for JsonSink {
    fn push_row(&mut self, row: &[Cell]) -> Result<(), TableError> {
        let mut text = String::with_capacity(64 * self.keys.len().max(1));
        text.push_str(if self.rows == 0 { "\n  {" } else { ",\n  {" });
        for (i, key) in self.keys.iter().enumerate() {
            text.push_str(if i == 0 { "\n    " } else { ",\n    " });
            text.push_str(key);
            text.push_str(": ");
            let value = row.get(i).map_or(serde_json::Value::Null, Cell::to_json);
            text.push_str(&value.to_string());
        }
        text.push_str(if self.keys.is_empty() { "}" } else { "\n  }" });
        self.out.write_all(text.as_bytes())?;
        self.rows += 1;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<u64, TableError> {
        let JsonSink { mut out, file, rows, .. } = *self;
        out.write_all(if rows == 0 { b"]\n" } else { b"\n]\n" })?;
        out.flush()?;
        drop(out);
        file.commit()?;
        Ok(rows)
    }
}

/// Writes a whole table with the standard writer (§11.1).
pub fn write_table_xlsx(path: &Path, table: &Table, style: &WorkbookStyle) -> Result<u64, TableError> {
    write_table_xlsx_tracked(path, table, style, &StepControl::NONE)
}

/// [`write_table_xlsx`] for a workflow step: the writing phase counts rows on `control`, and a stop
/// request ends the write between two batches of rows with nothing left at `path`.
pub fn write_table_xlsx_tracked(
    path: &Path,
    table: &Table,
    style: &WorkbookStyle,
    control: &StepControl,
) -> Result<u64, TableError> {
    control.begin(Phase::Writing, Some(table.row_count() as u64))?;
    let mut sink = Box::new(WorkbookSink::create(path, style, &table.columns)?.stopped_by(control));
    for (i, row) in table.rows.iter().enumerate() {
        sink.push_row(row)?;
        control.advance_to(i as u64 + 1)?;
    }
    control.check()?;
    sink.finish()
}

/// [`write_table_xlsx_tracked`] from a row source (a spool): the same file, one row in memory at a time.
pub fn write_rows_xlsx_tracked(
    path: &Path,
    columns: &[String],
    rows: &mut dyn RowSource,
    total_rows: u64,
    style: &WorkbookStyle,
    control: &StepControl,
) -> Result<u64, TableError> {
    control.begin(Phase::Writing, Some(total_rows))?;
    let mut sink = Box::new(WorkbookSink::create(path, style, columns)?.stopped_by(control));
    let mut rows = control.track(rows);
    while let Some(row) = rows.next_row()? {
        sink.push_row(row)?;
    }
    drop(rows);
    control.check()?;
    sink.finish()
}

/// Writes a whole table in a search output format (§6.3).
pub fn write_table_search(path: &Path, table: &Table, format: OutputFormat) -> Result<u64, TableError> {
    let mut sink = search_sink(format, path, &table.columns)?;
    for row in &table.rows {
        sink.push_row(row)?;
    }
    sink.finish()
}

#[cfg(test)]
mod tests;
