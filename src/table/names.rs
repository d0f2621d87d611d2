//! File names: the client-name sanitizer (rest-api.md §5.6), output naming (§6.2 IMPROVEs) and the check
//! that a name resolves to a direct child of a folder.

use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use unicode_normalization::UnicodeNormalization;

/// Longest stem kept from a client-supplied name; keeps generated names well under file-system limits.
const MAX_STEM_CHARS: usize = 150;

/// rest-api.md §5.6: NFKD + drop non-ASCII, `/` → space, whitespace runs → `_`, keep `[A-Za-z0-9_.-]`,
/// strip leading/trailing `.` and `_`. The result may be empty.
pub fn sanitize_filename(name: &str) -> String {
    let ascii: String = name.nfkd().filter(char::is_ascii).map(|c| if c == '/' { ' ' } else { c }).collect();
    // Python's str.split() also splits on the ASCII information separators 0x1c..0x1f.
    let is_py_space = |c: char| c.is_ascii_whitespace() || c == '\x0b' || ('\x1c'..='\x1f').contains(&c);
    let joined = ascii.split(is_py_space).filter(|p| !p.is_empty()).collect::<Vec<_>>().join("_");
    let kept: String =
        joined.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')).collect();
    kept.trim_matches(|c| c == '.' || c == '_').to_string()
}

/// Splits off the last extension like Python's `os.path.splitext` (leading dots never start one).
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if name[..i].chars().any(|c| c != '.') => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

/// The lower-cased extension (with its dot) of the last path component of a client's file name; `None`
/// when it has none (`data`, `.csv`, `data.`).
pub fn client_extension(client_name: &str) -> Option<String> {
    let last = client_name.rsplit(['/', '\\']).next().unwrap_or("");
    match split_extension(last).1 {
        "" | "." => None,
        ext => Some(ext.to_lowercase()),
    }
}

