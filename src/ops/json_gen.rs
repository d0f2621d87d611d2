//! JSON generation (operations.md §10.1, §10.3): the standard column → key mapping with null
//! handling and wrapping, and the Python-compatible JSON writer (pretty or compact, Python float
//! text) that both JSON endpoints stream rows through.

use super::params::ColumnMapping;
use super::OpError;
use crate::table::parse::python_float_text;
use crate::table::{Cell, RowSource, Table, TableError};
use serde::ser::{Error as _, Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::io::{self, Write};

/// `null_handling` of `json/generate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NullHandling {
    Include,
    Exclude,
    Default,
}

impl NullHandling {
    /// Exact, case-sensitive names.
    pub fn parse(value: &str) -> Result<NullHandling, OpError> {
        match value {
            "include" => Ok(NullHandling::Include),
            "exclude" => Ok(NullHandling::Exclude),
            "default" => Ok(NullHandling::Default),
            other => Err(OpError::validation_with(
                format!("Invalid null_handling: {other}. Must be 'include', 'exclude', or 'default'"),
                serde_json::json!({ "field": "null_handling" }),
            )),
        }
    }
}

/// What a JSON write produced: `total_records` and the byte size (`file_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonWriteSummary {
    pub total_records: usize,
    pub bytes_written: u64,
}

/// The top-level shape of a JSON file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonShape {
    /// `[...]`
    Array,
    /// The only row's object (caller guarantees exactly one row).
    SingleObject,
    /// `{}` (empty table without array wrapper).
    EmptyObject,
    /// `{"items": [...], "count": n}`
    Nested,
}

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

/// Python `json.dumps` layout: pretty = indent 2 with `": "`; compact = `", "` and `": "`; floats
/// in Python text.
#[derive(Debug, Clone)]
pub struct PythonFormatter {
    pretty: bool,
    indent: usize,
    has_value: bool,
}

impl PythonFormatter {
    pub fn new(pretty: bool) -> PythonFormatter {
        PythonFormatter { pretty, indent: 0, has_value: false }
    }

    fn newline_indent<W: ?Sized + Write>(&self, w: &mut W) -> io::Result<()> {
        w.write_all(b"\n")?;
        for _ in 0..self.indent {
            w.write_all(b"  ")?;
        }
        Ok(())
    }

    fn separator<W: ?Sized + Write>(&self, w: &mut W, first: bool) -> io::Result<()> {
        if self.pretty {
            if !first {
                w.write_all(b",")?;
            }
            self.newline_indent(w)
        } else if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn open<W: ?Sized + Write>(&mut self, w: &mut W, c: &[u8]) -> io::Result<()> {
        self.indent += 1;
        self.has_value = false;
        w.write_all(c)
    }

    fn close<W: ?Sized + Write>(&mut self, w: &mut W, c: &[u8]) -> io::Result<()> {
        self.indent = self.indent.saturating_sub(1);
        if self.pretty && self.has_value {
            self.newline_indent(w)?;
        }
        self.has_value = true;
        w.write_all(c)
    }
}

impl serde_json::ser::Formatter for PythonFormatter {
    fn write_f64<W: ?Sized + Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        w.write_all(python_float_text(value).as_bytes())
    }
    fn write_f32<W: ?Sized + Write>(&mut self, w: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(w, f64::from(value))
    }
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, b"[")
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"]")
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.separator(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, b"{")
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"}")
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.separator(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// Serializes a [`Value`] with the Python layout (for small documents and tests).
pub fn to_python_json(value: &Value, pretty: bool) -> String {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, PythonFormatter::new(pretty));
    // Writing into a Vec cannot fail and a Value always serializes.
    if value.serialize(&mut ser).is_ok() {
        String::from_utf8(buf).unwrap_or_default()
    } else {
        String::new()
    }
}

struct CountingWriter<'w, W: Write> {
    inner: &'w mut W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// How one row becomes one value of a JSON document.
