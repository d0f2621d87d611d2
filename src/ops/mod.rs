//! Pure operations behind the REST endpoints (no HTTP types): inputs are tables, streams and typed
//! parameters; outputs are values, tables and files.

pub mod bind;
pub mod clock;
pub mod convert;
pub mod extract;
pub mod info;
pub mod json_gen;
pub mod json_template;
pub mod mapping;
pub mod normalize;
pub mod params;
pub mod placeholder;
pub mod search;
pub mod sql;
pub mod sql_template;
#[cfg(test)]
mod stream_reference;

use serde_json::Value;
use thiserror::Error;

use crate::table::TableError;

/// The one error type of the operation layer. Each variant documents the HTTP status it maps to; the
/// mapping itself lives in `crate::error`.
#[derive(Debug, Error)]
pub enum OpError {
    /// 422: invalid request fields, unknown columns, invalid options. `details` goes to `data.details`.
    #[error("{message}")]
    Validation { message: String, details: Option<Value> },

    /// 400: generation failed for a reason the spec reports as a client-visible 400 (`Failed to generate …`).
    #[error("{0}")]
    Generation(String),

    /// Reading or writing a file failed; the status is the one documented on the `TableError` variant.
    #[error(transparent)]
    Table(#[from] TableError),

    /// 500: writing generated output failed (disk full, …); the text is logged, not sent.
    #[error("failed to write output: {0}")]
    Io(#[from] std::io::Error),
}

impl OpError {
    pub fn validation(message: impl Into<String>) -> OpError {
        OpError::Validation { message: message.into(), details: None }
    }

    pub fn validation_with(message: impl Into<String>, details: Value) -> OpError {
        OpError::Validation { message: message.into(), details: Some(details) }
    }

    /// The HTTP status this error maps to (see `crate::error`).
    pub fn status_code(&self) -> u16 {
        crate::error::ApiError::from_op(self).status().as_u16()
    }

    /// Structured context for `data.details`, if any.
    pub fn details(&self) -> Option<&Value> {
        match self {
            OpError::Validation { details, .. } => details.as_ref(),
            _ => None,
        }
    }
}

/// 422 `Columns not found in data: a, b` with `details = {"missing_columns", "available_columns"}` when a
/// `requested` name is not one of `available` (each missing name once, in request order).
pub fn require_columns<'a>(
    available: &[String],
    requested: impl IntoIterator<Item = &'a str>,
) -> Result<(), OpError> {
    let mut missing: Vec<&str> = Vec::new();
    for name in requested {
        if !available.iter().any(|c| c == name) && !missing.contains(&name) {
            missing.push(name);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(OpError::validation_with(
        format!("Columns not found in data: {}", missing.join(", ")),
        serde_json::json!({ "missing_columns": missing, "available_columns": available }),
    ))
}

/// Reads a JSON array of strings (e.g. the `columns` form field); anything else is a 422 naming `field`.
pub fn string_list(value: &Value, field: &str) -> Result<Vec<String>, OpError> {
    let wrong = || {
        OpError::validation_with(
            format!("'{field}' must be a JSON array of strings"),
            serde_json::json!({ "field": field }),
        )
    };
    let items = value.as_array().ok_or_else(wrong)?;
    items.iter().map(|v| v.as_str().map(str::to_string).ok_or_else(wrong)).collect()
}

/// Parses a JSON form field; malformed JSON is a 422 naming `field` (rest-api.md §1.2 IMPROVE).
pub fn parse_json_field(raw: &str, field: &str) -> Result<Value, OpError> {
    serde_json::from_str(raw).map_err(|e| {
        OpError::validation_with(
            format!("Invalid JSON in field '{field}': {e}"),
            serde_json::json!({ "field": field }),
        )
    })
}

/// Time stamp for payloads: RFC 3339, UTC with explicit `+00:00`, microseconds (spec README decision 1).
pub use clock::now_iso as timestamp_now;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn string_lists() {
        assert_eq!(string_list(&json!(["a", "b"]), "columns").unwrap(), vec!["a", "b"]);
        assert_eq!(string_list(&json!([]), "columns").unwrap(), Vec::<String>::new());
        for bad in [json!("ab"), json!([1]), json!({"a": 1}), json!(null)] {
            let err = string_list(&bad, "columns").unwrap_err();
            assert_eq!(err.to_string(), "'columns' must be a JSON array of strings");
        }
    }

    #[test]
    fn required_columns_list_each_missing_name_once() {
        let have = vec!["a".to_string(), "b".to_string()];
        assert!(require_columns(&have, ["b", "a"]).is_ok());
        match require_columns(&have, ["x", "a", "y", "x"]).unwrap_err() {
            OpError::Validation { message, details } => {
                assert_eq!(message, "Columns not found in data: x, y");
                assert_eq!(
                    details,
                    Some(json!({"missing_columns": ["x", "y"], "available_columns": ["a", "b"]}))
                );
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn json_fields() {
        assert_eq!(parse_json_field("[1]", "x").unwrap(), json!([1]));
        match parse_json_field("[1", "conditions").unwrap_err() {
            OpError::Validation { message, details } => {
                assert!(message.starts_with("Invalid JSON in field 'conditions'"));
                assert_eq!(details, Some(json!({"field": "conditions"})));
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_micros() {
        let ts = timestamp_now();
        assert!(chrono::DateTime::parse_from_rfc3339(&ts).is_ok(), "{ts}");
        assert!(ts.ends_with("+00:00") && ts.len() == "2026-03-02T09:15:27.418220+00:00".len(), "{ts}");
    }
}
