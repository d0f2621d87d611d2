//! Parameter extraction from free text (chatbot.md §5.2: columns, flags, table, dialect, bind file,
//! conditions, renames, output format) and the `key: value` parameter syntax applied to a pending
//! workflow (§6.4).

use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::catalog::{self, ArgType};
use super::state::Step;

/// Compiles a constant pattern once. The patterns are literals exercised by the unit tests; a pattern that
/// failed to compile would only disable its extraction (never panic on a request).
fn cached(cell: &'static OnceLock<Option<Regex>>, pattern: &str) -> Option<&'static Regex> {
    cell.get_or_init(|| Regex::new(pattern).ok()).as_ref()
}

const QUOTES: [char; 3] = ['"', '\'', '`'];

// ---------------------------------------------------------------------------------------------------------
// Column lists
// ---------------------------------------------------------------------------------------------------------

/// §5.2 column list: rule 1 (`column(s)` + `:`/whitespace + a run of letters, digits, `_`, `,`, spaces —
/// quotes also allowed so quoted names survive), else rule 2 (`extract|get|select` + text up to ` from`,
/// ` column` or the end), each followed by the clean-up. Works on the original-case text.
pub fn extract_columns(text: &str) -> Vec<String> {
    static RULE1: OnceLock<Option<Regex>> = OnceLock::new();
    static RULE2: OnceLock<Option<Regex>> = OnceLock::new();
    if let Some(re) = cached(&RULE1, r#"(?i)columns?[:\s]\s*([A-Za-z0-9_,&\s"'`]+)"#) {
        if let Some(m) = re.captures(text).and_then(|c| c.get(1)) {
            let cols = clean_columns(m.as_str(), false);
            if !cols.is_empty() {
                return cols;
            }
        }
    }
    if let Some(re) = cached(&RULE2, r"(?i)\b(?:extract|get|select)\s+(.+?)(?:\s+from\b|\s+column|$)") {
        if let Some(m) = re.captures(text).and_then(|c| c.get(1)) {
            return clean_columns(m.as_str(), true);
        }
    }
    Vec::new()
}

/// Splits `s` on any of `separators` (case-insensitive) outside quotes.
fn split_outside_quotes(s: &str, separators: &[&str]) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let lower = s.to_lowercase();
    // Lower-casing can change byte lengths for some scripts; fall back to exact matching then.
    let haystack = if lower.len() == s.len() { lower.as_str() } else { s };
    let mut i = 0;
    while i < s.len() {
        let Some(c) = s[i..].chars().next() else { break };
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
        } else if QUOTES.contains(&c) {
            quote = Some(c);
        } else if let Some(sep) = separators.iter().find(|sep| haystack[i..].starts_with(*sep)) {
            parts.push(std::mem::take(&mut current));
            i += sep.len();
            continue;
        }
        current.push(c);
        i += c.len_utf8();
    }
    parts.push(current);
    parts
}

fn fully_quoted(item: &str) -> Option<&str> {
    let first = item.chars().next()?;
    if item.len() >= 2 && QUOTES.contains(&first) && item.ends_with(first) {
        Some(&item[first.len_utf8()..item.len() - first.len_utf8()])
    } else {
        None
    }
}