pub trait RowToJson {
    fn serialize_row<S: Serializer>(&self, row: &[Cell], serializer: S) -> Result<S::Ok, S::Error>;
}

struct RowItem<'a, R>(&'a R, &'a [Cell]);

impl<R: RowToJson> Serialize for RowItem<'_, R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_row(self.1, serializer)
    }
}

/// The rows as a sequence serialized lazily (one row in memory at a time). A failure of the row source
/// is kept aside so that it reaches the caller as itself rather than as a serializer error.
struct LazyRows<'a, S: ?Sized, R> {
    rows: RefCell<&'a mut S>,
    render: &'a R,
    len: usize,
    failure: RefCell<Option<TableError>>,
}

impl<S: RowSource + ?Sized, R: RowToJson> Serialize for LazyRows<'_, S, R> {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        let mut rows = self.rows.borrow_mut();
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        loop {
            match rows.next_row() {
                Ok(Some(row)) => seq.serialize_element(&RowItem(self.render, row))?,
                Ok(None) => break,
                Err(e) => {
                    *self.failure.borrow_mut() = Some(e);
                    return Err(Ser::Error::custom("reading the rows failed"));
                }
            }
        }
        seq.end()
    }
}

struct NestedDoc<'n, L> {
    items: &'n L,
    count: usize,
}

impl<L: Serialize> Serialize for NestedDoc<'_, L> {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("items", self.items)?;
        map.serialize_entry("count", &self.count)?;
        map.end()
    }
}

/// serde_json hands back the writer's own `io::Error` (so a write stopped at `file.max_output_mb` stays
/// recognisable); other serializer failures become one.
fn json_io_error(e: serde_json::Error) -> OpError {
    OpError::Io(io::Error::from(e))
}

/// Streams the rows, each rendered by `render`, as one JSON document of the given shape. `row_count`
/// must equal the number of rows `rows` yields. No trailing newline (§10.3).
pub fn write_json_document<W, S, R>(
    shape: JsonShape,
    rows: &mut S,
    render: &R,
    row_count: usize,
    pretty: bool,
    out: &mut W,
) -> Result<JsonWriteSummary, OpError>
where
    W: Write,
    S: RowSource + ?Sized,
    R: RowToJson,
{
    let mut counting = CountingWriter { inner: out, count: 0 };
    let total_records;
    let lazy = LazyRows { rows: RefCell::new(rows), render, len: row_count, failure: RefCell::new(None) };
    let written = {
        let mut ser = serde_json::Serializer::with_formatter(&mut counting, PythonFormatter::new(pretty));
        match shape {
            JsonShape::Array => {
                total_records = row_count;
                lazy.serialize(&mut ser)
            }
            JsonShape::SingleObject => {
                total_records = 1;
                let mut rows = lazy.rows.borrow_mut();
                match rows.next_row()? {
                    Some(first) => RowItem(render, first).serialize(&mut ser),
                    None => Value::Object(Map::new()).serialize(&mut ser),
                }
            }
            JsonShape::EmptyObject => {
                total_records = 0;
                Value::Object(Map::new()).serialize(&mut ser)
            }
            JsonShape::Nested => {
                total_records = row_count;
                NestedDoc { items: &lazy, count: row_count }.serialize(&mut ser)
            }
        }
    };
    if let Err(e) = written {
        return Err(match lazy.failure.into_inner() {
            Some(failure) => failure.into(),
            None => json_io_error(e),
        });
    }
    Ok(JsonWriteSummary { total_records, bytes_written: counting.count })
}

// ---------------------------------------------------------------------------------------------
// Standard mapping (§10.1)
// ---------------------------------------------------------------------------------------------

/// Parameters of `json/generate`.
#[derive(Debug, Clone)]
pub struct JsonGenRequest {
    /// Keep only these columns (empty = all).
    pub columns: Vec<String>,
    /// Sheet column → JSON key (empty = every selected column maps to itself).
    pub column_mapping: ColumnMapping,
    pub null_handling: NullHandling,
    pub array_wrapper: bool,
    pub pretty_print: bool,
}

