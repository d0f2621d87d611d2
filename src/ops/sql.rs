//! Standard SQL generation (operations.md §9.1–§9.4, §9.6): dialects, value formatting, identifier
//! quoting, auto-increment configuration, the INSERT script and the simple per-row template mode,
//! streamed row by row to any writer.

use super::params::ColumnMapping;
use super::placeholder::{tokenize, Segment};
use super::{require_columns, OpError};
use crate::table::parse::python_float_text;
use crate::table::spool::SpooledTable;
use crate::table::{Cell, RowSource, Table};
use serde_json::Value;
use std::io::Write;

/// `GET sql/databases`.
pub const SUPPORTED_DATABASES: [&str; 3] = ["postgresql", "mysql", "sqlite"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    PostgreSql,
    MySql,
    Sqlite,
}

impl Dialect {
    /// Case-insensitive; unknown names → 422 (IMPROVE over the reference's 400).
    pub fn parse(name: &str) -> Result<Dialect, OpError> {
        match name.to_lowercase().as_str() {
            "postgresql" => Ok(Dialect::PostgreSql),
            "mysql" => Ok(Dialect::MySql),
            "sqlite" => Ok(Dialect::Sqlite),
            _ => Err(OpError::validation_with(
                format!(
                    "Failed to generate SQL: Unsupported database type: '{name}'. Supported: postgresql, mysql, sqlite"
                ),
                serde_json::json!({ "field": "database_type", "supported": SUPPORTED_DATABASES }),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dialect::PostgreSql => "postgresql",
            Dialect::MySql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }

    fn begin(self) -> &'static str {
        match self {
            Dialect::PostgreSql => "BEGIN;",
            Dialect::MySql => "START TRANSACTION;",
            Dialect::Sqlite => "BEGIN TRANSACTION;",
        }
    }

    fn current_timestamp(self) -> &'static str {
        match self {
            Dialect::PostgreSql | Dialect::MySql => "NOW()",
            Dialect::Sqlite => "datetime('now')",
        }
    }

    fn current_date(self) -> &'static str {
        match self {
            Dialect::PostgreSql => "CURRENT_DATE",
            Dialect::MySql => "CURDATE()",
            Dialect::Sqlite => "date('now')",
        }
    }

    fn uuid_expr(self) -> &'static str {
        match self {
            Dialect::PostgreSql => "uuid_generate_v4()",
            Dialect::MySql => "UUID()",
            // SQLite has no UUID(); 32 random hex digits are the usual substitute.
            Dialect::Sqlite => "lower(hex(randomblob(16)))",
        }
    }

    /// Appends a string literal; MySQL escapes backslashes first so a trailing `\` cannot eat the quote.
    pub fn push_string_literal(self, out: &mut String, text: &str) {
        out.reserve(text.len() + 2);
        out.push('\'');
        match self {
            Dialect::MySql => {
                for c in text.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '\'' => out.push_str("\\'"),
                        '"' => out.push_str("\\\""),
                        c => out.push(c),
                    }
                }
            }
            Dialect::PostgreSql | Dialect::Sqlite => push_doubled_quotes(out, text),
        }
        out.push('\'');
    }

    /// §9.2 value formatting of one cell.
    pub fn push_value(self, out: &mut String, cell: &Cell) {
        match cell {
            Cell::Missing => out.push_str("NULL"),
            Cell::Text(s) => self.push_string_literal(out, s),
            Cell::Int(i) => out.push_str(&i.to_string()),
            Cell::Float(f) if f.is_finite() => out.push_str(&python_float_text(*f)),
            Cell::Float(_) => out.push_str("NULL"),
            Cell::Bool(b) => out.push_str(match (self, b) {
                (Dialect::PostgreSql, true) => "TRUE",
                (Dialect::PostgreSql, false) => "FALSE",
                (_, true) => "1",
                (_, false) => "0",
            }),
        }
    }

    /// §9.2 identifiers: plain names (dot-separated parts allowed) unchanged, others quoted;
    /// control characters and empty names → 422.
    pub fn identifier(self, name: &str) -> Result<String, OpError> {
        if name.is_empty() {
            return Err(OpError::validation("SQL identifier cannot be empty"));
        }
        if name.chars().any(char::is_control) {
            return Err(OpError::validation_with(
                format!("SQL identifier contains control characters: {}", name.escape_debug()),
                serde_json::json!({ "identifier": name }),
            ));
        }
        if name.split('.').all(is_plain_identifier) {
            return Ok(name.to_string());
        }
        let q = if self == Dialect::MySql { '`' } else { '"' };
        let mut out = String::with_capacity(name.len() + 2);
        out.push(q);
        for c in name.chars() {
            if c == q {
                out.push(q);
            }
            out.push(c);
        }
        out.push(q);
        Ok(out)
    }
}

fn is_plain_identifier(part: &str) -> bool {
    let mut chars = part.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// Appends `text` with every `'` doubled.
pub fn push_doubled_quotes(out: &mut String, text: &str) {
    for (i, part) in text.split('\'').enumerate() {
        if i > 0 {
            out.push_str("''");
        }
        out.push_str(part);
    }
}

/// How the auto-increment column gets its value (§9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncrementKind {
    /// `postgresql_serial`, `mysql_auto_increment`, `sqlite_autoincrement`, `none` and aliases: no column.
    DatabaseAssigned,
    ManualSequence,
    UuidGenerate,
}

