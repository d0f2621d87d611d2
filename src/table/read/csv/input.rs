//! Where the CSV reader's bytes come from: a file on disk, or an upload whose bytes are still arriving
//! (parsed as they come instead of being stored first and read again). The reader may have to start over
//! (another encoding, a wider row than the header, an error to check against the whole file), so every
//! input can be read again from its first byte. An arriving upload is spooled to its temporary file as it
//! is read, so a new reader reads what already arrived from that file and then joins the arrival; memory
//! holds only the chunk being handed out.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

/// Buffer of a file read from disk (as large as the csv reader's, which then reads through it directly).
const FILE_READ_BUFFER: usize = 64 * 1024;

/// A CSV input that can be read from the start as often as needed.
pub trait CsvInput {
    /// A reader from the first byte.
    fn reader(&mut self) -> io::Result<Box<dyn Read>>;

    /// The whole input as a file on disk (an arriving upload is received to its end first).
    fn whole_file(&mut self) -> io::Result<PathBuf>;
}

/// A borrowed input, so one operation can take an arriving upload or a stored file alike.
impl<I: CsvInput + ?Sized> CsvInput for &mut I {
    fn reader(&mut self) -> io::Result<Box<dyn Read>> {
        (**self).reader()
    }

    fn whole_file(&mut self) -> io::Result<PathBuf> {
        (**self).whole_file()
    }
}

impl CsvInput for &Path {
    fn reader(&mut self) -> io::Result<Box<dyn Read>> {
        Ok(Box::new(BufReader::with_capacity(FILE_READ_BUFFER, File::open(self)?)))
    }

    fn whole_file(&mut self) -> io::Result<PathBuf> {
        Ok(self.to_path_buf())
    }
}

impl CsvInput for &PathBuf {
    fn reader(&mut self) -> io::Result<Box<dyn Read>> {
        self.as_path().reader()
    }

    fn whole_file(&mut self) -> io::Result<PathBuf> {
        Ok(self.to_path_buf())
    }
}

/// The next chunk of an upload: `Ok(None)` at its end, an error when it was cut short (the client went
/// away, a limit was reached): the reader must then fail, never see a shorter file.
pub type NextChunk = Box<dyn FnMut() -> io::Result<Option<Bytes>>>;

/// An upload whose bytes are parsed as they arrive and spooled to `spool` (its temporary file) on the way.
#[derive(Clone)]
pub struct ArrivingFile {
    arrival: Rc<RefCell<Arrival>>,
}

struct Arrival {
    next_chunk: NextChunk,
    spool: File,
    spool_path: PathBuf,
    /// Bytes received (and spooled) so far.
    received: u64,
    /// The last chunk received, which starts at `last_start`; earlier bytes are read back from the spool.
    last: Bytes,
    last_start: u64,
    ended: bool,
}

impl Arrival {
    /// Receives and spools one more chunk; false at the end of the upload.
    fn receive(&mut self) -> io::Result<bool> {
        if self.ended {
            return Ok(false);
        }
        loop {
            match (self.next_chunk)()? {
                None => {
                    self.ended = true;
                    return Ok(false);
                }
                Some(chunk) if chunk.is_empty() => continue,
                Some(chunk) => {
                    self.spool.write_all(&chunk)?;
                    self.last_start = self.received;
                    self.received += chunk.len() as u64;
                    self.last = chunk;
                    return Ok(true);
                }
            }
        }
    }
}

impl ArrivingFile {
    /// `spool` is the upload's temporary file at `spool_path` (opened for reading and writing, empty).
    pub fn new(next_chunk: NextChunk, spool: File, spool_path: PathBuf) -> ArrivingFile {
        let arrival = Arrival {
            next_chunk,
            spool,
            spool_path,
            received: 0,
            last: Bytes::new(),
            last_start: 0,
            ended: false,
        };
        ArrivingFile { arrival: Rc::new(RefCell::new(arrival)) }
    }

