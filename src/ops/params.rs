//! Shared request-parameter shapes for the transform operations: ordered column mappings, column
//! lists, and Python-style list text used in reference messages.

use super::OpError;
use serde_json::Value;

/// An ordered mapping parsed from a JSON object of strings (order as sent).
pub type ColumnMapping = Vec<(String, String)>;

/// Reads a JSON object whose values are all strings, keeping key order. Wrong shapes → 422 naming
/// the field.
pub fn mapping_from_json(value: &Value, field: &str) -> Result<ColumnMapping, OpError> {
    let Value::Object(map) = value else {
        return Err(OpError::validation_with(
            format!("{field} must be a JSON object"),
            serde_json::json!({ "field": field }),
        ));
    };
    let mut out = Vec::with_capacity(map.len());
    for (key, v) in map {
        match v {
            Value::String(s) => out.push((key.clone(), s.clone())),
            _ => {
                return Err(OpError::validation_with(
                    format!("{field} values must be strings (entry '{key}')"),
                    serde_json::json!({ "field": field, "key": key }),
                ))
            }
        }
    }
    Ok(out)
}

/// Reads a JSON array of strings. Wrong shapes → 422 naming the field.
pub fn string_list_from_json(value: &Value, field: &str) -> Result<Vec<String>, OpError> {
    let err = || {
        OpError::validation_with(
            format!("{field} must be a JSON array of strings"),
            serde_json::json!({ "field": field }),
        )
    };
    let Value::Array(items) = value else {
        return Err(err());
    };
    items.iter().map(|v| v.as_str().map(str::to_owned).ok_or_else(err)).collect()
}

/// Python `repr()` of a string: single quotes unless the text holds `'` and no `"`.
pub fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python `repr()` of a list of strings: `['a', 'b']` (the reference embeds these in messages).
pub fn py_list<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<String> = items.iter().map(|s| py_str_repr(s.as_ref())).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mapping_keeps_order_and_rejects_wrong_shapes() {
        let m = mapping_from_json(&json!({"b": "B", "a": "A"}), "column_mapping").unwrap();
        assert_eq!(m, vec![("b".to_string(), "B".to_string()), ("a".to_string(), "A".to_string())]);
        for bad in [json!([]), json!("x"), json!({"a": 1}), json!({"a": null})] {
            let e = mapping_from_json(&bad, "column_mapping").unwrap_err();
            assert_eq!(e.status_code(), 422);
            assert!(e.to_string().starts_with("column_mapping"), "{e}");
        }
    }

    #[test]
    fn string_lists() {
        assert_eq!(string_list_from_json(&json!(["a", "b"]), "columns").unwrap(), vec!["a", "b"]);
        assert!(string_list_from_json(&json!(["a", 1]), "columns").is_err());
        assert!(string_list_from_json(&json!("a"), "columns").is_err());
    }

    #[test]
    fn python_reprs() {
        let cases = [
            ("email", "'email'"),
            ("it's", "\"it's\""),
            ("a'b\"c", "'a\\'b\"c'"),
            ("back\\slash", "'back\\\\slash'"),
            ("line\nbreak", "'line\\nbreak'"),
            ("café", "'café'"),
        ];
        for (input, want) in cases {
            assert_eq!(py_str_repr(input), want, "{input}");
        }
        assert_eq!(py_list(&["a", "b"]), "['a', 'b']");
        assert_eq!(py_list::<&str>(&[]), "[]");
    }
}
