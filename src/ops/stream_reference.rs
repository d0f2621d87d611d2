//! Reference comparison of the streamed operations (spooled sheet → chunked stage → writer) with the
//! whole-table code they replace on the REST endpoints and workflow steps: on the same workbook, the
//! same text bytes, and for workbooks the same data-sheet XML (cell values, types, column widths), the
//! same sheet names and the same info sheet (but its creation time).

use std::io::Read;
use std::path::{Path, PathBuf};

use actix_web::http::StatusCode;
use rust_xlsxwriter::Workbook;
use serde_json::{json, Value};

use super::bind::{bind_multi_key, bind_single_key, bind_spooled_to_file, BindKeys};
use super::extract::{
    extract_columns, extract_columns_to_file, extract_spooled_columns, extract_spooled_to_file,
    ExtractParams, Extraction, JsonArrayText,
};
use super::mapping::{map_columns_to_file, map_rows_to_file, map_spooled_to_file};
use super::normalize::{
    normalize_checked, normalize_rows_to_xlsx, normalize_spooled_to_xlsx, parse_steps, streams_by_chunk,
    CHUNK_ROWS,
};
use super::search::{search_rows_to_file, search_to_file, SearchRequest};
use crate::engine::StepControl;
use crate::envelope::{envelope_body_at, envelope_pieces_at, EnvelopeMeta};
use crate::table::read::{read_workbook, spool_workbook, ReadLimits};
use crate::table::spool::SpooledTable;
use crate::table::write::{write_table_xlsx, OutputFormat, WorkbookStyle};
use crate::table::Table;

const OK: StatusCode = StatusCode::OK;

/// More rows than two chunks, so chunk boundaries are crossed.
const ROWS: u32 = 2 * CHUNK_ROWS as u32 + 777;

/// A workbook with every kind of cell the reader meets: text (cased, padded, digits, dates, yes/no),
/// integers, floats, booleans, blank cells inside rows, short rows, and cells beyond the header's width.
fn fixture(dir: &Path) -> PathBuf {
    let path = dir.join("input.xlsx");
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    let header = ["id", "name", "city", "amount", "flag", "phone", "date", "note", "", "score"];
    for (c, h) in header.iter().enumerate() {
        if !h.is_empty() {
            sheet.write_string(0, c as u16, *h).unwrap();
        }
    }
    for r in 1..=ROWS {
        let i = r as u64;
        sheet.write_string(r, 0, format!("ID{i:06}")).unwrap();
        if !i.is_multiple_of(11) {
            sheet
                .write_string(
                    r,
                    1,
                    format!("  Name {} de la {}  ", i % 313, ["x", "ÉTÉ", "o'neil"][i as usize % 3]),
                )
                .unwrap();
        }
        if i.is_multiple_of(29) {
            // A short row: nothing after the name.
            continue;
        }
        sheet.write_string(r, 2, format!("city-{}", i % 97)).unwrap();
        if i.is_multiple_of(5) {
            sheet.write_number(r, 3, (i % 1000) as f64 * 1.25).unwrap();
        } else {
            sheet.write_number(r, 3, (i % 1000) as f64).unwrap();
        }
        match i % 4 {
            0 => sheet.write_boolean(r, 4, i.is_multiple_of(8)).unwrap(),
            1 => sheet.write_string(r, 4, "Yes").unwrap(),
            2 => sheet.write_string(r, 4, "no").unwrap(),
            _ => sheet,
        };
        sheet.write_string(r, 5, format!("1{:010}", i * 7919 % 10_000_000_000)).unwrap();
        sheet
            .write_string(r, 6, format!("2026-{:02}-{:02} 10:{:02}:00", i % 12 + 1, i % 28 + 1, i % 60))
            .unwrap();
        sheet.write_string(r, 7, format!("Note #{} $ {}.{}!", i % 13, i % 100, i % 7)).unwrap();
        if i.is_multiple_of(7) {
            sheet.write_string(r, 8, "beyond").unwrap();
        }
        if !i.is_multiple_of(3) {
            sheet.write_number(r, 9, (i % 100) as f64 + 0.5).unwrap();
        }
        if i.is_multiple_of(1001) {
            sheet.write_string(r, 11, "far").unwrap();
        }
    }
    workbook.save(&path).unwrap();
    path
}

