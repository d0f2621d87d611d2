use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use rust_xlsxwriter::{Format, Formula, Workbook};

use super::*;

fn limits() -> ReadLimits {
    ReadLimits { max_uncompressed_bytes: 500 << 20, max_cells: 10_000_000, ..ReadLimits::default() }
}

fn texts(t: &Table) -> Vec<Vec<String>> {
    t.rows.iter().map(|r| r.iter().map(|c| c.as_text().into_owned()).collect()).collect()
}

/// Rewrites one part of a zip package through `edit`, copying the others unchanged.
fn rewrite_entry(path: &Path, entry: &str, edit: impl Fn(String) -> String) {
    let bytes = std::fs::read(path).unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut writer = zip::ZipWriter::new(File::create(path).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        let name = file.name().unwrap().to_string();
        let mut content = Vec::new();
        file.read_to_end(&mut content).unwrap();
        if name == entry {
            content = edit(String::from_utf8(content).unwrap()).into_bytes();
        }
        writer.start_file(name, options).unwrap();
        writer.write_all(&content).unwrap();
    }
    writer.finish().unwrap();
}

fn sheet_xml(path: &Path) -> String {
    let mut archive = zip::ZipArchive::new(File::open(path).unwrap()).unwrap();
    let mut xml = String::new();
    archive.by_name("xl/worksheets/sheet1.xml").unwrap().read_to_string(&mut xml).unwrap();
    xml
}

/// Reads `path` both ways and checks that the spooled sheet has exactly the columns and rows of the table
/// (same padding, same trailing-row rule) and leaves no file behind. Returns the table.
fn assert_spool_matches(path: &Path, sheet: Option<&str>) -> Table {
    let table = read_workbook(path, sheet, &limits()).unwrap().table;
    let spool_dir = tempfile::tempdir().unwrap();
    let mut spooled = spool_workbook(path, sheet, &limits(), spool_dir.path()).unwrap();
    assert_eq!(spooled.columns, table.columns, "{}", path.display());
    assert_eq!(spooled.rows.len(), table.row_count(), "{}", path.display());
    assert_eq!(spooled.collect_rows().unwrap(), table.rows, "{}", path.display());
    assert_eq!(std::fs::read_dir(spool_dir.path()).unwrap().count(), 0, "unnamed spool files only");
    table
}

fn save(workbook: &mut Workbook, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    workbook.save(&path).unwrap();
    path
}

