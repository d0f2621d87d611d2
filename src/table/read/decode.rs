//! Streaming text decoding for CSV input: one configured encoding name → a `Read` adapter yielding UTF-8,
//! failing (instead of replacing) on bytes the encoding cannot decode, as Python's strict codecs do.

use std::io::{self, Read};

use encoding_rs::{DecoderResult, Encoding, UTF_8, WINDOWS_1252};

/// The encodings a configured name can stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    /// `utf-8` / `utf-8-sig` (a leading BOM is always dropped).
    Utf8,
    /// Python `cp1252`: windows-1252 where 0x81 0x8D 0x8F 0x90 0x9D are undecodable.
    Cp1252,
    /// Python `latin1` / `iso-8859-1`: every byte is the code point U+00XX; never fails.
    Latin1,
    /// Any other label encoding_rs knows, decoded strictly.
    Other(&'static Encoding),
}

impl TextEncoding {
    /// Resolves a configured encoding name the way Python spells them (case, `_` vs `-` ignored).
    pub fn from_name(name: &str) -> Option<TextEncoding> {
        let norm = name.trim().to_ascii_lowercase().replace('_', "-");
        match norm.as_str() {
            "utf-8" | "utf8" | "utf-8-sig" | "utf8-sig" | "u8" => Some(TextEncoding::Utf8),
            "cp1252" | "windows-1252" | "1252" => Some(TextEncoding::Cp1252),
            "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "8859" | "cp819" | "l1" | "iso-ir-100" => {
                Some(TextEncoding::Latin1)
            }
            // encoding_rs maps Latin-1 labels to windows-1252, which is not Python's latin1.
            _ => Encoding::for_label(norm.as_bytes()).map(|enc| {
                if enc == UTF_8 {
                    TextEncoding::Utf8
                } else if enc == WINDOWS_1252 {
                    TextEncoding::Cp1252
                } else {
                    TextEncoding::Other(enc)
                }
            }),
        }
    }
}

/// Marker carried inside the `io::Error` when the input is not valid in the encoding.
#[derive(Debug)]
pub struct DecodeFailure {
    pub offset: u64,
}

impl std::fmt::Display for DecodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "undecodable byte near offset {}", self.offset)
    }
}

impl std::error::Error for DecodeFailure {}

/// True when `err` (possibly wrapped by the csv crate) is a decoding failure rather than real I/O.
pub fn is_decode_failure(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<DecodeFailure>())
}

const CP1252_UNASSIGNED: [u8; 5] = [0x81, 0x8D, 0x8F, 0x90, 0x9D];
const CHUNK: usize = 64 * 1024;
const BOM: &[u8] = b"\xEF\xBB\xBF";
/// Smallest caller buffer that UTF-8 is read into directly (room for a carried partial sequence
/// plus at least one new byte); smaller reads go through `input`.
const DIRECT_MIN: usize = 4;

enum Codec {
    Latin1,
    /// UTF-8 is validated in place, without a decoding copy: bytes go from `inner` straight into the
    /// caller's buffer. `carry` holds an incomplete sequence at the end of the last read (at most 3
    /// bytes), handed out once the bytes that complete it have been read and checked.
    Utf8 {
        carry: [u8; 3],
        carry_len: usize,
    },
    Strict {
        decoder: encoding_rs::Decoder,
        cp1252: bool,
    },
}

/// How many leading bytes of `data` are complete, valid UTF-8 (an incomplete sequence at the end is
/// left for the next read unless `eof`), or `Err(n)`: the data is invalid, `n` bytes in counting the
/// malformed sequence (where encoding_rs's strict decoder stops too).
fn valid_utf8_prefix(data: &[u8], eof: bool) -> Result<usize, usize> {
    match std::str::from_utf8(data) {
        Ok(_) => Ok(data.len()),
        Err(e) => match e.error_len() {
            Some(bad) => Err(e.valid_up_to() + bad),
            None if eof => Err(data.len()),
            None => Ok(e.valid_up_to()),
        },
    }
}

/// A `Read` adapter that decodes `inner` to UTF-8 chunk by chunk (memory stays at a few chunks).
pub struct DecodingReader<R> {
    inner: R,
    codec: Codec,
    /// Raw bytes `input[in_pos..in_end]` not yet decoded; the buffer itself only grows (it is not
    /// zero-filled again for every chunk).
    input: Vec<u8>,
    in_pos: usize,
    in_end: usize,
    in_eof: bool,
    /// Decoded bytes `output[out_pos..out_end]` not yet handed out; grows like `input`.
    output: Vec<u8>,
    out_pos: usize,
    out_end: usize,
    bom_checked: bool,
    finished: bool,
    consumed: u64,
}