/// A validated mapping: JSON keys in output order with their source column index.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonGenPlan {
    pub fields: Vec<(String, usize)>,
    pub null_handling: NullHandling,
    pub shape: JsonShape,
    pub pretty_print: bool,
}

fn list_text(names: &[&str]) -> String {
    names.join(", ")
}

/// Validates `columns` and the mapping (rest-api §7.6.1 order) and resolves the output keys.
pub fn plan_json(columns: &[String], row_count: usize, req: &JsonGenRequest) -> Result<JsonGenPlan, OpError> {
    let missing: Vec<&str> =
        req.columns.iter().map(String::as_str).filter(|c| !columns.iter().any(|have| have == c)).collect();
    if !missing.is_empty() {
        return Err(OpError::validation_with(
            format!("Columns not found: {}", list_text(&missing)),
            serde_json::json!({ "missing_columns": missing, "available_columns": columns }),
        ));
    }
    let selected: Vec<&str> = if req.columns.is_empty() {
        columns.iter().map(String::as_str).collect()
    } else {
        req.columns.iter().map(String::as_str).collect()
    };
    let is_selected = |name: &str| selected.contains(&name);

    // Pairs of (sheet column, JSON key).
    let pairs: Vec<(&str, &str)> = if req.column_mapping.is_empty() {
        selected.iter().map(|c| (*c, *c)).collect()
    } else {
        let documented = req.column_mapping.iter().all(|(k, _)| is_selected(k));
        let reversed = !documented && req.column_mapping.iter().all(|(_, v)| is_selected(v));
        if reversed {
            // The studio sends JSON key → column (api §7.6.1 fallback).
            req.column_mapping.iter().map(|(k, v)| (v.as_str(), k.as_str())).collect()
        } else {
            req.column_mapping.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
        }
    };

    let shape = match (row_count, req.array_wrapper) {
        (0, true) => JsonShape::Array,
        (0, false) => JsonShape::EmptyObject,
        (1, false) => JsonShape::SingleObject,
        _ => JsonShape::Array,
    };
    if row_count > 0 {
        let missing: Vec<&str> = pairs.iter().map(|(c, _)| *c).filter(|c| !is_selected(c)).collect();
        if !missing.is_empty() {
            return Err(OpError::validation_with(
                format!("Columns not found in data: {}", list_text(&missing)),
                serde_json::json!({ "missing_columns": missing, "available_columns": selected }),
            ));
        }
    }
    let mut fields: Vec<(String, usize)> = Vec::with_capacity(pairs.len());
    for (column, key) in pairs {
        let Some(index) = columns.iter().position(|c| c == column) else {
            continue;
        };
        // A key produced twice keeps its first position and the last value.
        match fields.iter_mut().find(|(k, _)| k == key) {
            Some(existing) => existing.1 = index,
            None => fields.push((key.to_string(), index)),
        }
    }
    Ok(JsonGenPlan { fields, null_handling: req.null_handling, shape, pretty_print: req.pretty_print })
}

/// One row's object serialized straight from the cells (no intermediate `Value`, no key copies).
struct RowObject<'a> {
    plan: &'a JsonGenPlan,
    row: &'a [Cell],
}

impl Serialize for RowObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, index) in &self.plan.fields {
            let cell = self.row.get(*index).unwrap_or(&Cell::Missing);
            let is_null = match cell {
                Cell::Missing => true,
                Cell::Float(f) => !f.is_finite(),
                _ => false,
            };
            match (self.plan.null_handling, cell) {
                (NullHandling::Exclude, _) if is_null => {}
                (NullHandling::Exclude, Cell::Text(t)) if t.is_empty() => {}
                (NullHandling::Default, _) if is_null => map.serialize_entry(key, "")?,
                (_, _) if is_null => map.serialize_entry(key, &())?,
                (_, Cell::Text(t)) => map.serialize_entry(key, t)?,
                (_, Cell::Int(i)) => map.serialize_entry(key, i)?,
                (_, Cell::Float(f)) => map.serialize_entry(key, f)?,
                (_, Cell::Bool(b)) => map.serialize_entry(key, b)?,
                (_, Cell::Missing) => map.serialize_entry(key, &())?,
            }
        }
        map.end()
    }
}