#[test]
fn cell_text_rules() {
    let dir = tempfile::tempdir().unwrap();
    let mut wb = Workbook::new();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let datetime = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    let time = Format::new().set_num_format("hh:mm:ss");
    let ws = wb.add_worksheet();
    let header = ["text", "int", "float", "date", "time", "bool", "formula", "error"];
    for (i, h) in header.iter().enumerate() {
        ws.write_string(0, i as u16, *h).unwrap();
    }
    ws.write_string(1, 0, "0012").unwrap();
    ws.write_number(1, 1, 1000.0).unwrap();
    ws.write_number(1, 2, 1500.75).unwrap();
    ws.write_number_with_format(1, 3, 45342.0, &date).unwrap(); // 2024-02-20
    ws.write_number_with_format(1, 4, 0.4375, &time).unwrap(); // 10:30:00
    ws.write_boolean(1, 5, true).unwrap();
    ws.write_formula(1, 6, Formula::new("=B2*2").set_result("2000")).unwrap();
    ws.write_number(1, 7, 999_999.0).unwrap();

    ws.write_string(2, 0, "  spaced  ").unwrap();
    ws.write_number(2, 1, -0.0).unwrap();
    ws.write_number(2, 2, 1e-7).unwrap();
    ws.write_number_with_format(2, 3, 45306.4375, &datetime).unwrap(); // 2024-01-15 10:30:00
    ws.write_number_with_format(2, 4, 0.5 + 0.5 / 86_400.0, &time).unwrap(); // 12:00:00.500000
    ws.write_boolean(2, 5, false).unwrap();
    ws.write_formula(2, 6, Formula::new("=\"a\"&\"b\"").set_result("ab")).unwrap();
    ws.write_number(2, 7, 888_888.0).unwrap();

    ws.write_string(3, 0, "XYZ0002").unwrap();
    ws.write_number(3, 1, 12_345_678_901_234_569_216.0).unwrap();
    ws.write_number(3, 2, 0.3).unwrap();
    ws.write_number_with_format(3, 3, 59.0, &date).unwrap(); // 1900-02-28
    ws.write_number_with_format(3, 4, 61.0, &date).unwrap(); // 1900-03-01
    ws.write_number(3, 5, -3.0).unwrap();
    ws.write_formula(3, 6, Formula::new("=1+1").set_result("777")).unwrap();
    ws.write_string(3, 7, "ok").unwrap();
    let path = save(&mut wb, dir.path(), "cells.xlsx");

    // Error cells and a formula without a cached value need hand-written XML.
    rewrite_entry(&path, "xl/worksheets/sheet1.xml", |xml| {
        let xml = xml.replace(r#"<c r="H2"><v>999999</v></c>"#, r#"<c r="H2" t="e"><v>#N/A</v></c>"#);
        let xml = xml.replace(r#"<c r="H3"><v>888888</v></c>"#, r#"<c r="H3" t="e"><v>#DIV/0!</v></c>"#);
        xml.replace("<v>777</v>", "")
    });
    let xml = sheet_xml(&path);
    assert!(xml.contains("#N/A") && xml.contains("#DIV/0!"), "fixture rewrite failed: {xml}");

    let read = read_workbook(&path, None, &limits()).unwrap();
    assert_eq!(read.table.columns, header);
    assert_eq!(
        texts(&read.table),
        vec![
            vec!["0012", "1000", "1500.75", "2024-02-20 00:00:00", "10:30:00", "True", "2000", ""],
            vec!["  spaced  ", "0", "1e-07", "2024-01-15 10:30:00", "12:00:00.500000", "False", "ab", ""],
            vec![
                "XYZ0002",
                "12345678901234569216",
                "0.3",
                "1900-02-28 00:00:00",
                "1900-03-01 00:00:00",
                "-3",
                "",
                "ok"
            ],
        ]
    );
    assert!(read.table.rows[0][7].is_missing());
    assert!(read.table.rows[1][7].is_missing());
    assert_eq!(read.table.rows[2][6], Cell::text(""), "formula without cached value");
    assert_eq!(assert_spool_matches(&path, None), read.table);
}

#[test]
fn leading_zero_text_cells_and_named_sheets() {
    // Acceptance §13.1 facts 3 and 4.
    let dir = tempfile::tempdir().unwrap();
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name("Data").unwrap();
    ws.write_string(0, 0, "zip_code").unwrap();
    ws.write_string(0, 1, "code").unwrap();
    for (i, (zip, code)) in
        [("021201", "0001ABC"), ("00123", "XYZ0002"), ("0123456789", "00000")].iter().enumerate()
    {
        ws.write_string(i as u32 + 1, 0, *zip).unwrap();
        ws.write_string(i as u32 + 1, 1, *code).unwrap();
    }
    let ws2 = wb.add_worksheet();
    ws2.set_name("Sheet2").unwrap();
    ws2.write_string(0, 0, "code").unwrap();
    ws2.write_string(1, 0, "002").unwrap();
    let path = save(&mut wb, dir.path(), "zeros.xlsx");

    let first = read_workbook(&path, None, &limits()).unwrap();
    assert_eq!(first.sheets, vec!["Data", "Sheet2"]);
    assert_eq!(first.sheet_name, "Data");
    assert_eq!(
        texts(&first.table),
        vec![vec!["021201", "0001ABC"], vec!["00123", "XYZ0002"], vec!["0123456789", "00000"]]
    );

    let second = read_workbook(&path, Some("Sheet2"), &limits()).unwrap();
    assert_eq!(second.table.columns, vec!["code"]);
    assert_eq!(second.table.rows, vec![vec![Cell::text("002")]]);
    assert_spool_matches(&path, None);
    assert_spool_matches(&path, Some("Sheet2"));
    let spool_dir = tempfile::tempdir().unwrap();
    let err = spool_workbook(&path, Some("Nope"), &limits(), spool_dir.path()).err().unwrap();
    assert!(matches!(err, TableError::SheetNotFound { .. }), "{err}");

    let err = read_workbook(&path, Some("Nope"), &limits()).unwrap_err();
    match err {
        TableError::SheetNotFound { name, available } => {
            assert_eq!(name, "Nope");
            assert_eq!(available, vec!["Data", "Sheet2"]);
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(workbook_sheet_names(&path, &limits()).unwrap(), vec!["Data", "Sheet2"]);
}

#[test]
fn typed_and_blank_header_cells_become_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut wb = Workbook::new();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let ws = wb.add_worksheet();
    ws.write_number(0, 0, 2024.0).unwrap();
    ws.write_number_with_format(0, 1, 45306.0, &date).unwrap();
    ws.write_boolean(0, 2, true).unwrap();
    ws.write_number(0, 3, 1.5).unwrap();
    ws.write_string(0, 5, "x").unwrap();
    ws.write_string(0, 6, "x").unwrap();
    ws.write_string(1, 0, "v").unwrap();
    let path = save(&mut wb, dir.path(), "header.xlsx");
    let read = read_workbook(&path, None, &limits()).unwrap();
    assert_eq!(
        read.table.columns,
        vec!["2024", "2024-01-15 00:00:00", "True", "1.5", "Unnamed: 4", "x", "x.1"]
    );
    assert_eq!(texts(&read.table), vec![vec!["v", "", "", "", "", "", ""]]);
    assert_spool_matches(&path, None);
}

#[test]
fn extent_starts_at_a1_and_drops_trailing_empty_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut wb = Workbook::new();
    let bold = Format::new().set_bold();
    let ws = wb.add_worksheet();
    ws.write_string(2, 1, "h1").unwrap();
    ws.write_string(2, 2, "h2").unwrap();
    ws.write_string(3, 1, "x").unwrap();
    ws.write_string(5, 1, "after gap").unwrap();
    ws.write_blank(9, 6, &bold).unwrap(); // formatted but empty: never extends the table
    ws.write_string(12, 0, "").unwrap();
    let path = save(&mut wb, dir.path(), "offset.xlsx");
    let read = read_workbook(&path, None, &limits()).unwrap();
    assert_eq!(read.table.columns, vec!["Unnamed: 0", "Unnamed: 1", "Unnamed: 2"]);
    assert_eq!(
        texts(&read.table),
        vec![
            vec!["", "", ""],
            vec!["", "h1", "h2"],
            vec!["", "x", ""],
            vec!["", "", ""],
            vec!["", "after gap", ""],
        ]
    );
    assert_spool_matches(&path, None);
}

#[test]
fn empty_sheet_reads_as_empty_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut wb = Workbook::new();
    wb.add_worksheet();
    let path = save(&mut wb, dir.path(), "empty.xlsx");
    let read = read_workbook(&path, None, &limits()).unwrap();
    assert_eq!(read.table, Table::default());
    assert_eq!(assert_spool_matches(&path, None), Table::default());
}

#[test]
fn spooled_sparse_rows_are_padded_to_the_widest_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut wb = Workbook::new();
    let bold = Format::new().set_bold();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "a").unwrap();
    ws.write_string(0, 2, "c").unwrap();
    ws.write_string(1, 1, "only b").unwrap();
    // A row wider than the header names a column of its own; an empty row in the middle stays.
    ws.write_string(3, 4, "far 'q' \\ \"x\"").unwrap();
    ws.write_number(4, 0, 1.5).unwrap();
    ws.write_string(4, 3, "").unwrap(); // empty text never widens
    ws.write_blank(6, 0, &bold).unwrap(); // formatted but empty rows after the data are dropped
    ws.write_blank(7, 9, &bold).unwrap();
    let path = save(&mut wb, dir.path(), "sparse.xlsx");
    let table = assert_spool_matches(&path, None);
    assert_eq!(table.columns, vec!["a", "Unnamed: 1", "c", "Unnamed: 3", "Unnamed: 4"]);
    assert_eq!(
        texts(&table),
        vec![
            vec!["", "only b", "", "", ""],
            vec!["", "", "", "", ""],
            vec!["", "", "", "", "far 'q' \\ \"x\""],
            vec!["1.5", "", "", "", ""],
        ]
    );
}