/// The IMPROVE clean-up of §5.2 (plus, for rule 2, the reference filter of 1-character and filler items).
fn clean_columns(raw: &str, reference_filter: bool) -> Vec<String> {
    const CUTS: [&str; 7] = [" from ", " in ", " into ", " to ", " where ", " with ", " as "];
    const ARTICLES: [&str; 3] = ["the", "a", "an"];
    const END_WORDS: [&str; 9] =
        ["column", "columns", "field", "fields", "value", "values", "unique", "distinct", "all"];
    const FILLER: [&str; 4] = ["the", "and", "or", "data"];
    let mut out: Vec<String> = Vec::new();
    for part in split_outside_quotes(raw, &[","]) {
        for item in split_outside_quotes(&part, &[" and ", "&"]) {
            let item = item.trim();
            let name = if let Some(inner) = fully_quoted(item) {
                inner.to_string()
            } else {
                let mut s = item.to_string();
                let padded = format!("{} ", s.to_lowercase());
                if padded.len() == s.len() + 1 {
                    if let Some(cut) = CUTS.iter().filter_map(|c| padded.find(c)).min() {
                        s.truncate(cut);
                    }
                }
                let s = s.trim().trim_matches(|c| QUOTES.contains(&c)).trim();
                let mut words: Vec<&str> = s.split_whitespace().collect();
                while words.len() > 1 && ARTICLES.contains(&words[0].to_lowercase().as_str()) {
                    words.remove(0);
                }
                loop {
                    let before = words.len();
                    if words.first().is_some_and(|w| END_WORDS.contains(&w.to_lowercase().as_str())) {
                        words.remove(0);
                    }
                    if words.last().is_some_and(|w| END_WORDS.contains(&w.to_lowercase().as_str())) {
                        words.pop();
                    }
                    if words.len() == before {
                        break;
                    }
                }
                words.join(" ")
            };
            if name.is_empty() {
                continue;
            }
            if reference_filter
                && fully_quoted(item).is_none()
                && (name.chars().count() == 1 || FILLER.contains(&name.to_lowercase().as_str()))
            {
                continue;
            }
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// Flags and single values
// ---------------------------------------------------------------------------------------------------------

/// `remove_duplicates: true` when the text says `unique` or `distinct`.
pub fn wants_unique(text: &str) -> bool {
    let t = text.to_lowercase();
    t.contains("unique") || t.contains("distinct")
}

/// `case`: `upper` for `uppercase`/`upper`, else `lower` for `lowercase`/`lower`.
pub fn case_option(text: &str) -> Option<&'static str> {
    let t = text.to_lowercase();
    if t.contains("upper") {
        Some("upper")
    } else if t.contains("lower") {
        Some("lower")
    } else {
        None
    }
}

/// `table <ident>` or `into <ident>` (articles and `named`/`called` skipped), original case kept.
pub fn table_name(text: &str) -> Option<String> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    let re =
        cached(&RE, r"(?i)\b(?:table|into)\s+(?:(?:the|a|an|named|called)\s+)?([A-Za-z_][A-Za-z0-9_]*)")?;
    re.captures_iter(text)
        .filter_map(|c| c.get(1).map(|m| m.as_str().to_string()))
        .find(|name| !matches!(name.to_lowercase().as_str(), "table" | "named" | "called"))
}

/// `mysql`, `sqlite`, `postgres`/`postgresql` → the executor's dialect name.
pub fn database_type(text: &str) -> Option<&'static str> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    let re = cached(&RE, r"(?i)\b(mysql|sqlite3?|postgres|postgresql)\b")?;
    let word = re.captures(text)?.get(1)?.as_str().to_lowercase();
    Some(match word.as_str() {
        "mysql" => "mysql",
        "sqlite" | "sqlite3" => "sqlite",
        _ => "postgresql",
    })
}

/// A token ending in `.xlsx`/`.xls`/`.csv`/`.json` that names one of `uploads` (file names of the
/// conversation, compared case-insensitively and after sanitising the token) → that file name.
pub fn bind_file(text: &str, uploads: &[String]) -> Option<String> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    let re = cached(&RE, r#"(?i)([^\s"'`,;]+\.(?:xlsx|xls|csv|json))\b"#)?;
    for m in re.captures_iter(text).filter_map(|c| c.get(1)) {
        let token = m.as_str();
        let last = token.rsplit(['/', '\\']).next().unwrap_or(token);
        let wanted = crate::table::names::sanitize_filename(last);
        if let Some(found) = uploads.iter().find(|u| {
            let name = u.rsplit('/').next().unwrap_or(u);
            name.eq_ignore_ascii_case(&wanted) || name.eq_ignore_ascii_case(last)
        }) {
            return Some(found.rsplit('/').next().unwrap_or(found).to_string());
        }
    }
    None
}

/// `as|to csv|json|excel|xlsx` → `csv`, `json` or `xlsx`.
pub fn output_format(text: &str) -> Option<&'static str> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    let re = cached(&RE, r"(?i)\b(?:as|to)\s+(csv|json|excel|xlsx)\b")?;
    let word = re.captures(text)?.get(1)?.as_str().to_lowercase();
    Some(match word.as_str() {
        "csv" => "csv",
        "json" => "json",
        _ => "xlsx",
    })
}

// ---------------------------------------------------------------------------------------------------------
// Conditions
// ---------------------------------------------------------------------------------------------------------

/// One parsed search condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub column: String,
    pub operator: &'static str,
    pub value: String,
}

impl Condition {
    pub fn to_json(&self) -> Value {
        serde_json::json!({"column": self.column, "operator": self.operator, "value": self.value})
    }
}

