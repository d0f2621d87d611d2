use std::io::Read;

use calamine::{Data, Reader, Xlsx};

use super::*;

fn columns(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn part(path: &Path, name: &str) -> String {
    let mut archive = zip::ZipArchive::new(File::open(path).unwrap()).unwrap();
    let mut xml = String::new();
    archive.by_name(name).unwrap().read_to_string(&mut xml).unwrap();
    xml
}

fn open(path: &Path) -> Xlsx<std::io::BufReader<File>> {
    calamine::open_workbook(path).unwrap()
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sample_table() -> Table {
    Table {
        columns: columns(&["name", "amount", "flag", "note"]),
        rows: vec![
            vec![Cell::text("John"), Cell::Int(1000), Cell::Bool(true), Cell::text("=HYPERLINK(\"x\")")],
            vec![Cell::text(""), Cell::Float(1500.75), Cell::Bool(false), Cell::Missing],
            vec![Cell::text("bad\u{1}ctl\u{8}\tok"), Cell::Missing, Cell::text("x"), Cell::text("0012")],
        ],
    }
}

#[test]
fn standard_writer_layout_and_cell_types() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.xlsx");
    let rows = write_table_xlsx(&path, &sample_table(), &WorkbookStyle::default()).unwrap();
    assert_eq!(rows, 3);
    assert_eq!(dir_entries(dir.path()), vec!["out.xlsx"], "no temporary files left behind");

    let mut wb = open(&path);
    assert_eq!(wb.sheet_names(), vec!["Sheet1", "Info"]);
    let data = wb.worksheet_range("Sheet1").unwrap();
    let got: Vec<Vec<Data>> = data.rows().map(|r| r.to_vec()).collect();
    assert_eq!(
        got,
        vec![
            vec![
                Data::String("name".into()),
                Data::String("amount".into()),
                Data::String("flag".into()),
                Data::String("note".into())
            ],
            vec![
                Data::String("John".into()),
                Data::Float(1000.0),
                Data::Bool(true),
                Data::String("=HYPERLINK(\"x\")".into())
            ],
            vec![Data::Empty, Data::Float(1500.75), Data::Bool(false), Data::Empty],
            vec![
                Data::String("badctl\tok".into()),
                Data::Empty,
                Data::String("x".into()),
                Data::String("0012".into())
            ],
        ]
    );
    let sheet = part(&path, "xl/worksheets/sheet1.xml");
    assert!(!sheet.contains("<f>"), "text must never become a formula: {sheet}");

    let info = wb.worksheet_range("Info").unwrap();
    let info: Vec<Vec<Data>> = info.rows().map(|r| r.to_vec()).collect();
    assert_eq!(info[0], vec![Data::String("Property".into()), Data::String("Value".into())]);
    assert_eq!(info[1], vec![Data::String("File".into()), Data::String("out.xlsx".into())]);
    assert_eq!(info[2][0], Data::String("Created".into()));
    let created = info[2][1].to_string();
    assert!(chrono::NaiveDateTime::parse_from_str(&created, "%Y-%m-%d %H:%M:%S").is_ok(), "{created}");
    assert_eq!(info[3], vec![Data::String("Rows".into()), Data::Float(3.0)]);
    assert_eq!(info[4], vec![Data::String("Columns".into()), Data::Float(4.0)]);
    assert_eq!(
        info[5],
        vec![Data::String("Column Names".into()), Data::String("name, amount, flag, note".into())]
    );
}

#[test]
fn column_widths_are_capped_lengths_plus_two() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.xlsx");
    let table = Table {
        columns: columns(&["a", "bb", "c", "d"]),
        rows: vec![
            vec![Cell::text("x".repeat(80)), Cell::Missing, Cell::Float(1500.75), Cell::Bool(false)],
            vec![Cell::text("é"), Cell::text(""), Cell::Int(7), Cell::Bool(true)],
        ],
    };
    let style = WorkbookStyle { max_column_width: 50, ..WorkbookStyle::default() };
    write_table_xlsx(&path, &table, &style).unwrap();
    let sheet = part(&path, "xl/worksheets/sheet1.xml");
    // 80 → capped at 50; "bb" vs Missing(3) → 5; "1500.75" → 9; "False" → 7.
    for (col, width) in [(1, 50.0), (2, 5.0), (3, 9.0), (4, 7.0)] {
        let needle = format!("<col min=\"{col}\" max=\"{col}\" width=\"{}", width + 0.7109375);
        assert!(sheet.contains(&needle), "column {col} width {width}: {sheet}");
    }
}

