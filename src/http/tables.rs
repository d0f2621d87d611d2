//! What the file endpoints (excel, csv, normalization, sql, json, bindings) share: read limits and workbook
//! style taken from config, reading uploads, output naming and placement (rest-api.md §6.2), streamed text
//! outputs renamed into place, and the form-field parsers common to several routes.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::error::ApiError;
use crate::http::upload::{Form, UploadedFile};
use crate::ops::search::SearchRequest;
use crate::ops::{parse_json_field, string_list, OpError};
use crate::table::names::{generated_output_name, resolve_in_folder, user_output_name};
use crate::table::read::{
    read_workbook, spool_workbook, summarize_workbook, ReadLimits, SheetSummary, WorkbookTable,
};
use crate::table::spool::SpooledTable;
use crate::table::write::{write_text_atomically, OutputFormat, TextOut, WorkbookStyle};
use crate::table::TableError;

/// Prefix of every read error of the info and suggest-operators endpoints (rest-api.md §7 "standard file
/// errors").
pub const INFO_ERROR_PREFIX: &str = "Failed to get file info: ";

/// The `file.*` read limits (uploads are never trusted: every guard applies).
pub fn read_limits(config: &Config) -> ReadLimits {
    ReadLimits::from_config(&config.file)
}

/// The standard workbook layout of `excel.*`, with `data_sheet` as the data sheet's name.
pub fn workbook_style(config: &Config, data_sheet: &str) -> WorkbookStyle {
    WorkbookStyle {
        data_sheet_name: data_sheet.to_string(),
        info_sheet_name: config.excel.include_info_sheet.then(|| config.excel.info_sheet_name.clone()),
        max_column_width: config.excel.max_column_width as usize,
    }
}

/// Where an output file goes: its public name and its path, a direct child of the output folder.
#[derive(Debug, Clone)]
pub struct OutputTarget {
    pub name: String,
    pub path: PathBuf,
}

/// §6.2: a sanitized user name with the right extension, else `{parts}_{ts}_{8hex}.{ext}`. Creates the
/// output folder if it was removed, and refuses a name that would not be a plain child of it.
pub fn output_target(
    config: &Config,
    user_name: Option<&str>,
    generated_parts: &[&str],
    ext: &str,
) -> Result<OutputTarget, ApiError> {
    let name = user_name
        .and_then(|n| user_output_name(n, ext))
        .unwrap_or_else(|| generated_output_name(generated_parts, ext));
    let folder = &config.file.output_folder;
    std::fs::create_dir_all(folder)?;
    let path =
        resolve_in_folder(folder, &name).ok_or_else(|| ApiError::file_processing("Invalid file path"))?;
    Ok(OutputTarget { name, path })
}

/// Reads the first sheet of an uploaded workbook. An empty upload is a broken workbook (400), not text.
pub fn read_uploaded_workbook(file: &UploadedFile, config: &Config) -> Result<WorkbookTable, ApiError> {
    if file.size == 0 {
        return Err(TableError::ReadExcel("the file is empty".to_string()).into());
    }
    Ok(read_workbook(file.path(), None, &read_limits(config))?)
}

/// [`read_uploaded_workbook`]'s columns and rows with the same checks and errors, the rows spooled (see
/// [`spool_upload`]).
pub fn spool_uploaded_workbook(file: &UploadedFile, config: &Config) -> Result<SpooledTable, ApiError> {
    if file.size == 0 {
        return Err(TableError::ReadExcel("the file is empty".to_string()).into());
    }
    spool_upload(file.path(), None, config)
}

/// The streamed summary (columns, rows, inferred types) of an uploaded workbook's first sheet, with the
/// same checks and errors as [`read_uploaded_workbook`].
pub fn summarize_uploaded_workbook(file: &UploadedFile, config: &Config) -> Result<SheetSummary, ApiError> {
    if file.size == 0 {
        return Err(TableError::ReadExcel("the file is empty".to_string()).into());
    }
    Ok(summarize_workbook(file.path(), None, &read_limits(config))?)
}

/// Reads one sheet of an uploaded workbook (the first unless `sheet` names one). The content decides the
/// kind: CSV, PDF and other non-workbooks give 415, a damaged workbook 400, an unknown sheet 422.
pub fn read_upload(path: &Path, sheet: Option<&str>, config: &Config) -> Result<WorkbookTable, ApiError> {
    Ok(read_workbook(path, sheet, &read_limits(config))?)
}

/// [`read_upload`] without holding the sheet: the same checks, errors, columns and rows, with the rows
/// spooled to an unnamed temporary file in the output folder (where the generated file goes too) for
/// generators that stream them back.
pub fn spool_upload(path: &Path, sheet: Option<&str>, config: &Config) -> Result<SpooledTable, ApiError> {
    let folder = &config.file.output_folder;
    std::fs::create_dir_all(folder)?;
    Ok(spool_workbook(path, sheet, &read_limits(config), folder)?)
}

