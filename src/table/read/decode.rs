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

enum Codec {
    Latin1,
    Strict { decoder: encoding_rs::Decoder, cp1252: bool },
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
            TextEncoding::Utf8 => {
                Codec::Strict { decoder: UTF_8.new_decoder_without_bom_handling(), cp1252: false }
            }
            TextEncoding::Cp1252 => {
                Codec::Strict { decoder: WINDOWS_1252.new_decoder_without_bom_handling(), cp1252: true }
            }
            TextEncoding::Other(enc) => {
                Codec::Strict { decoder: enc.new_decoder_with_bom_removal(), cp1252: false }
            }
        };
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
            let n = loop {
                match self.inner.read(&mut self.input[start..start + CHUNK]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            self.in_end = start + n;
            if n == 0 {
                self.in_eof = true;
            }
        }
        Ok(())
    }

    /// Decodes the next chunk into `output`.
    fn refill(&mut self) -> io::Result<()> {
        self.out_pos = 0;
        self.out_end = 0;
        if self.in_pos >= self.in_end {
            self.fill_input(1)?;
        }
        if !self.bom_checked {
            self.fill_input(3)?;
            if self.input[..self.in_end].starts_with(b"\xEF\xBB\xBF") {
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
        loop {
            if self.out_pos < self.out_end {
                let n = buf.len().min(self.out_end - self.out_pos);
                buf[..n].copy_from_slice(&self.output[self.out_pos..self.out_pos + n]);
                self.out_pos += n;
                return Ok(n);
            }
            if self.finished || buf.is_empty() {
                return Ok(0);
            }
            self.refill()?;
        }
    }
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
}
