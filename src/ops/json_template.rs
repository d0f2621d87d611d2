//! The JSON template language of `json/generate-with-template` (operations.md §10.2): a JSON object
//! whose string values carry placeholders, compiled once and rendered per row (single pass, values
//! never re-scanned), plus the aggregation modes.

use super::json_gen::{write_json_document, JsonShape, JsonWriteSummary, RowToJson};
use super::params::ColumnMapping;
use super::placeholder::{tokenize, Converted, Placeholder, Segment};
use super::OpError;
use crate::table::{Cell, RowSource, Table};
use serde::{Serialize, Serializer};
use serde_json::{Map, Number, Value};
use std::io::Write;

/// `aggregation_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregationMode {
    Array,
    Single,
    Nested,
}

impl AggregationMode {
    /// Exact, case-sensitive names.
    pub fn parse(value: &str) -> Result<AggregationMode, OpError> {
        match value {
            "array" => Ok(AggregationMode::Array),
            "single" => Ok(AggregationMode::Single),
            "nested" => Ok(AggregationMode::Nested),
            other => Err(OpError::validation_with(
                format!("Invalid aggregation_mode: {other}. Must be 'array', 'single', or 'nested'"),
                serde_json::json!({ "field": "aggregation_mode" }),
            )),
        }
    }

    /// The file shape for `rows` rows (empty tables: `[]`, nested `{"items": [], "count": 0}`).
    pub fn shape(self, rows: usize) -> JsonShape {
        match (self, rows) {
            (AggregationMode::Nested, _) => JsonShape::Nested,
            (AggregationMode::Single, 1) => JsonShape::SingleObject,
            _ => JsonShape::Array,
        }
    }
}

/// Parses the `template` form field (422 `Invalid template JSON: …`).
pub fn parse_template_text(text: &str) -> Result<Value, OpError> {
    serde_json::from_str(text).map_err(|e| {
        OpError::validation_with(
            format!("Invalid template JSON: {e}"),
            serde_json::json!({ "field": "template" }),
        )
    })
}

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Slot(usize),
}

#[derive(Debug, Clone)]
enum Node {
    Literal(Value),
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    /// The string is exactly one placeholder.
    Whole(usize),
    Mixed(Vec<Piece>),
}

#[derive(Debug, Clone)]
struct Slot {
    placeholder: Placeholder,
    column: Option<usize>,
}

/// A template compiled against a table's columns.
#[derive(Debug, Clone)]
pub struct JsonTemplate {
    root: Node,
    slots: Vec<Slot>,
}

fn template_shape_error(message: &str) -> OpError {
    OpError::validation_with(message, serde_json::json!({ "field": "template" }))
}

impl JsonTemplate {
    /// Checks the template's shape (object, or a string holding one; non-empty) and that every mapped
    /// column exists (also for empty tables, IMPROVE), then compiles it.
    pub fn compile(
        template: &Value,
        mapping: &ColumnMapping,
        columns: &[String],
    ) -> Result<JsonTemplate, OpError> {
        let reparsed;
        let object = match template {
            Value::Object(o) => o,
            Value::String(s) => {
                reparsed = serde_json::from_str::<Value>(s)
                    .map_err(|e| template_shape_error(&format!("Invalid JSON template: {e}")))?;
                match &reparsed {
                    Value::Object(o) => o,
                    _ => {
                        return Err(template_shape_error(
                            "Invalid JSON template: the template must be a JSON object",
                        ))
                    }
                }
            }
            _ => return Err(template_shape_error("Template must be a JSON string or dictionary")),
        };
        if object.is_empty() {
            return Err(template_shape_error("Template cannot be empty"));
        }
        let missing: Vec<&str> = mapping
            .iter()
            .map(|(_, c)| c.as_str())
            .filter(|c| !columns.iter().any(|have| have == c))
            .collect();
        if !missing.is_empty() {
            return Err(OpError::validation_with(
                format!("Columns not found in data: {}", missing.join(", ")),
                serde_json::json!({ "missing_columns": missing, "available_columns": columns }),
            ));
        }
        let mut compiler = Compiler { mapping, columns, slots: Vec::new(), slot_text: Vec::new() };
        let root = compiler.object(object);
        Ok(JsonTemplate { root, slots: compiler.slots })
    }

    /// The rendered object for one row.
    pub fn render_row(&self, row: &[Cell]) -> Value {
        self.render(&self.root, row)
    }

    fn value_of(&self, slot: usize, row: &[Cell]) -> Converted {
        let s = &self.slots[slot];
        let cell = s.column.map(|c| row.get(c).unwrap_or(&Cell::Missing));
        s.placeholder.value_of(cell)
    }