#[test]
fn spooled_sheet_with_only_a_header_has_columns_and_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "id").unwrap();
    ws.write_string(0, 2, "name").unwrap();
    let path = save(&mut wb, dir.path(), "header.xlsx");
    let table = assert_spool_matches(&path, None);
    assert_eq!(table.columns, vec!["id", "Unnamed: 1", "name"]);
    assert!(table.rows.is_empty());

    // Data starting below an empty first row: the header is all unnamed.
    let mut wb = Workbook::new();
    wb.add_worksheet().write_string(3, 1, "x").unwrap();
    let path = save(&mut wb, dir.path(), "low.xlsx");
    let table = assert_spool_matches(&path, None);
    assert_eq!(table.columns, vec!["Unnamed: 0", "Unnamed: 1"]);
    assert_eq!(table.row_count(), 3);
}

#[test]
fn rows_listed_out_of_order_give_the_same_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    for r in 0..6u32 {
        for c in 0..3u16 {
            if (r + u32::from(c)) % 4 != 3 {
                ws.write_string(r, c, format!("r{r}c{c}")).unwrap();
            }
        }
    }
    let path = save(&mut wb, dir.path(), "disorder.xlsx");
    // Move row 3 (and its cells) to the end of the sheet data.
    rewrite_entry(&path, "xl/worksheets/sheet1.xml", |xml| {
        let start = xml.find("<row r=\"3\"").unwrap();
        let end = start + xml[start..].find("</row>").unwrap() + "</row>".len();
        let row = xml[start..end].to_string();
        let rest = format!("{}{}", &xml[..start], &xml[end..]);
        rest.replace("</sheetData>", &format!("{row}</sheetData>"))
    });
    let xml = sheet_xml(&path);
    assert!(xml.find("<row r=\"3\"").unwrap() > xml.find("<row r=\"6\"").unwrap(), "{xml}");
    let table = assert_spool_matches(&path, None);
    assert_eq!(table.row_count(), 5);
    assert_eq!(texts(&table)[1], vec!["r2c0", "", "r2c2"]);
}

