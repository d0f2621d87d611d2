//! Content sniffing: decides from the bytes (never the extension) whether an upload is a zip workbook, an
//! OLE2 workbook or text (rest-api.md §5.2).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::table::error::TableError;

/// What a file's content is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// A zip package holding `xl/workbook.xml` (xlsx, xlsm, xltx ...).
    Xlsx,
    /// An OLE2 compound document (legacy xls).
    Xls,
    /// Text without NUL bytes (CSV candidates; the encoding is decided by the CSV reader).
    Text,
    /// Anything else, with a short human description (`PDF document`, `zip archive`, `binary data`).
    Other(String),
}

impl FileKind {
    /// Short description for error messages.
    pub fn describe(&self) -> String {
        match self {
            FileKind::Xlsx => "Excel workbook (xlsx)".to_string(),
            FileKind::Xls => "Excel workbook (xls)".to_string(),
            FileKind::Text => "text (CSV)".to_string(),
            FileKind::Other(what) => what.clone(),
        }
    }

    pub fn is_workbook(&self) -> bool {
        matches!(self, FileKind::Xlsx | FileKind::Xls)
    }
}

/// Bytes of a file's start that decide its kind (a zip is then opened whole).
pub const SNIFF_BYTES: usize = 64 * 1024;
const OLE2_MAGIC: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Reads the first bytes of `path` and classifies them; zips are opened to look for the workbook part.
pub fn detect_kind(path: &Path) -> Result<FileKind, TableError> {
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    File::open(path)?.take(SNIFF_BYTES as u64).read_to_end(&mut head)?;
    detect_kind_from_head(&head, || Ok(path.to_path_buf()))
}

/// [`detect_kind`] from the first [`SNIFF_BYTES`] of a file (fewer if it is shorter); only a zip needs the
/// whole file, which `whole_file` provides (an upload still arriving is then received to its end).
pub fn detect_kind_from_head(
    head: &[u8],
    whole_file: impl FnOnce() -> Result<PathBuf, TableError>,
) -> Result<FileKind, TableError> {
    Ok(match classify_head(head) {
        Some(kind) => kind,
        None => classify_zip(&whole_file()?),
    })
}

/// Classification from the first bytes; `None` means "a zip: look inside".
fn classify_head(head: &[u8]) -> Option<FileKind> {
    let other = |what: &str| Some(FileKind::Other(what.to_string()));
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return None;
    }
    if head.starts_with(&OLE2_MAGIC) {
        return Some(FileKind::Xls);
    }
    let magics: [(&[u8], &str); 8] = [
        (b"%PDF", "PDF document"),
        (b"\x89PNG", "PNG image"),
        (b"GIF8", "GIF image"),
        (b"\xFF\xD8\xFF", "JPEG image"),
        (b"\x1F\x8B", "gzip archive"),
        (b"Rar!", "RAR archive"),
        (b"7z\xBC\xAF", "7z archive"),
        (b"BZh", "bzip2 archive"),
    ];
    for (magic, what) in magics {
        if head.starts_with(magic) {
            return other(what);
        }
    }
    // UTF-16 text carries NULs by nature; let the configured encodings decide.
    let utf16_bom = head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF");
    if !utf16_bom && head.contains(&0) {
        return other("binary data");
    }
    Some(FileKind::Text)
}

fn classify_zip(path: &Path) -> FileKind {
    let Ok(file) = File::open(path) else {
        return FileKind::Xlsx;
    };
    // A damaged zip is treated as a damaged workbook, so the reader reports 400 rather than 415.
    let Ok(archive) = zip::ZipArchive::new(BufReader::new(file)) else {
        return FileKind::Xlsx;
    };
    if archive.index_for_name("xl/workbook.xml").is_some() {
        FileKind::Xlsx
    } else if archive.index_for_name("xl/workbook.bin").is_some() {
        FileKind::Other("Excel binary workbook (xlsb)".to_string())
    } else if archive.index_for_name("content.xml").is_some() {
        FileKind::Other("OpenDocument file".to_string())
    } else if archive.index_for_name("word/document.xml").is_some() {
        FileKind::Other("Word document".to_string())
    } else {
        FileKind::Other("zip archive".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn zip_with(dir: &Path, name: &str, entries: &[(&str, &[u8])]) -> std::path::PathBuf {
        let path = dir.join(name);
        let mut writer = zip::ZipWriter::new(File::create(&path).unwrap());
        for (entry, data) in entries {
            writer.start_file(*entry, zip::write::SimpleFileOptions::default()).unwrap();
            writer.write_all(data).unwrap();
        }
        writer.finish().unwrap();
        path
    }

    #[test]
    fn classifies_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let cases: Vec<(std::path::PathBuf, FileKind)> = vec![
            (write(d, "a.csv", b"name,age\nx,1\n"), FileKind::Text),
            (write(d, "empty.csv", b""), FileKind::Text),
            (write(d, "bom.csv", b"\xEF\xBB\xBFa,b\n"), FileKind::Text),
            (write(d, "cp.csv", b"caf\xE9,\x80\n"), FileKind::Text),
            (write(d, "u16.csv", b"\xFF\xFEa\x00,\x00b\x00"), FileKind::Text),
            (write(d, "x.xlsx", b"%PDF-1.7 ..."), FileKind::Other("PDF document".into())),
            (write(d, "junk.bin", &[1, 2, 0, 4, 5]), FileKind::Other("binary data".into())),
            (write(d, "old.xls", &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0, 0]), FileKind::Xls),
            (zip_with(d, "book.bin", &[("xl/workbook.xml", b"<workbook/>")]), FileKind::Xlsx),
            (zip_with(d, "notes.zip", &[("readme.txt", b"hello")]), FileKind::Other("zip archive".into())),
            (write(d, "broken.xlsx", b"PK\x03\x04garbage"), FileKind::Xlsx),
        ];
        for (path, want) in cases {
            assert_eq!(detect_kind(&path).unwrap(), want, "file {}", path.display());
        }
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(detect_kind(&dir.path().join("nope")), Err(TableError::Io(_))));
    }
}