impl IncrementKind {
    /// Case-insensitive, with the aliases of the IMPROVE; unknown → 422.
    pub fn parse(name: &str) -> Result<IncrementKind, OpError> {
        match name.trim().to_lowercase().as_str() {
            "postgresql_serial"
            | "mysql_auto_increment"
            | "sqlite_autoincrement"
            | "none"
            | "serial"
            | "bigserial"
            | "identity"
            | "auto_increment"
            | "autoincrement" => Ok(IncrementKind::DatabaseAssigned),
            "manual_sequence" | "sequence" => Ok(IncrementKind::ManualSequence),
            "uuid_generate" | "uuid" => Ok(IncrementKind::UuidGenerate),
            _ => Err(OpError::validation_with(
                format!("Failed to generate SQL: '{name}' is not a valid SQLAutoIncrementType"),
                serde_json::json!({
                    "field": "auto_increment.increment_type",
                    "valid_types": ["postgresql_serial", "mysql_auto_increment", "sqlite_autoincrement",
                        "manual_sequence", "uuid_generate", "none"],
                }),
            )),
        }
    }
}

/// The `auto_increment` request object (§9.3), snake_case or camelCase keys (snake_case wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoIncrement {
    pub enabled: bool,
    pub column_name: String,
    /// As sent; resolved by [`AutoIncrement::kind`] only where it matters (standard script).
    pub increment_type: String,
    pub start_value: i64,
    pub sequence_name: String,
}

impl Default for AutoIncrement {
    fn default() -> Self {
        AutoIncrement {
            enabled: false,
            column_name: "id".to_string(),
            increment_type: "postgresql_serial".to_string(),
            start_value: 1,
            sequence_name: "seq_id".to_string(),
        }
    }
}

fn auto_field<'a>(obj: &'a serde_json::Map<String, Value>, snake: &str, camel: &str) -> Option<&'a Value> {
    obj.get(snake).or_else(|| obj.get(camel))
}

fn auto_error(key: &str, what: &str) -> OpError {
    OpError::validation_with(
        format!("auto_increment.{key} {what}"),
        serde_json::json!({ "field": format!("auto_increment.{key}") }),
    )
}

/// `null`/`""` → `None` (use the default); strings as is; anything else → 422.
fn optional_text(v: Option<&Value>, key: &str) -> Result<Option<String>, OpError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(auto_error(key, "must be a string")),
    }
}

impl AutoIncrement {
    /// Parses the request object; absent, `null` or `{}` → disabled.
    pub fn from_json(value: Option<&Value>) -> Result<AutoIncrement, OpError> {
        let obj = match value {
            None | Some(Value::Null) => return Ok(AutoIncrement::default()),
            Some(Value::Object(o)) => o,
            Some(_) => {
                return Err(OpError::validation_with(
                    "auto_increment must be a JSON object",
                    serde_json::json!({ "field": "auto_increment" }),
                ))
            }
        };
        let enabled = match obj.get("enabled") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("true") => true,
            Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("false") => false,
            Some(_) => return Err(auto_error("enabled", "must be a boolean")),
        };
        let column_name = optional_text(auto_field(obj, "column_name", "columnName"), "column_name")?
            .unwrap_or_else(|| "id".to_string());
        let increment_type =
            optional_text(auto_field(obj, "increment_type", "incrementType"), "increment_type")?
                .unwrap_or_else(|| "postgresql_serial".to_string());
        let start_value = match auto_field(obj, "start_value", "startValue") {
            None | Some(Value::Null) => 1,
            Some(Value::String(s)) if s.trim().is_empty() => 1,
            Some(Value::String(s)) => {
                parse_start_value(s).ok_or_else(|| auto_error("start_value", "must be an integer"))?
            }
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => i,
                None => n
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                    .map(|f| f as i64)
                    .ok_or_else(|| auto_error("start_value", "must be an integer"))?,
            },
            Some(_) => return Err(auto_error("start_value", "must be an integer")),
        };
        let sequence_name = optional_text(auto_field(obj, "sequence_name", "sequenceName"), "sequence_name")?
            .unwrap_or_else(|| format!("seq_{column_name}"));
        Ok(AutoIncrement { enabled, column_name, increment_type, start_value, sequence_name })
    }

    /// The increment kind, validated (only needed by the standard script).
    pub fn kind(&self) -> Result<IncrementKind, OpError> {
        IncrementKind::parse(&self.increment_type)
    }
}

/// Numeric strings: integers, or integral decimals such as `10.0`.
fn parse_start_value(s: &str) -> Option<i64> {
    let t = s.trim();
    t.parse::<i64>().ok().or_else(|| {
        t.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() < 9.2e18)
            .map(|f| f as i64)
    })
}

/// Parameters of `sql/generate` and `sql/generate-to-text`.
#[derive(Debug, Clone)]
pub struct StandardSqlRequest {
    pub table_name: String,
    /// SQL column → sheet column.
    pub column_mapping: ColumnMapping,
    /// As sent (echoed by the endpoint); parsed case-insensitively.
    pub database_type: String,
    pub include_transaction: bool,
    pub auto_increment: AutoIncrement,
    /// §9.4 per-row template (`sql/generate` only).
    pub template: Option<String>,
}

/// The value source of one template token in §9.4 mode.
#[derive(Debug, Clone)]
enum SimpleToken {
    Literal(String),
    AutoId,
    Column(Option<usize>),
}