fn zip_part(path: &Path, name: &str) -> Option<String> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut part = archive.by_name(name).ok()?;
    let mut text = String::new();
    part.read_to_string(&mut text).unwrap();
    Some(text)
}

/// Two workbooks are the same output: data sheet XML, sheet names, info sheet but its `Created` row.
fn assert_same_workbook(expected: &Path, got: &Path) {
    let data = "xl/worksheets/sheet1.xml";
    let (a, b) = (zip_part(expected, data).unwrap(), zip_part(got, data).unwrap());
    assert!(a == b, "data sheets differ ({} vs {} bytes)", a.len(), b.len());
    assert_eq!(zip_part(expected, "xl/workbook.xml"), zip_part(got, "xl/workbook.xml"));
    let info = |path: &Path| {
        zip_part(path, "xl/worksheets/sheet2.xml").map(|xml| {
            let created = xml.find("Created").map_or(xml.len(), |i| i);
            // Everything but the creation time (the row after the `Created` label).
            let end = xml[created..].find("</row>").map_or(xml.len(), |i| created + i);
            format!("{}{}", &xml[..created], &xml[end..])
        })
    };
    assert_eq!(info(expected), info(got));
}

fn spooled(input: &Path, dir: &Path) -> SpooledTable {
    spool_workbook(input, None, &ReadLimits::default(), dir).unwrap()
}

/// An empty `out` folder under `dir` and the workbook path in it (a run that fails must leave it empty).
fn empty_output_folder(dir: &Path) -> (PathBuf, PathBuf) {
    let out_dir = dir.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("out.xlsx");
    (out_dir, out)
}

fn whole(input: &Path) -> Table {
    read_workbook(input, None, &ReadLimits::default()).unwrap().table
}

fn without_times(mut report: Value) -> Value {
    if let Value::Object(fields) = &mut report {
        fields.remove("started_at");
        fields.remove("completed_at");
    }
    report
}

#[test]
fn streamed_normalization_writes_what_the_whole_table_pipeline_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path());
    let style = WorkbookStyle::default();
    let plans = [
        (
            json!([
                {"column_name": "name", "normalization_type": "lowercase"},
                {"column_name": "city", "normalization_type": "uppercase"},
                {"column_name": "note", "normalization_type": "trim_whitespace"},
                {"column_name": "name", "normalization_type": "TITLE_CASE", "backup_original": true}
            ]),
            false,
        ),
        (
            json!([
                {"column_name": "amount", "normalization_type": "integer_convert"},
                {"column_name": "score", "normalization_type": "round_decimal", "parameters": {"decimals": 0}},
                {"column_name": "flag", "normalization_type": "boolean_convert"},
                {"column_name": "phone", "normalization_type": "phone_format"},
                {"column_name": "date", "normalization_type": "date_format", "parameters": {"format": "%d/%m/%Y"}},
                {"column_name": "note", "normalization_type": "regex_replace",
                 "parameters": {"pattern": "#(\\d+)", "replacement": "n\\1"}},
                {"column_name": "note", "normalization_type": "currency_format"},
                {"column_name": "Unnamed: 8", "normalization_type": "yes_no_convert"},
                {"column_name": "name", "normalization_type": "remove_special_chars"}
            ]),
            true,
        ),
    ];
    for (i, (rules, backup)) in plans.iter().enumerate() {
        let steps = parse_steps(rules).unwrap();
        assert!(streams_by_chunk(&steps), "plan {i} streams");
        let expected = dir.path().join(format!("expected_{i}")).join("out.xlsx");
        let got = dir.path().join(format!("got_{i}")).join("out.xlsx");
        std::fs::create_dir_all(expected.parent().unwrap()).unwrap();
        std::fs::create_dir_all(got.parent().unwrap()).unwrap();

        // Plan 0 without the report's statistics, plan 1 with them.
        let with_stats = i == 1;
        let reference = normalize_checked(whole(&input), &steps, *backup, with_stats, u64::MAX).unwrap();
        write_table_xlsx(&expected, &reference.table, &style).unwrap();

        let mut table = spooled(&input, dir.path());
        let total = table.rows.len() as u64;
        let rows = &mut table.rows.reader().unwrap();
        let report = normalize_rows_to_xlsx(
            &table.columns,
            rows,
            total,
            &steps,
            *backup,
            with_stats,
            u64::MAX,
            &got,
            &style,
            &StepControl::NONE,
        )
        .unwrap();
        assert_same_workbook(&expected, &got);
        if with_stats {
            let stats = &reference.report["columns_processed"][0]["before_stats"];
            assert!(stats["unique_count"].as_u64().unwrap() > 100, "{stats}");
        }
        assert_eq!(without_times(report), without_times(reference.report), "plan {i}");
    }
}

