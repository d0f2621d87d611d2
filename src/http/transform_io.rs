//! File plumbing shared by the transform endpoints (normalization, SQL, JSON, bindings): reading an
//! uploaded workbook with the configured limits, choosing output names (rest-api.md §6.2) and writing
//! text outputs through a temporary file renamed into place.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::ApiError;
use crate::ops::OpError;
use crate::table::names::{generated_output_name, resolve_in_folder, user_output_name};
use crate::table::read::{read_workbook, ReadLimits, WorkbookTable};
use crate::table::write::WorkbookStyle;

/// Buffer of the streamed text writers; large enough that syscalls do not dominate.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// Read bounds from `file.max_uncompressed_mb` and `file.max_cells`.
pub fn read_limits(config: &Config) -> ReadLimits {
    ReadLimits {
        max_uncompressed_bytes: config.file.max_uncompressed_mb.saturating_mul(1024 * 1024),
        max_cells: config.file.max_cells,
    }
}

/// The standard workbook layout from `excel.*`.
pub fn workbook_style(config: &Config) -> WorkbookStyle {
    let excel = &config.excel;
    WorkbookStyle {
        data_sheet_name: excel.default_sheet_name.clone(),
        info_sheet_name: excel.include_info_sheet.then(|| excel.info_sheet_name.clone()),
        max_column_width: excel.max_column_width as usize,
    }
}

/// Reads one sheet of an uploaded workbook (the first unless `sheet` names one). The content decides the
/// kind: CSV, PDF and other non-workbooks give 415, a damaged workbook 400, an unknown sheet 422.
pub fn read_upload(path: &Path, sheet: Option<&str>, config: &Config) -> Result<WorkbookTable, ApiError> {
    Ok(read_workbook(path, sheet, &read_limits(config))?)
}

/// Where an output goes: its public name and its path, a direct child of the output folder.
#[derive(Debug, Clone)]
pub struct OutputTarget {
    pub name: String,
    pub path: PathBuf,
}

/// Chooses the output name: the user's `output_filename` sanitized with `.{ext}` appended when missing,
/// else `{parts}_{ts}_{8 hex}.{ext}`. The folder is created on demand.
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
    let path = resolve_in_folder(folder, &name)
        .ok_or_else(|| ApiError::file_processing("Invalid output file name"))?;
    Ok(OutputTarget { name, path })
}

/// Streams a text output into a temporary file next to `target` and renames it into place only when
/// `write` succeeds; on any error nothing is left behind. Returns `write`'s value.
pub fn write_text_output<T>(
    target: &OutputTarget,
    write: impl FnOnce(&mut BufWriter<&File>) -> Result<T, OpError>,
) -> Result<T, ApiError> {
    let dir = target.path.parent().unwrap_or_else(|| Path::new("."));
    let temp = tempfile::Builder::new().prefix(".partial-").suffix(".tmp").tempfile_in(dir)?;
    let value = {
        let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, temp.as_file());
        let value = write(&mut out)?;
        out.flush()?;
        value
    };
    temp.persist(&target.path).map_err(|e| ApiError::internal("Failed to write output file", e.error))?;
    Ok(value)
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
        let dir = tempfile::tempdir().unwrap();
        let c = config_in(dir.path());
        let t = output_target(&c, Some("out.txt"), &[], "txt").unwrap();
        let err = write_text_output(&t, |w| -> Result<(), OpError> {
            w.write_all(b"partial")?;
            Err(OpError::validation("boom"))
        })
        .unwrap_err();
        assert_eq!(err.message, "boom");
        assert_eq!(std::fs::read_dir(&c.file.output_folder).unwrap().count(), 0);
        write_text_output(&t, |w| Ok(w.write_all(b"done")?)).unwrap();
        assert_eq!(std::fs::read_to_string(&t.path).unwrap(), "done");
    }
}