/// Renders the statements of one standard script, one row at a time.
#[derive(Debug, Clone)]
pub struct StandardSqlGenerator {
    dialect: Dialect,
    table_name: String,
    include_transaction: bool,
    /// Sheet column index per mapping entry (`None` only while checking a request without a sheet).
    sources: Vec<Option<usize>>,
    /// `INSERT INTO t (c1, c2) VALUES (` — prebuilt once.
    insert_prefix: String,
    auto: Option<(IncrementKind, String)>,
    counter: i64,
    template: Option<Vec<SimpleToken>>,
}

impl StandardSqlGenerator {
    /// Validates the dialect, identifiers and (when enabled) the increment type, then that every mapped
    /// sheet column is one of `columns` (422 naming the missing and the available ones, before any row).
    pub fn new(columns: &[String], req: &StandardSqlRequest) -> Result<StandardSqlGenerator, OpError> {
        let generator = Self::build(columns, req)?;
        require_columns(columns, req.column_mapping.iter().map(|(_, sheet)| sheet.as_str()))?;
        Ok(generator)
    }

    /// The checks of [`StandardSqlGenerator::new`] that need no sheet (dialect, increment type,
    /// identifiers), so they can run before the file is read.
    pub fn check_request(req: &StandardSqlRequest) -> Result<(), OpError> {
        Self::build(&[], req).map(drop)
    }