#[test]
fn streamed_normalization_keeps_the_errors_of_the_whole_table_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path());
    let out = dir.path().join("out.xlsx");
    let run = |rules: Value, max_output: u64| {
        let steps = parse_steps(&rules).unwrap();
        let reference =
            normalize_checked(whole(&input), &steps, false, false, max_output).map(|_| ()).unwrap_err();
        let mut table = spooled(&input, dir.path());
        let total = table.rows.len() as u64;
        let rows = &mut table.rows.reader().unwrap();
        let style = WorkbookStyle::default();
        let none = StepControl::NONE;
        let got = normalize_rows_to_xlsx(
            &table.columns,
            rows,
            total,
            &steps,
            false,
            false,
            max_output,
            &out,
            &style,
            &none,
        )
        .unwrap_err();
        assert!(!out.exists(), "a refused run leaves no output");
        (reference.to_string(), got.to_string())
    };
    // A bad step (unknown column) is refused before anything is written, with the same 422.
    let (a, b) = run(json!([{"column_name": "nope", "normalization_type": "lowercase"}]), u64::MAX);
    assert_eq!(a, b);
    // The output budget (`file.max_output_mb`) is judged over the whole column, chunks added up.
    let big = json!([{"column_name": "note", "normalization_type": "regex_replace",
                      "parameters": {"pattern": "$", "replacement": "x".repeat(2000)}}]);
    let (a, b) = run(big, 8 * 1024 * 1024);
    assert_eq!(a, b);
    assert!(a.contains("MB"), "{a}");
}

/// The whole-table pipeline and [`normalize_spooled_to_xlsx`] on `input`: the same workbook and report.
fn assert_whole_column_plan_matches(
    input: &Path,
    table: &Table,
    rules: &Value,
    backup: bool,
    with_stats: bool,
) {
    let dir = tempfile::tempdir().unwrap();
    let style = WorkbookStyle::default();
    let steps = parse_steps(rules).unwrap();
    assert!(!streams_by_chunk(&steps), "a plan with whole-column rules: {rules}");
    let (expected, got) = (dir.path().join("expected.xlsx"), dir.path().join("got.xlsx"));
    let reference = normalize_checked(table.clone(), &steps, backup, with_stats, u64::MAX).unwrap();
    write_table_xlsx(&expected, &reference.table, &style).unwrap();
    let spool = spooled(input, dir.path());
    let report = normalize_spooled_to_xlsx(
        spool,
        &steps,
        backup,
        with_stats,
        u64::MAX,
        &got,
        &style,
        &StepControl::NONE,
    )
    .unwrap();
    assert_same_workbook(&expected, &got);
    assert_eq!(without_times(report), without_times(reference.report), "{rules}");
}