/// The store itself, cell by cell in any order, against [`Dense`] (xls ranges, hand-made XML).
#[test]
fn spooled_store_matches_dense_for_any_cell_order() {
    let cells: Vec<(u32, u32, Cell)> = (0..40u32)
        .filter(|i| i % 7 != 3)
        .map(|i| {
            let cell = if i % 11 == 5 { Cell::Missing } else { Cell::Text(format!("v{i}")) };
            ((i * 7) % 9, (i * 5) % 6, cell)
        })
        .collect();
    let mut row_major = cells.clone();
    row_major.sort_by_key(|(r, c, _)| (*r, *c));
    let mut reversed = row_major.clone();
    reversed.reverse();
    let mut within_rows_reversed = row_major.clone();
    within_rows_reversed.sort_by_key(|(r, c, _)| (*r, std::cmp::Reverse(*c)));
    for (name, order) in [
        ("as listed", &cells),
        ("row-major", &row_major),
        ("reversed", &reversed),
        ("cols reversed", &within_rows_reversed),
    ] {
        let limits = limits();
        let mut dense = SheetBuilder::new(&limits, Dense::default(), &StepControl::NONE);
        let dir = tempfile::tempdir().unwrap();
        let mut spooled = SheetBuilder::new(
            &limits,
            Spooled::new(SpoolWriter::create_in(dir.path()).unwrap()),
            &StepControl::NONE,
        );
        for (r, c, cell) in order.iter() {
            dense.put(*r, *c, cell.clone()).unwrap();
            spooled.put(*r, *c, cell.clone()).unwrap();
        }
        let table = dense.finish().unwrap();
        let mut spooled = spooled.finish().unwrap();
        assert_eq!(spooled.columns, table.columns, "{name}");
        assert_eq!(spooled.collect_rows().unwrap(), table.rows, "{name}");
    }
}