    fn build(columns: &[String], req: &StandardSqlRequest) -> Result<StandardSqlGenerator, OpError> {
        let dialect = Dialect::parse(&req.database_type)?;
        let auto = &req.auto_increment;
        let kind = if auto.enabled { Some(auto.kind()?) } else { None };
        let index_of = |sheet: &str| columns.iter().position(|c| c == sheet);
        let sources: Vec<Option<usize>> =
            req.column_mapping.iter().map(|(_, sheet)| index_of(sheet)).collect();

        let mut names = Vec::with_capacity(req.column_mapping.len() + 1);
        let auto_value = match kind {
            Some(IncrementKind::ManualSequence) if dialect == Dialect::PostgreSql => {
                let mut expr = String::from("nextval('");
                push_doubled_quotes(&mut expr, &auto.sequence_name);
                expr.push_str("')");
                Some((IncrementKind::ManualSequence, expr))
            }
            Some(k @ IncrementKind::UuidGenerate) => Some((k, dialect.uuid_expr().to_string())),
            Some(k) => Some((k, String::new())), // the counter
            None => None,
        };
        if matches!(kind, Some(IncrementKind::ManualSequence | IncrementKind::UuidGenerate))
            && req.template.is_none()
        {
            names.push(dialect.identifier(&auto.column_name)?);
        }
        for (sql_col, _) in &req.column_mapping {
            names.push(dialect.identifier(sql_col)?);
        }
        let table_name = dialect.identifier(&req.table_name)?;
        let insert_prefix = format!("INSERT INTO {table_name} ({}) VALUES (", names.join(", "));

        let template = req.template.as_deref().map(|t| {
            tokenize(t)
                .into_iter()
                .map(|seg| match seg {
                    Segment::Literal(l) => SimpleToken::Literal(l.to_string()),
                    Segment::Placeholder(p) => {
                        if p == "auto_id" && auto.enabled {
                            SimpleToken::AutoId
                        } else if let Some(i) = req.column_mapping.iter().position(|(k, _)| k == p) {
                            SimpleToken::Column(sources[i])
                        } else if p == "current_timestamp" {
                            SimpleToken::Literal(dialect.current_timestamp().to_string())
                        } else if p == "current_date" {
                            SimpleToken::Literal(dialect.current_date().to_string())
                        } else {
                            SimpleToken::Literal(format!("{{{p}}}"))
                        }
                    }
                })
                .collect()
        });

        Ok(StandardSqlGenerator {
            dialect,
            table_name,
            include_transaction: req.include_transaction,
            sources,
            insert_prefix,
            auto: auto_value,
            counter: auto.start_value,
            template,
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The six comment entries plus the opening transaction line.
    pub fn header_lines(&self, total_rows: usize, generated_at: &str) -> Vec<String> {
        let mut lines = vec![
            "-- Generated SQL statements".to_string(),
            format!("-- Database: {}", self.dialect.name()),
            format!("-- Table: {}", self.table_name),
            format!("-- Generated at: {generated_at}"),
            format!("-- Total rows: {total_rows}"),
            String::new(),
        ];
        if self.include_transaction {
            lines.push(self.dialect.begin().to_string());
        }
        lines
    }

    pub fn footer_lines(&self) -> Vec<String> {
        if self.include_transaction {
            vec!["COMMIT;".to_string()]
        } else {
            Vec::new()
        }
    }

    /// Number of entries of the whole script for `rows` rows.
    pub fn total_statements(&self, rows: usize) -> usize {
        6 + rows + if self.include_transaction { 2 } else { 0 }
    }

    fn push_auto_value(&mut self, out: &mut String) {
        match &self.auto {
            Some((IncrementKind::UuidGenerate, expr)) => out.push_str(expr),
            Some((IncrementKind::ManualSequence, expr)) if !expr.is_empty() => out.push_str(expr),
            _ => out.push_str(&self.counter.to_string()),
        }
    }

    /// Appends the statement for one row (no line break).
    pub fn render_row(&mut self, row: &[Cell], out: &mut String) {
        let cell = |i: Option<usize>| i.and_then(|i| row.get(i)).unwrap_or(&Cell::Missing);
        if let Some(tokens) = self.template.take() {
            let mut used_auto = false;
            for token in &tokens {
                match token {
                    SimpleToken::Literal(l) => out.push_str(l),
                    SimpleToken::AutoId => {
                        used_auto = true;
                        self.push_auto_value(out);
                    }
                    SimpleToken::Column(i) => self.dialect.push_value(out, cell(*i)),
                }
            }
            self.template = Some(tokens);
            if used_auto {
                self.counter = self.counter.saturating_add(1);
            }
            return;
        }
        out.push_str(&self.insert_prefix);
        let mut first = true;
        if matches!(self.auto, Some((IncrementKind::ManualSequence | IncrementKind::UuidGenerate, _))) {
            self.push_auto_value(out);
            first = false;
        }
        for &source in &self.sources {
            if !first {
                out.push_str(", ");
            }
            first = false;
            self.dialect.push_value(out, cell(source));
        }
        out.push_str(");");
        self.counter = self.counter.saturating_add(1);
    }
}

/// The statement list of `sql/generate` (JSON response): header, transaction lines, one entry per row.
pub fn generate_standard_sql(
    table: &Table,
    req: &StandardSqlRequest,
    generated_at: &str,
) -> Result<Vec<String>, OpError> {
    let mut rows = table.rows.iter();
    generate_standard_sql_rows(&table.columns, &mut rows, table.row_count(), req, generated_at)
}

/// [`generate_standard_sql`] for any row source (`rows` must yield exactly `row_count` rows).
pub fn generate_standard_sql_rows<S: RowSource + ?Sized>(
    columns: &[String],
    rows: &mut S,
    row_count: usize,
    req: &StandardSqlRequest,
    generated_at: &str,
) -> Result<Vec<String>, OpError> {
    let mut gen = StandardSqlGenerator::new(columns, req)?;
    let mut out = gen.header_lines(row_count, generated_at);
    out.reserve(row_count + 1);
    while let Some(row) = rows.next_row()? {
        let mut line = String::new();
        gen.render_row(row, &mut line);
        out.push(line);
    }
    out.extend(gen.footer_lines());
    Ok(out)
}

/// §9.6 file header (three comment lines and a blank line).
pub fn write_sql_file_header<W: Write>(
    out: &mut W,
    generated_at: &str,
    total_statements: usize,
) -> std::io::Result<()> {
    write!(out, "-- Generated by Pycelize\n-- Generated at: {generated_at}\n-- Total statements: {total_statements}\n\n")
}

/// Streams the §9.6 file of the standard script for any row source (`rows` must yield exactly
/// `row_count` rows). Returns the number of entries written.
pub fn write_standard_sql_rows<W, S>(
    columns: &[String],
    rows: &mut S,
    row_count: usize,
    req: &StandardSqlRequest,
    generated_at: &str,
    out: &mut W,
) -> Result<usize, OpError>
where
    W: Write,
    S: RowSource + ?Sized,
{
    let mut gen = StandardSqlGenerator::new(columns, req)?;
    let total = gen.total_statements(row_count);
    write_sql_file_header(out, generated_at, total)?;
    for line in gen.header_lines(row_count, generated_at) {
        writeln!(out, "{line}")?;
    }
    let mut line = String::new();
    while let Some(row) = rows.next_row()? {
        line.clear();
        gen.render_row(row, &mut line);
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    for line in gen.footer_lines() {
        writeln!(out, "{line}")?;
    }
    Ok(total)
}

/// [`write_standard_sql_rows`] over a whole table.
pub fn write_standard_sql_file<W: Write>(
    table: &Table,
    req: &StandardSqlRequest,
    generated_at: &str,
    out: &mut W,
) -> Result<usize, OpError> {
    let mut rows = table.rows.iter();
    write_standard_sql_rows(&table.columns, &mut rows, table.row_count(), req, generated_at, out)
}

/// Writes an already built statement list as a §9.6 file (`sql/generate` with `return_file`).
pub fn write_statement_list<W: Write>(
    statements: &[String],
    generated_at: &str,
    out: &mut W,
) -> std::io::Result<()> {
    write_sql_file_header(out, generated_at, statements.len())?;
    for s in statements {
        out.write_all(s.as_bytes())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// §1.4 for the SQL text endpoints: keep `columns` in request order (all must exist, else 422
/// `Columns not found: a, b`), then drop duplicate rows when asked. No selection keeps every column.
pub fn select_for_generation(
    table: Table,
    columns: &[String],
    remove_duplicates: bool,
) -> Result<Table, OpError> {
    let mut table = match generation_columns(&table.columns, columns)? {
        None => table,
        Some(indices) => {
            let rows = table
                .rows
                .into_iter()
                .map(|row| indices.iter().map(|&i| row.get(i).cloned().unwrap_or(Cell::Missing)).collect())
                .collect();
            Table { columns: columns.to_vec(), rows }
        }
    };
    if remove_duplicates {
        table.rows = super::extract::dedupe_rows(std::mem::take(&mut table.rows));
    }
    Ok(table)
}

/// [`select_for_generation`] for a spooled sheet: the same checks and errors (before any output exists),
/// the selection applied as the rows are read back; de-duplication writes the distinct rows to a new spool.
pub fn select_spooled_for_generation(
    mut table: SpooledTable,
    columns: &[String],
    remove_duplicates: bool,
) -> Result<SpooledTable, OpError> {
    if let Some(indices) = generation_columns(&table.columns, columns)? {
        table.select(columns.to_vec(), indices);
    }
    if remove_duplicates {
        table = table.dedupe()?;
    }
    Ok(table)
}

/// The sheet columns `requested` picks, in request order (`None` when nothing was requested); 422
/// `Columns not found: a, b` naming every missing one.
fn generation_columns(available: &[String], requested: &[String]) -> Result<Option<Vec<usize>>, OpError> {
    let index_of = |name: &str| available.iter().position(|c| c == name);
    let missing: Vec<&str> = requested.iter().map(String::as_str).filter(|c| index_of(c).is_none()).collect();
    if !missing.is_empty() {
        return Err(OpError::validation_with(
            format!("Columns not found: {}", missing.join(", ")),
            serde_json::json!({ "missing_columns": missing, "available_columns": available }),
        ));
    }
    if requested.is_empty() {
        return Ok(None);
    }
    Ok(Some(requested.iter().filter_map(|c| index_of(c)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(columns: &[&str], rows: &[&[&str]]) -> Table {
        Table {
            columns: columns.iter().map(|s| s.to_string()).collect(),
            rows: rows.iter().map(|r| r.iter().map(|s| Cell::text(*s)).collect()).collect(),
        }
    }

    fn people() -> Table {
        table(
            &["Name", "Email", "Age"],
            &[
                &["Alice", "alice@test.com", "25"],
                &["Bob", "bob@test.com", "30"],
                &["Charlie", "c@test.com", "35"],
            ],
        )
    }

    fn mapping(pairs: &[(&str, &str)]) -> ColumnMapping {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    fn request(db: &str, tx: bool) -> StandardSqlRequest {
        StandardSqlRequest {
            table_name: "users".into(),
            column_mapping: mapping(&[("name", "Name"), ("email", "Email"), ("age", "Age")]),
            database_type: db.into(),
            include_transaction: tx,
            auto_increment: AutoIncrement::default(),
            template: None,
        }
    }

    fn auto(v: serde_json::Value) -> AutoIncrement {
        AutoIncrement::from_json(Some(&v)).unwrap()
    }

    #[test]
    fn dialect_names_are_case_insensitive() {
        assert_eq!(Dialect::parse("SQLite").unwrap(), Dialect::Sqlite);
        assert_eq!(Dialect::parse("PostgreSQL").unwrap(), Dialect::PostgreSql);
        assert_eq!(Dialect::parse("mysql").unwrap(), Dialect::MySql);
        let e = Dialect::parse("oracle").unwrap_err();
        assert_eq!(e.status_code(), 422);
        assert!(e.to_string().contains("oracle"));
        assert_eq!(SUPPORTED_DATABASES, ["postgresql", "mysql", "sqlite"]);
    }

    #[test]
    fn value_formatting_per_dialect() {
        let cases: &[(Dialect, Cell, &str)] = &[
            (Dialect::PostgreSql, Cell::Missing, "NULL"),
            (Dialect::PostgreSql, Cell::text(""), "''"),
            (Dialect::PostgreSql, Cell::text("1000"), "'1000'"),
            (Dialect::PostgreSql, Cell::text("Bo's Café"), "'Bo''s Café'"),
            (Dialect::Sqlite, Cell::text("a\\b'"), "'a\\b'''"),
            (Dialect::MySql, Cell::text("Bo's \"x\""), "'Bo\\'s \\\"x\\\"'"),
            (Dialect::MySql, Cell::text("ends with \\"), "'ends with \\\\'"),
            (Dialect::MySql, Cell::text("\\'; DROP TABLE t; --"), "'\\\\\\'; DROP TABLE t; --'"),
            (Dialect::PostgreSql, Cell::Bool(true), "TRUE"),
            (Dialect::MySql, Cell::Bool(false), "0"),
            (Dialect::Sqlite, Cell::Int(-7), "-7"),
            (Dialect::MySql, Cell::Missing, "NULL"),
        ];
        for (d, cell, want) in cases {
            let mut s = String::new();
            d.push_value(&mut s, cell);
            assert_eq!(&s, want, "{d:?} {cell:?}");
        }
    }

    #[test]
    fn identifiers_plain_quoted_or_rejected() {
        let cases: &[(Dialect, &str, Option<&str>)] = &[
            (Dialect::PostgreSql, "users", Some("users")),
            (Dialect::PostgreSql, "sales.orders", Some("sales.orders")),
            (Dialect::PostgreSql, "_x$1", Some("_x$1")),
            (Dialect::PostgreSql, "my table", Some("\"my table\"")),
            (Dialect::Sqlite, "a\"b", Some("\"a\"\"b\"")),
            (Dialect::MySql, "users; DROP TABLE x", Some("`users; DROP TABLE x`")),
            (Dialect::MySql, "a`b", Some("`a``b`")),
            (Dialect::PostgreSql, "1st", Some("\"1st\"")),
            (Dialect::PostgreSql, "a..b", Some("\"a..b\"")),
            (Dialect::PostgreSql, "ünï", Some("\"ünï\"")),
            (Dialect::PostgreSql, "bad\0name", None),
            (Dialect::PostgreSql, "line\nbreak", None),
            (Dialect::PostgreSql, "", None),
        ];
        for (d, name, want) in cases {
            match (d.identifier(name), want) {
                (Ok(got), Some(w)) => assert_eq!(&got, w, "{name}"),
                (Err(e), None) => assert_eq!(e.status_code(), 422),
                (got, want) => panic!("{name}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn auto_increment_parsing() {
        assert_eq!(AutoIncrement::from_json(None).unwrap(), AutoIncrement::default());
        assert!(!auto(json!({})).enabled);
        let camel = auto(json!({"enabled": true, "columnName": "id", "incrementType": "SERIAL",
            "startValue": 10, "sequenceName": "id_seq"}));
        assert_eq!(
            (
                camel.enabled,
                camel.column_name.as_str(),
                camel.start_value,
                camel.increment_type.as_str(),
                camel.sequence_name.as_str()
            ),
            (true, "id", 10, "SERIAL", "id_seq")
        );
        let snake_wins =
            auto(json!({"enabled": "TRUE", "column_name": "a", "columnName": "b", "start_value": "100"}));
        assert_eq!(
            (snake_wins.enabled, snake_wins.column_name.as_str(), snake_wins.start_value),
            (true, "a", 100)
        );
        assert_eq!(snake_wins.sequence_name, "seq_a");
        let defaults =
            auto(json!({"enabled": true, "columnName": "", "startValue": null, "sequenceName": ""}));
        assert_eq!(
            (defaults.column_name.as_str(), defaults.start_value, defaults.sequence_name.as_str()),
            ("id", 1, "seq_id")
        );
        assert_eq!(auto(json!({"enabled": true, "startValue": 0})).start_value, 0);
        assert_eq!(auto(json!({"enabled": true, "startValue": ""})).start_value, 1);
        assert!(!auto(json!({"enabled": "false"})).enabled);
        for bad in [
            json!({"enabled": "yes please"}),
            json!({"enabled": 1}),
            json!({"enabled": true, "startValue": "abc"}),
            json!({"enabled": true, "startValue": 1.5}),
            json!({"enabled": true, "columnName": 5}),
            json!([1]),
        ] {
            assert_eq!(AutoIncrement::from_json(Some(&bad)).unwrap_err().status_code(), 422, "{bad}");
        }
    }

    #[test]
    fn increment_kinds_and_aliases() {
        use IncrementKind::*;
        let cases = [
            ("postgresql_serial", DatabaseAssigned),
            ("MYSQL_AUTO_INCREMENT", DatabaseAssigned),
            ("sqlite_autoincrement", DatabaseAssigned),
            ("none", DatabaseAssigned),
            ("SERIAL", DatabaseAssigned),
            ("bigserial", DatabaseAssigned),
            ("IDENTITY", DatabaseAssigned),
            ("auto_increment", DatabaseAssigned),
            ("AutoIncrement", DatabaseAssigned),
            ("manual_sequence", ManualSequence),
            ("Sequence", ManualSequence),
            ("uuid_generate", UuidGenerate),
            ("UUID", UuidGenerate),
        ];
        for (name, want) in cases {
            assert_eq!(IncrementKind::parse(name).unwrap(), want, "{name}");
        }
        let e = IncrementKind::parse("magic").unwrap_err();
        assert_eq!(e.status_code(), 422);
        assert_eq!(e.to_string(), "Failed to generate SQL: 'magic' is not a valid SQLAutoIncrementType");
    }

    #[test]
    fn standard_script_postgresql_with_transaction() {
        let stmts =
            generate_standard_sql(&people(), &request("postgresql", true), "2026-03-02T09:15:27.418220")
                .unwrap();
        assert_eq!(
            stmts,
            vec![
                "-- Generated SQL statements",
                "-- Database: postgresql",
                "-- Table: users",
                "-- Generated at: 2026-03-02T09:15:27.418220",
                "-- Total rows: 3",
                "",
                "BEGIN;",
                "INSERT INTO users (name, email, age) VALUES ('Alice', 'alice@test.com', '25');",
                "INSERT INTO users (name, email, age) VALUES ('Bob', 'bob@test.com', '30');",
                "INSERT INTO users (name, email, age) VALUES ('Charlie', 'c@test.com', '35');",
                "COMMIT;",
            ]
        );
    }

    #[test]
    fn transaction_lines_per_dialect_and_header_uses_lowercase_name() {
        for (db, begin) in [("MySQL", "START TRANSACTION;"), ("SQLite", "BEGIN TRANSACTION;")] {
            let stmts = generate_standard_sql(&people(), &request(db, true), "t").unwrap();
            assert_eq!(stmts[1], format!("-- Database: {}", db.to_lowercase()));
            assert_eq!(stmts[6], begin);
            assert_eq!(stmts.last().unwrap(), "COMMIT;");
        }
        let no_tx = generate_standard_sql(&people(), &request("postgresql", false), "t").unwrap();
        assert_eq!(no_tx.len(), 6 + 3);
        assert!(no_tx[6].starts_with("INSERT INTO users"));
    }

    #[test]
    fn missing_cells_are_null_and_unknown_mapped_columns_refused() {
        let mut t = table(&["Name", "Email"], &[&["", "x"]]);
        t.rows[0][1] = Cell::Missing;
        let mut req = request("postgresql", false);
        req.column_mapping = mapping(&[("name", "Name"), ("email", "Email")]);
        let stmts = generate_standard_sql(&t, &req, "t").unwrap();
        assert_eq!(stmts[6], "INSERT INTO users (name, email) VALUES ('', NULL);");

        req.column_mapping = mapping(&[("name", "Name"), ("age", "Nope"), ("x", "Gone")]);
        match generate_standard_sql(&t, &req, "t").unwrap_err() {
            OpError::Validation { message, details } => {
                assert_eq!(message, "Columns not found in data: Nope, Gone");
                assert_eq!(
                    details,
                    Some(
                        json!({"missing_columns": ["Nope", "Gone"], "available_columns": ["Name", "Email"]})
                    )
                );
            }
            other => panic!("{other}"),
        }
        let mut sink = Vec::new();
        assert!(write_standard_sql_file(&t, &req, "t", &mut sink).is_err());
        assert!(sink.is_empty(), "refused before anything is written");
        // Without a sheet, only the request itself is checked.
        assert!(StandardSqlGenerator::check_request(&req).is_ok());
    }

    #[test]
    fn auto_increment_in_insert_statements() {
        let cases = [
            ("postgresql", json!({"enabled": true, "increment_type": "manual_sequence", "sequence_name": "users_id_seq", "start_value": 100}),
                "INSERT INTO users (id, name, email, age) VALUES (nextval('users_id_seq'), 'Alice', 'alice@test.com', '25');",
                "INSERT INTO users (id, name, email, age) VALUES (nextval('users_id_seq'), 'Bob', 'bob@test.com', '30');"),
            ("mysql", json!({"enabled": true, "incrementType": "manual_sequence", "startValue": 100}),
                "INSERT INTO users (id, name, email, age) VALUES (100, 'Alice', 'alice@test.com', '25');",
                "INSERT INTO users (id, name, email, age) VALUES (101, 'Bob', 'bob@test.com', '30');"),
            ("postgresql", json!({"enabled": true, "increment_type": "uuid", "column_name": "uid"}),
                "INSERT INTO users (uid, name, email, age) VALUES (uuid_generate_v4(), 'Alice', 'alice@test.com', '25');",
                "INSERT INTO users (uid, name, email, age) VALUES (uuid_generate_v4(), 'Bob', 'bob@test.com', '30');"),
            ("mysql", json!({"enabled": true, "increment_type": "uuid_generate"}),
                "INSERT INTO users (id, name, email, age) VALUES (UUID(), 'Alice', 'alice@test.com', '25');",
                "INSERT INTO users (id, name, email, age) VALUES (UUID(), 'Bob', 'bob@test.com', '30');"),
            ("sqlite", json!({"enabled": true, "increment_type": "uuid_generate"}),
                "INSERT INTO users (id, name, email, age) VALUES (lower(hex(randomblob(16))), 'Alice', 'alice@test.com', '25');",
                "INSERT INTO users (id, name, email, age) VALUES (lower(hex(randomblob(16))), 'Bob', 'bob@test.com', '30');"),
            ("postgresql", json!({"enabled": true, "incrementType": "SERIAL", "startValue": 10}),
                "INSERT INTO users (name, email, age) VALUES ('Alice', 'alice@test.com', '25');",
                "INSERT INTO users (name, email, age) VALUES ('Bob', 'bob@test.com', '30');"),
            ("postgresql", json!({"enabled": false, "increment_type": "manual_sequence"}),
                "INSERT INTO users (name, email, age) VALUES ('Alice', 'alice@test.com', '25');",
                "INSERT INTO users (name, email, age) VALUES ('Bob', 'bob@test.com', '30');"),
        ];
        for (db, cfg, first, second) in cases {
            let mut req = request(db, false);
            req.auto_increment = auto(cfg.clone());
            let stmts = generate_standard_sql(&people(), &req, "t").unwrap();
            assert_eq!((stmts[6].as_str(), stmts[7].as_str()), (first, second), "{db} {cfg}");
        }
    }

    #[test]
    fn sequence_name_quotes_are_escaped_and_bad_types_fail_only_when_enabled() {
        let mut req = request("postgresql", false);
        req.auto_increment =
            auto(json!({"enabled": true, "increment_type": "manual_sequence", "sequence_name": "s'); DROP"}));
        let stmts = generate_standard_sql(&people(), &req, "t").unwrap();
        assert!(
            stmts[6].starts_with("INSERT INTO users (id, name, email, age) VALUES (nextval('s''); DROP'), ")
        );

        req.auto_increment = auto(json!({"enabled": true, "increment_type": "bogus"}));
        assert_eq!(generate_standard_sql(&people(), &req, "t").unwrap_err().status_code(), 422);
        req.auto_increment = auto(json!({"enabled": false, "increment_type": "bogus"}));
        assert!(generate_standard_sql(&people(), &req, "t").is_ok());
    }

    #[test]
    fn unsafe_identifiers_are_quoted() {
        let mut req = request("mysql", false);
        req.table_name = "users; DROP TABLE x".into();
        req.column_mapping = mapping(&[("full name", "Name")]);
        let stmts = generate_standard_sql(&people(), &req, "t").unwrap();
        assert_eq!(stmts[2], "-- Table: `users; DROP TABLE x`");
        assert_eq!(stmts[6], "INSERT INTO `users; DROP TABLE x` (`full name`) VALUES ('Alice');");
        req.table_name = "a\u{7}".into();
        assert_eq!(generate_standard_sql(&people(), &req, "t").unwrap_err().status_code(), 422);
    }

    #[test]
    fn template_mode() {
        let mut req = request("postgresql", true);
        req.template = Some(
            "UPDATE users SET email = {email}, at = {current_timestamp}, d = {current_date} WHERE name = {name} AND x = {other} -- {age}{auto_id}".into(),
        );
        let stmts = generate_standard_sql(&people(), &req, "t").unwrap();
        assert_eq!(stmts[6], "BEGIN;");
        assert_eq!(
            stmts[7],
            "UPDATE users SET email = 'alice@test.com', at = NOW(), d = CURRENT_DATE WHERE name = 'Alice' AND x = {other} -- '25'{auto_id}"
        );
        assert_eq!(stmts.len(), 11);

        for (db, ts, date) in [("mysql", "NOW()", "CURDATE()"), ("sqlite", "datetime('now')", "date('now')")]
        {
            let mut req = request(db, false);
            req.template = Some("{current_timestamp} {current_date}".into());
            assert_eq!(generate_standard_sql(&people(), &req, "t").unwrap()[6], format!("{ts} {date}"));
        }
    }

    #[test]
    fn template_mode_auto_id_and_no_rescan() {
        let cases = [
            (json!({"enabled": true, "startValue": 5}), "postgresql", ["5 'Alice'", "6 'Bob'"]),
            (
                json!({"enabled": true, "increment_type": "manual_sequence", "sequence_name": "sq"}),
                "postgresql",
                ["nextval('sq') 'Alice'", "nextval('sq') 'Bob'"],
            ),
            (
                json!({"enabled": true, "increment_type": "manual_sequence", "start_value": 3}),
                "sqlite",
                ["3 'Alice'", "4 'Bob'"],
            ),
            (json!({"enabled": true, "increment_type": "uuid"}), "mysql", ["UUID() 'Alice'", "UUID() 'Bob'"]),
        ];
        for (cfg, db, want) in cases {
            let mut req = request(db, false);
            req.auto_increment = auto(cfg.clone());
            req.template = Some("{auto_id} {name}".into());
            let stmts = generate_standard_sql(&people(), &req, "t").unwrap();
            assert_eq!([stmts[6].as_str(), stmts[7].as_str()], want, "{cfg}");
        }
        // A value holding placeholder text is inserted once, never substituted again.
        let t = table(&["Name", "Email", "Age"], &[&["{email}", "x@y", "1"]]);
        let mut req = request("postgresql", false);
        req.template = Some("{name} {email}".into());
        assert_eq!(generate_standard_sql(&t, &req, "t").unwrap()[6], "'{email}' 'x@y'");
    }

    #[test]
    fn sql_file_format_and_streaming() {
        let req = request("postgresql", true);
        let mut buf = Vec::new();
        let total = write_standard_sql_file(&people(), &req, "2026-03-02T09:15:27", &mut buf).unwrap();
        assert_eq!(total, 6 + 2 + 3);
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with(
            "-- Generated by Pycelize\n-- Generated at: 2026-03-02T09:15:27\n-- Total statements: 11\n\n-- Generated SQL statements\n"
        ));
        assert!(text.ends_with(
            "INSERT INTO users (name, email, age) VALUES ('Charlie', 'c@test.com', '35');\nCOMMIT;\n"
        ));
        assert_eq!(text.lines().count(), 4 + 11);

        // Same content as the JSON statement list written through write_statement_list.
        let stmts = generate_standard_sql(&people(), &req, "2026-03-02T09:15:27").unwrap();
        let mut listed = Vec::new();
        write_statement_list(&stmts, "2026-03-02T09:15:27", &mut listed).unwrap();
        assert_eq!(String::from_utf8(listed).unwrap(), text);

        // Five rows with transaction → 13 entries.
        let five = table(
            &["Name", "Email", "Age"],
            &[&["a", "", ""], &["b", "", ""], &["c", "", ""], &["d", "", ""], &["e", "", ""]],
        );
        let mut sink = Vec::new();
        assert_eq!(write_standard_sql_file(&five, &req, "t", &mut sink).unwrap(), 13);
    }

    #[test]
    fn streams_many_rows_with_bounded_buffers() {
        struct Counting(usize);
        impl Write for Counting {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0 += b.len();
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let row = vec![Cell::text("Alice"), Cell::text("a@b"), Cell::text("25")];
        let n = 50_000;
        let table = vec![row; n];
        let mut rows = table.iter();
        let columns: Vec<String> = ["Name", "Email", "Age"].iter().map(|s| s.to_string()).collect();
        let mut sink = Counting(0);
        let total = write_standard_sql_rows(&columns, &mut rows, n, &request("sqlite", true), "t", &mut sink)
            .unwrap();
        assert_eq!(total, n + 8);
        assert!(sink.0 > n * 60);
    }

    #[test]
    fn selection_for_generation_keeps_order_and_dedupes() {
        let t = table(&["a", "b", "c"], &[&["1", "x", "p"], &["1", "x", "q"], &["2", "y", "r"]]);
        let picked = select_for_generation(t.clone(), &["b".into(), "a".into()], true).unwrap();
        assert_eq!(picked.columns, ["b", "a"]);
        assert_eq!(
            picked.rows,
            vec![vec![Cell::text("x"), Cell::text("1")], vec![Cell::text("y"), Cell::text("2")]]
        );
        let all = select_for_generation(t.clone(), &[], false).unwrap();
        assert_eq!(all, t);
        assert_eq!(select_for_generation(t.clone(), &[], true).unwrap().row_count(), 3);
        let err = select_for_generation(t, &["a".into(), "zz".into(), "yy".into()], false).unwrap_err();
        assert_eq!(err.to_string(), "Columns not found: zz, yy");
        assert_eq!(err.details().unwrap()["missing_columns"], serde_json::json!(["zz", "yy"]));
    }
}