    fn render(&self, node: &Node, row: &[Cell]) -> Value {
        match node {
            Node::Literal(v) => v.clone(),
            Node::Object(entries) => {
                let mut m = Map::with_capacity(entries.len());
                for (k, n) in entries {
                    m.insert(k.clone(), self.render(n, row));
                }
                Value::Object(m)
            }
            Node::Array(items) => Value::Array(items.iter().map(|n| self.render(n, row)).collect()),
            Node::Whole(slot) => match self.value_of(*slot, row) {
                Converted::Null => Value::Null,
                Converted::Int(i) => Value::from(i),
                Converted::BigInt(f) | Converted::Float(f) => {
                    Number::from_f64(f).map_or(Value::Null, Value::Number)
                }
                Converted::Bool(b) => Value::Bool(b),
                Converted::Text(s) | Converted::Unconverted(s) => Value::String(s),
            },
            Node::Mixed(pieces) => {
                let mut s = String::new();
                for p in pieces {
                    match p {
                        Piece::Text(t) => s.push_str(t),
                        Piece::Slot(slot) => s.push_str(&self.value_of(*slot, row).python_text()),
                    }
                }
                Value::String(s)
            }
        }
    }
}

struct Compiler<'a> {
    mapping: &'a ColumnMapping,
    columns: &'a [String],
    slots: Vec<Slot>,
    slot_text: Vec<String>,
}

impl Compiler<'_> {
    fn slot(&mut self, p: &str) -> usize {
        if let Some(i) = self.slot_text.iter().position(|s| s == p) {
            return i;
        }
        let placeholder = Placeholder::parse(p, false);
        let column = self
            .mapping
            .iter()
            .find(|(k, _)| *k == placeholder.name)
            .and_then(|(_, col)| self.columns.iter().position(|c| c == col));
        self.slots.push(Slot { placeholder, column });
        self.slot_text.push(p.to_string());
        self.slots.len() - 1
    }

    fn object(&mut self, obj: &Map<String, Value>) -> Node {
        // Keys are never substituted.
        Node::Object(obj.iter().map(|(k, v)| (k.clone(), self.node(v))).collect())
    }

    fn node(&mut self, v: &Value) -> Node {
        match v {
            Value::Object(o) => self.object(o),
            Value::Array(items) => Node::Array(items.iter().map(|i| self.node(i)).collect()),
            Value::String(s) => {
                let segments = tokenize(s);
                match segments.as_slice() {
                    [] | [Segment::Literal(_)] => Node::Literal(v.clone()),
                    [Segment::Placeholder(p)] => Node::Whole(self.slot(p)),
                    _ => Node::Mixed(
                        segments
                            .iter()
                            .map(|seg| match seg {
                                Segment::Literal(l) => Piece::Text(l.to_string()),
                                Segment::Placeholder(p) => Piece::Slot(self.slot(p)),
                            })
                            .collect(),
                    ),
                }
            }
            other => Node::Literal(other.clone()),
        }
    }
}

impl RowToJson for JsonTemplate {
    fn serialize_row<S: Serializer>(&self, row: &[Cell], serializer: S) -> Result<S::Ok, S::Error> {
        self.render_row(row).serialize(serializer)
    }
}

/// Streams the rendered rows for any row source (`rows` yields exactly `row_count` rows).
pub fn write_template_rows<W, S>(
    template: &JsonTemplate,
    mode: AggregationMode,
    rows: &mut S,
    row_count: usize,
    pretty: bool,
    out: &mut W,
) -> Result<JsonWriteSummary, OpError>
where
    W: Write,
    S: RowSource + ?Sized,
{
    write_json_document(mode.shape(row_count), rows, template, row_count, pretty, out)
}