    /// Receives the rest of the upload into the spool, so the file on disk is whole (an operation that
    /// must run again on the stored file can); returns the bytes received.
    pub fn receive_rest(&self) -> io::Result<u64> {
        let mut arrival = self.arrival.borrow_mut();
        while arrival.receive()? {}
        Ok(arrival.received)
    }
}

impl CsvInput for ArrivingFile {
    fn reader(&mut self) -> io::Result<Box<dyn Read>> {
        Ok(Box::new(ArrivingReader { arrival: self.arrival.clone(), pos: 0 }))
    }

    fn whole_file(&mut self) -> io::Result<PathBuf> {
        self.receive_rest()?;
        Ok(self.arrival.borrow().spool_path.clone())
    }
}

/// One pass over an arriving upload from its first byte.
struct ArrivingReader {
    arrival: Rc<RefCell<Arrival>>,
    pos: u64,
}

impl Read for ArrivingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut arrival = self.arrival.borrow_mut();
        loop {
            if self.pos < arrival.last_start {
                // Arrived before the last chunk: read it back from the spool.
                let want = (arrival.last_start - self.pos).min(buf.len() as u64) as usize;
                let n = arrival.spool.read_at(&mut buf[..want], self.pos)?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the upload's spool is short"));
                }
                self.pos += n as u64;
                return Ok(n);
            }
            let offset = (self.pos - arrival.last_start) as usize;
            if offset < arrival.last.len() {
                let n = buf.len().min(arrival.last.len() - offset);
                buf[..n].copy_from_slice(&arrival.last[offset..offset + n]);
                self.pos += n as u64;
                return Ok(n);
            }
            if !arrival.receive()? {
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An arriving file that hands out `data` in pieces of `sizes` (cycled), optionally cut short.
    fn arriving(dir: &Path, data: &[u8], sizes: &[usize], cut_at: Option<usize>) -> (ArrivingFile, PathBuf) {
        let path = dir.join("spool");
        let spool = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).unwrap();
        let data = data.to_vec();
        let sizes = sizes.to_vec();
        let (mut at, mut i) = (0usize, 0usize);
        let next: NextChunk = Box::new(move || {
            if cut_at.is_some_and(|cut| at >= cut) {
                return Err(io::Error::other("upload interrupted"));
            }
            if at >= data.len() {
                return Ok(None);
            }
            let n = sizes[i % sizes.len()].min(data.len() - at);
            i += 1;
            let chunk = Bytes::copy_from_slice(&data[at..at + n]);
            at += n;
            Ok(Some(chunk))
        });
        (ArrivingFile::new(next, spool, path.clone()), path)
    }

    fn read_all(mut reader: Box<dyn Read>, buf_size: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; buf_size];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn a_new_reader_rereads_what_arrived_and_joins_the_arrival() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (mut input, path) = arriving(dir.path(), &data, &[1, 7, 4096, 33_000], None);
        // Half way through, a second reader starts from the first byte (the spooled part, then the
        // last chunk, then new chunks), and the first one goes on where it was.
        let mut first = input.reader().unwrap();
        let mut half = vec![0u8; 100_000];
        first.read_exact(&mut half).unwrap();
        assert_eq!(half, data[..100_000]);
        assert_eq!(read_all(input.reader().unwrap(), 999).unwrap(), data);
        assert_eq!(read_all(first, 5).unwrap(), data[100_000..]);
        assert_eq!(input.whole_file().unwrap(), path);
        assert_eq!(std::fs::read(&path).unwrap(), data, "the spool holds the whole upload");
    }

    #[test]
    fn an_interrupted_upload_fails_the_read_instead_of_ending_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut input, _) = arriving(dir.path(), &[b'x'; 10_000], &[1000], Some(5000));
        let err = read_all(input.reader().unwrap(), 64).unwrap_err();
        assert_eq!(err.to_string(), "upload interrupted");
        assert!(input.receive_rest().is_err());
    }
}