#[test]
fn spooling_keeps_every_limit_and_kind_check() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = tempfile::tempdir().unwrap();
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "a").unwrap();
    ws.write_string(1_048_575, 16_383, "far").unwrap();
    let far = save(&mut wb, dir.path(), "far.xlsx");
    let err = spool_workbook(&far, None, &limits(), spool_dir.path()).err().unwrap();
    assert!(matches!(err, TableError::TooManyCells { .. }), "{err}");

    let blob = workbook_with_blob(dir.path(), 4 << 20);
    let small = ReadLimits { max_uncompressed_bytes: 1 << 20, max_cells: 1_000, ..ReadLimits::default() };
    let err = spool_workbook(&blob, None, &small, spool_dir.path()).err().unwrap();
    assert!(matches!(err, TableError::TooLarge(_)), "{err}");

    let csv = dir.path().join("data.xlsx");
    std::fs::write(&csv, b"a,b\n1,2\n").unwrap();
    let err = spool_workbook(&csv, None, &limits(), spool_dir.path()).err().unwrap();
    assert!(matches!(err, TableError::UnsupportedKind { .. }), "{err}");
    assert_eq!(std::fs::read_dir(spool_dir.path()).unwrap().count(), 0);
}

#[test]
fn dimension_bomb_is_refused_before_reading_cells() {
    let dir = tempfile::tempdir().unwrap();
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "a").unwrap();
    ws.write_string(1, 0, "1").unwrap();
    let path = save(&mut wb, dir.path(), "bomb.xlsx");
    rewrite_entry(&path, "xl/worksheets/sheet1.xml", |xml| {
        let start = xml.find("<dimension ref=\"").unwrap();
        let end = start + xml[start..].find("/>").unwrap();
        format!("{}<dimension ref=\"A1:XFD1048576\"{}", &xml[..start], &xml[end..])
    });
    assert!(std::fs::metadata(&path).unwrap().len() < 10_000, "the bomb is a tiny file");
    let started = std::time::Instant::now();
    let err = read_workbook(&path, None, &limits()).unwrap_err();
    assert!(
        matches!(err, TableError::TooManyCells { rows: 1_048_576, columns: 16_384, max_cells: 10_000_000 }),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn far_away_cell_is_refused_even_with_a_small_declared_dimension() {
    let dir = tempfile::tempdir().unwrap();
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "a").unwrap();
    ws.write_string(1_048_575, 16_383, "far").unwrap();
    let path = save(&mut wb, dir.path(), "far.xlsx");
    rewrite_entry(&path, "xl/worksheets/sheet1.xml", |xml| {
        xml.replace("<dimension ref=\"A1:XFD1048576\"/>", "<dimension ref=\"A1\"/>")
    });
    let err = read_workbook(&path, None, &limits()).unwrap_err();
    assert!(matches!(err, TableError::TooManyCells { .. }), "{err}");
}

fn workbook_with_blob(dir: &Path, blob_len: usize) -> PathBuf {
    let mut wb = Workbook::new();
    wb.add_worksheet().write_string(0, 0, "a").unwrap();
    let path = save(&mut wb, dir, "blob.xlsx");
    let bytes = std::fs::read(&path).unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut writer = zip::ZipWriter::new(File::create(&path).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for i in 0..archive.len() {
        let file = archive.by_index(i).unwrap();
        writer.raw_copy_file(file).unwrap();
    }
    writer.start_file("xl/media/blob.bin", options).unwrap();
    writer.write_all(&vec![0u8; blob_len]).unwrap();
    writer.finish().unwrap();
    path
}

#[test]
fn zip_bomb_is_refused_as_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let path = workbook_with_blob(dir.path(), 4 << 20);
    assert!(std::fs::metadata(&path).unwrap().len() < 64 * 1024);
    let small = ReadLimits { max_uncompressed_bytes: 1 << 20, max_cells: 1_000, ..ReadLimits::default() };
    let err = read_workbook(&path, None, &small).unwrap_err();
    assert!(matches!(err, TableError::TooLarge(_)), "{err}");
    // Under a generous limit the same file reads fine.
    assert_eq!(read_workbook(&path, None, &limits()).unwrap().table.columns, vec!["a"]);
}

