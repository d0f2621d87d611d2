//! The custom SQL template language of `sql/generate-custom-to-text` (operations.md §9.5): one
//! statement per row, rendered in a single pass over the tokenized template so inserted values are
//! never re-scanned, with string-literal context, wildcards, defaults and type hints.

use super::params::ColumnMapping;
use super::placeholder::{tokenize, Converted, Placeholder, Segment};
use super::sql::{push_doubled_quotes, write_sql_file_header, AutoIncrement};
use super::OpError;
use crate::table::{Cell, RowSource, Table};
use std::io::Write;

/// Curl users often quote the whole template: strips one outer pair of `"` or `'` (api §7.5.4).
pub fn strip_outer_quotes(template: &str) -> &str {
    let b = template.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        &template[1..template.len() - 1]
    } else {
        template
    }
}

/// Where a placeholder's value comes from in every row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Column(usize),
    Counter,
    Absent,
}

#[derive(Debug, Clone)]
enum Token {
    Literal {
        text: String,
        quotes: usize,
    },
    Slot(usize),
    /// `{current_timestamp}` exactly.
    CurrentTimestamp,
}

#[derive(Debug, Clone)]
struct Slot {
    placeholder: Placeholder,
    source: Source,
}

/// A compiled template bound to a table's columns.
#[derive(Debug, Clone)]
pub struct CustomSqlGenerator {
    tokens: Vec<Token>,
    slots: Vec<Slot>,
    counter: Option<i64>,
}

impl CustomSqlGenerator {
    /// Compiles `template` (already quote-stripped) against `columns`. Every mapped sheet column must
    /// exist (422 `Column '{c}' not found in data`, IMPROVE over 400).
    pub fn new(
        template: &str,
        mapping: &ColumnMapping,
        columns: &[String],
        auto: &AutoIncrement,
    ) -> Result<CustomSqlGenerator, OpError> {
        let missing: Vec<&str> = mapping
            .iter()
            .map(|(_, c)| c.as_str())
            .filter(|c| !columns.iter().any(|have| have == c))
            .collect();
        if let Some(first) = missing.first() {
            return Err(OpError::validation_with(
                format!("Column '{first}' not found in data"),
                serde_json::json!({ "missing_columns": missing, "available_columns": columns }),
            ));
        }
        let source_of = |name: &str| -> Source {
            if auto.enabled && (name == "auto_id" || name == auto.column_name) {
                return Source::Counter;
            }
            mapping
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, col)| columns.iter().position(|c| c == col))
                .map_or(Source::Absent, Source::Column)
        };

        let mut slots: Vec<Slot> = Vec::new();
        let mut slot_text: Vec<&str> = Vec::new();
        let mut tokens = Vec::new();
        for seg in tokenize(template) {
            match seg {
                Segment::Literal(l) => {
                    tokens.push(Token::Literal { text: l.to_string(), quotes: count_quotes(l) })
                }
                Segment::Placeholder("current_timestamp") => tokens.push(Token::CurrentTimestamp),
                Segment::Placeholder(p) => {
                    let idx = match slot_text.iter().position(|s| *s == p) {
                        Some(i) => i,
                        None => {
                            let placeholder = Placeholder::parse(p, true);
                            let source = source_of(&placeholder.name);
                            slots.push(Slot { placeholder, source });
                            slot_text.push(p);
                            slots.len() - 1
                        }
                    };
                    if slots[idx].placeholder.name == "current_timestamp" {
                        // Skipped by the reference and not matched by its final pass: stays verbatim.
                        let text = format!("{{{p}}}");
                        tokens.push(Token::Literal { quotes: count_quotes(&text), text });
                    } else {
                        tokens.push(Token::Slot(idx));
                    }
                }
            }
        }
        Ok(CustomSqlGenerator { tokens, slots, counter: auto.enabled.then_some(auto.start_value) })
    }

    /// Appends the statement for one row (no line break) and advances the counter.
    pub fn render_row(&mut self, row: &[Cell], out: &mut String) {
        let counter_cell = self.counter.map(Cell::Int);
        let mut quotes = 0usize;
        for token in &self.tokens {
            match token {
                Token::Literal { text, quotes: q } => {
                    out.push_str(text);
                    quotes += q;
                }
                Token::CurrentTimestamp => out.push_str("CURRENT_TIMESTAMP"),
                Token::Slot(i) => {
                    let slot = &self.slots[*i];
                    let value = match slot.source {
                        Source::Column(c) => Some(row.get(c).unwrap_or(&Cell::Missing)),
                        Source::Counter => counter_cell.as_ref(),
                        Source::Absent => None,
                    };
                    let start = out.len();
                    render_occurrence(&slot.placeholder, value, quotes % 2 == 1, out);
                    quotes += count_quotes(&out[start..]);
                }
            }
        }
        if let Some(c) = self.counter.as_mut() {
            *c = c.saturating_add(1);
        }
    }

    /// One row as a new string.
    pub fn render_row_string(&mut self, row: &[Cell]) -> String {
        let mut s = String::new();
        self.render_row(row, &mut s);
        s
    }
}