#[test]
fn whole_column_normalization_writes_what_the_whole_table_pipeline_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path());
    let table = whole(&input);
    let plans = [
        (
            json!([
                {"column_name": "amount", "normalization_type": "min_max_scale"},
                {"column_name": "score", "normalization_type": "z_score"},
                {"column_name": "name", "normalization_type": "fill_null_values", "parameters": {"method": "mode"}},
                {"column_name": "amount", "normalization_type": "outlier_removal", "parameters": {"multiplier": 1.0}},
                {"column_name": "city", "normalization_type": "lowercase"},
                {"column_name": "score", "normalization_type": "fill_null_values",
                 "parameters": {"method": "mean"}, "backup_original": true}
            ]),
            false,
            true,
        ),
        (
            json!([
                {"column_name": "Unnamed: 8", "normalization_type": "fill_null_values",
                 "parameters": {"method": "median"}},
                {"column_name": "amount", "normalization_type": "z_score"},
                {"column_name": "score", "normalization_type": "integer_convert"},
                {"column_name": "score", "normalization_type": "min_max_scale"},
                {"column_name": "name", "normalization_type": "fill_null_values", "parameters": {"value": "zz"}}
            ]),
            true,
            false,
        ),
        (
            // A rule on the backup the pipeline made, and a backup of a backup.
            json!([
                {"column_name": "amount", "normalization_type": "min_max_scale", "backup_original": true},
                {"column_name": "amount_original", "normalization_type": "z_score", "backup_original": true},
                {"column_name": "flag", "normalization_type": "fill_null_values", "parameters": {"method": "mode"}}
            ]),
            false,
            true,
        ),
    ];
    for (rules, backup, with_stats) in &plans {
        assert_whole_column_plan_matches(&input, &table, rules, *backup, *with_stats);
    }
}

#[test]
fn whole_column_normalization_overwrites_an_existing_backup_column_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.xlsx");
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    for (c, h) in ["x", "x_original", "y", "z"].iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    for r in 1..=3000u32 {
        if r % 4 != 0 {
            sheet.write_number(r, 0, f64::from(r % 17)).unwrap();
        }
        sheet.write_string(r, 1, format!("old {r}")).unwrap();
        sheet.write_string(r, 2, format!("y{}", r % 5)).unwrap();
        if r % 3 == 0 {
            sheet.write_number(r, 3, f64::from(r) * 0.5).unwrap();
        }
    }
    workbook.save(&path).unwrap();
    let table = whole(&path);
    let rules = json!([
        {"column_name": "x", "normalization_type": "fill_null_values", "parameters": {"method": "mean"},
         "backup_original": true},
        {"column_name": "z", "normalization_type": "outlier_removal"}
    ]);
    assert_whole_column_plan_matches(&path, &table, &rules, false, true);
    assert_whole_column_plan_matches(&path, &table, &rules, true, false);
}

#[test]
fn whole_column_normalization_keeps_the_errors_of_the_whole_table_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path());
    let (out_dir, out) = empty_output_folder(dir.path());
    let run = |rules: Value, max_output: u64, control: &StepControl| {
        let steps = parse_steps(&rules).unwrap();
        let reference = normalize_checked(whole(&input), &steps, false, false, max_output).map(|_| ());
        let style = WorkbookStyle::default();
        let spool = spooled(&input, dir.path());
        let got = normalize_spooled_to_xlsx(spool, &steps, false, false, max_output, &out, &style, control)
            .unwrap_err();
        assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0, "a refused run leaves nothing");
        (reference.map_err(|e| e.to_string()), got)
    };
    // A bad step is refused before anything is read, with the same 422.
    let bad = json!([{"column_name": "nope", "normalization_type": "z_score"}]);
    let (a, b) = run(bad, u64::MAX, &StepControl::NONE);
    assert_eq!(a.unwrap_err(), b.to_string());
    // The output budget (`file.max_output_mb`) is judged on the whole column, as before.
    let big = json!([{"column_name": "Unnamed: 8", "normalization_type": "fill_null_values",
                      "parameters": {"value": "x".repeat(4000)}}]);
    let (a, b) = run(big, 8 * 1024 * 1024, &StepControl::NONE);
    assert_eq!(a.clone().unwrap_err(), b.to_string());
    assert!(a.unwrap_err().contains("MB"));
    // A stop request ends the run with nothing written.
    let control = StepControl::new();
    control.stop(crate::engine::StopReason::Cancelled);
    let plan = json!([{"column_name": "amount", "normalization_type": "min_max_scale"}]);
    let (_, b) = run(plan, u64::MAX, &control);
    assert!(matches!(b, super::OpError::Table(crate::table::TableError::Cancelled)), "{b}");
}

