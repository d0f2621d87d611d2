//! Column types: the reported storage type strings (operations.md §2.1), content-based inference (§2.2)
//! and operator suggestions (§2.3).

use super::cell::Cell;
use super::parse::{parse_datetime, parse_number};

/// The storage type every column read from a file reports (§2.1: all cells are read as text).
pub const STORAGE_TYPE: &str = "object";

/// The eight text operators every column is offered (§2.3).
pub const TEXT_OPERATORS: [&str; 8] = [
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "is_empty",
    "is_not_empty",
];

const NUMERIC_OPERATORS: [&str; 7] = [
    "equals",
    "not_equals",
    "greater_than",
    "greater_than_or_equal",
    "less_than",
    "less_than_or_equal",
    "between",
];
const DATE_OPERATORS: [&str; 4] = ["equals", "before", "after", "between"];
const BOOL_OPERATORS: [&str; 2] = ["equals", "not_equals"];

/// §2.1 type string of a column after a normalization step: `object` for anything holding text (or only
/// Missing), `int64` for integers without gaps, `float64` for numbers (gaps allowed), `bool` for booleans
/// without gaps. Mixed numbers and booleans are `object`, as in pandas.
pub fn storage_type<'a>(cells: impl IntoIterator<Item = &'a Cell>) -> &'static str {
    let (mut ints, mut floats, mut bools, mut missing, mut texts) = (0usize, 0usize, 0usize, 0usize, 0usize);
    for cell in cells {
        match cell {
            Cell::Text(_) => texts += 1,
            Cell::Missing => missing += 1,
            Cell::Int(_) => ints += 1,
            Cell::Float(_) => floats += 1,
            Cell::Bool(_) => bools += 1,
        }
    }
    let numbers = ints + floats;
    if texts > 0 || (numbers > 0 && bools > 0) || numbers + bools == 0 {
        "object"
    } else if bools > 0 {
        if missing == 0 {
            "bool"
        } else {
            "object"
        }
    } else if floats == 0 && missing == 0 {
        "int64"
    } else {
        "float64"
    }
}

/// §2.2 content-based type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InferredType {
    Empty,
    Boolean,
    Integer,
    Number,
    Date,
    String,
}

impl InferredType {
    pub fn as_str(self) -> &'static str {
        match self {
            InferredType::Empty => "empty",
            InferredType::Boolean => "boolean",
            InferredType::Integer => "integer",
            InferredType::Number => "number",
            InferredType::Date => "date",
            InferredType::String => "string",
        }
    }
}

/// Incremental §2.2 inference, so a streamed column can be typed without keeping its cells.
#[derive(Debug, Clone)]
pub struct TypeInference {
    seen: bool,
    all_bool: bool,
    all_int: bool,
    all_number: bool,
    all_date: bool,
    leading_zero: bool,
}

impl Default for TypeInference {
    fn default() -> Self {
        TypeInference {
            seen: false,
            all_bool: true,
            all_int: true,
            all_number: true,
            all_date: true,
            leading_zero: false,
        }
    }
}

/// `Some(has_leading_zero)` when `text` is `[+-]?digits`.
fn integer_shape(text: &str) -> Option<bool> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.len() > 1 && digits.starts_with('0'))
}

impl TypeInference {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, cell: &Cell) {
        if cell.is_missing() {
            return;
        }
        let text = cell.as_text();
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        self.seen = true;
        if self.all_bool && !(text.eq_ignore_ascii_case("true") || text.eq_ignore_ascii_case("false")) {
            self.all_bool = false;
        }
        let shape = integer_shape(text);
        if shape == Some(true) {
            self.leading_zero = true;
        }
        if self.all_int && shape.is_none() {
            self.all_int = false;
        }
        if self.all_number && shape.is_none() && parse_number(text).is_none() {
            self.all_number = false;
        }
        // Date parsing is the costly check; stop as soon as one value fails.
        if self.all_date && parse_datetime(text).is_none() {
            self.all_date = false;
        }
    }

    pub fn finish(&self) -> InferredType {
        if !self.seen {
            InferredType::Empty
        } else if self.all_bool {
            InferredType::Boolean
        } else if self.all_int && !self.leading_zero {
            InferredType::Integer
        } else if self.all_number && !self.leading_zero {
            InferredType::Number
        } else if self.all_date {
            InferredType::Date
        } else {
            InferredType::String
        }
    }
}

/// §2.2 over a column's cells.
pub fn inferred_type<'a>(cells: impl IntoIterator<Item = &'a Cell>) -> InferredType {
    let mut inference = TypeInference::new();
    for cell in cells {
        inference.push(cell);
    }
    inference.finish()
}

/// §2.3 the reference's pure mapping from a type string to operators (substring tests, in order).
pub fn operators_for_type(type_string: &str) -> Vec<&'static str> {
    let t = type_string.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
    if has(&["int", "float", "number", "numeric"]) {
        NUMERIC_OPERATORS.to_vec()
    } else if has(&["date", "time"]) {
        DATE_OPERATORS.to_vec()
    } else if has(&["bool"]) {
        BOOL_OPERATORS.to_vec()
    } else {
        TEXT_OPERATORS.to_vec()
    }
}

