//! The placeholder syntax shared by the SQL and JSON template languages (operations.md §9.5.1–§9.5.3):
//! finding `{…}` occurrences, parsing name / type hint / default / wildcards, and converting a cell
//! by its type hint.

use crate::table::parse::{parse_number_lenient, python_float_text};
use crate::table::Cell;
use std::borrow::Cow;

/// One piece of a tokenized template string.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment<'t> {
    Literal(&'t str),
    /// The text between the braces (P), never empty.
    Placeholder(&'t str),
}

/// Splits `template` into literals and placeholders: `{` + one or more non-`}` characters + `}`,
/// leftmost first (so `{{a}` is the placeholder `{a`), and `{}` is literal text.
pub fn tokenize(template: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let bytes = template.as_bytes();
    let mut literal_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' {
            if let Some(rel) = template[i + 1..].find('}') {
                if rel > 0 {
                    if literal_start < i {
                        out.push(Segment::Literal(&template[literal_start..i]));
                    }
                    out.push(Segment::Placeholder(&template[i + 1..i + 1 + rel]));
                    i = i + 1 + rel + 1;
                    literal_start = i;
                    continue;
                }
            } else {
                break; // no closing brace anywhere after: the rest is literal
            }
        }
        i += 1;
    }
    if literal_start < template.len() {
        out.push(Segment::Literal(&template[literal_start..]));
    }
    out
}

/// Every placeholder text (P) in order of appearance, repeats included.
pub fn find_placeholders(template: &str) -> Vec<&str> {
    tokenize(template)
        .into_iter()
        .filter_map(|s| match s {
            Segment::Placeholder(p) => Some(p),
            Segment::Literal(_) => None,
        })
        .collect()
}

/// A type hint; unknown hints are `None` on [`Placeholder::hint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeHint {
    Int,
    Float,
    Bool,
    DateTime,
    /// `string`, `str`, `text`.
    Text,
}

impl TypeHint {
    /// Case-sensitive, as in the reference.
    pub fn from_hint(text: &str) -> Option<TypeHint> {
        match text {
            "int" => Some(TypeHint::Int),
            "float" => Some(TypeHint::Float),
            "bool" => Some(TypeHint::Bool),
            "datetime" => Some(TypeHint::DateTime),
            "string" | "str" | "text" => Some(TypeHint::Text),
            _ => None,
        }
    }
}

/// A parsed placeholder text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub name: String,
    /// The hint as written (kept even when unknown).
    pub hint_text: Option<String>,
    pub hint: Option<TypeHint>,
    pub default: Option<String>,
    pub prefix: String,
    pub suffix: String,
}

fn is_wildcard(c: char) -> bool {
    c == '%' || c == '_'
}

/// §9.5.1 step 1: removes the leading and trailing `%`/`_` runs. Returns (rest, prefix, suffix);
/// the suffix is taken from the end of the part before the first `|`.
pub fn split_wildcards(p: &str) -> (String, String, String) {
    let rest = p.trim_start_matches(is_wildcard);
    let prefix = &p[..p.len() - rest.len()];
    let (base, default_part) = match rest.find('|') {
        Some(at) => (&rest[..at], Some(&rest[at..])),
        None => (rest, None),
    };
    let trimmed = base.trim_end_matches(is_wildcard);
    let suffix = &base[trimmed.len()..];
    let mut remaining = trimmed.to_string();
    if let Some(d) = default_part {
        remaining.push_str(d);
    }
    (remaining, prefix.to_string(), suffix.to_string())
}

impl Placeholder {
    /// Parses P; `wildcards` enables §9.5.1 step 1 (SQL only).
    pub fn parse(p: &str, wildcards: bool) -> Placeholder {
        let (rest, prefix, suffix) =
            if wildcards { split_wildcards(p) } else { (p.to_string(), String::new(), String::new()) };
        let (head, default) = match rest.find('|') {
            Some(at) => (&rest[..at], Some(rest[at + 1..].trim().to_string())),
            None => (rest.as_str(), None),
        };
        let (name, hint_text) = match head.find(':') {
            Some(at) => (head[..at].trim(), Some(head[at + 1..].trim().to_string())),
            None => (head.trim(), None),
        };
        let hint = hint_text.as_deref().and_then(TypeHint::from_hint);
        Placeholder { name: name.to_string(), hint_text, hint, default, prefix, suffix }
    }