#[test]
fn whole_column_normalization_runs_column_groups_apart_and_reassembles_them_in_step_order() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path());
    let table = whole(&input);
    // Steps on five columns interleaved, whole-column and cell-by-cell rules on the same columns,
    // outlier_removal, backups made early and late (the late one must copy the uploaded column although
    // the column was transformed twice before), a rule on a backup the pipeline made and a backup of it:
    // the report entries, the order of the created columns and every cell must be the whole-table run's.
    let plan = json!([
        {"column_name": "score", "normalization_type": "fill_null_values", "parameters": {"method": "median"}},
        {"column_name": "name", "normalization_type": "trim_whitespace"},
        {"column_name": "amount", "normalization_type": "outlier_removal", "parameters": {"multiplier": 0.5},
         "backup_original": true},
        {"column_name": "city", "normalization_type": "uppercase"},
        {"column_name": "score", "normalization_type": "z_score"},
        {"column_name": "name", "normalization_type": "fill_null_values", "parameters": {"method": "mode"}},
        {"column_name": "amount_original", "normalization_type": "min_max_scale", "backup_original": true},
        {"column_name": "flag", "normalization_type": "fill_null_values", "parameters": {"method": "mode"}},
        {"column_name": "score", "normalization_type": "round_decimal", "parameters": {"decimals": 2},
         "backup_original": true},
        {"column_name": "amount", "normalization_type": "fill_null_values", "parameters": {"method": "mean"}},
        {"column_name": "city", "normalization_type": "min_max_scale"},
        {"column_name": "name", "normalization_type": "lowercase", "backup_original": true}
    ]);
    for (backup, with_stats) in [(false, true), (false, false), (true, true)] {
        assert_whole_column_plan_matches(&input, &table, &plan, backup, with_stats);
    }
}

#[test]
fn whole_column_normalization_ends_with_the_error_of_the_earliest_step() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path());
    let (out_dir, out) = empty_output_folder(dir.path());
    // `city` (steps 0 and 2) runs as one group before `note` (step 1), and both fail (a value would be
    // longer than Excel allows): the run must end with step 1's error, as the whole-table run does.
    let huge = |n: usize| json!({"pattern": ".", "replacement": "y".repeat(n)});
    let plan = json!([
        {"column_name": "city", "normalization_type": "fill_null_values", "parameters": {"method": "mode"}},
        {"column_name": "note", "normalization_type": "regex_replace", "parameters": huge(8000)},
        {"column_name": "city", "normalization_type": "regex_replace", "parameters": huge(20000)},
        {"column_name": "amount", "normalization_type": "z_score"}
    ]);
    let steps = parse_steps(&plan).unwrap();
    let reference = normalize_checked(whole(&input), &steps, false, true, u64::MAX).unwrap_err().to_string();
    assert!(reference.contains("'note'"), "{reference}");
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    let spool = spooled(&input, dir.path());
    let got = normalize_spooled_to_xlsx(
        spool,
        &steps,
        false,
        true,
        u64::MAX,
        &out,
        &WorkbookStyle::default(),
        &StepControl::NONE,
    )
    .unwrap_err();
    assert_eq!(got.to_string(), reference);
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0, "a failed run leaves nothing");
    let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after, "no temporary file is left behind");
}

#[test]
fn only_cell_by_cell_plans_stream() {
    let steps = |t: &str| parse_steps(&json!([{"column_name": "a", "normalization_type": t}])).unwrap();
    assert!(streams_by_chunk(&steps("Lowercase")));
    for whole_column in ["min_max_scale", "z_score", "fill_null_values", "outlier_removal"] {
        assert!(!streams_by_chunk(&steps(whole_column)), "{whole_column}");
    }
}