#[test]
fn entry_claiming_an_impossible_ratio_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = workbook_with_blob(dir.path(), 2 << 20);
    // Patch the central directory so the blob claims 2 GiB from a few kilobytes.
    let mut bytes = std::fs::read(&path).unwrap();
    let name = b"xl/media/blob.bin";
    let mut patched = false;
    for i in 0..bytes.len().saturating_sub(46 + name.len()) {
        if bytes[i..i + 4] == *b"PK\x01\x02" && bytes[i + 46..i + 46 + name.len()] == *name {
            bytes[i + 24..i + 28].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
            patched = true;
        }
    }
    assert!(patched);
    std::fs::write(&path, bytes).unwrap();
    let err = check_zip_limits(
        &path,
        &ReadLimits { max_uncompressed_bytes: u64::MAX, max_cells: 1, ..ReadLimits::default() },
    )
    .unwrap_err();
    assert!(err.to_string().contains("compression ratio"), "{err}");
}

#[test]
fn non_workbooks_are_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("data.xlsx");
    std::fs::write(&csv, b"a,b\n1,2\n").unwrap();
    let err = read_workbook(&csv, None, &limits()).unwrap_err();
    assert!(matches!(err, TableError::UnsupportedKind { .. }), "{err}");
    let corrupt = dir.path().join("corrupt.xlsx");
    std::fs::write(&corrupt, b"PK\x03\x04 not really a zip").unwrap();
    let err = read_workbook(&corrupt, None, &limits()).unwrap_err();
    assert!(err.to_string().starts_with("Failed to read Excel file: "), "{err}");
}

#[test]
fn number_text_cases() {
    let cases = [
        (1000.0, "1000"),
        (-3.0, "-3"),
        (-0.0, "0"),
        (0.0, "0"),
        (1500.75, "1500.75"),
        (0.3, "0.3"),
        (1e-7, "1e-07"),
        (12_345_678_901_234_569_216.0, "12345678901234569216"),
        (1e16, "10000000000000000"),
    ];
    for (value, want) in cases {
        assert_eq!(number_text(value), want, "value {value}");
    }
}

#[test]
fn date_and_duration_texts() {
    use calamine::ExcelDateTimeType::{DateTime, TimeDelta};
    let cases = [
        (ExcelDateTime::new(45342.0, DateTime, false), "2024-02-20 00:00:00"),
        (ExcelDateTime::new(0.0, DateTime, false), "00:00:00"),
        (ExcelDateTime::new(0.75, DateTime, false), "18:00:00"),
        (ExcelDateTime::new(0.999_999_999_9, DateTime, false), "1900-01-01 00:00:00"),
        (ExcelDateTime::new(1.5, DateTime, false), "1900-01-01 12:00:00"),
        (ExcelDateTime::new(60.0, DateTime, false), "1900-02-28 00:00:00"),
        (ExcelDateTime::new(0.0, DateTime, true), "00:00:00"),
        (ExcelDateTime::new(1.0, DateTime, true), "1904-01-02 00:00:00"),
        (ExcelDateTime::new(1.5, TimeDelta, false), "1 day, 12:00:00"),
        (ExcelDateTime::new(0.25, TimeDelta, false), "6:00:00"),
        (ExcelDateTime::new(3.0, TimeDelta, false), "3 days, 0:00:00"),
    ];
    for (dt, want) in cases {
        assert_eq!(excel_datetime_text(&dt), want, "{dt:?}");
    }
    assert_eq!(iso_datetime_text("2024-01-15T10:30:00"), "2024-01-15 10:30:00");
    assert_eq!(iso_datetime_text("2024-01-15"), "2024-01-15 00:00:00");
    assert_eq!(iso_datetime_text("10:30:00"), "10:30:00");
    assert_eq!(iso_datetime_text("garbage"), "garbage");
}