/// §2.3 IMPROVE, the suggest-operators endpoint: the operators of the storage type (the eight text
/// operators for `object`), then the extras that fit the inferred content type.
pub fn suggested_operators(type_string: &str, inferred: InferredType) -> Vec<&'static str> {
    let mut ops = operators_for_type(type_string);
    let extras: &[&'static str] = match inferred {
        InferredType::Integer | InferredType::Number => {
            &["greater_than", "greater_than_or_equal", "less_than", "less_than_or_equal", "between"]
        }
        InferredType::Date => &["before", "after", "between"],
        _ => &[],
    };
    for op in extras {
        if !ops.contains(op) {
            ops.push(op);
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(values: &[&str]) -> Vec<Cell> {
        values.iter().map(|v| Cell::text(*v)).collect()
    }

    #[test]
    fn inference_follows_the_rules_in_order() {
        let cases: Vec<(Vec<Cell>, InferredType)> = vec![
            (vec![], InferredType::Empty),
            (vec![Cell::Missing, Cell::text(""), Cell::text("   ")], InferredType::Empty),
            (texts(&["true", "FALSE", " True "]), InferredType::Boolean),
            (vec![Cell::Bool(true), Cell::Bool(false)], InferredType::Boolean),
            (texts(&["1000", "-3", "+7", "0", "-0"]), InferredType::Integer),
            (texts(&["1000", "", "12"]), InferredType::Integer),
            (texts(&["1500.75", "3", "1e5", "inf"]), InferredType::Number),
            (texts(&["021201", "021202"]), InferredType::String),
            (texts(&["00123", "1.5"]), InferredType::String),
            (texts(&["2024-01-15", "2024-02-20 10:30:00"]), InferredType::Date),
            (texts(&["2024-01-15", "hello"]), InferredType::String),
            (texts(&["2024", "2025"]), InferredType::Integer),
            (texts(&["1", "true"]), InferredType::String),
            (texts(&["nan"]), InferredType::String),
            (vec![Cell::Int(5), Cell::Float(1.5)], InferredType::Number),
        ];
        for (cells, want) in cases {
            assert_eq!(inferred_type(&cells), want, "cells {cells:?}");
        }
    }

    #[test]
    fn inferred_type_strings() {
        let all = [
            (InferredType::Empty, "empty"),
            (InferredType::Boolean, "boolean"),
            (InferredType::Integer, "integer"),
            (InferredType::Number, "number"),
            (InferredType::Date, "date"),
            (InferredType::String, "string"),
        ];
        for (t, s) in all {
            assert_eq!(t.as_str(), s);
        }
    }

    #[test]
    fn storage_type_strings() {
        let cases: Vec<(Vec<Cell>, &str)> = vec![
            (texts(&["a", "1"]), "object"),
            (vec![Cell::text("a"), Cell::Missing], "object"),
            (vec![Cell::Int(1), Cell::Int(2)], "int64"),
            (vec![Cell::Int(1), Cell::Missing], "float64"),
            (vec![Cell::Float(1.5), Cell::Int(2), Cell::Missing], "float64"),
            (vec![Cell::Bool(true), Cell::Bool(false)], "bool"),
            (vec![Cell::Bool(true), Cell::Missing], "object"),
            (vec![Cell::Bool(true), Cell::Int(1)], "object"),
            (vec![Cell::Missing], "object"),
        ];
        for (cells, want) in cases {
            assert_eq!(storage_type(&cells), want, "cells {cells:?}");
        }
    }

    #[test]
    fn operators_for_type_matches_the_reference_table() {
        // Acceptance §13.4 fact 26.
        let object = operators_for_type("object");
        for op in ["equals", "contains", "starts_with", "not_equals"] {
            assert!(object.contains(&op));
        }
        assert_eq!(object, TEXT_OPERATORS.to_vec());
        let int64 = operators_for_type("int64");
        for op in ["equals", "greater_than", "less_than", "between"] {
            assert!(int64.contains(&op));
        }
        assert_eq!(int64, NUMERIC_OPERATORS.to_vec());
        let float64 = operators_for_type("float64");
        for op in ["equals", "greater_than", "less_than"] {
            assert!(float64.contains(&op));
        }
        assert_eq!(operators_for_type("datetime64[ns]"), vec!["equals", "before", "after", "between"]);
        assert_eq!(operators_for_type("bool"), vec!["equals", "not_equals"]);
        assert_eq!(operators_for_type("str"), TEXT_OPERATORS.to_vec());
        assert_eq!(operators_for_type("NUMERIC"), NUMERIC_OPERATORS.to_vec());
    }

    #[test]
    fn suggestions_append_extras_for_the_inferred_type() {
        let mut numeric = TEXT_OPERATORS.to_vec();
        numeric.extend([
            "greater_than",
            "greater_than_or_equal",
            "less_than",
            "less_than_or_equal",
            "between",
        ]);
        assert_eq!(suggested_operators("object", InferredType::Number), numeric);
        assert_eq!(suggested_operators("object", InferredType::Integer), numeric);
        let mut date = TEXT_OPERATORS.to_vec();
        date.extend(["before", "after", "between"]);
        assert_eq!(suggested_operators("object", InferredType::Date), date);
        for t in [InferredType::String, InferredType::Boolean, InferredType::Empty] {
            assert_eq!(suggested_operators("object", t), TEXT_OPERATORS.to_vec());
        }
    }
}
