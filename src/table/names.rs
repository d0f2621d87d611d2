//! File-name rules: `sanitize_filename` (rest-api.md §5.6). Placeholder until the table layer lands.

use unicode_normalization::UnicodeNormalization;

/// NFKD + drop non-ASCII, `/` → space, whitespace runs → `_`, keep `[A-Za-z0-9_.-]`, strip `.`/`_` at the ends.
pub fn sanitize_filename(name: &str) -> String {
    let ascii: String =
        name.nfkd().filter(|c| c.is_ascii()).map(|c| if c == '/' { ' ' } else { c }).collect();
    let joined = ascii.split_whitespace().collect::<Vec<_>>().join("_");
    let kept: String =
        joined.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')).collect();
    kept.trim_matches(|c| c == '.' || c == '_').to_string()
}