fn count_quotes(s: &str) -> usize {
    s.bytes().filter(|&b| b == b'\'').count()
}

/// §9.5.4: an odd number of single quotes before the occurrence means it sits inside a literal
/// (an escaped `''` pair never changes the parity).
pub fn inside_literal(before: &str) -> bool {
    count_quotes(before) % 2 == 1
}

fn push_quoted(out: &mut String, text: &str, prefix: &str, suffix: &str) {
    out.push('\'');
    out.push_str(prefix);
    push_doubled_quotes(out, text);
    out.push_str(suffix);
    out.push('\'');
}

/// §9.5.3: renders one occurrence of `ph` with `value` (None = unmapped) into `out`. An empty cell under
/// a placeholder without a (known) type hint is no value, like a missing one: `NULL`, or the default.
pub fn render_occurrence(ph: &Placeholder, value: Option<&Cell>, in_literal: bool, out: &mut String) {
    let converted = match value {
        Some(Cell::Text(s)) if s.is_empty() && ph.hint.is_none() => ph.value_of(None),
        _ => ph.value_of(value),
    };
    if in_literal {
        match &converted {
            Converted::Null => push_doubled_quotes(out, ph.default.as_deref().unwrap_or("")),
            Converted::Text(s) | Converted::Unconverted(s) => push_doubled_quotes(out, s),
            Converted::Bool(b) => out.push_str(if *b { "TRUE" } else { "FALSE" }),
            Converted::Float(f) if !f.is_finite() => {}
            other => out.push_str(&other.python_text()),
        }
        return;
    }
    match &converted {
        Converted::Null => out.push_str("NULL"),
        Converted::Bool(b) => out.push_str(if *b { "TRUE" } else { "FALSE" }),
        Converted::Float(f) if !f.is_finite() => out.push_str("NULL"),
        Converted::Int(_) | Converted::BigInt(_) | Converted::Float(_) => {
            out.push_str(&converted.python_text())
        }
        // A failed int/float conversion stays a quoted literal (IMPROVE: the reference pasted it raw).
        Converted::Text(s) | Converted::Unconverted(s) => push_quoted(out, s, &ph.prefix, &ph.suffix),
    }
}

/// The statements for a whole table (one per row).
pub fn generate_custom_sql(
    table: &Table,
    template: &str,
    mapping: &ColumnMapping,
    auto: &AutoIncrement,
) -> Result<Vec<String>, OpError> {
    let mut gen = CustomSqlGenerator::new(template, mapping, &table.columns, auto)?;
    Ok(table.rows.iter().map(|r| gen.render_row_string(r)).collect())
}