impl<R: Read> DecodingReader<R> {
    pub fn new(inner: R, encoding: TextEncoding) -> Self {
        let codec = match encoding {
            TextEncoding::Latin1 => Codec::Latin1,
            TextEncoding::Utf8 => Codec::Utf8 { carry: [0; 3], carry_len: 0 },
            TextEncoding::Cp1252 => {
                Codec::Strict { decoder: WINDOWS_1252.new_decoder_without_bom_handling(), cp1252: true }
            }
            TextEncoding::Other(enc) => {
                Codec::Strict { decoder: enc.new_decoder_with_bom_removal(), cp1252: false }
            }
        };
        Self::with_codec(inner, codec)
    }

    fn with_codec(inner: R, codec: Codec) -> Self {
        DecodingReader {
            inner,
            codec,
            input: Vec::new(),
            in_pos: 0,
            in_end: 0,
            in_eof: false,
            output: Vec::new(),
            out_pos: 0,
            out_end: 0,
            bom_checked: false,
            finished: false,
            consumed: 0,
        }
    }

    /// One read from `inner` into `buf`, retried when interrupted.
    fn read_inner(inner: &mut R, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match inner.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The UTF-8 reader: the first chunk (for the BOM) and reads into tiny buffers are staged in
    /// `input[in_pos..in_end]`; every other read goes straight into `buf` and is validated there.
    fn read_utf8(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.in_pos < self.in_end {
                return Ok(hand_out(&self.input[..self.in_end], &mut self.in_pos, buf));
            }
            if self.finished || buf.is_empty() {
                return Ok(0);
            }
            if !self.bom_checked || buf.len() < DIRECT_MIN {
                self.stage_utf8()?;
                continue;
            }
            let carried = self.take_carry(buf);
            let n = Self::read_inner(&mut self.inner, &mut buf[carried..])?;
            let valid = self.accept_utf8(buf, carried + n, n == 0)?;
            if valid > 0 {
                return Ok(valid);
            }
        }
    }

    /// Moves the carried partial sequence to the start of `dest`; returns its length.
    fn take_carry(&mut self, dest: &mut [u8]) -> usize {
        match &mut self.codec {
            Codec::Utf8 { carry, carry_len } => {
                let n = std::mem::take(carry_len);
                dest[..n].copy_from_slice(&carry[..n]);
                n
            }
            _ => 0,
        }
    }

    /// Checks `data[..len]` (carry first): returns the complete valid prefix, keeps an incomplete tail
    /// for the next read, fails on invalid bytes.
    fn accept_utf8(&mut self, data: &[u8], len: usize, eof: bool) -> io::Result<usize> {
        let valid = valid_utf8_prefix(&data[..len], eof).map_err(|at| self.fail(at))?;
        if let Codec::Utf8 { carry, carry_len } = &mut self.codec {
            let tail = &data[valid..len];
            carry[..tail.len()].copy_from_slice(tail);
            *carry_len = tail.len();
        }
        self.consumed += valid as u64;
        if eof {
            self.finished = true;
        }
        Ok(valid)
    }

    /// Reads one chunk into `input` (dropping a leading BOM on the first) and stages its valid prefix.
    fn stage_utf8(&mut self) -> io::Result<()> {
        if self.input.len() < BOM.len() + CHUNK {
            self.input.resize(BOM.len() + CHUNK, 0);
        }
        let mut input = std::mem::take(&mut self.input);
        let result = self.stage_utf8_into(&mut input);
        self.input = input;
        result
    }

    fn stage_utf8_into(&mut self, input: &mut [u8]) -> io::Result<()> {
        let mut end = self.take_carry(input);
        // At least one new byte, and on the first read the three a BOM needs (unless the input ends).
        let want = if self.bom_checked { end + 1 } else { BOM.len() };
        let mut eof = false;
        while end < want {
            let n = Self::read_inner(&mut self.inner, &mut input[end..end + CHUNK])?;
            if n == 0 {
                eof = true;
                break;
            }
            end += n;
        }
        let mut start = 0;
        if !self.bom_checked {
            self.bom_checked = true;
            if input[..end].starts_with(BOM) {
                start = BOM.len();
                self.consumed = BOM.len() as u64;
            }
        }
        let valid = self.accept_utf8(&input[start..], end - start, eof)?;
        self.in_pos = start;
        self.in_end = start + valid;
        Ok(())
    }