#[test]
fn sheet_names_and_info_collision() {
    let dir = tempfile::tempdir().unwrap();
    let table = Table { columns: columns(&["a"]), rows: vec![vec![Cell::text("1")]; 3] };

    // Acceptance §13.1 fact 5: a named data sheet holding the rows.
    let path = dir.path().join("named.xlsx");
    let style = WorkbookStyle { data_sheet_name: "TestSheet".into(), ..WorkbookStyle::default() };
    write_table_xlsx(&path, &table, &style).unwrap();
    let mut wb = open(&path);
    assert_eq!(wb.sheet_names(), vec!["TestSheet", "Info"]);
    assert_eq!(wb.worksheet_range("TestSheet").unwrap().height(), 4);

    let path = dir.path().join("collide.xlsx");
    let style = WorkbookStyle { data_sheet_name: "Info".into(), ..WorkbookStyle::default() };
    write_table_xlsx(&path, &table, &style).unwrap();
    assert_eq!(open(&path).sheet_names(), vec!["Info", "Info1"]);

    let path = dir.path().join("noinfo.xlsx");
    let style = WorkbookStyle { info_sheet_name: None, ..WorkbookStyle::default() };
    write_table_xlsx(&path, &table, &style).unwrap();
    assert_eq!(open(&path).sheet_names(), vec!["Sheet1"]);

    let path = dir.path().join("custom.xlsx");
    let style = WorkbookStyle { info_sheet_name: Some("About".into()), ..WorkbookStyle::default() };
    write_table_xlsx(&path, &table, &style).unwrap();
    assert_eq!(open(&path).sheet_names(), vec!["Sheet1", "About"]);

    let bad = WorkbookStyle { data_sheet_name: "a/b".into(), ..WorkbookStyle::default() };
    let err = write_table_xlsx(&dir.path().join("bad.xlsx"), &table, &bad).unwrap_err();
    assert!(matches!(err, TableError::InvalidSheetName { .. }), "{err}");
    assert!(!dir.path().join("bad.xlsx").exists());
}

#[test]
fn sheet_name_validation() {
    let ok = ["Sheet1", "Données 2024", "a'b", &"x".repeat(31)];
    for name in ok {
        assert!(validate_sheet_name(name).is_ok(), "{name}");
    }
    let long = "x".repeat(32);
    let bad = ["", long.as_str(), "a/b", "a\\b", "a?", "a*", "a:b", "[a", "a]", "'a", "a'"];
    for name in bad {
        assert!(matches!(validate_sheet_name(name), Err(TableError::InvalidSheetName { .. })), "{name}");
    }
    assert_eq!(
        validate_sheet_name("a/b").unwrap_err().to_string(),
        "Invalid sheet name 'a/b': the character / is not allowed in a sheet name"
    );
    assert_eq!(info_sheet_name_for("Info", "Info"), "Info1");
    assert_eq!(info_sheet_name_for("INFO", "Info"), "Info1");
    assert_eq!(info_sheet_name_for("Sheet1", "Info"), "Info");
}

#[test]
fn xml_forbidden_characters_are_removed() {
    assert_eq!(xml_safe_text("a\u{0}b\u{1f}c\td\ne\rf\u{FFFE}"), "abc\td\ne\rf");
    assert!(matches!(xml_safe_text("plain"), Cow::Borrowed("plain")));
}