/// Streams a text output into `target` atomically, stopped at `file.max_output_mb` (see
/// [`write_text_atomically`]).
pub fn write_text_output<T>(
    config: &Config,
    target: &OutputTarget,
    write: impl FnOnce(&mut TextOut<'_>) -> Result<T, OpError>,
) -> Result<T, ApiError> {
    Ok(write_text_atomically(&target.path, config.max_output_bytes(), write)?)
}

/// The form of both search endpoints (rest-api.md §7.2.7, §7.3.3): the file must be there, then the
/// conditions, logic and output fields parse; `default_format` when `output_format` is absent.
pub fn search_request(form: &Form, default_format: OutputFormat) -> Result<SearchRequest, ApiError> {
    form.require_file("file")?;
    search_params(form, default_format)
}

/// [`search_request`]'s parameters alone (the file is known to be there, e.g. arriving).
pub fn search_params(form: &Form, default_format: OutputFormat) -> Result<SearchRequest, ApiError> {
    Ok(SearchRequest::parse(
        form.text("conditions"),
        form.text("logic"),
        form.text("output_format"),
        form.text("output_filename"),
        default_format,
    )?)
}

/// Where a search writes its result: the user's name or `search_results_{ts}_{8hex}`, in its format.
pub fn search_target(config: &Config, request: &SearchRequest) -> Result<OutputTarget, ApiError> {
    output_target(config, request.output_filename.as_deref(), &["search_results"], request.format.extension())
}

/// The answer of both search endpoints (rest-api.md §7.2.7): where the result is and how many rows matched.
pub fn search_response(
    req: &actix_web::HttpRequest,
    config: &Config,
    name: &str,
    outcome: &crate::ops::search::SearchOutcome,
) -> crate::envelope::ApiResponse {
    let data = json!({
        "download_url": crate::envelope::download_url(req, config, name),
        "total_rows": outcome.total_rows,
        "filtered_rows": outcome.filtered_rows,
        "conditions_applied": outcome.conditions_applied,
    });
    crate::envelope::ApiResponse::ok(outcome.message(), data)
}

/// A JSON array of strings field (`columns`); absent → `[]`; malformed or wrong shape → 422 naming it.
pub fn string_list_field(raw: Option<&str>, field: &str) -> Result<Vec<String>, OpError> {
    match raw {
        None => Ok(Vec::new()),
        Some(raw) => string_list(&parse_json_field(raw, field)?, field),
    }
}

/// A JSON object field (`mapping`), order kept; absent → `{}`; malformed or not an object → 422.
pub fn object_field(raw: Option<&str>, field: &str) -> Result<Map<String, Value>, OpError> {
    match raw {
        None => Ok(Map::new()),
        Some(raw) => match parse_json_field(raw, field)? {
            Value::Object(map) => Ok(map),
            _ => Err(OpError::validation_with(
                format!("'{field}' must be a JSON object"),
                json!({ "field": field }),
            )),
        },
    }
}

/// The `output_filename` field; absent or empty means "generate a name".
pub fn output_filename(raw: Option<&str>) -> Option<&str> {
    raw.filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_in(dir: &Path) -> Config {
        let mut c = Config::default();
        c.file.output_folder = dir.join("out");
        c
    }

    #[test]
    fn user_names_are_sanitized_and_generated_names_unique() {
        let dir = tempfile::tempdir().unwrap();
        let c = config_in(dir.path());
        let t = output_target(&c, Some("../x y"), &["a"], "json").unwrap();
        assert_eq!(t.name, "x_y.json");
        assert_eq!(t.path, c.file.output_folder.join("x_y.json"));
        let a = output_target(&c, Some("...."), &["base", "sql"], "txt").unwrap();
        let b = output_target(&c, None, &["base", "sql"], "txt").unwrap();
        assert!(a.name.starts_with("base_sql_") && a.name.ends_with(".txt"), "{}", a.name);
        assert_ne!(a.name, b.name);
    }

    #[test]
    fn failed_writes_leave_nothing() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let c = config_in(dir.path());
        let t = output_target(&c, Some("out.txt"), &[], "txt").unwrap();
        let err = write_text_output(&c, &t, |w| -> Result<(), OpError> {
            w.write_all(b"partial")?;
            Err(OpError::validation("boom"))
        })
        .unwrap_err();
        assert_eq!(err.message, "boom");
        assert_eq!(std::fs::read_dir(&c.file.output_folder).unwrap().count(), 0);
        write_text_output(&c, &t, |w| Ok(w.write_all(b"done")?)).unwrap();
        assert_eq!(std::fs::read_to_string(&t.path).unwrap(), "done");
    }
}