#[test]
fn streamed_search_writes_what_the_whole_table_search_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path());
    let table = whole(&input);
    let conditions = r#"[{"column": "amount", "operator": "greater_than", "value": 400},
                         {"column": "name", "operator": "contains", "value": "de la x"}]"#;
    for format in ["xlsx", "csv", "json"] {
        let request =
            SearchRequest::parse(Some(conditions), Some("or"), Some(format), None, OutputFormat::Xlsx)
                .unwrap();
        let compiled = request.compile(&table.columns).unwrap();
        let expected = dir.path().join(format!("expected.{format}"));
        let got = dir.path().join(format!("got.{format}"));
        let rows = table.rows.iter().map(Ok);
        let a = search_to_file(&table.columns, rows, &compiled, request.format, &expected).unwrap();
        let mut spool = spooled(&input, dir.path());
        let total = spool.rows.len() as u64;
        let rows = &mut spool.rows.reader().unwrap();
        let b = search_rows_to_file(
            &spool.columns,
            rows,
            total,
            &compiled,
            request.format,
            &got,
            &StepControl::NONE,
        )
        .unwrap();
        assert_eq!((a.total_rows, a.filtered_rows), (b.total_rows, b.filtered_rows));
        assert!(a.filtered_rows > 1000 && a.filtered_rows < a.total_rows, "{}", a.filtered_rows);
        if format == "xlsx" {
            assert_same_workbook(&expected, &got);
        } else {
            assert!(
                std::fs::read(&expected).unwrap() == std::fs::read(&got).unwrap(),
                "{format} bytes differ"
            );
        }
    }
}

#[test]
fn streamed_extraction_gives_what_the_whole_table_extraction_gave() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path());
    let table = whole(&input);
    let style = WorkbookStyle::default();
    for dedupe in [false, true] {
        let columns: Vec<String> = ["city", "flag", "Unnamed: 8"].map(String::from).to_vec();
        let expected = dir.path().join(format!("expected_{dedupe}.xlsx"));
        let got = dir.path().join(format!("got_{dedupe}.xlsx"));
        let a = extract_columns_to_file(&table, &columns, dedupe, &expected, &style).unwrap();
        let b = extract_spooled_to_file(
            spooled(&input, dir.path()),
            &columns,
            dedupe,
            &got,
            &style,
            &StepControl::NONE,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_same_workbook(&expected, &got);

        let columns = ["amount", "nope", "name", "amount", "score"].map(String::from).to_vec();
        let params = ExtractParams { columns, remove_duplicates: dedupe, include_statistics: true };
        let a = extract_columns(&table, &params, "t".into()).unwrap();
        // The workflow step's answer (JSON values).
        let b: Extraction =
            extract_spooled_columns(spooled(&input, dir.path()), &params, "t".into(), &StepControl::NONE)
                .unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
        // The REST answer (JSON text in pieces): the same response body as the whole-table answer put
        // into the envelope as a value.
        let c: Extraction<JsonArrayText> =
            extract_spooled_columns(spooled(&input, dir.path()), &params, "t".into(), &StepControl::NONE)
                .unwrap();
        let meta = EnvelopeMeta { api_version: "1.0.0".into(), locale: "en_US".into() };
        let time = || "2026-12-03T00:00:00.000000+00:00".to_string();
        let whole = serde_json::to_value(&a).unwrap();
        let expected = serde_json::to_vec(&envelope_body_at(OK, &a.message(), whole, 0, "r", &meta, time()));
        let pieces = envelope_pieces_at(OK, &c.message(), c.into_sorted_json(), 0, "r", &meta, time());
        assert!(pieces.len() > 3, "the values are passed on as blocks");
        assert!(expected.unwrap() == pieces.concat(), "response bytes differ (dedupe {dedupe})");
    }
    // A missing column is refused the same way, with nothing written.
    let columns = vec!["city".to_string(), "nope".to_string()];
    let out = dir.path().join("refused.xlsx");
    let a = extract_columns_to_file(&table, &columns, false, &out, &style).unwrap_err();
    let b = extract_spooled_to_file(
        spooled(&input, dir.path()),
        &columns,
        false,
        &out,
        &style,
        &StepControl::NONE,
    )
    .unwrap_err();
    assert_eq!(a.to_string(), b.to_string());
    assert!(!out.exists());
}