#[test]
fn search_workbook_has_styled_header_and_no_info() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.xlsx");
    let table = Table {
        columns: columns(&["id", "name"]),
        rows: vec![vec![Cell::text("021201"), Cell::text("=1+1")], vec![Cell::Missing, Cell::text("")]],
    };
    assert_eq!(write_table_search(&path, &table, OutputFormat::Xlsx).unwrap(), 2);
    let mut wb = open(&path);
    assert_eq!(wb.sheet_names(), vec!["Sheet1"]);
    let got: Vec<Vec<Data>> = wb.worksheet_range("Sheet1").unwrap().rows().map(|r| r.to_vec()).collect();
    assert_eq!(
        got,
        vec![
            vec![Data::String("id".into()), Data::String("name".into())],
            vec![Data::String("021201".into()), Data::String("=1+1".into())],
        ]
    );
    let sheet = part(&path, "xl/worksheets/sheet1.xml");
    assert!(!sheet.contains("<cols>"), "no width adjustment");
    assert!(sheet.contains(r#"<c r="A1" s="1""#), "header cells carry the style: {sheet}");
    let styles = part(&path, "xl/styles.xml");
    assert!(
        styles.contains("<b/>")
            && styles.contains(r#"style="thin""#)
            && styles.contains(r#"horizontal="center""#)
    );
}

#[test]
fn csv_output_is_minimally_quoted_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.csv");
    let table = Table {
        columns: columns(&["a", "b"]),
        rows: vec![
            vec![Cell::text("x,y"), Cell::text("say \"hi\"")],
            vec![Cell::text("line\nbreak"), Cell::Missing],
            vec![Cell::text("café"), Cell::text(" sp ")],
        ],
    };
    write_table_search(&path, &table, OutputFormat::Csv).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "a,b\n\"x,y\",\"say \"\"hi\"\"\"\n\"line\nbreak\",\ncafé, sp \n"
    );
    // A record whose only field is empty is written as `""`, so it is not read back as a blank line.
    let table = Table {
        columns: columns(&["a"]),
        rows: vec![vec![Cell::text("")], vec![Cell::Missing], vec![Cell::text("x")]],
    };
    write_table_search(&path, &table, OutputFormat::Csv).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\n\"\"\n\"\"\nx\n");
}

#[test]
fn json_output_keeps_column_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    let table = Table {
        columns: columns(&["zeta", "alpha", "mid"]),
        rows: vec![
            vec![Cell::text("1"), Cell::Missing, Cell::text("a/b")],
            vec![Cell::text("é"), Cell::text(""), Cell::Int(3)],
        ],
    };
    write_table_search(&path, &table, OutputFormat::Json).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let want = serde_json::json!([
        {"zeta": "1", "alpha": null, "mid": "a/b"},
        {"zeta": "é", "alpha": "", "mid": 3}
    ]);
    assert_eq!(value, want);
    let keys: Vec<&String> = value[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, vec!["zeta", "alpha", "mid"]);
    assert!(text.starts_with("[\n  {\n    \"zeta\": \"1\","), "{text}");

    let empty = dir.path().join("e.json");
    write_table_search(&empty, &Table::new(columns(&["a"])), OutputFormat::Json).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&empty).unwrap()).unwrap(),
        serde_json::json!([])
    );
}

#[test]
fn unfinished_sinks_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    for format in [OutputFormat::Xlsx, OutputFormat::Csv, OutputFormat::Json] {
        let path = dir.path().join(format!("partial.{}", format.extension()));
        let mut sink = search_sink(format, &path, &columns(&["a"])).unwrap();
        sink.push_row(&[Cell::text("1")]).unwrap();
        drop(sink);
        assert!(!path.exists());
    }
    assert!(dir_entries(dir.path()).is_empty(), "{:?}", dir_entries(dir.path()));
}

#[test]
fn overwrites_an_existing_output_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("same.csv");
    std::fs::write(&path, "old").unwrap();
    write_table_search(
        &path,
        &Table { columns: columns(&["a"]), rows: vec![vec![Cell::text("new")]] },
        OutputFormat::Csv,
    )
    .unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nnew\n");
}

#[test]
fn output_format_names() {
    for (name, format) in
        [("xlsx", OutputFormat::Xlsx), ("csv", OutputFormat::Csv), ("json", OutputFormat::Json)]
    {
        assert_eq!(OutputFormat::from_name(name), Some(format));
        assert_eq!(format.extension(), name);
    }
    assert_eq!(OutputFormat::from_name("pdf"), None);
}

#[test]
fn streamed_rows_round_trip_through_the_reader() {
    // A larger table through the constant-memory path, read back with the workbook reader.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.xlsx");
    let cols = columns(&["id", "code"]);
    let mut sink = Box::new(WorkbookSink::create(&path, &WorkbookStyle::default(), &cols).unwrap());
    for i in 0..20_000 {
        sink.push_row(&[Cell::text(i.to_string()), Cell::text(format!("{i:06}"))]).unwrap();
    }
    assert_eq!(sink.finish().unwrap(), 20_000);
    let limits = crate::table::read::ReadLimits::default();
    let read = crate::table::read::read_workbook(&path, None, &limits).unwrap();
    assert_eq!(read.table.columns, cols);
    assert_eq!(read.table.row_count(), 20_000);
    assert_eq!(read.table.rows[19_999], vec![Cell::text("19999"), Cell::text("019999")]);
}