impl RowToJson for JsonGenPlan {
    fn serialize_row<S: Serializer>(&self, row: &[Cell], serializer: S) -> Result<S::Ok, S::Error> {
        RowObject { plan: self, row }.serialize(serializer)
    }
}

impl JsonGenPlan {
    /// The object for one row.
    pub fn row_object(&self, row: &[Cell]) -> Value {
        let mut obj = Map::with_capacity(self.fields.len());
        for (key, index) in &self.fields {
            let value = row.get(*index).map_or(Value::Null, Cell::to_json);
            match (self.null_handling, &value) {
                (NullHandling::Exclude, Value::Null) => {}
                // IMPROVE: blanks of uploaded sheets are empty strings; exclude drops them too.
                (NullHandling::Exclude, Value::String(s)) if s.is_empty() => {}
                (NullHandling::Default, Value::Null) => {
                    obj.insert(key.clone(), Value::String(String::new()));
                }
                _ => {
                    obj.insert(key.clone(), value);
                }
            }
        }
        Value::Object(obj)
    }
}

/// Streams `json/generate` output for any row source (`rows` yields exactly `row_count` rows).
pub fn write_json_rows<W, S>(
    plan: &JsonGenPlan,
    rows: &mut S,
    row_count: usize,
    out: &mut W,
) -> Result<JsonWriteSummary, OpError>
where
    W: Write,
    S: RowSource + ?Sized,
{
    write_json_document(plan.shape, rows, plan, row_count, plan.pretty_print, out)
}