#[test]
fn streamed_mapping_writes_what_the_whole_table_mapping_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path());
    let table = whole(&input);
    let style = WorkbookStyle::default();
    let mapping = json!({
        "Score": "score",
        "Ghost": "nope",
        "Town": {"source": "city", "default": "Unknown"},
        "Name": {"source": "name", "default": 0},
        "Flag": {"source": "flag", "default": true},
        "Beyond": {"source": "Unnamed: 8", "default": 2.5},
        "Amount": {"source": "amount"},
        "Const": {"default": "fixed"},
        "EmptySource": {"source": "", "default": "x"},
        "Absent": {"source": "zzz", "default": 7},
        "Number": 5,
        "id": "id",
    });
    let mapping = mapping.as_object().unwrap();
    let expected = dir.path().join("expected.xlsx");
    let got = dir.path().join("got.xlsx");
    let a = map_columns_to_file(&table, mapping, &expected, &style).unwrap();
    let b =
        map_spooled_to_file(spooled(&input, dir.path()), mapping, &got, &style, &StepControl::NONE).unwrap();
    assert_eq!(a, b);
    assert_eq!(b, ["Source column 'nope' not found", "Source column 'zzz' not found"]);
    assert_same_workbook(&expected, &got);
    // An empty mapping is refused the same way, with nothing written.
    let out = dir.path().join("refused.xlsx");
    let empty = serde_json::Map::new();
    let a = map_columns_to_file(&table, &empty, &out, &style).unwrap_err();
    let b = map_spooled_to_file(spooled(&input, dir.path()), &empty, &out, &style, &StepControl::NONE)
        .unwrap_err();
    assert_eq!(a.to_string(), b.to_string());
    assert!(!out.exists());
}

#[test]
fn a_stop_request_ends_the_streamed_mapping_with_nothing_left() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path());
    let (out_dir, out) = empty_output_folder(dir.path());
    let mapping = json!({"Name": "name", "Town": "city"});
    let mut table = spooled(&input, dir.path());
    let total = table.rows.len() as u64;
    let control = StepControl::new();
    let mut rows = StopAfter { inner: table.rows.reader().unwrap(), control: &control, left: 100, handed: 0 };
    let err = map_rows_to_file(
        &table.columns,
        &mut rows,
        total,
        mapping.as_object().unwrap(),
        &out,
        &WorkbookStyle::default(),
        &control,
    )
    .unwrap_err();
    assert!(matches!(err, super::OpError::Table(crate::table::TableError::Cancelled)), "{err}");
    let checked_every = crate::engine::CHECK_EVERY_ROWS as usize;
    assert!(rows.handed <= checked_every + 1, "stopped at the next check ({} rows)", rows.handed);
    assert!((rows.handed as u64) < total);
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0, "no output or temporary file is left");
}

/// A bind file for the fixture: keys on `city` (`city-0` … `city-96`) and `flag`, with duplicates, blank and
/// absent keys, keys no source row has, and a first bound cell that is sometimes empty.
fn bind_fixture(dir: &Path) -> PathBuf {
    let path = dir.join("bind.xlsx");
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    for (c, h) in ["code", "city", "region", "flag", "size"].iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    for r in 1..=400u32 {
        sheet.write_string(r, 0, format!("C{r}")).unwrap();
        match r % 10 {
            // No key at all, or an empty one.
            3 => {}
            7 => {
                sheet.write_string(r, 1, "").unwrap();
            }
            _ => {
                sheet.write_string(r, 1, format!("city-{}", r % 130)).unwrap();
            }
        }
        if r % 6 != 0 {
            sheet.write_string(r, 2, format!("region {}", r % 9)).unwrap();
        }
        sheet.write_string(r, 3, ["Yes", "no", "TRUE"][r as usize % 3]).unwrap();
        sheet.write_number(r, 4, f64::from(r) * 1.5).unwrap();
    }
    workbook.save(&path).unwrap();
    path
}