#[test]
fn text_outputs_appear_whole_or_not_at_all_and_can_be_made_durable() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.sql");
    let failed: Result<(), std::io::Error> = write_text_atomically(&path, 1 << 20, |w| {
        w.write_all(b"INSERT")?;
        Err(std::io::Error::other("generation failed"))
    });
    assert_eq!(failed.unwrap_err().to_string(), "generation failed");
    assert!(dir_entries(dir.path()).is_empty(), "{:?}", dir_entries(dir.path()));
    assert!(make_durable(&path).is_err(), "a missing file cannot be made durable");

    let written: Result<usize, std::io::Error> = write_text_atomically(&path, 1 << 20, |w| {
        w.write_all(b"INSERT 1;\n")?;
        Ok(1)
    });
    assert_eq!(written.unwrap(), 1);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "INSERT 1;\n");
    make_durable(&path).unwrap();
    assert_eq!(dir_entries(dir.path()), ["out.sql"]);
}

#[test]
fn text_outputs_stop_at_the_cap_and_leave_nothing() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.json");
    let line = vec![b'x'; 1000];
    let capped: Result<(), std::io::Error> = write_text_atomically(&path, 1 << 20, |w| loop {
        w.write_all(&line)?;
    });
    let err = capped.unwrap_err();
    assert_eq!(output_cap_reached(&err), Some(1), "{err}");
    assert!(dir_entries(dir.path()).is_empty(), "{:?}", dir_entries(dir.path()));
    assert_eq!(output_cap_reached(&std::io::Error::other("disk full")), None);
}

#[test]
fn a_stop_request_ends_the_workbook_assembly_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.xlsx");
    let control = StepControl::new();
    let table = sample_table();
    let mut sink = Box::new(WorkbookSink::create(&path, &WorkbookStyle::default(), &table.columns).unwrap());
    sink = Box::new(sink.stopped_by(&control));
    for row in &table.rows {
        sink.push_row(row).unwrap();
    }
    // Asked to stop after the last row: the zip assembly refuses its writes.
    control.stop(crate::engine::StopReason::Cancelled);
    assert!(matches!(sink.finish(), Err(TableError::Cancelled)));
    assert!(dir_entries(dir.path()).is_empty(), "{:?}", dir_entries(dir.path()));
    // Not asked to stop: the same rows make a file.
    let running = StepControl::new();
    let mut sink = Box::new(WorkbookSink::create(&path, &WorkbookStyle::default(), &table.columns).unwrap());
    sink = Box::new(sink.stopped_by(&running));
    for row in &table.rows {
        sink.push_row(row).unwrap();
    }
    assert_eq!(sink.finish().unwrap(), 3);
    assert_eq!(dir_entries(dir.path()), ["out.xlsx"]);
}

/// A full disk while rust_xlsxwriter spills rows to its temporary file: the crate panics with this
/// message (its `XML_WRITE_ERROR`, then the io error); the writer boundary answers 507 instead of the
/// panic's 500. Filling a real disk needs a small filesystem (root); this pins the mapping with the
/// panic the crate raises.
#[test]
fn a_full_disk_while_writing_a_workbook_is_insufficient_storage() {
    let message = "Couldn't write to xml file: Os { code: 28, kind: StorageFull, message: \"No space left on device\" }";
    let err = xlsx_guarded::<()>(|| panic!("{message}")).unwrap_err();
    assert!(matches!(err, TableError::StorageFull), "{err}");
    let api = crate::error::ApiError::from_table(&err);
    assert_eq!(api.status().as_u16(), 507);
    assert_eq!(api.kind.error_type(), "InsufficientStorage");
    assert_eq!(api.message, "Insufficient storage: the disk is full, the output file could not be written");
    // Another panic of the writer is a write failure (400), not a crash either.
    let other = xlsx_guarded::<()>(|| panic!("index out of bounds")).unwrap_err();
    assert!(matches!(other, TableError::WriteExcel(_)), "{other}");
    // The same failure reported as an error (the final zip assembly writes through std I/O).
    let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
    assert!(matches!(xlsx_err(XlsxError::IoError(io)), TableError::StorageFull));
    let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
    assert_eq!(crate::error::ApiError::from_io(&io).status().as_u16(), 507);
}