/// Conditions with their combination (`AND` unless the joiners are ` or `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conditions {
    pub items: Vec<Condition>,
    pub logic: &'static str,
}

/// `<column> <op> <value>` with `=`/`==`, `!=`, `>`, `>=`, `<`, `<=`, `contains`, `is` (and `is not`),
/// values optionally quoted, several joined by ` and ` / ` or `. Only the text after the first `where` is
/// considered when there is one. `None` when nothing parses.
pub fn conditions(text: &str) -> Option<Conditions> {
    static WHERE: OnceLock<Option<Regex>> = OnceLock::new();
    static COND: OnceLock<Option<Regex>> = OnceLock::new();
    static FORMAT_TAIL: OnceLock<Option<Regex>> = OnceLock::new();
    let scope = match cached(&WHERE, r"(?i)\bwhere\b").and_then(|re| re.find(text)) {
        Some(m) => &text[m.end()..],
        None => text,
    };
    // A trailing `as json` / `to csv file` is the output format, not part of the last value.
    let tail = r"(?i)\s+(?:as|to)\s+(?:csv|json|excel|xlsx)(?:\s+(?:file|format))?\s*[.!]?\s*$";
    let scope = match cached(&FORMAT_TAIL, tail).and_then(|re| re.find(scope)) {
        Some(m) => &scope[..m.start()],
        None => scope,
    };
    let cond = cached(
        &COND,
        r#"(?i)("[^"]+"|'[^']+'|`[^`]+`|[A-Za-z_][A-Za-z0-9_.]*)\s*(==|!=|>=|<=|=|>|<|\bcontains\b|\bis\s+not\b|\bis\b)\s*(.+?)\s*$"#,
    )?;
    let mut items = Vec::new();
    let mut joiners = Vec::new();
    let segments = split_keeping_joiners(scope);
    for (segment, joiner) in segments {
        let Some(caps) = cond.captures(segment.trim()) else { continue };
        let (Some(col), Some(op), Some(value)) = (caps.get(1), caps.get(2), caps.get(3)) else { continue };
        let column = strip_quotes(col.as_str());
        let value = value.as_str().trim().trim_end_matches(['.', '!', '?']).trim();
        let value = strip_quotes(value);
        if column.is_empty() || value.is_empty() {
            continue;
        }
        let op_text = op.as_str().to_lowercase();
        let operator = match op_text.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["="] | ["=="] | ["is"] => "equals",
            ["!="] | ["is", "not"] => "not_equals",
            [">"] => "greater_than",
            [">="] => "greater_than_or_equal",
            ["<"] => "less_than",
            ["<="] => "less_than_or_equal",
            ["contains"] => "contains",
            _ => continue,
        };
        items.push(Condition { column, operator, value });
        if let Some(j) = joiner {
            joiners.push(j);
        }
    }
    if items.is_empty() {
        return None;
    }
    let logic = if joiners.first().is_some_and(|j| *j == "or") { "OR" } else { "AND" };
    Some(Conditions { items, logic })
}

/// Splits on ` and ` / ` or ` outside quotes; each segment carries the joiner that preceded it.
fn split_keeping_joiners(s: &str) -> Vec<(String, Option<&'static str>)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut joiner: Option<&'static str> = None;
    let mut quote: Option<char> = None;
    let lower = s.to_lowercase();
    let same = lower.len() == s.len();
    let mut i = 0;
    while i < s.len() {
        let Some(c) = s[i..].chars().next() else { break };
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
        } else if QUOTES.contains(&c) {
            quote = Some(c);
        } else if same {
            let rest = &lower[i..];
            let hit = [(" and ", "and"), (" or ", "or")].into_iter().find(|(sep, _)| rest.starts_with(sep));
            if let Some((sep, name)) = hit {
                out.push((std::mem::take(&mut current), joiner));
                joiner = Some(name);
                i += sep.len();
                continue;
            }
        }
        current.push(c);
        i += c.len_utf8();
    }
    out.push((current, joiner));
    out
}

fn strip_quotes(s: &str) -> String {
    fully_quoted(s.trim()).unwrap_or(s.trim()).to_string()
}

// ---------------------------------------------------------------------------------------------------------
// Renames
// ---------------------------------------------------------------------------------------------------------