fn truncate_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A stem cut to [`MAX_STEM_CHARS`] characters and sanitized (after the cut, which can expose a trailing
/// `.`/`_`), so that a name built from it stays well under file-system name limits (255 bytes).
pub fn shorten_stem(stem: &str) -> String {
    sanitize_filename(&truncate_chars(stem, MAX_STEM_CHARS))
}

/// `{base}` of rest-api.md §6.2: the last path component of the client's file name, last extension
/// removed, sanitized; `file` when nothing is left.
pub fn base_name(client_name: &str) -> String {
    let last = client_name.rsplit(['/', '\\']).next().unwrap_or("");
    let (stem, _) = split_extension(last);
    let clean = sanitize_filename(stem);
    if clean.is_empty() {
        "file".to_string()
    } else {
        shorten_stem(&clean)
    }
}

/// The `file_name` reported by the info endpoints: the sanitized client name, `file` if empty.
pub fn display_file_name(client_name: &str) -> String {
    let clean = sanitize_filename(client_name);
    if clean.is_empty() {
        "file".to_string()
    } else {
        clean
    }
}

/// An auto-generated output name: `{parts joined by _}_{YYYYMMDD_HHMMSS}_{8 hex}.{ext}` (UTC time stamp,
/// random suffix so two requests in the same second never collide).
pub fn generated_output_name(prefix_parts: &[&str], ext: &str) -> String {
    let suffix = format!("{:08x}", rand::random::<u32>());
    generated_output_name_at(prefix_parts, ext, Utc::now(), &suffix)
}

/// Deterministic core of [`generated_output_name`].
pub fn generated_output_name_at(
    prefix_parts: &[&str],
    ext: &str,
    now: DateTime<Utc>,
    suffix: &str,
) -> String {
    let prefix: Vec<&str> = prefix_parts.iter().copied().filter(|p| !p.is_empty()).collect();
    format!("{}_{}_{}.{}", prefix.join("_"), now.format("%Y%m%d_%H%M%S"), suffix, ext)
}

/// A user-supplied `output_filename`, sanitized, with `.{ext}` appended unless it already ends with it
/// (case-insensitive). `None` when sanitizing leaves nothing (the caller then generates a name).
pub fn user_output_name(output_filename: &str, ext: &str) -> Option<String> {
    let clean = sanitize_filename(output_filename);
    if clean.is_empty() {
        return None;
    }
    let dotted = format!(".{ext}");
    let has_ext =
        clean.len() > dotted.len() && clean.to_ascii_lowercase().ends_with(&dotted.to_ascii_lowercase());
    let stem = if has_ext { &clean[..clean.len() - dotted.len()] } else { clean.as_str() };
    let stem = shorten_stem(stem);
    if stem.is_empty() {
        return None;
    }
    let ext_text = if has_ext { &clean[clean.len() - dotted.len()..] } else { dotted.as_str() };
    Some(format!("{stem}{ext_text}"))
}

/// Resolves `name` inside `folder` only when it is a single plain path component (no separators, `.`,
/// `..`, drive prefixes or NULs) and is not a symbolic link. Returns the joined path.
pub fn resolve_in_folder(folder: &Path, name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains(['/', '\\', '\0']) {
        return None;
    }
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(_)), None) => {}
        _ => return None,
    }
    let path = folder.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => None,
        _ => Some(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn client_extensions() {
        let cases = [
            ("a.XLSX", Some(".xlsx")),
            ("dir/b.tar.gz", Some(".gz")),
            ("c:\\x\\report.Csv", Some(".csv")),
            ("data", None),
            (".csv", None),
            ("data.", None),
            ("x.d/data", None),
        ];
        for (name, want) in cases {
            assert_eq!(client_extension(name).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn sanitize_matches_the_spec_examples() {
        let cases = [
            ("my data (v2).xlsx", "my_data_v2.xlsx"),
            ("../../etc/x y.xlsx", "etc_x_y.xlsx"),
            ("  a  b  .csv", "a_b_.csv"),
            ("___x.csv", "x.csv"),
            ("résumé final.CSV", "resume_final.CSV"),
            ("Zoë", "Zoe"),
            ("dữ liệu", "du_lieu"),
            ("ﬁle", "file"),
            ("....", ""),
            ("文件.xlsx", "xlsx"),
            ("a\\b.csv", "ab.csv"),
            ("a\tb\nc", "a_b_c"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(sanitize_filename(input), want, "input {input:?}");
        }
    }

    #[test]
    fn base_name_takes_last_component_without_extension() {
        let cases = [
            ("sales_q1.xlsx", "sales_q1"),
            ("../../x.xlsx", "x"),
            ("C:\\Users\\me\\my data.xlsx", "my_data"),
            ("my data.xlsx", "my_data"),
            ("archive.tar.gz", "archive.tar"),
            (".xlsx", "xlsx"),
            ("文件.xlsx", "file"),
            ("", "file"),
            ("noext", "noext"),
        ];
        for (input, want) in cases {
            assert_eq!(base_name(input), want, "input {input:?}");
        }
        assert_eq!(base_name(&"a".repeat(400)).len(), MAX_STEM_CHARS);
    }

    #[test]
    fn display_name_falls_back_to_file() {
        assert_eq!(display_file_name("sales q1.xlsx"), "sales_q1.xlsx");
        assert_eq!(display_file_name("...."), "file");
    }

    #[test]
    fn generated_names_have_time_stamp_and_suffix() {
        let now = Utc.with_ymd_and_hms(2026, 3, 2, 9, 15, 27).single().unwrap();
        assert_eq!(
            generated_output_name_at(&["extracted_columns"], "xlsx", now, "7f3a09c2"),
            "extracted_columns_20260302_091527_7f3a09c2.xlsx"
        );
        assert_eq!(
            generated_output_name_at(&["orders", "mapped"], "xlsx", now, "00000000"),
            "orders_mapped_20260302_091527_00000000.xlsx"
        );
        let random = generated_output_name(&["search_results"], "csv");
        let re = regex::Regex::new(r"^search_results_\d{8}_\d{6}_[0-9a-f]{8}\.csv$").unwrap();
        assert!(re.is_match(&random), "{random}");
        assert_eq!(sanitize_filename(&random), random, "generated names are sanitizer fixed points");
    }

    #[test]
    fn user_names_are_sanitized_and_get_the_extension() {
        let cases = [
            ("noext", "xlsx", Some("noext.xlsx")),
            ("res.csv", "xlsx", Some("res.csv.xlsx")),
            ("res.xlsx", "xlsx", Some("res.xlsx")),
            ("RES.XLSX", "xlsx", Some("RES.XLSX")),
            ("../x", "json", Some("x.json")),
            ("my out.json", "json", Some("my_out.json")),
            ("....", "csv", None),
            (".csv", "csv", Some("csv.csv")),
        ];
        for (input, ext, want) in cases {
            assert_eq!(user_output_name(input, ext).as_deref(), want, "input {input:?}");
        }
    }

    #[test]
    fn resolve_only_accepts_direct_children() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path();
        assert_eq!(resolve_in_folder(folder, "a.xlsx"), Some(folder.join("a.xlsx")));
        for bad in ["", ".", "..", "../a", "a/b", "a\\b", "/etc/passwd", "a\0b"] {
            assert_eq!(resolve_in_folder(folder, bad), None, "name {bad:?}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/", folder.join("link")).unwrap();
            assert_eq!(resolve_in_folder(folder, "link"), None);
        }
    }
}