    pub fn has_wildcards(&self) -> bool {
        !self.prefix.is_empty() || !self.suffix.is_empty()
    }

    /// §9.5.3 step 1: the value to convert, or `None` when the result is "no value" (NULL).
    /// Missing/absent values, and empty text when a default exists, take the default.
    pub fn resolve<'a>(&'a self, value: Option<&'a Cell>) -> Option<Cow<'a, Cell>> {
        let needs_default = match value {
            None | Some(Cell::Missing) => true,
            Some(Cell::Text(s)) => s.is_empty() && self.default.is_some(),
            Some(_) => false,
        };
        if needs_default {
            self.default.as_ref().map(|d| Cow::Owned(Cell::Text(d.clone())))
        } else {
            value.map(Cow::Borrowed)
        }
    }

    /// Step 1 plus step 2: the converted value of this occurrence.
    pub fn value_of(&self, value: Option<&Cell>) -> Converted {
        match self.resolve(value) {
            None => Converted::Null,
            Some(cell) => convert(&cell, self.hint),
        }
    }
}

/// The outcome of converting a value by its type hint (§9.5.3 step 2).
#[derive(Debug, Clone, PartialEq)]
pub enum Converted {
    /// No value: `NULL` in SQL, `null` in JSON.
    Null,
    Int(i64),
    /// An integral value beyond the 64-bit range (Python ints are unbounded).
    BigInt(f64),
    Float(f64),
    Bool(bool),
    Text(String),
    /// An `int`/`float` conversion failed; the original text (never emitted raw into SQL).
    Unconverted(String),
}

fn int_from_float(f: f64) -> Converted {
    if !f.is_finite() {
        return Converted::Null;
    }
    let t = f.trunc();
    // 2^63: the exact bounds of i64 as floats.
    if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&t) {
        Converted::Int(t as i64)
    } else {
        Converted::BigInt(t)
    }
}

fn float_value(f: f64) -> Converted {
    if f.is_finite() {
        Converted::Float(f)
    } else {
        Converted::Null
    }
}

/// Python `float()` accepts `nan` (any case, optional sign); the conversion maps it to no value.
fn is_nan_text(s: &str) -> bool {
    let t = s.trim();
    let t = t.strip_prefix(['+', '-']).unwrap_or(t);
    t.eq_ignore_ascii_case("nan")
}

/// Template `:bool` truth: the lower-cased text is `true`, `1`, `yes` or `on` (no trimming).
pub fn template_truthy(text: &str) -> bool {
    matches!(text.to_lowercase().as_str(), "true" | "1" | "yes" | "on")
}

/// Converts one (present) value by hint.
pub fn convert(cell: &Cell, hint: Option<TypeHint>) -> Converted {
    match hint {
        Some(TypeHint::Int) => match cell {
            Cell::Missing => Converted::Null,
            Cell::Text(s) if s.is_empty() => Converted::Null,
            Cell::Text(s) if is_nan_text(s) => Converted::Null,
            Cell::Text(s) => match parse_number_lenient(s) {
                Some(f) => int_from_float(f),
                None => Converted::Unconverted(s.clone()),
            },
            Cell::Int(i) => Converted::Int(*i),
            Cell::Float(f) => int_from_float(*f),
            Cell::Bool(b) => Converted::Int(i64::from(*b)),
        },
        Some(TypeHint::Float) => match cell {
            Cell::Missing => Converted::Null,
            Cell::Text(s) if s.is_empty() => Converted::Null,
            Cell::Text(s) if is_nan_text(s) => Converted::Null,
            Cell::Text(s) => match parse_number_lenient(s) {
                Some(f) => float_value(f),
                None => Converted::Unconverted(s.clone()),
            },
            Cell::Int(i) => Converted::Float(*i as f64),
            Cell::Float(f) => float_value(*f),
            Cell::Bool(b) => Converted::Float(if *b { 1.0 } else { 0.0 }),
        },
        Some(TypeHint::Bool) => match cell {
            Cell::Missing => Converted::Null,
            Cell::Text(s) => Converted::Bool(template_truthy(s)),
            Cell::Int(i) => Converted::Bool(*i != 0),
            Cell::Float(f) => Converted::Bool(*f != 0.0),
            Cell::Bool(b) => Converted::Bool(*b),
        },
        Some(TypeHint::DateTime) | Some(TypeHint::Text) => match cell {
            Cell::Missing => Converted::Null,
            other => Converted::Text(other.as_text().into_owned()),
        },
        None => match cell {
            Cell::Missing => Converted::Null,
            Cell::Text(s) => Converted::Text(s.clone()),
            Cell::Int(i) => Converted::Int(*i),
            Cell::Float(f) => Converted::Float(*f),
            Cell::Bool(b) => Converted::Bool(*b),
        },
    }
}