/// Streams the §9.6 file (`rows` must yield exactly `row_count` rows). Returns the statement count.
pub fn write_custom_sql_rows<W, S>(
    gen: &mut CustomSqlGenerator,
    rows: &mut S,
    row_count: usize,
    generated_at: &str,
    out: &mut W,
) -> Result<usize, OpError>
where
    W: Write,
    S: RowSource + ?Sized,
{
    write_sql_file_header(out, generated_at, row_count)?;
    let mut line = String::new();
    while let Some(row) = rows.next_row()? {
        line.clear();
        gen.render_row(row, &mut line);
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    Ok(row_count)
}

/// [`write_custom_sql_rows`] over a whole table.
pub fn write_custom_sql_file<W: Write>(
    table: &Table,
    template: &str,
    mapping: &ColumnMapping,
    auto: &AutoIncrement,
    generated_at: &str,
    out: &mut W,
) -> Result<usize, OpError> {
    let mut gen = CustomSqlGenerator::new(template, mapping, &table.columns, auto)?;
    let mut rows = table.rows.iter();
    write_custom_sql_rows(&mut gen, &mut rows, table.row_count(), generated_at, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(pairs: &[(&str, &str)]) -> ColumnMapping {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    /// The §13.7 table: all text except the missing e-mail of row 2.
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

    fn all_mapping() -> ColumnMapping {
        mapping(&[
            ("id", "ID"),
            ("name", "Name"),
            ("age", "Age"),
            ("score", "Score"),
            ("active", "Active"),
            ("email", "Email"),
            ("created", "CreatedAt"),
        ])
    }

    fn render(template: &str) -> Vec<String> {
        generate_custom_sql(&sample(), template, &all_mapping(), &AutoIncrement::default()).unwrap()
    }

    fn auto(v: serde_json::Value) -> AutoIncrement {
        AutoIncrement::from_json(Some(&v)).unwrap()
    }

    #[test]
    fn reference_cases_13_7() {
        let cases: &[(&str, [&str; 3])] = &[
            ("VALUES ({id:int}, {name})", ["VALUES (1, 'Alice')", "VALUES (2, 'Bob')", "VALUES (3, 'Charlie')"]),
            ("score = {score:float}", ["score = 95.5", "score = 88.0", "score = 92.3"]),
            ("active = {active:bool}", ["active = TRUE", "active = FALSE", "active = TRUE"]),
            ("{created:datetime}", ["'2024-01-15'", "'2024-02-20'", "'2024-03-10'"]),
            ("{email|no-email@example.com}", ["'alice@test.com'", "'no-email@example.com'", "'charlie@test.com'"]),
            ("VALUES ({id:int}, {email})", ["VALUES (1, 'alice@test.com')", "VALUES (2, NULL)", "VALUES (3, 'charlie@test.com')"]),
            (
                "VALUES ({id:int}, {name}, {age:int}, {score:float}, {active:bool})",
                ["VALUES (1, 'Alice', 25, 95.5, TRUE)", "VALUES (2, 'Bob', 30, 88.0, FALSE)", "VALUES (3, 'Charlie', 35, 92.3, TRUE)"],
            ),
            (
                "UPDATE u SET age = {age:int}, score = {score:float}, active = {active:bool}, email = {email|unknown@example.com} WHERE id = {id:int};",
                [
                    "UPDATE u SET age = 25, score = 95.5, active = TRUE, email = 'alice@test.com' WHERE id = 1;",
                    "UPDATE u SET age = 30, score = 88.0, active = FALSE, email = 'unknown@example.com' WHERE id = 2;",
                    "UPDATE u SET age = 35, score = 92.3, active = TRUE, email = 'charlie@test.com' WHERE id = 3;",
                ],
            ),
            ("t = {current_timestamp}", ["t = CURRENT_TIMESTAMP", "t = CURRENT_TIMESTAMP", "t = CURRENT_TIMESTAMP"]),
        ];
        for (template, want) in cases {
            assert_eq!(render(template), want.to_vec(), "{template}");
        }
    }

    #[test]
    fn quotes_in_names_are_doubled() {
        let mut t = sample();
        t.rows[0][1] = Cell::text("O'Brien");
        t.rows[1][1] = Cell::text("D'Angelo");
        t.rows[2][1] = Cell::text("Jane's Name");
        let out = generate_custom_sql(
            &t,
            "VALUES ({id:int}, {name}, {score:float})",
            &all_mapping(),
            &AutoIncrement::default(),
        )
        .unwrap();
        assert_eq!(out[0], "VALUES (1, 'O''Brien', 95.5)");
        assert_eq!(out[1], "VALUES (2, 'D''Angelo', 88.0)");
        assert_eq!(out[2], "VALUES (3, 'Jane''s Name', 92.3)");
    }

    #[test]
    fn auto_increment_counters() {
        let m = mapping(&[("col1", "Name"), ("col2", "Email")]);
        let cases = [
            (
                json!({"enabled": true, "column_name": "id", "start_value": 1}),
                "VALUES ({id}, {col1})",
                ["VALUES (1, 'Alice')", "VALUES (2, 'Bob')", "VALUES (3, 'Charlie')"],
            ),
            (
                json!({"enabled": true, "column_name": "user_id", "start_value": 100, "increment_type": "mysql_auto_increment"}),
                "{user_id}",
                ["100", "101", "102"],
            ),
            (json!({"enabled": true, "column_name": "id", "start_value": 1}), "{auto_id}", ["1", "2", "3"]),
            (
                json!({"enabled": true, "columnName": "id", "incrementType": "SERIAL", "startValue": 10, "sequenceName": "id_seq"}),
                "{id}",
                ["10", "11", "12"],
            ),
            (
                json!({"enabled": true, "column_name": "user_id", "increment_type": "IDENTITY", "start_value": 100}),
                "{user_id}",
                ["100", "101", "102"],
            ),
            (json!({"enabled": true, "startValue": 0}), "{id}", ["0", "1", "2"]),
            (json!({"enabled": true, "startValue": null}), "{id}", ["1", "2", "3"]),
            (json!({"enabled": true, "startValue": "7"}), "{auto_id}-{id}", ["7-7", "8-8", "9-9"]),
            (
                json!({"enabled": true, "increment_type": "not-checked-here"}),
                "{id:string}",
                ["'1'", "'2'", "'3'"],
            ),
            (json!({"enabled": false}), "{auto_id} {id}", ["NULL NULL", "NULL NULL", "NULL NULL"]),
            (
                json!({"enabled": true, "startValue": 100}),
                "'{auto_id}' {col1}",
                ["'100' 'Alice'", "'101' 'Bob'", "'102' 'Charlie'"],
            ),
        ];
        for (cfg, template, want) in cases {
            let out = generate_custom_sql(&sample(), template, &m, &auto(cfg.clone())).unwrap();
            assert_eq!(out, want.to_vec(), "{cfg} {template}");
        }
        // The counter overrides a mapped placeholder of the same name.
        let m = mapping(&[("id", "Name")]);
        let out = generate_custom_sql(&sample(), "{id}", &m, &auto(json!({"enabled": true}))).unwrap();
        assert_eq!(out, vec!["1", "2", "3"]);
    }

    #[test]
    fn worked_example_9_5_6() {
        let t = Table {
            columns: vec!["Name".into(), "Qty".into(), "Note".into()],
            rows: vec![vec![Cell::text("Bo's"), Cell::text(""), Cell::text("")]],
        };
        let m = mapping(&[("nm", "Name"), ("qty", "Qty"), ("note", "Note")]);
        let template = "UPDATE stock SET id = {id}, label = 'item_{nm}', qty = {qty:int|0}, note = {note|n/a} WHERE name ILIKE {%nm%} AND ts < {current_timestamp};";
        let out = generate_custom_sql(
            &t,
            template,
            &m,
            &auto(json!({"enabled": true, "column_name": "id", "start_value": 7})),
        )
        .unwrap();
        assert_eq!(
            out,
            vec!["UPDATE stock SET id = 7, label = 'item_Bo''s', qty = 0, note = 'n/a' WHERE name ILIKE '%Bo''s%' AND ts < CURRENT_TIMESTAMP;"]
        );
    }

    /// (template, column values, expected statement)
    type Case = (&'static str, Vec<(&'static str, Cell)>, &'static str);

    fn one(template: &str, pairs: &[(&str, Cell)]) -> String {
        let t = Table {
            columns: pairs.iter().map(|(k, _)| k.to_string()).collect(),
            rows: vec![pairs.iter().map(|(_, v)| v.clone()).collect()],
        };
        let m: ColumnMapping = pairs.iter().map(|(k, _)| (k.to_string(), k.to_string())).collect();
        generate_custom_sql(&t, template, &m, &AutoIncrement::default()).unwrap().remove(0)
    }

    #[test]
    fn context_aware_rendering_13_8() {
        let foo = || Cell::text("foo");
        let cases: Vec<Case> = vec![
            (
                "INSERT INTO users (name, age) VALUES ({name}, {age:int})",
                vec![("name", Cell::text("Alice")), ("age", Cell::text("25"))],
                "INSERT INTO users (name, age) VALUES ('Alice', 25)",
            ),
            (
                "UPDATE users SET email = {email} WHERE id = {id:int}",
                vec![("email", Cell::Missing), ("id", Cell::text("42"))],
                "UPDATE users SET email = NULL WHERE id = 42",
            ),
            ("WHERE col ILIKE {%name:string%}", vec![("name", foo())], "WHERE col ILIKE '%foo%'"),
            ("LIKE {%name}", vec![("name", Cell::text("bar"))], "LIKE '%bar'"),
            ("LIKE {name%}", vec![("name", Cell::text("baz"))], "LIKE 'baz%'"),
            ("ILIKE {%name:string%}", vec![("name", Cell::Missing)], "ILIKE NULL"),
            ("ILIKE {%name:string%|unknown}", vec![("name", Cell::Missing)], "ILIKE '%unknown%'"),
            ("ILIKE {%name:string%}", vec![("name", Cell::text("O'Brien"))], "ILIKE '%O''Brien%'"),
            ("SET col = {val:string}", vec![("val", foo())], "SET col = 'foo'"),
            ("SET col = 'prefix_{val:string}'", vec![("val", foo())], "SET col = 'prefix_foo'"),
            (
                "SET a = {val:string}, b = 'tag_{val:string}'",
                vec![("val", Cell::text("bar"))],
                "SET a = 'bar', b = 'tag_bar'",
            ),
            (
                "SET b = 'sample_{val:string}'",
                vec![("val", Cell::text("O'Brien"))],
                "SET b = 'sample_O''Brien'",
            ),
            ("SET b = {val:string}", vec![("val", Cell::text("O'Brien"))], "SET b = 'O''Brien'"),
            ("SET b = {val:string}", vec![("val", Cell::Missing)], "SET b = NULL"),
            ("SET b = 'prefix_{val:string}'", vec![("val", Cell::Missing)], "SET b = 'prefix_'"),
            (
                "SET b = 'prefix_{val:string|unknown}'",
                vec![("val", Cell::Missing)],
                "SET b = 'prefix_unknown'",
            ),
            ("SET b = 'prefix_{val:string|N/A}'", vec![("val", Cell::Missing)], "SET b = 'prefix_N/A'"),
            ("SET b = {%val:string%}", vec![("val", foo())], "SET b = '%foo%'"),
            (
                "'{first:string}_{second:string}'",
                vec![("first", Cell::text("hello")), ("second", Cell::text("world"))],
                "'hello_world'",
            ),
            ("x = 'pre'' {v}", vec![("v", Cell::text("it's"))], "x = 'pre'' it''s"),
            ("{v:string}", vec![("v", Cell::Int(99))], "'99'"),
            ("{v}", vec![("v", Cell::Int(42))], "42"),
            ("{v:float}", vec![("v", Cell::text("1e20"))], "1e+20"),
            ("{v:int}", vec![("v", Cell::text("1e20"))], "100000000000000000000"),
            ("'%{v}%'", vec![("v", Cell::text("50%"))], "'%50%%'"),
        ];
        for (template, values, want) in cases {
            assert_eq!(one(template, &values), want, "{template}");
        }
        let full = one(
            "UPDATE t SET a = {loc:string}, b = 'sample_{loc:string}' WHERE name ILIKE {%name:string%};",
            &[("loc", Cell::text("Sin respuesta")), ("name", Cell::text("open"))],
        );
        assert_eq!(
            full,
            "UPDATE t SET a = 'Sin respuesta', b = 'sample_Sin respuesta' WHERE name ILIKE '%open%';"
        );
        let orders = one(
            "INSERT INTO orders VALUES ({order_id:int}, {customer_id:int}, {total:float}, {status|pending}, 'Order notes with {notes}')",
            &[("order_id", Cell::text("123")), ("customer_id", Cell::text("456")), ("total", Cell::text("99.99")),
              ("status", Cell::Missing), ("notes", Cell::text("'quotes'"))],
        );
        assert_eq!(
            orders,
            "INSERT INTO orders VALUES (123, 456, 99.99, 'pending', 'Order notes with ''quotes''')"
        );
    }

    #[test]
    fn defects_9_5_7_are_fixed() {
        let cases: Vec<Case> = vec![
            // Failed numeric conversions become quoted literals, never raw SQL.
            ("qty = {qty:int}", vec![("qty", Cell::text("it's 3rd"))], "qty = 'it''s 3rd'"),
            ("amt = {amt:float}", vec![("amt", Cell::text("$1,234.56"))], "amt = '$1,234.56'"),
            (
                "x = {q:int}; --",
                vec![("q", Cell::text("1; DROP TABLE users"))],
                "x = '1; DROP TABLE users'; --",
            ),
            ("'n_{q:int}'", vec![("q", Cell::text("x'y"))], "'n_x''y'"),
            ("{f:float} {g:int}", vec![("f", Cell::text("inf")), ("g", Cell::text("nan"))], "NULL NULL"),
            // Values are inserted once; later placeholders inside them are not substituted.
            ("{a} {b}", vec![("a", Cell::text("{b}")), ("b", Cell::text("B"))], "'{b}' 'B'"),
            (
                "{a} {current_timestamp}",
                vec![("a", Cell::text("{current_timestamp}"))],
                "'{current_timestamp}' CURRENT_TIMESTAMP",
            ),
            ("{current_timestamp:int} {a}", vec![("a", Cell::text("x"))], "{current_timestamp:int} 'x'"),
            ("{a:int|0} {a:int|1}", vec![("a", Cell::text(""))], "0 1"),
            ("{} {a}", vec![("a", Cell::text("é ✓ 名前"))], "{} 'é ✓ 名前'"),
            ("{unmapped} {a}", vec![("a", Cell::text("x"))], "NULL 'x'"),
            ("{a|}", vec![("a", Cell::text(""))], "''"),
            ("{a:int|}", vec![("a", Cell::Missing)], "NULL"),
            ("{a:bool}", vec![("a", Cell::Missing)], "NULL"),
            ("{a:bool}", vec![("a", Cell::text(""))], "FALSE"),
            // An empty cell under an untyped placeholder is no value; typed ones keep their rules.
            ("{a}", vec![("a", Cell::text(""))], "NULL"),
            ("{a:other}", vec![("a", Cell::text(""))], "NULL"),
            ("{%a%}", vec![("a", Cell::text(""))], "NULL"),
            ("x = '{a}'", vec![("a", Cell::text(""))], "x = ''"),
            ("{a|n/a}", vec![("a", Cell::text(""))], "'n/a'"),
            ("{a:string} {a:datetime}", vec![("a", Cell::text(""))], "'' ''"),
            ("back\\slash {a}", vec![("a", Cell::text("c:\\dir\\"))], "back\\slash 'c:\\dir\\'"),
        ];
        for (template, values, want) in cases {
            assert_eq!(one(template, &values), want, "{template}");
        }
    }

    #[test]
    fn literal_detection() {
        let cases = [
            ("", false),
            ("WHERE col = '", true),
            ("'foo'", false),
            ("WHERE col = 'pre''", true),
            ("status = 'sample_", true),
            ("a = 'x''y' AND b = ", false),
        ];
        for (before, want) in cases {
            assert_eq!(inside_literal(before), want, "{before}");
        }
    }

    #[test]
    fn outer_quote_stripping() {
        let cases = [
            ("\"SELECT {a}\"", "SELECT {a}"),
            ("'SELECT {a}'", "SELECT {a}"),
            ("'x = 'y''", "x = 'y'"),
            ("\"mixed'", "\"mixed'"),
            ("'", "'"),
            ("''", ""),
            ("plain", "plain"),
        ];
        for (input, want) in cases {
            assert_eq!(strip_outer_quotes(input), want, "{input}");
        }
    }

    #[test]
    fn mapped_columns_must_exist() {
        let m = mapping(&[("a", "Name"), ("b", "Nope"), ("c", "Gone")]);
        let e = generate_custom_sql(&sample(), "{a}", &m, &AutoIncrement::default()).unwrap_err();
        assert_eq!(e.status_code(), 422);
        assert_eq!(e.to_string(), "Column 'Nope' not found in data");
        assert_eq!(e.details().unwrap()["missing_columns"], json!(["Nope", "Gone"]));
    }

    #[test]
    fn custom_file_format() {
        let mut buf = Vec::new();
        let n = write_custom_sql_file(
            &sample(),
            "SELECT {id:int};",
            &all_mapping(),
            &AutoIncrement::default(),
            "T",
            &mut buf,
        )
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "-- Generated by Pycelize\n-- Generated at: T\n-- Total statements: 3\n\nSELECT 1;\nSELECT 2;\nSELECT 3;\n"
        );
    }
}
