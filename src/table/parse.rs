//! Shared parsing and formatting rules (operations.md §12): numbers, Python number text, dates,
//! strftime patterns, booleans in text.

/// §12.1: parses a number from text (trimmed ASCII whitespace; `inf`/`infinity` allowed; `nan`, empty,
/// separators, hex → `None`; values beyond the float range → `None`).
pub fn parse_number(text: &str) -> Option<f64> {
    let _ = text;
    unimplemented!("operations.md §12.1")
}

/// §12.2: the text Python prints for a float (`88.0`, `1e-07`, `1e+16`, `inf`, `nan`).
pub fn python_float_text(value: f64) -> String {
    let _ = value;
    unimplemented!("operations.md §12.2")
}

/// §12.3: parses a date or date-time (zones converted to UTC and dropped).
pub fn parse_datetime(text: &str) -> Option<chrono::NaiveDateTime> {
    let _ = text;
    unimplemented!("operations.md §12.3")
}

/// §12.4: formats with Python strftime directives (`%f` = 6 digits of microseconds, unknown copied).
pub fn python_strftime(value: &chrono::NaiveDateTime, pattern: &str) -> String {
    let _ = (value, pattern);
    unimplemented!("operations.md §12.4")
}