impl Converted {
    /// Python `str()` of the value (mixed JSON strings, non-SQL rendering); `Null` → `""`.
    pub fn python_text(&self) -> Cow<'_, str> {
        match self {
            Converted::Null => Cow::Borrowed(""),
            Converted::Int(i) => Cow::Owned(i.to_string()),
            Converted::BigInt(f) => Cow::Owned(format!("{f:.0}")),
            Converted::Float(f) => Cow::Owned(python_float_text(*f)),
            Converted::Bool(true) => Cow::Borrowed("True"),
            Converted::Bool(false) => Cow::Borrowed("False"),
            Converted::Text(s) | Converted::Unconverted(s) => Cow::Borrowed(s.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Cell {
        Cell::text(s)
    }

    #[test]
    fn tokenize_follows_the_leftmost_brace_rule() {
        use Segment::*;
        let cases: Vec<(&str, Vec<Segment>)> = vec![
            ("plain", vec![Literal("plain")]),
            ("{a}", vec![Placeholder("a")]),
            (
                "x {a} y {b:int|0}",
                vec![Literal("x "), Placeholder("a"), Literal(" y "), Placeholder("b:int|0")],
            ),
            ("{}{a}", vec![Literal("{}"), Placeholder("a")]),
            ("{{a}", vec![Placeholder("{a")]),
            ("{a}{b}", vec![Placeholder("a"), Placeholder("b")]),
            ("open { no close", vec![Literal("open { no close")]),
            ("}{x}}", vec![Literal("}"), Placeholder("x"), Literal("}")]),
            ("ünï {名前}", vec![Literal("ünï "), Placeholder("名前")]),
        ];
        for (input, want) in cases {
            assert_eq!(tokenize(input), want, "{input}");
        }
    }

    #[test]
    fn finds_placeholders_in_order() {
        assert_eq!(
            find_placeholders("Hello {name}, your age is {age:int} and email is {email|default}"),
            vec!["name", "age:int", "email|default"]
        );
        assert!(find_placeholders("plain text").is_empty());
    }

    #[test]
    fn parses_name_type_default() {
        let cases = [
            ("name", "name", None, None),
            ("age:int", "age", Some("int"), None),
            ("email|default@example.com", "email", None, Some("default@example.com")),
            ("count:int|0", "count", Some("int"), Some("0")),
            ("x|", "x", None, Some("")),
            (" a : float | 1.5 ", "a", Some("float"), Some("1.5")),
            ("u|http://x|y", "u", None, Some("http://x|y")),
            ("d:datetime|2024-01-01 10:00", "d", Some("datetime"), Some("2024-01-01 10:00")),
        ];
        for (p, name, hint, default) in cases {
            let ph = Placeholder::parse(p, false);
            assert_eq!(ph.name, name, "{p}");
            assert_eq!(ph.hint_text.as_deref(), hint, "{p}");
            assert_eq!(ph.default.as_deref(), default, "{p}");
        }
        assert_eq!(Placeholder::parse("a:INT", false).hint, None); // case-sensitive
        assert_eq!(Placeholder::parse("a:str", false).hint, Some(TypeHint::Text));
    }

    #[test]
    fn wildcard_extraction() {
        let cases = [
            ("%name:string%", "name:string", "%", "%"),
            ("%name", "name", "%", ""),
            ("name%", "name", "", "%"),
            ("name:string", "name:string", "", ""),
            ("%name:string%|N/A", "name:string|N/A", "%", "%"),
            ("_name_", "name", "_", "_"),
            ("%_name_%", "name", "%_", "_%"),
            ("first_name", "first_name", "", ""),
            ("%x|a_%", "x|a_%", "%", ""),
        ];
        for (p, rest, prefix, suffix) in cases {
            assert_eq!(split_wildcards(p), (rest.to_string(), prefix.to_string(), suffix.to_string()), "{p}");
        }
        let ph = Placeholder::parse("_id", true);
        assert_eq!((ph.name.as_str(), ph.prefix.as_str()), ("id", "_"));
        assert_eq!(Placeholder::parse("_id", false).name, "_id");
    }

    #[test]
    fn int_and_float_conversion() {
        let int = Some(TypeHint::Int);
        let float = Some(TypeHint::Float);
        let cases = [
            (t("42"), int, Converted::Int(42)),
            (t("42.7"), int, Converted::Int(42)),
            (t("-42.7"), int, Converted::Int(-42)),
            (t("1e3"), int, Converted::Int(1000)),
            (t(" 1_000 "), int, Converted::Int(1000)),
            (Cell::Int(42), int, Converted::Int(42)),
            (t(""), int, Converted::Null),
            (Cell::Missing, int, Converted::Null),
            (t("inf"), int, Converted::Null),
            (t("1e20"), int, Converted::BigInt(1e20)),
            (t("it's 3rd"), int, Converted::Unconverted("it's 3rd".into())),
            (t("$1,234.56"), int, Converted::Unconverted("$1,234.56".into())),
            (t("42.5"), float, Converted::Float(42.5)),
            (t("42"), float, Converted::Float(42.0)),
            (Cell::Int(42), float, Converted::Float(42.0)),
            (t(""), float, Converted::Null),
            (t("nan"), float, Converted::Null),
            (t("-NaN"), int, Converted::Null),
            (t("-inf"), float, Converted::Null),
            (t("abc"), float, Converted::Unconverted("abc".into())),
        ];
        for (cell, hint, want) in cases {
            assert_eq!(convert(&cell, hint), want, "{cell:?} {hint:?}");
        }
    }

    #[test]
    fn bool_text_and_unhinted_conversion() {
        let b = Some(TypeHint::Bool);
        for s in ["true", "True", "1", "yes", "ON"] {
            assert_eq!(convert(&t(s), b), Converted::Bool(true), "{s}");
        }
        for s in ["false", "False", "0", "no", "", "abc", " yes"] {
            assert_eq!(convert(&t(s), b), Converted::Bool(false), "{s}");
        }
        assert_eq!(convert(&Cell::Int(1), b), Converted::Bool(true));
        assert_eq!(convert(&Cell::Int(0), b), Converted::Bool(false));
        assert_eq!(convert(&t("2024-01-15"), Some(TypeHint::DateTime)), Converted::Text("2024-01-15".into()));
        assert_eq!(convert(&Cell::Int(99), Some(TypeHint::Text)), Converted::Text("99".into()));
        assert_eq!(convert(&t("hello"), None), Converted::Text("hello".into()));
        assert_eq!(convert(&Cell::Int(42), None), Converted::Int(42));
    }

    #[test]
    fn defaults_fill_missing_and_empty() {
        let with_default = Placeholder::parse("email|no-email", false);
        let plain = Placeholder::parse("email", false);
        assert_eq!(with_default.value_of(None), Converted::Text("no-email".into()));
        assert_eq!(with_default.value_of(Some(&Cell::Missing)), Converted::Text("no-email".into()));
        assert_eq!(with_default.value_of(Some(&t(""))), Converted::Text("no-email".into()));
        assert_eq!(with_default.value_of(Some(&t("a@b"))), Converted::Text("a@b".into()));
        assert_eq!(plain.value_of(Some(&Cell::Missing)), Converted::Null);
        assert_eq!(plain.value_of(Some(&t(""))), Converted::Text(String::new()));
        let count = Placeholder::parse("qty:int|0", false);
        assert_eq!(count.value_of(Some(&t(""))), Converted::Int(0));
    }
}