    fn fail(&self, extra: usize) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, DecodeFailure { offset: self.consumed + extra as u64 })
    }

    /// Tops the input buffer up to at least `want` unread bytes (or EOF).
    fn fill_input(&mut self, want: usize) -> io::Result<()> {
        if self.in_pos > 0 {
            self.input.copy_within(self.in_pos..self.in_end, 0);
            self.in_end -= self.in_pos;
            self.in_pos = 0;
        }
        while !self.in_eof && self.in_end < want {
            let start = self.in_end;
            if self.input.len() < start + CHUNK {
                self.input.resize(start + CHUNK, 0);
            }
            let n = Self::read_inner(&mut self.inner, &mut self.input[start..start + CHUNK])?;
            self.in_end = start + n;
            if n == 0 {
                self.in_eof = true;
            }
        }
        Ok(())
    }

    /// Decodes the next chunk into `output` (all codecs but UTF-8, which [`Self::read_utf8`] reads).
    fn refill(&mut self) -> io::Result<()> {
        self.out_pos = 0;
        self.out_end = 0;
        if self.in_pos >= self.in_end {
            self.fill_input(1)?;
        }
        if !self.bom_checked {
            self.fill_input(3)?;
            if self.input[..self.in_end].starts_with(BOM) {
                self.in_pos = 3;
                self.consumed = 3;
            }
            self.bom_checked = true;
        }
        let last = self.in_eof;
        let chunk = &self.input[self.in_pos..self.in_end];
        match &mut self.codec {
            Codec::Latin1 => {
                self.output.clear();
                self.output.reserve(chunk.len() * 2);
                for &b in chunk {
                    if b < 0x80 {
                        self.output.push(b);
                    } else {
                        self.output.extend_from_slice(char::from(b).encode_utf8(&mut [0u8; 2]).as_bytes());
                    }
                }
                self.out_end = self.output.len();
                let n = chunk.len();
                self.in_pos += n;
                self.consumed += n as u64;
                if last {
                    self.finished = true;
                }
            }
            Codec::Utf8 { .. } => unreachable!("UTF-8 input is read by read_utf8"),
            Codec::Strict { decoder, cp1252 } => {
                if *cp1252 {
                    if let Some(i) = chunk.iter().position(|b| CP1252_UNASSIGNED.contains(b)) {
                        return Err(self.fail(i));
                    }
                }
                let cap = decoder
                    .max_utf8_buffer_length_without_replacement(chunk.len())
                    .unwrap_or(chunk.len() * 3 + 16);
                if self.output.len() < cap {
                    self.output.resize(cap, 0);
                }
                let (result, read, written) =
                    decoder.decode_to_utf8_without_replacement(chunk, &mut self.output[..cap], last);
                self.out_end = written;
                match result {
                    DecoderResult::Malformed(_, _) => return Err(self.fail(read)),
                    DecoderResult::InputEmpty => {
                        if last {
                            self.finished = true;
                        }
                    }
                    DecoderResult::OutputFull => {}
                }
                self.in_pos += read;
                self.consumed += read as u64;
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for DecodingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if matches!(self.codec, Codec::Utf8 { .. }) {
            return self.read_utf8(buf);
        }
        loop {
            if self.out_pos < self.out_end {
                return Ok(hand_out(&self.output[..self.out_end], &mut self.out_pos, buf));
            }
            if self.finished || buf.is_empty() {
                return Ok(0);
            }
            self.refill()?;
        }
    }
}

/// Copies as much of `pending[*pos..]` as fits into `buf` and advances `pos` past it.
fn hand_out(pending: &[u8], pos: &mut usize, buf: &mut [u8]) -> usize {
    let n = buf.len().min(pending.len() - *pos);
    buf[..n].copy_from_slice(&pending[*pos..*pos + n]);
    *pos += n;
    n
}

/// Decodes a whole byte slice (tests and small inputs).
pub fn decode_all(bytes: &[u8], encoding: TextEncoding) -> io::Result<String> {
    let mut out = String::new();
    DecodingReader::new(bytes, encoding).read_to_string(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_like_python() {
        let cases = [
            ("utf-8", Some(TextEncoding::Utf8)),
            ("UTF8", Some(TextEncoding::Utf8)),
            ("utf-8-sig", Some(TextEncoding::Utf8)),
            ("utf_8_sig", Some(TextEncoding::Utf8)),
            ("cp1252", Some(TextEncoding::Cp1252)),
            ("windows-1252", Some(TextEncoding::Cp1252)),
            ("latin1", Some(TextEncoding::Latin1)),
            ("latin-1", Some(TextEncoding::Latin1)),
            ("ISO-8859-1", Some(TextEncoding::Latin1)),
            ("iso_8859_1", Some(TextEncoding::Latin1)),
            ("no-such-codec", None),
        ];
        for (name, want) in cases {
            assert_eq!(TextEncoding::from_name(name), want, "name {name}");
        }
        assert_eq!(TextEncoding::from_name("shift_jis"), Some(TextEncoding::Other(encoding_rs::SHIFT_JIS)));
    }

    #[test]
    fn latin1_maps_every_byte_to_its_code_point() {
        let bytes: Vec<u8> = (0u8..=255).collect();
        let text = decode_all(&bytes, TextEncoding::Latin1).unwrap();
        let chars: Vec<u32> = text.chars().map(|c| c as u32).collect();
        assert_eq!(chars, (0u32..=255).collect::<Vec<_>>());
    }

    #[test]
    fn cp1252_decodes_windows_characters_and_fails_on_unassigned_bytes() {
        assert_eq!(
            decode_all(b"\x80 \x93q\x94 caf\xE9", TextEncoding::Cp1252).unwrap(),
            "€ \u{201c}q\u{201d} café"
        );
        for bad in CP1252_UNASSIGNED {
            let err = decode_all(&[b'a', bad], TextEncoding::Cp1252).unwrap_err();
            assert!(is_decode_failure(&err), "byte {bad:#x}");
        }
    }

    #[test]
    fn utf8_is_strict_and_drops_the_bom() {
        assert_eq!(decode_all("\u{feff}a,é".as_bytes(), TextEncoding::Utf8).unwrap(), "a,é");
        assert_eq!(decode_all(b"\xEF\xBB\xBFx", TextEncoding::Latin1).unwrap(), "x");
        let err = decode_all(b"caf\xE9", TextEncoding::Utf8).unwrap_err();
        assert!(is_decode_failure(&err));
        // A truncated sequence at the very end is an error too.
        assert!(decode_all(b"ab\xC3", TextEncoding::Utf8).is_err());
    }

    /// Several chunks read through small and odd-sized buffers (the reused buffers keep no stale bytes).
    #[test]
    fn small_reads_over_many_chunks_match_the_whole_text() {
        let text = "ab,é\n".repeat(CHUNK / 2) + "end";
        let cases: [(Vec<u8>, TextEncoding); 3] = [
            (text.as_bytes().to_vec(), TextEncoding::Utf8),
            (text.chars().map(|c| c as u32 as u8).collect(), TextEncoding::Latin1),
            (text.chars().map(|c| c as u32 as u8).collect(), TextEncoding::Cp1252),
        ];
        for (bytes, encoding) in cases {
            let mut reader = DecodingReader::new(bytes.as_slice(), encoding);
            let mut out = Vec::new();
            let mut buf = [0u8; 7777];
            loop {
                let n = reader.read(&mut buf[..1 + out.len() % 7776]).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert_eq!(String::from_utf8(out).unwrap(), text, "{encoding:?}");
        }
    }

    #[test]
    fn multibyte_sequences_across_chunk_boundaries_survive() {
        let text = "é€😀".repeat(CHUNK / 3);
        let back = decode_all(text.as_bytes(), TextEncoding::Utf8).unwrap();
        assert_eq!(back, text);
    }

    /// A reader handing out `data` in pieces of the given sizes (cycled), recording what it was asked for.
    struct Pieces<'a> {
        data: &'a [u8],
        sizes: &'a [usize],
        next: usize,
        asked: Vec<usize>,
    }

    impl<'a> Pieces<'a> {
        fn new(data: &'a [u8], sizes: &'a [usize]) -> Self {
            Pieces { data, sizes, next: 0, asked: Vec::new() }
        }
    }

    impl Read for Pieces<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.asked.push(buf.len());
            let n = buf.len().min(self.sizes[self.next % self.sizes.len()]).min(self.data.len());
            self.next += 1;
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Reads everything through caller buffers of the given sizes (cycled); the error's offset on failure.
    fn read_through<R: Read>(mut reader: DecodingReader<R>, buffers: &[usize]) -> Result<Vec<u8>, u64> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; buffers.iter().copied().max().unwrap_or(1)];
        for i in 0.. {
            match reader.read(&mut buf[..buffers[i % buffers.len()]]) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => {
                    let failure = e.get_ref().and_then(|inner| inner.downcast_ref::<DecodeFailure>());
                    return Err(failure.expect("a decode failure").offset);
                }
            }
        }
        Ok(out)
    }

    /// The encoding_rs decoder this reader used for UTF-8 before the in-place path.
    fn strict_utf8(bytes: &[u8]) -> DecodingReader<&[u8]> {
        let decoder = UTF_8.new_decoder_without_bom_handling();
        DecodingReader::with_codec(bytes, Codec::Strict { decoder, cp1252: false })
    }

    /// The in-place UTF-8 path hands out what encoding_rs's strict decoder does and fails where it
    /// fails, however the input and the caller's reads are split (sequences cut across reads, tiny
    /// caller buffers that go through the staging buffer, a BOM, truncated and invalid sequences).
    #[test]
    fn utf8_in_place_matches_the_strict_decoder_whatever_the_splits() {
        let mut inputs: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"\xEF\xBB\xBF".to_vec(),
            b"\xEF\xBB".to_vec(),
            "\u{feff}a,é\n€😀x".as_bytes().to_vec(),
            "é€😀".repeat(50).into_bytes(),
            b"ab\xC3".to_vec(),
            b"ab\xF0\x9F\x98".to_vec(),
            b"caf\xE9 au lait".to_vec(),
            b"x\xC3\x28y".to_vec(),
            b"x\xE2\x82y".to_vec(),
            b"x\xF0\x9F\x98y".to_vec(),
            b"x\xC0\xAFy".to_vec(),
            b"x\xED\xA0\x80y".to_vec(),
            b"x\xF4\x90\x80\x80y".to_vec(),
            b"x\x80y".to_vec(),
            b"x\xFFy".to_vec(),
        ];
        let long: Vec<u8> = "é€😀,ab\n".repeat(3 * CHUNK / 13).into_bytes();
        let mut bad_late = long.clone();
        bad_late.extend_from_slice(b"\xE2\x28\xA1 tail");
        inputs.push(long);
        inputs.push(bad_late);
        let splits: [&[usize]; 5] = [&[usize::MAX], &[1], &[2, 3], &[5, 1, 7], &[CHUNK - 1, 2]];
        let buffers: [&[usize]; 5] = [&[CHUNK], &[1], &[3, 4, 5], &[4], &[8192, 2, CHUNK + 3]];
        for (i, input) in inputs.iter().enumerate() {
            let want = read_through(strict_utf8(input), &[CHUNK]);
            for sizes in splits {
                for reads in buffers {
                    let reader = DecodingReader::new(Pieces::new(input, sizes), TextEncoding::Utf8);
                    let got = read_through(reader, reads);
                    assert_eq!(got, want, "input {i}, pieces {sizes:?}, reads {reads:?}");
                }
            }
        }
    }

    /// Valid text for several chunks, then one bad byte: a decode failure at that byte, not a short read.
    #[test]
    fn utf8_bad_byte_after_many_good_chunks_fails() {
        let mut bytes = "row,é,€\n".repeat(5 * CHUNK / 12).into_bytes();
        let at = bytes.len() as u64;
        bytes.extend_from_slice(b"caf\xE9\n");
        let reader = DecodingReader::new(Pieces::new(&bytes, &[CHUNK, 1000]), TextEncoding::Utf8);
        assert_eq!(read_through(reader, &[CHUNK]), Err(at + 4));
        let err = decode_all(&bytes, TextEncoding::Utf8).unwrap_err();
        assert!(is_decode_failure(&err), "{err}");
    }

    /// After the first chunk, UTF-8 goes straight into the caller's buffer: `inner` is asked for the
    /// caller's size (less a carried partial sequence), not for a staging chunk.
    #[test]
    fn utf8_reads_into_the_callers_buffer() {
        let text = "é".repeat(CHUNK);
        let mut pieces = Pieces::new(text.as_bytes(), &[1001]);
        let mut reader = DecodingReader::new(&mut pieces, TextEncoding::Utf8);
        let mut out = Vec::new();
        let mut buf = vec![0u8; 5000];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, text.as_bytes());
        // The first read stages a chunk (BOM check); 1001-byte pieces end mid-character every other read.
        assert_eq!(pieces.asked[0], CHUNK);
        assert!(pieces.asked[1..].iter().all(|&n| n == 5000 || n == 4999), "{:?}", &pieces.asked[..8]);
        assert!(pieces.asked.contains(&4999));
    }
}