/// Compiles `template` and writes the output for a whole table.
pub fn write_template_json(
    table: &Table,
    template: &Value,
    mapping: &ColumnMapping,
    mode: AggregationMode,
    pretty: bool,
    out: &mut impl Write,
) -> Result<JsonWriteSummary, OpError> {
    let compiled = JsonTemplate::compile(template, mapping, &table.columns)?;
    let mut rows = table.rows.iter();
    write_template_rows(&compiled, mode, &mut rows, table.row_count(), pretty, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Table {
        let cols = ["ID", "Name", "Age", "Score", "Active", "Email", "CreatedAt"];
        let rows = [
            ["1", "Alice", "25", "95.5", "true", "alice@test.com", "2024-01-15"],
            ["2", "Bob", "30", "88.0", "false", "", "2024-02-20"],
            ["3", "Charlie", "35", "92.3", "true", "charlie@test.com", "2024-03-10"],
        ];
        let mut t = Table {
            columns: cols.iter().map(|s| s.to_string()).collect(),
            rows: rows.iter().map(|r| r.iter().map(|s| Cell::text(*s)).collect()).collect(),
        };
        t.rows[1][5] = Cell::Missing;
        t
    }

    fn mapping() -> ColumnMapping {
        [
            ("id", "ID"),
            ("name", "Name"),
            ("age", "Age"),
            ("score", "Score"),
            ("active", "Active"),
            ("email", "Email"),
            ("created", "CreatedAt"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
    }

    fn rows_of(template: Value) -> Vec<Value> {
        let t = JsonTemplate::compile(&template, &mapping(), &sample().columns).unwrap();
        sample().rows.iter().map(|r| t.render_row(r)).collect()
    }

    fn write(
        table: &Table,
        template: Value,
        mode: AggregationMode,
        pretty: bool,
    ) -> (String, JsonWriteSummary) {
        let mut buf = Vec::new();
        let s = write_template_json(table, &template, &mapping(), mode, pretty, &mut buf).unwrap();
        (String::from_utf8(buf).unwrap(), s)
    }

    #[test]
    fn typed_whole_values_and_mixed_strings() {
        let rows = rows_of(json!({
            "id": "{id:int}", "score": "{score:float}", "active": "{active:bool}", "name": "{name}",
            "age": "{age}", "label": "User ID: {id:int}", "greet": "Hello {name}!", "both": "{name} has ID {id:int}",
            "flag": "on? {active:bool} {score:float}", "created": "{created:datetime}", "fixed": 1, "nil": null,
            "list": ["{name}", "{age}", 3], "email": "{email|no-email}", "raw_email": "{email}",
        }));
        assert_eq!(
            rows[0],
            json!({"id": 1, "score": 95.5, "active": true, "name": "Alice", "age": "25", "label": "User ID: 1",
                "greet": "Hello Alice!", "both": "Alice has ID 1", "flag": "on? True 95.5", "created": "2024-01-15",
                "fixed": 1, "nil": null, "list": ["Alice", "25", 3], "email": "alice@test.com", "raw_email": "alice@test.com"})
        );
        assert_eq!(rows[1]["score"], json!(88.0));
        assert!(rows[1]["score"].is_f64());
        assert_eq!(rows[1]["active"], json!(false));
        assert_eq!(rows[1]["email"], json!("no-email"));
        assert_eq!(rows[1]["raw_email"], Value::Null);
        assert_eq!(rows[1]["flag"], json!("on? False 88.0"));
    }

    #[test]
    fn whole_value_edge_cases() {
        let t = Table {
            columns: vec!["v".into()],
            rows: vec![
                vec![Cell::text("")],
                vec![Cell::text("abc")],
                vec![Cell::Missing],
                vec![Cell::text("0042")],
                vec![Cell::text("{v}")],
            ],
        };
        let m: ColumnMapping = vec![("v".into(), "v".into())];
        let tpl = JsonTemplate::compile(
            &json!({"i": "{v:int}", "d": "{v:int|7}", "s": "{v}", "sd": "{v|dflt}", "mixed": "<{v:int}>", "mixed_d": "Hi {v|anon}!",
                "x": "{unmapped}", "xm": "a{unmapped}b", "spaced": " {v}", "empty": "{}", "f": "{v:float}"}),
            &m,
            &t.columns,
        )
        .unwrap();
        let out: Vec<Value> = t.rows.iter().map(|r| tpl.render_row(r)).collect();
        assert_eq!(
            out[0],
            json!({"i": null, "d": 7, "s": "", "sd": "dflt", "mixed": "<>", "mixed_d": "Hi anon!",
            "x": null, "xm": "ab", "spaced": " ", "empty": "{}", "f": null})
        );
        assert_eq!(
            out[1],
            json!({"i": "abc", "d": "abc", "s": "abc", "sd": "abc", "mixed": "<abc>", "mixed_d": "Hi abc!",
            "x": null, "xm": "ab", "spaced": " abc", "empty": "{}", "f": "abc"})
        );
        assert_eq!(out[2]["s"], Value::Null);
        assert_eq!(out[2]["d"], json!(7));
        assert_eq!(out[3]["i"], json!(42));
        assert_eq!(out[3]["s"], json!("0042"));
        // A value holding placeholder text is not substituted again.
        assert_eq!(out[4]["mixed_d"], json!("Hi {v}!"));
    }

    #[test]
    fn spec_example_nested_template() {
        let t = Table {
            columns: vec!["ID".into(), "Name".into(), "VIP".into()],
            rows: vec![vec![Cell::text("0042"), Cell::text("Ana"), Cell::text("yes")]],
        };
        let m: ColumnMapping =
            vec![("id".into(), "ID".into()), ("name".into(), "Name".into()), ("vip".into(), "VIP".into())];
        let tpl = json!({"id": "{id:int}", "who": {"name": "{name}", "tag": "user-{id}"}, "vip": "{vip:bool}", "fixed": 1});
        let mut buf = Vec::new();
        write_template_json(&t, &tpl, &m, AggregationMode::Single, false, &mut buf).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            r#"{"id": 42, "who": {"name": "Ana", "tag": "user-0042"}, "vip": true, "fixed": 1}"#
        );
    }

    #[test]
    fn aggregation_modes() {
        let tpl = json!({"user": {"id": "{id:int}", "name": "{name}"}, "contact": {"email": "{email}"}});
        let (text, s) = write(&sample(), tpl.clone(), AggregationMode::Array, true);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!((s.total_records, v.as_array().map(Vec::len)), (3, Some(3)));
        assert_eq!(v[0]["user"]["name"], json!("Alice"));
        assert_eq!(v[0]["contact"]["email"], json!("alice@test.com"));

        let (text, s) = write(&sample(), tpl.clone(), AggregationMode::Nested, false);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (s.total_records, v["count"].clone(), v["items"].as_array().map(Vec::len)),
            (3, json!(3), Some(3))
        );
        assert!(text.ends_with(", \"count\": 3}"));

        let mut one = sample();
        one.rows.truncate(1);
        let (text, s) = write(&one, json!({"name": "{name}"}), AggregationMode::Single, false);
        assert_eq!((text.as_str(), s.total_records), (r#"{"name": "Alice"}"#, 1));
        let (text, s) = write(&sample(), json!({"name": "{name}"}), AggregationMode::Single, false);
        assert_eq!(
            (text.as_str(), s.total_records),
            (r#"[{"name": "Alice"}, {"name": "Bob"}, {"name": "Charlie"}]"#, 3)
        );

        let mut empty = sample();
        empty.rows.clear();
        for (mode, want) in [
            (AggregationMode::Array, "[]"),
            (AggregationMode::Single, "[]"),
            (AggregationMode::Nested, r#"{"items": [], "count": 0}"#),
        ] {
            let (text, s) = write(&empty, json!({"name": "{name}"}), mode, false);
            assert_eq!((text.as_str(), s.total_records), (want, 0), "{mode:?}");
        }
        assert_eq!(
            write(&empty, json!({"a": 1}), AggregationMode::Nested, true).0,
            "{\n  \"items\": [],\n  \"count\": 0\n}"
        );
    }

    #[test]
    fn template_validation() {
        let cols = sample().columns;
        let m = mapping();
        let cases: Vec<(Value, &str)> = vec![
            (json!([1]), "Template must be a JSON string or dictionary"),
            (json!(5), "Template must be a JSON string or dictionary"),
            (json!({}), "Template cannot be empty"),
            (json!("invalid json {{"), "Invalid JSON template: "),
            (json!("[1, 2]"), "Invalid JSON template: "),
        ];
        for (tpl, want) in cases {
            let e = JsonTemplate::compile(&tpl, &m, &cols).unwrap_err();
            assert_eq!(e.status_code(), 422);
            assert!(e.to_string().starts_with(want), "{tpl}: {e}");
        }
        // A template given as JSON text inside a string works like the object.
        let as_text = JsonTemplate::compile(&json!("{\"n\": \"{name}\"}"), &m, &cols).unwrap();
        assert_eq!(as_text.render_row(&sample().rows[0]), json!({"n": "Alice"}));

        let bad: ColumnMapping = vec![("x".into(), "Nope".into())];
        let e = JsonTemplate::compile(&json!({"a": "{x}"}), &bad, &cols).unwrap_err();
        assert_eq!(e.to_string(), "Columns not found in data: Nope");
        // Checked even for an empty table (IMPROVE).
        let empty = Table { columns: cols.clone(), rows: vec![] };
        assert!(write_template_json(
            &empty,
            &json!({"a": "{x}"}),
            &bad,
            AggregationMode::Array,
            true,
            &mut Vec::new()
        )
        .is_err());

        assert!(parse_template_text("invalid json {{")
            .unwrap_err()
            .to_string()
            .starts_with("Invalid template JSON: "));
        assert_eq!(
            AggregationMode::parse("ARRAY").unwrap_err().to_string(),
            "Invalid aggregation_mode: ARRAY. Must be 'array', 'single', or 'nested'"
        );
    }

    #[test]
    fn keys_are_never_substituted_and_pretty_has_no_compact_artifacts() {
        let rows = rows_of(json!({"{name}": "{name}"}));
        assert_eq!(rows[0], json!({"{name}": "Alice"}));
        let (compact, _) = write(&sample(), json!({"n": "{name}"}), AggregationMode::Array, false);
        assert!(!compact.contains("\n  "));
        let (pretty, _) = write(&sample(), json!({"n": "{name}"}), AggregationMode::Array, true);
        assert!(pretty.starts_with("[\n  {\n    \"n\": \"Alice\"\n  },"));
    }
}
