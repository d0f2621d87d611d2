//! One cell and one table (operations.md §1.1). Readers only produce `Text` and `Missing`; numeric and
//! boolean cells come from normalizations and mapping defaults.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Text, possibly empty (`""` is "empty", not "missing").
    Text(String),
    /// No value at all: Excel error cells, failed parses, unmatched joins, absent mapping sources.
    Missing,
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Cell {
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    pub fn is_missing(&self) -> bool {
        matches!(self, Cell::Missing)
    }

    /// Missing or the empty string.
    pub fn is_blank(&self) -> bool {
        match self {
            Cell::Missing => true,
            Cell::Text(s) => s.is_empty(),
            _ => false,
        }
    }

    /// The cell as text the way Python would print it (`Missing` → `""`; floats per operations.md §12.2;
    /// booleans `True`/`False`).
    pub fn as_text(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow;
        match self {
            Cell::Text(s) => Cow::Borrowed(s.as_str()),
            Cell::Missing => Cow::Borrowed(""),
            Cell::Int(i) => Cow::Owned(i.to_string()),
            Cell::Float(f) => Cow::Owned(super::parse::python_float_text(*f)),
            Cell::Bool(true) => Cow::Borrowed("True"),
            Cell::Bool(false) => Cow::Borrowed("False"),
        }
    }

    /// JSON value: Text → string, Missing → null, numbers and booleans as such (non-finite floats → null).
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Text(s) => Value::String(s.clone()),
            Cell::Missing => Value::Null,
            Cell::Int(i) => Value::from(*i),
            Cell::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number).unwrap_or(Value::Null),
            Cell::Bool(b) => Value::Bool(*b),
        }
    }

    /// A cell from a JSON value (mapping defaults keep their JSON type).
    pub fn from_json(v: &Value) -> Cell {
        match v {
            Value::Null => Cell::Missing,
            Value::Bool(b) => Cell::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Cell::Int(i),
                None => Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Cell::Text(s.clone()),
            other => Cell::Text(other.to_string()),
        }
    }
}

/// An ordered list of unique column names plus rows of exactly that width.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(columns: Vec<String>) -> Table {
        Table { columns, rows: Vec::new() }
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    pub fn row_count(&self) -> usize {
        self.rows.len()
    }

    /// Iterates over one column's cells in row order.
    pub fn column(&self, index: usize) -> impl Iterator<Item = &Cell> + '_ {
        self.rows.iter().map(move |r| r.get(index).unwrap_or(&Cell::Missing))
    }
}