/// `rename <a> to <b>` with comma-separated (or ` and `-joined) repeats → ordered `{a: b}`.
pub fn rename_pairs(text: &str) -> Map<String, Value> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    static PAIR: OnceLock<Option<Regex>> = OnceLock::new();
    let mut out = Map::new();
    let (Some(re), Some(pair)) = (
        cached(&RE, r"(?i)\brename\s+(?:(?:the\s+)?(?:columns?|fields?)\s+)?(.+)$"),
        cached(&PAIR, r#"(?i)^\s*("[^"]+"|'[^']+'|`[^`]+`|\S+)\s+to\s+("[^"]+"|'[^']+'|`[^`]+`|\S+)\s*$"#),
    ) else {
        return out;
    };
    let Some(rest) = re.captures(text).and_then(|c| c.get(1)) else { return out };
    for part in split_outside_quotes(rest.as_str(), &[",", ";", " and "]) {
        let Some(caps) = pair.captures(part.trim()) else { continue };
        let (Some(a), Some(b)) = (caps.get(1), caps.get(2)) else { continue };
        let from = strip_quotes(a.as_str());
        let to = strip_quotes(b.as_str().trim_end_matches(['.', '!', '?']));
        if !from.is_empty() && !to.is_empty() {
            out.insert(from, Value::String(to));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// Parameter syntax (§6.4)
// ---------------------------------------------------------------------------------------------------------

/// Splits a message into raw `(key, value)` pairs: `;`/newline separated; without those, commas separate
/// pairs only if every comma-separated part has `:` or `=`; otherwise the whole text is one pair. A pair
/// splits at its first `:` or `=`; keys are trimmed, lower-cased, spaces → `_`. Parts without a separator
/// or with an empty key are dropped.
pub fn parse_pairs(text: &str) -> Vec<(String, String)> {
    let text = text.trim();
    let parts: Vec<&str> = if text.contains([';', '\n']) {
        text.split([';', '\n']).collect()
    } else {
        let commas: Vec<&str> = text.split(',').collect();
        if commas.len() > 1 && commas.iter().all(|p| p.contains([':', '='])) {
            commas
        } else {
            vec![text]
        }
    };
    parts
        .into_iter()
        .filter_map(|part| {
            let idx = part.find([':', '='])?;
            let key = part[..idx].trim().to_lowercase().split_whitespace().collect::<Vec<_>>().join("_");
            let value = part[idx + 1..].trim().to_string();
            (!key.is_empty()).then_some((key, value))
        })
        .collect()
}

/// The result of applying parameter text to a pending workflow.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Applied {
    /// Canonical argument name → the value written (what was recognised).
    pub parameters: Map<String, Value>,
    /// Keys that matched no argument of any pending step.
    pub ignored: Vec<String>,
}

impl Applied {
    pub fn is_empty(&self) -> bool {
        self.parameters.is_empty()
    }
}

/// §6.4: keys must name an argument (or alias) of a pending step's operation; the value is converted by
/// the target's current value (list → comma split) or declared type; written to every step that already
/// has the argument, else to the first step whose operation accepts it. Aliases are written under the
/// canonical name so the executor cannot prefer a stale canonical value.
pub fn apply_pairs(steps: &mut [Step], pairs: &[(String, String)]) -> Applied {
    let mut applied = Applied::default();
    for (key, raw) in pairs {
        let mut targets: Vec<(usize, &'static str, ArgType)> = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            if let Some(arg) = catalog::find_argument(&step.operation, key) {
                targets.push((i, arg.name, arg.ty));
            }
        }
        if targets.is_empty() {
            applied.ignored.push(key.clone());
            continue;
        }
        let having: Vec<(usize, &'static str, ArgType)> =
            targets.iter().copied().filter(|(i, name, _)| steps[*i].arguments.contains_key(*name)).collect();
        let chosen = if having.is_empty() { vec![targets[0]] } else { having };
        for (i, name, ty) in chosen {
            let value = convert_value(raw, steps[i].arguments.get(name), ty);
            steps[i].arguments.insert(name.to_string(), value.clone());
            applied.parameters.insert(name.to_string(), value);
        }
    }
    applied
}

/// Value rules of §6.4: JSON if it parses; else by the current value / declared type. A boolean target
/// checks its words first, since `1`/`0` would otherwise parse as JSON numbers.
pub fn convert_value(raw: &str, current: Option<&Value>, ty: ArgType) -> Value {
    let raw = raw.trim();
    let is_bool = matches!(current, Some(Value::Bool(_))) || (current.is_none() && ty == ArgType::Boolean);
    if is_bool {
        match raw.to_lowercase().as_str() {
            "true" | "yes" | "1" => return Value::Bool(true),
            "false" | "no" | "0" => return Value::Bool(false),
            _ => {}
        }
    }
    if let Ok(v) = serde_json::from_str::<Value>(raw) {
        return v;
    }
    let is_list = matches!(current, Some(Value::Array(_))) || (current.is_none() && ty == ArgType::List);
    let is_number =
        matches!(current, Some(Value::Number(_))) || (current.is_none() && ty == ArgType::Integer);
    if is_list {
        return Value::Array(
            split_outside_quotes(raw, &[","])
                .iter()
                .map(|s| strip_quotes(s))
                .filter(|s| !s.is_empty())
                .map(Value::String)
                .collect(),
        );
    }
    if is_number {
        if let Ok(n) = raw.parse::<i64>() {
            return Value::from(n);
        }
        if let Some(n) = raw.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(strip_quotes(raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn column_extraction_table() {
        #[rustfmt::skip]
        let cases: &[(&str, &[&str])] = &[
            // chatbot.md §5.2 results and acceptance 151/167/168
            ("extract columns: name, email, phone", &["name", "email", "phone"]),
            ("columns: name, email, phone", &["name", "email", "phone"]),
            ("get the name and email columns", &["name", "email"]),
            ("select customer_id and amount fields", &["customer_id", "amount"]),
            ("extract customer_id, amount from data", &["customer_id", "amount"]),
            ("Extract columns: Name, Email", &["Name", "Email"]),
            ("EXTRACT COLUMNS: NAME, EMAIL", &["NAME", "EMAIL"]),
            ("extract columns: postal_code", &["postal_code"]),
            ("extract and select columns: name, email", &["name", "email"]),
            ("extract columns Name and Email from the sheet", &["Name", "Email"]),
            ("extract columns: a & b", &["a", "b"]),
            ("extract columns: name, name, email", &["name", "email"]),
            ("get the id, the name and an email", &["id", "name", "email"]),
            (r#"extract columns "First Name", "Last Name""#, &["First Name", "Last Name"]),
            (r#"extract "First Name" and `Zip Code` from data"#, &["First Name", "Zip Code"]),
            ("select all values", &[]),
            ("extract unique values from column", &[]),
            ("get x", &[]),              // 1-character items are dropped (reference)
            ("get the data", &[]),       // filler
            ("I need some columns", &[]),
            ("target everything", &[]),  // `get` inside a word is not the verb
            ("convert to JSON", &[]),
        ];
        for (text, expected) in cases {
            assert_eq!(
                extract_columns(text),
                expected.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{text}"
            );
        }
    }

    #[test]
    fn flags() {
        // acceptance 166
        assert!(wants_unique("extract unique values from column"));
        assert!(wants_unique("SELECT DISTINCT name"));
        assert!(!wants_unique("extract name"));
        assert_eq!(case_option("convert to uppercase"), Some("upper"));
        assert_eq!(case_option("convert to lowercase"), Some("lower"));
        assert_eq!(case_option("UPPER and lower"), Some("upper"));
        assert_eq!(case_option("trim"), None);
    }

    #[test]
    fn table_names() {
        #[rustfmt::skip]
        let cases: &[(&str, Option<&str>)] = &[
            ("generate SQL for table users", Some("users")),
            ("insert into Customers", Some("Customers")),
            ("insert into the orders table", Some("orders")),
            ("generate sql for table named users", Some("users")),
            ("generate sql", None),
            ("table 9lives", None),
        ];
        for (text, expected) in cases {
            assert_eq!(table_name(text).as_deref(), *expected, "{text}");
        }
    }

    #[test]
    fn dialects() {
        #[rustfmt::skip]
        let cases: &[(&str, Option<&str>)] = &[
            ("generate SQL for table users in mysql", Some("mysql")),
            ("MySQL inserts", Some("mysql")),
            ("for sqlite please", Some("sqlite")),
            ("sqlite3", Some("sqlite")),
            ("postgres", Some("postgresql")),
            ("PostgreSQL", Some("postgresql")),
            ("mssql", None),
            ("mysqlish", None),
            ("generate sql", None),
        ];
        for (text, expected) in cases {
            assert_eq!(database_type(text), *expected, "{text}");
        }
    }

    #[test]
    fn bind_files_must_be_uploads_of_the_conversation() {
        let uploads = vec!["./w/2026/03/c/uploads/customer_info.xlsx".to_string(), "orders.csv".to_string()];
        assert_eq!(
            bind_file("merge with customer_info.xlsx", &uploads).as_deref(),
            Some("customer_info.xlsx")
        );
        assert_eq!(
            bind_file("merge with Customer_Info.XLSX please", &uploads).as_deref(),
            Some("customer_info.xlsx")
        );
        assert_eq!(bind_file("join orders.csv", &uploads).as_deref(), Some("orders.csv"));
        assert_eq!(bind_file("merge with /etc/passwd.csv", &uploads), None);
        assert_eq!(bind_file("merge with other.xlsx", &uploads), None);
        assert_eq!(bind_file("merge with ../x/orders.csv", &uploads).as_deref(), Some("orders.csv"));
        assert_eq!(bind_file("merge", &uploads), None);
    }

    #[test]
    fn output_formats() {
        assert_eq!(output_format("search where a = 1 as csv"), Some("csv"));
        assert_eq!(output_format("export to JSON"), Some("json"));
        assert_eq!(output_format("save as Excel"), Some("xlsx"));
        assert_eq!(output_format("to xlsx"), Some("xlsx"));
        assert_eq!(output_format("into xlsx"), None);
        assert_eq!(output_format("csv file"), None);
    }

    fn cond(c: &str, op: &'static str, v: &str) -> Condition {
        Condition { column: c.into(), operator: op, value: v.into() }
    }

    #[test]
    fn condition_parsing() {
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<Condition>, &str)> = vec![
            ("search where status = active", vec![cond("status", "equals", "active")], "AND"),
            ("filter data where amount > 1000", vec![cond("amount", "greater_than", "1000")], "AND"),
            ("find where amount >= 10 and amount <= 20",
                vec![cond("amount", "greater_than_or_equal", "10"), cond("amount", "less_than_or_equal", "20")], "AND"),
            ("show records where status is active or status is pending",
                vec![cond("status", "equals", "active"), cond("status", "equals", "pending")], "OR"),
            ("where name contains 'Smith and Sons'", vec![cond("name", "contains", "Smith and Sons")], "AND"),
            (r#"where "first name" == "Ann""#, vec![cond("first name", "equals", "Ann")], "AND"),
            ("where status != closed.", vec![cond("status", "not_equals", "closed")], "AND"),
            ("where status is not closed", vec![cond("status", "not_equals", "closed")], "AND"),
            ("filter amount < 5", vec![cond("amount", "less_than", "5")], "AND"),
            ("where city = New York", vec![cond("city", "equals", "New York")], "AND"),
            ("filter where a = 1 or b = 2 as json", vec![cond("a", "equals", "1"), cond("b", "equals", "2")], "OR"),
        ];
        for (text, items, logic) in cases {
            let parsed = conditions(text).unwrap_or_else(|| panic!("no conditions in {text}"));
            assert_eq!(parsed.items, items, "{text}");
            assert_eq!(parsed.logic, logic, "{text}");
        }
        assert_eq!(conditions("search for active customers"), None);
        assert_eq!(conditions("where"), None);
        assert_eq!(
            cond("a", "equals", "b").to_json(),
            json!({"column": "a", "operator": "equals", "value": "b"})
        );
    }

    #[test]
    fn renames() {
        assert_eq!(
            Value::Object(rename_pairs("rename cust_id to customer_id")),
            json!({"cust_id": "customer_id"})
        );
        assert_eq!(
            Value::Object(rename_pairs("Rename columns a to b, C to D and e to f.")),
            json!({"a": "b", "C": "D", "e": "f"})
        );
        assert_eq!(
            Value::Object(rename_pairs(r#"rename "Full Name" to name"#)),
            json!({"Full Name": "name"})
        );
        assert!(rename_pairs("rename columns").is_empty());
        assert!(rename_pairs("map column names").is_empty());
    }

    #[test]
    fn pair_splitting() {
        let p = |t: &str| parse_pairs(t);
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(p("columns: name, email"), vec![kv("columns", "name, email")]);
        assert_eq!(
            p("table_name: users, database_type: mysql"),
            vec![kv("table_name", "users"), kv("database_type", "mysql")]
        );
        assert_eq!(
            p("columns: a, b; remove duplicates = yes"),
            vec![kv("columns", "a, b"), kv("remove_duplicates", "yes")]
        );
        assert_eq!(
            p("Table Name: users\nbatch_size=50"),
            vec![kv("table_name", "users"), kv("batch_size", "50")]
        );
        assert_eq!(p("columns: [\"a\", \"b\"]"), vec![kv("columns", "[\"a\", \"b\"]")]);
        assert_eq!(p("url=http://x"), vec![kv("url", "http://x")]);
        assert!(p("hmm not sure").is_empty());
        assert!(p(": value").is_empty());
    }

    fn step(op: &str, args: Value) -> Step {
        Step {
            operation: op.into(),
            arguments: args.as_object().cloned().unwrap(),
            description: None,
            input_file: None,
        }
    }

    #[test]
    fn applying_pairs_to_a_workflow() {
        let mut steps = vec![step(
            "excel/extract-columns-to-file",
            json!({"columns": ["column1", "column2"], "remove_duplicates": false}),
        )];
        // acceptance 135: a list target splits on commas
        let applied = apply_pairs(&mut steps, &parse_pairs("columns: a, b"));
        assert_eq!(steps[0].arguments["columns"], json!(["a", "b"]));
        assert_eq!(Value::Object(applied.parameters), json!({"columns": ["a", "b"]}));
        // booleans
        apply_pairs(&mut steps, &parse_pairs("remove_duplicates: yes"));
        assert_eq!(steps[0].arguments["remove_duplicates"], json!(true));
        apply_pairs(&mut steps, &parse_pairs("remove duplicates = 0"));
        assert_eq!(steps[0].arguments["remove_duplicates"], json!(false));
        // JSON wins
        apply_pairs(&mut steps, &parse_pairs(r#"columns: ["x, y"]"#));
        assert_eq!(steps[0].arguments["columns"], json!(["x, y"]));
        // unknown keys are ignored
        let applied = apply_pairs(&mut steps, &parse_pairs("colour: red"));
        assert!(applied.is_empty());
        assert_eq!(applied.ignored, vec!["colour".to_string()]);
        // absent argument the operation accepts: added with its declared type
        apply_pairs(&mut steps, &parse_pairs("output_filename: report.xlsx"));
        assert_eq!(steps[0].arguments["output_filename"], json!("report.xlsx"));
    }

    #[test]
    fn pairs_go_to_steps_having_the_argument_else_the_first_accepting_one() {
        let mut steps = vec![
            step("csv/convert-to-excel", json!({"sheet_name": "Sheet1"})),
            step("sql/generate", json!({"table_name": "data"})),
            step("sql/generate-to-text", json!({})),
        ];
        apply_pairs(&mut steps, &parse_pairs("table_name: users; batch_size: 50; database type: mysql"));
        assert_eq!(steps[1].arguments["table_name"], json!("users"));
        assert!(!steps[2].arguments.contains_key("table_name"));
        assert_eq!(steps[1].arguments["batch_size"], json!(50));
        assert_eq!(steps[1].arguments["database_type"], json!("mysql"));
        // aliases are written under the canonical name
        let mut bind =
            vec![step("excel/bind-single-key", json!({"bind_file": "x.xlsx", "comparison_column": "id"}))];
        let applied = apply_pairs(&mut bind, &parse_pairs("key_column: customer_id"));
        assert_eq!(bind[0].arguments["comparison_column"], json!("customer_id"));
        assert_eq!(Value::Object(applied.parameters), json!({"comparison_column": "customer_id"}));
        apply_pairs(&mut bind, &parse_pairs("source_columns: a, b"));
        assert_eq!(bind[0].arguments["bind_columns"], json!(["a", "b"]));
    }

    #[test]
    fn value_conversion() {
        use ArgType::*;
        assert_eq!(convert_value("12", None, Integer), json!(12));
        assert_eq!(convert_value("abc", Some(&json!(5)), Integer), json!("abc"));
        assert_eq!(convert_value("1.5x", None, String), json!("1.5x"));
        assert_eq!(convert_value("'quoted'", None, String), json!("quoted"));
        assert_eq!(convert_value("null", None, String), Value::Null);
        assert_eq!(convert_value("a, 'b, c'", None, List), json!(["a", "b, c"]));
        assert_eq!(convert_value("maybe", None, Boolean), json!("maybe"));
        assert_eq!(convert_value("{\"a\": \"b\"}", None, Object), json!({"a": "b"}));
    }
}