/// Validates and writes `json/generate` output for a whole table.
pub fn write_json(
    table: &Table,
    req: &JsonGenRequest,
    out: &mut impl Write,
) -> Result<JsonWriteSummary, OpError> {
    let plan = plan_json(&table.columns, table.row_count(), req)?;
    write_json_rows(&plan, &mut table.rows.iter(), table.row_count(), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn people() -> Table {
        let mut t = Table {
            columns: vec!["Name".into(), "Email".into(), "Age".into()],
            rows: vec![
                vec![Cell::text("Alice"), Cell::text("alice@test.com"), Cell::text("25")],
                vec![Cell::text("Bob"), Cell::Missing, Cell::text("")],
                vec![Cell::text("Charlie"), Cell::text("c@test.com"), Cell::text("35")],
            ],
        };
        t.rows[1][2] = Cell::Missing;
        t
    }

    fn req(mapping: &[(&str, &str)]) -> JsonGenRequest {
        JsonGenRequest {
            columns: Vec::new(),
            column_mapping: mapping.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            null_handling: NullHandling::Include,
            array_wrapper: true,
            pretty_print: true,
        }
    }

    fn run(table: &Table, r: &JsonGenRequest) -> (String, JsonWriteSummary) {
        let mut buf = Vec::new();
        let summary = write_json(table, r, &mut buf).unwrap();
        (String::from_utf8(buf).unwrap(), summary)
    }

    #[test]
    fn python_layout_pretty_and_compact() {
        let v = json!({"a": [1, 2.0, {"b": null}], "c": {}, "d": [], "e": "é\"\n", "f": 1e20, "g": 1.5e-7, "h": true});
        assert_eq!(
            to_python_json(&v, false),
            r#"{"a": [1, 2.0, {"b": null}], "c": {}, "d": [], "e": "é\"\n", "f": 1e+20, "g": 1.5e-07, "h": true}"#
        );
        assert_eq!(
            to_python_json(&v, true),
            "{\n  \"a\": [\n    1,\n    2.0,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": {},\n  \"d\": [],\n  \"e\": \"é\\\"\\n\",\n  \"f\": 1e+20,\n  \"g\": 1.5e-07,\n  \"h\": true\n}"
        );
        assert_eq!(to_python_json(&json!([]), true), "[]");
        assert_eq!(to_python_json(&json!(1000.0), true), "1000.0");
    }

    #[test]
    fn mapping_renames_and_keeps_text() {
        let (text, summary) =
            run(&people(), &req(&[("Name", "full_name"), ("Email", "email"), ("Age", "age")]));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(summary.total_records, 3);
        assert_eq!(summary.bytes_written, text.len() as u64);
        assert_eq!(v[0], json!({"full_name": "Alice", "email": "alice@test.com", "age": "25"}));
        assert_eq!(v[1], json!({"full_name": "Bob", "email": null, "age": null}));
        assert!(!text.ends_with('\n'));
        // Key order follows the mapping.
        assert!(text.find("full_name").unwrap() < text.find("\"email\"").unwrap());
    }

    #[test]
    fn null_handling_modes() {
        let mut t = people();
        t.rows[2][1] = Cell::text("");
        let cases = [
            (
                NullHandling::Include,
                json!([{"Name": "Bob", "Email": null, "Age": null}, {"Name": "Charlie", "Email": "", "Age": "35"}]),
            ),
            (NullHandling::Exclude, json!([{"Name": "Bob"}, {"Name": "Charlie", "Age": "35"}])),
            (
                NullHandling::Default,
                json!([{"Name": "Bob", "Email": "", "Age": ""}, {"Name": "Charlie", "Email": "", "Age": "35"}]),
            ),
        ];
        for (mode, want) in cases {
            let mut r = req(&[]);
            r.null_handling = mode;
            let v: Value = serde_json::from_str(&run(&t, &r).0).unwrap();
            assert_eq!(v.as_array().unwrap()[1..].to_vec(), want.as_array().unwrap().clone(), "{mode:?}");
            assert_eq!(v[0]["Email"], json!("alice@test.com"));
        }
        assert_eq!(
            NullHandling::parse("Include").unwrap_err().to_string(),
            "Invalid null_handling: Include. Must be 'include', 'exclude', or 'default'"
        );
    }

    #[test]
    fn wrapping_and_empty_tables() {
        let one = Table { columns: vec!["name".into()], rows: vec![vec![Cell::text("Alice")]] };
        let mut r = req(&[]);
        r.array_wrapper = false;
        r.pretty_print = false;
        assert_eq!(
            run(&one, &r),
            (r#"{"name": "Alice"}"#.to_string(), JsonWriteSummary { total_records: 1, bytes_written: 17 })
        );
        let (text, s) = run(&people(), &r);
        assert!(text.starts_with("[{"));
        assert_eq!(s.total_records, 3);

        let empty = Table { columns: vec!["a".into()], rows: vec![] };
        let mut r = req(&[("nope", "x")]);
        assert_eq!(run(&empty, &r).0, "[]");
        assert_eq!(run(&empty, &r).1.total_records, 0);
        r.array_wrapper = false;
        assert_eq!(
            run(&empty, &r),
            ("{}".to_string(), JsonWriteSummary { total_records: 0, bytes_written: 2 })
        );
    }

    #[test]
    fn column_selection_and_validation() {
        let mut r = req(&[]);
        r.columns = vec!["Age".into(), "Name".into()];
        r.pretty_print = false;
        assert!(run(&people(), &r).0.starts_with(r#"[{"Age": "25", "Name": "Alice"}"#));

        r.columns = vec!["Name".into(), "Nope".into(), "Gone".into()];
        let e = write_json(&people(), &r, &mut Vec::new()).unwrap_err();
        assert_eq!(e.to_string(), "Columns not found: Nope, Gone");

        let e = write_json(&people(), &req(&[("Missing", "m"), ("Name", "n")]), &mut Vec::new()).unwrap_err();
        assert_eq!(e.status_code(), 422);
        assert_eq!(e.to_string(), "Columns not found in data: Missing");

        // A mapping to a column removed by the selection is not found either.
        let mut r = req(&[("Email", "e")]);
        r.columns = vec!["Name".into()];
        assert!(write_json(&people(), &r, &mut Vec::new())
            .unwrap_err()
            .to_string()
            .contains("not found in data"));
    }

    #[test]
    fn studio_orientation_fallback_and_duplicate_keys() {
        let mut r = req(&[("full_name", "Name"), ("mail", "Email")]);
        r.pretty_print = false;
        assert!(run(&people(), &r).0.starts_with(r#"[{"full_name": "Alice", "mail": "alice@test.com"}"#));
        // Keys that are columns keep the documented orientation, even if values are columns too.
        let r2 = req(&[("Name", "Email"), ("Email", "Name")]);
        let v: Value = serde_json::from_str(&run(&people(), &r2).0).unwrap();
        assert_eq!(v[0], json!({"Email": "Alice", "Name": "alice@test.com"}));
        // A key produced twice keeps its first position and the last value.
        let r3 = req(&[("Name", "k"), ("Age", "a"), ("Email", "k")]);
        let mut buf = Vec::new();
        let mut r3c = r3.clone();
        r3c.pretty_print = false;
        write_json(&people(), &r3c, &mut buf).unwrap();
        assert!(String::from_utf8(buf).unwrap().starts_with(r#"[{"k": "alice@test.com", "a": "25"}"#));
    }

    #[test]
    fn typed_cells_and_unicode() {
        let t = Table {
            columns: vec!["n".into(), "f".into(), "b".into(), "u".into()],
            rows: vec![vec![
                Cell::Int(7),
                Cell::Float(1000.0),
                Cell::Bool(true),
                Cell::text("名前 {x} \\ \"q\""),
            ]],
        };
        let mut r = req(&[]);
        r.pretty_print = false;
        assert_eq!(run(&t, &r).0, r#"[{"n": 7, "f": 1000.0, "b": true, "u": "名前 {x} \\ \"q\""}]"#);
    }

    #[test]
    fn pretty_array_layout() {
        let one =
            Table { columns: vec!["a".into()], rows: vec![vec![Cell::text("x")], vec![Cell::text("y")]] };
        assert_eq!(run(&one, &req(&[])).0, "[\n  {\n    \"a\": \"x\"\n  },\n  {\n    \"a\": \"y\"\n  }\n]");
        let mut compact = req(&[]);
        compact.pretty_print = false;
        assert!(!run(&people(), &compact).0.contains("\n  "));
    }

    #[test]
    fn streamed_rows_match_row_objects_for_every_cell_kind_and_null_handling() {
        let table = Table {
            columns: vec!["t".into(), "e".into(), "m".into(), "i".into(), "f".into(), "n".into(), "b".into()],
            rows: vec![vec![
                Cell::text("x"),
                Cell::text(""),
                Cell::Missing,
                Cell::Int(-3),
                Cell::Float(2.5),
                Cell::Float(f64::NAN),
                Cell::Bool(true),
            ]],
        };
        for null_handling in [NullHandling::Include, NullHandling::Exclude, NullHandling::Default] {
            for pretty in [true, false] {
                let r = JsonGenRequest { null_handling, pretty_print: pretty, ..req(&[]) };
                let plan = plan_json(&table.columns, 1, &r).unwrap();
                let (text, _) = run(&table, &r);
                let expected = to_python_json(&Value::Array(vec![plan.row_object(&table.rows[0])]), pretty);
                assert_eq!(text, expected, "{null_handling:?} pretty={pretty}");
            }
        }
    }
}