#[test]
fn streamed_binds_write_what_the_whole_table_binds_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path());
    let bind_path = bind_fixture(dir.path());
    let (source, bind) = (whole(&input), whole(&bind_path));
    let style = WorkbookStyle::default();
    let columns = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases = [
        (BindKeys::Single("city".into()), columns(&["region", "size", "city", "region"])),
        (BindKeys::Multi(columns(&["city", "flag"])), columns(&["size", "code"])),
    ];
    for (i, (keys, bind_columns)) in cases.iter().enumerate() {
        let expected = dir.path().join(format!("expected_{i}.xlsx"));
        let got = dir.path().join(format!("got_{i}.xlsx"));
        let reference = match keys {
            BindKeys::Single(key) => bind_single_key(&source, &bind, key, bind_columns),
            BindKeys::Multi(keys) => bind_multi_key(&source, &bind, keys, bind_columns),
        }
        .unwrap();
        write_table_xlsx(&expected, &reference.table, &style).unwrap();
        let stats = bind_spooled_to_file(
            spooled(&input, dir.path()),
            spooled(&bind_path, dir.path()),
            keys,
            bind_columns,
            &got,
            &style,
            &StepControl::NONE,
        )
        .unwrap();
        assert_same_workbook(&expected, &got);
        assert_eq!(stats, reference.stats, "{keys:?}");
        assert!(stats["matched_rows"].as_u64().unwrap() > 100, "{stats}");
        assert!(stats["statistics"]["duplicate_keys_removed"].as_u64().unwrap() > 5, "{stats}");
    }
    // Every refusal is the whole-table one, with nothing written; so is a stop request.
    let out = dir.path().join("refused.xlsx");
    let refusals = [
        (BindKeys::Single("nope".into()), columns(&["region"])),
        (BindKeys::Single("code".into()), columns(&["region"])),
        (BindKeys::Multi(columns(&["city", "nope", "gone"])), columns(&["region"])),
        (BindKeys::Single("city".into()), columns(&["region", "missing"])),
        (BindKeys::Single("city".into()), columns(&["flag"])),
        (BindKeys::Single("city".into()), columns(&["city"])),
    ];
    for (keys, bind_columns) in &refusals {
        let reference = match keys {
            BindKeys::Single(key) => bind_single_key(&source, &bind, key, bind_columns),
            BindKeys::Multi(keys) => bind_multi_key(&source, &bind, keys, bind_columns),
        }
        .map(|_| ())
        .unwrap_err();
        let got = bind_spooled_to_file(
            spooled(&input, dir.path()),
            spooled(&bind_path, dir.path()),
            keys,
            bind_columns,
            &out,
            &style,
            &StepControl::NONE,
        )
        .unwrap_err();
        assert_eq!(format!("{reference:?}"), format!("{got:?}"));
        assert!(!out.exists());
    }
    let control = StepControl::new();
    control.stop(crate::engine::StopReason::Cancelled);
    let (keys, bind_columns) = &cases[0];
    let spools = (spooled(&input, dir.path()), spooled(&bind_path, dir.path()));
    let err =
        bind_spooled_to_file(spools.0, spools.1, keys, bind_columns, &out, &style, &control).unwrap_err();
    assert!(matches!(err, super::OpError::Table(crate::table::TableError::Cancelled)), "{err}");
    assert!(!out.exists());
}

/// Hands out rows, asking the step to stop once `left` rows are out; counts what it handed out.
struct StopAfter<'a, S> {
    inner: S,
    control: &'a StepControl,
    left: usize,
    handed: usize,
}

impl<S: crate::table::RowSource> crate::table::RowSource for StopAfter<'_, S> {
    fn next_row(&mut self) -> Result<Option<&[crate::table::Cell]>, crate::table::TableError> {
        if self.left == 0 {
            self.control.stop(crate::engine::StopReason::Cancelled);
        } else {
            self.left -= 1;
        }
        self.handed += 1;
        self.inner.next_row()
    }
}

#[test]
fn a_stop_request_ends_the_streamed_normalization_at_the_next_chunk_with_nothing_left() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path());
    let (out_dir, out) = empty_output_folder(dir.path());
    let steps = parse_steps(&json!([{"column_name": "name", "normalization_type": "lowercase"}])).unwrap();
    let mut table = spooled(&input, dir.path());
    let total = table.rows.len() as u64;
    let control = StepControl::new();
    let mut rows = StopAfter { inner: table.rows.reader().unwrap(), control: &control, left: 100, handed: 0 };
    let err = normalize_rows_to_xlsx(
        &table.columns,
        &mut rows,
        total,
        &steps,
        false,
        false,
        u64::MAX,
        &out,
        &WorkbookStyle::default(),
        &control,
    )
    .unwrap_err();
    assert!(matches!(err, super::OpError::Table(crate::table::TableError::Cancelled)), "{err}");
    assert!(rows.handed <= CHUNK_ROWS + 1, "stopped within the chunk it was asked in ({})", rows.handed);
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0, "no output or temporary file is left");
}
