//! Streaming CSV reader for contact imports: it turns the bytes of an uploaded file
//! into numbered records of UTF-8 fields, and owns everything that can go wrong before
//! a cell is looked at (encoding, delimiter, header, structure).
//!
//! It protects the importer in two ways. Memory stays bounded whatever the input: the
//! text is decoded on the fly, and the byte source fed to the `csv` crate refuses to
//! run more than `max_record_bytes` (plus the parser's buffer) past the last record
//! boundary, so a 100 MB field or an unbalanced quote fails fast instead of being
//! buffered whole. And no error message repeats field contents, only row numbers and
//! header names, so errors can be shown, stored and logged without leaking personal
//! data.
//!
//! Structural problems (undecodable text, NUL bytes, an over-long row, a quote left
//! open at the end of the file) are fatal. A record whose field count differs from the
//! header's is not a structural problem here: it is returned as it is, and the caller
//! decides what to do with it.

use std::collections::HashSet;
use std::fmt;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use encoding_rs::{DecoderResult, Encoding, UTF_16BE, UTF_16LE, UTF_8};

/// The most columns a header may have.
pub const MAX_COLUMNS: usize = 256;

/// The default limit on the decoded size of one record.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

/// How many bytes `RecordReader::new` reads ahead to detect the encoding and delimiter.
const SNIFF_BYTES: usize = 64 << 10;

/// Buffer size of the `csv` reader; the record limit allows this much read-ahead.
const CSV_BUFFER_BYTES: usize = 8 << 10;

/// Size of the raw-byte buffer of the decoder.
const DECODE_INPUT_BYTES: usize = 8 << 10;

/// Room for the decoder's output: UTF-8 needs at most three bytes per input byte of
/// any encoding we decode, plus room for one replacement character.
const DECODE_OUTPUT_BYTES: usize = 3 * DECODE_INPUT_BYTES + 16;

const EMPTY_FILE: &str = "the file is empty: expected a header row with email and/or phone";
const NUL_BYTES: &str = "the file contains NUL bytes: it is not a text CSV file";
const UNCLOSED_QUOTE: &str = "a quoted field is not closed before the end of the file";

/// A problem reading the file. `row` is the record number (the header is row 1) when
/// the problem belongs to one record; the message never contains field contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvError {
    pub row: Option<u64>,
    pub message: String,
}

impl CsvError {
    fn file(message: impl Into<String>) -> Self {
        CsvError {
            row: None,
            message: message.into(),
        }
    }

    fn at(row: u64, message: impl Into<String>) -> Self {
        CsvError {
            row: Some(row),
            message: message.into(),
        }
    }
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.row {
            Some(row) => write!(f, "row {row}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for CsvError {}

/// What `sniff` found out about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sniffed {
    pub encoding: &'static Encoding,
    pub delimiter: u8,
    pub has_bom: bool,
}

/// Detects encoding and delimiter from the first bytes of a file (pass up to 64 KiB).
///
/// The encoding is, in order: the one named by a byte order mark; UTF-16 when NUL
/// bytes fall on every other byte (BOM-less UTF-16); UTF-8 when the prefix is valid
/// UTF-8 (a character cut at the end of the prefix is allowed); otherwise the guess of
/// `chardetng` (typically Windows-1252). NUL bytes in a file that is not UTF-16 are an
/// error. The delimiter is the most frequent of `,` `;` and tab outside quotes in the
/// first non-blank line, `,` when there is none.
pub fn sniff(prefix: &[u8]) -> Result<Sniffed, CsvError> {
    let (encoding, bom_len) = match Encoding::for_bom(prefix) {
        Some((encoding, bom_len)) => (encoding, bom_len),
        None => (detect_without_bom(prefix), 0),
    };
    let body = &prefix[bom_len..];
    let is_utf16 = encoding == UTF_16LE || encoding == UTF_16BE;
    if !is_utf16 && body.contains(&0) {
        return Err(CsvError::file(NUL_BYTES));
    }
    let (text, _) = encoding.decode_without_bom_handling(body);
    Ok(Sniffed {
        encoding,
        delimiter: detect_delimiter(&text),
        has_bom: bom_len > 0,
    })
}

fn detect_without_bom(prefix: &[u8]) -> &'static Encoding {
    if let Some(encoding) = detect_utf16_by_nuls(prefix) {
        return encoding;
    }
    match std::str::from_utf8(prefix) {
        Ok(_) => UTF_8,
        // `error_len() == None` means the prefix ends inside a character that the
        // bytes after the prefix would complete.
        Err(error) if error.error_len().is_none() => UTF_8,
        Err(_) => {
            let mut detector = chardetng::EncodingDetector::new();
            detector.feed(prefix, false);
            detector.guess(None, false)
        }
    }
}

/// BOM-less UTF-16: a CSV header is mostly ASCII, and ASCII in UTF-16 has a NUL high
/// byte, so NULs pile up on odd offsets (little-endian) or even ones (big-endian).
/// Random binary data has few NULs on either side and is left to the NUL check.
fn detect_utf16_by_nuls(prefix: &[u8]) -> Option<&'static Encoding> {
    let pairs = prefix.len() / 2;
    let (mut even_nuls, mut odd_nuls) = (0usize, 0usize);
    for pair in prefix.chunks_exact(2) {
        even_nuls += usize::from(pair[0] == 0);
        odd_nuls += usize::from(pair[1] == 0);
    }
    let dominates = |many: usize, few: usize| many > 0 && many * 4 >= pairs && few * 4 < many;
    if dominates(odd_nuls, even_nuls) {
        Some(UTF_16LE)
    } else if dominates(even_nuls, odd_nuls) {
        Some(UTF_16BE)
    } else {
        None
    }
}

fn detect_delimiter(text: &str) -> u8 {
    const CANDIDATES: [u8; 3] = [b',', b';', b'\t'];
    let mut counts = [0usize; 3];
    let mut in_quotes = false;
    let mut line_has_content = false;
    for c in text.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                line_has_content = true;
            }
            // The header is the first line with something on it.
            '\r' | '\n' if !in_quotes => {
                if line_has_content {
                    break;
                }
                counts = [0; 3];
            }
            _ if in_quotes => {}
            _ => {
                if let Some(index) = CANDIDATES.iter().position(|&d| u32::from(d) == u32::from(c)) {
                    counts[index] += 1;
                }
                line_has_content |= !c.is_whitespace();
            }
        }
    }
    // Ties go to the earlier candidate, so `,` wins when nothing is counted.
    let mut best = 0;
    for index in 1..CANDIDATES.len() {
        if counts[index] > counts[best] {
            best = index;
        }
    }
    CANDIDATES[best]
}

/// One data record. `row` is the 1-based record number in the file: the header is row
/// 1, the first data record row 2; blank lines are not counted.
///
/// Its field count may differ from the header's: the caller rejects such records.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    pub row: u64,
    pub fields: Vec<String>,
}

/// Fields are personal data, so `Debug` shows only their number.
impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("row", &self.row)
            .field("fields", &format_args!("<{} fields>", self.fields.len()))
            .finish()
    }
}

/// The pipeline under the `csv` parser: the sniffed prefix chained back to the rest of
/// the source, decoded to UTF-8, limited per record.
type Source<R> = RecordLimiter<TextDecoder<io::Chain<io::Cursor<Vec<u8>>, R>>>;

/// Reads a CSV file record by record with bounded memory.
pub struct RecordReader<R: Read> {
    csv: csv::Reader<Source<R>>,
    progress: Arc<Progress>,
    sniffed: Sniffed,
    headers: Vec<String>,
    max_record_bytes: usize,
    /// Records returned so far, the header included.
    rows: u64,
    record: csv::StringRecord,
    failed: Option<CsvError>,
}

impl<R: Read> RecordReader<R> {
    /// Sniffs (reads a prefix itself, then chains it back), decodes to UTF-8 on the fly,
    /// reads and checks the header.
    pub fn new(mut reader: R, max_record_bytes: usize) -> Result<Self, CsvError> {
        let prefix = read_prefix(&mut reader)?;
        let sniffed = sniff(&prefix)?;
        let decoder = if sniffed.has_bom {
            sniffed.encoding.new_decoder_with_bom_removal()
        } else {
            sniffed.encoding.new_decoder_without_bom_handling()
        };
        let text = TextDecoder::new(io::Cursor::new(prefix).chain(reader), decoder, sniffed.encoding);
        let progress = Arc::new(Progress::default());
        let limiter = RecordLimiter {
            inner: text,
            progress: Arc::clone(&progress),
            allowed_ahead: (max_record_bytes as u64).saturating_add(2 * CSV_BUFFER_BYTES as u64),
            read_total: 0,
            field: FieldState::Start,
            delimiter: sniffed.delimiter,
        };
        let csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::None)
            .delimiter(sniffed.delimiter)
            .buffer_capacity(CSV_BUFFER_BYTES)
            .from_reader(limiter);
        let mut this = RecordReader {
            csv,
            progress,
            sniffed,
            headers: Vec::new(),
            max_record_bytes,
            rows: 0,
            record: csv::StringRecord::new(),
            failed: None,
        };
        this.read_header()?;
        Ok(this)
    }

    /// What was detected about the file.
    pub fn sniffed(&self) -> Sniffed {
        self.sniffed
    }

    /// Header names as written (trimmed, BOM removed), in order.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// Next data record; `Ok(None)` at end of file. A structural error is fatal (`Err`),
    /// the reader cannot continue after it: later calls return the same error.
    pub fn next_record(&mut self) -> Result<Option<Record>, CsvError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        match self.read_raw() {
            Ok(false) => Ok(None),
            Ok(true) => {
                self.rows += 1;
                Ok(Some(Record {
                    row: self.rows,
                    fields: self.record.iter().map(String::from).collect(),
                }))
            }
            Err(error) => {
                self.failed = Some(error.clone());
                Err(error)
            }
        }
    }

    fn read_header(&mut self) -> Result<(), CsvError> {
        // Lines of only whitespace (or only empty cells, as spreadsheets export an empty
        // first row) before the header count as blank lines, so a file of only
        // whitespace is reported as empty.
        loop {
            if !self.read_raw()? {
                return Err(CsvError::file(EMPTY_FILE));
            }
            let blank = self
                .record
                .iter()
                .enumerate()
                .all(|(index, raw)| header_name(index, raw).is_empty());
            if !blank {
                break;
            }
        }
        self.rows = 1;
        if self.record.len() > MAX_COLUMNS {
            return Err(CsvError::file(format!(
                "the header has {} columns; at most {MAX_COLUMNS} are supported",
                self.record.len()
            )));
        }
        let mut seen = HashSet::new();
        let mut headers = Vec::with_capacity(self.record.len());
        for (index, raw) in self.record.iter().enumerate() {
            let name = header_name(index, raw);
            if name.is_empty() {
                return Err(CsvError::file(format!("header column {} is empty", index + 1)));
            }
            if !seen.insert(name.to_lowercase()) {
                return Err(CsvError::file(format!("column {name:?} appears twice in the header")));
            }
            headers.push(name.to_owned());
        }
        self.headers = headers;
        Ok(())
    }

    /// Reads the next record into `self.record`; errors name the row it would be.
    fn read_raw(&mut self) -> Result<bool, CsvError> {
        let row = self.rows + 1;
        match self.csv.read_record(&mut self.record) {
            Ok(false) => Ok(false),
            Ok(true) => {
                let end = self.csv.position().byte();
                let start = self.record.position().map_or(end, |position| position.byte());
                self.progress.record_start.store(end, Ordering::Relaxed);
                if self.progress.eof_in_quotes.load(Ordering::Relaxed) {
                    return Err(CsvError::at(row, UNCLOSED_QUOTE));
                }
                if end - start > self.max_record_bytes as u64 {
                    return Err(too_long(row, self.max_record_bytes));
                }
                Ok(true)
            }
            Err(error) => Err(self.stream_error(error, row)),
        }
    }

    fn stream_error(&self, error: csv::Error, row: u64) -> CsvError {
        match error.into_kind() {
            csv::ErrorKind::Io(io_error) => match io_error.get_ref().and_then(|inner| inner.downcast_ref::<StreamProblem>()) {
                Some(StreamProblem::TooLong) => too_long(row, self.max_record_bytes),
                Some(StreamProblem::Nul) => CsvError::at(row, NUL_BYTES),
                Some(StreamProblem::Malformed(encoding)) => not_valid_text(row, encoding),
                None => CsvError::at(row, format!("failed to read the file: {io_error}")),
            },
            csv::ErrorKind::Utf8 { .. } => not_valid_text(row, UTF_8),
            _ => CsvError::at(row, "failed to parse the row"),
        }
    }
}

/// A header name as the caller sees it: trimmed, and a stray BOM (from a file saved
/// with two) removed from the first column.
fn header_name(index: usize, raw: &str) -> &str {
    let raw = if index == 0 { raw.trim_start_matches('\u{feff}') } else { raw };
    raw.trim()
}

fn too_long(row: u64, max_record_bytes: usize) -> CsvError {
    CsvError::at(
        row,
        format!(
            "a row is longer than {} (an unbalanced quote or a binary file?)",
            human_size(max_record_bytes)
        ),
    )
}

fn not_valid_text(row: u64, encoding: &'static Encoding) -> CsvError {
    let name = if encoding == UTF_8 { "UTF-8" } else { "UTF-16" };
    CsvError::at(
        row,
        format!("the file is not valid {name} here; save it as UTF-8 (or UTF-16) and import again"),
    )
}

fn human_size(bytes: usize) -> String {
    const KIB: usize = 1 << 10;
    const MIB: usize = 1 << 20;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

fn read_prefix(reader: &mut impl Read) -> Result<Vec<u8>, CsvError> {
    let mut prefix = Vec::with_capacity(SNIFF_BYTES);
    reader
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut prefix)
        .map_err(|error| CsvError::file(format!("failed to read the file: {error}")))?;
    Ok(prefix)
}

/// Why the decoded byte stream stopped; carried through the `csv` crate inside an
/// `io::Error` and turned back into a message with the row number.
#[derive(Debug, Clone, Copy)]
enum StreamProblem {
    TooLong,
    Nul,
    Malformed(&'static Encoding),
}

impl fmt::Display for StreamProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamProblem::TooLong => f.write_str("record too long"),
            StreamProblem::Nul => f.write_str("NUL byte"),
            StreamProblem::Malformed(encoding) => write!(f, "malformed {}", encoding.name()),
        }
    }
}

impl std::error::Error for StreamProblem {}

/// Shared between `RecordReader` (which knows where records end) and `RecordLimiter`
/// (which feeds the `csv` crate). Atomics only so that the reader stays `Send`.
#[derive(Default)]
struct Progress {
    /// Decoded byte offset where the record being read starts.
    record_start: AtomicU64,
    /// Set when the input ended inside a quoted field.
    eof_in_quotes: AtomicBool,
}

/// Decodes any encoding to UTF-8 as a byte stream. Malformed input in an encoding we
/// are sure of (UTF-8, UTF-16) and NUL characters end the stream with an error placed
/// exactly where they occur, so the `csv` crate reports it while reading the record
/// that contains them. Guessed legacy encodings decode with replacement characters.
struct TextDecoder<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    encoding: &'static Encoding,
    strict: bool,
    input: Vec<u8>,
    input_start: usize,
    input_end: usize,
    input_eof: bool,
    finished: bool,
    output: Vec<u8>,
    output_start: usize,
    output_end: usize,
    problem: Option<StreamProblem>,
}

impl<R: Read> TextDecoder<R> {
    fn new(inner: R, decoder: encoding_rs::Decoder, encoding: &'static Encoding) -> Self {
        TextDecoder {
            inner,
            decoder,
            encoding,
            strict: encoding == UTF_8 || encoding == UTF_16LE || encoding == UTF_16BE,
            input: vec![0; DECODE_INPUT_BYTES],
            input_start: 0,
            input_end: 0,
            input_eof: false,
            finished: false,
            output: vec![0; DECODE_OUTPUT_BYTES],
            output_start: 0,
            output_end: 0,
            problem: None,
        }
    }

    fn fill_output(&mut self) -> io::Result<()> {
        if self.input_start == self.input_end && !self.input_eof {
            let read = loop {
                match self.inner.read(&mut self.input) {
                    Ok(read) => break read,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => return Err(error),
                }
            };
            self.input_start = 0;
            self.input_end = read;
            self.input_eof = read == 0;
        }
        self.output.resize(DECODE_OUTPUT_BYTES, 0);
        let (result, read, mut written) = self.decoder.decode_to_utf8_without_replacement(
            &self.input[self.input_start..self.input_end],
            &mut self.output,
            self.input_eof,
        );
        self.input_start += read;
        match result {
            DecoderResult::InputEmpty => self.finished = self.input_eof,
            DecoderResult::OutputFull => {}
            DecoderResult::Malformed(..) if self.strict => self.problem = Some(StreamProblem::Malformed(self.encoding)),
            DecoderResult::Malformed(..) => {
                self.output.truncate(written);
                self.output.extend_from_slice("\u{fffd}".as_bytes());
                written = self.output.len();
            }
        }
        if let Some(nul) = self.output[..written].iter().position(|&byte| byte == 0) {
            written = nul;
            self.problem = Some(StreamProblem::Nul);
        }
        self.output_start = 0;
        self.output_end = written;
        Ok(())
    }
}

impl<R: Read> Read for TextDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.output_start < self.output_end {
                let count = buf.len().min(self.output_end - self.output_start);
                buf[..count].copy_from_slice(&self.output[self.output_start..self.output_start + count]);
                self.output_start += count;
                return Ok(count);
            }
            if let Some(problem) = self.problem {
                return Err(io::Error::other(problem));
            }
            if self.finished {
                return Ok(0);
            }
            self.fill_output()?;
        }
    }
}

/// Where the `csv` parser is inside the text, mirroring `csv_core`'s automaton for the
/// settings used here (double quotes, no escape character, no comments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldState {
    Start,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

impl FieldState {
    fn next(self, byte: u8, delimiter: u8) -> FieldState {
        use FieldState::*;
        let ends_field = byte == delimiter || byte == b'\n' || byte == b'\r';
        match self {
            Start if byte == b'"' => Quoted,
            Start | Unquoted | QuoteInQuoted if ends_field => Start,
            Quoted if byte == b'"' => QuoteInQuoted,
            Quoted => Quoted,
            QuoteInQuoted if byte == b'"' => Quoted,
            Start | Unquoted | QuoteInQuoted => Unquoted,
        }
    }
}

/// The byte source of the `csv` parser. It refuses to read further than the record
/// limit (plus the parser's buffer) past the start of the record being read, which
/// bounds memory however long a field is, and it notes whether the text ended inside
/// a quoted field, which the `csv` crate accepts silently.
struct RecordLimiter<R> {
    inner: R,
    progress: Arc<Progress>,
    allowed_ahead: u64,
    read_total: u64,
    field: FieldState,
    delimiter: u8,
}

impl<R: Read> Read for RecordLimiter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let record_start = self.progress.record_start.load(Ordering::Relaxed);
        let allowed = record_start.saturating_add(self.allowed_ahead).saturating_sub(self.read_total);
        if allowed == 0 {
            return Err(io::Error::other(StreamProblem::TooLong));
        }
        let len = buf.len().min(usize::try_from(allowed).unwrap_or(usize::MAX));
        let read = self.inner.read(&mut buf[..len])?;
        self.read_total += read as u64;
        for &byte in &buf[..read] {
            self.field = self.field.next(byte, self.delimiter);
        }
        if read == 0 {
            self.progress
                .eof_in_quotes
                .store(self.field == FieldState::Quoted, Ordering::Relaxed);
        }
        Ok(read)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    use proptest::prelude::*;

    fn read_all_with(bytes: &[u8], max_record_bytes: usize) -> Result<(Vec<String>, Vec<Record>), CsvError> {
        let mut reader = RecordReader::new(bytes, max_record_bytes)?;
        let mut records = Vec::new();
        while let Some(record) = reader.next_record()? {
            records.push(record);
        }
        Ok((reader.headers().to_vec(), records))
    }

    fn read_all(bytes: &[u8]) -> Result<(Vec<String>, Vec<Record>), CsvError> {
        read_all_with(bytes, DEFAULT_MAX_RECORD_BYTES)
    }

    fn fields(records: &[Record]) -> Vec<Vec<&str>> {
        records
            .iter()
            .map(|record| record.fields.iter().map(String::as_str).collect())
            .collect()
    }

    fn utf16(text: &str, little_endian: bool, bom: bool) -> Vec<u8> {
        let mut bytes = Vec::new();
        let units = bom.then_some(0xfeff).into_iter().chain(text.encode_utf16());
        for unit in units {
            bytes.extend_from_slice(&if little_endian { unit.to_le_bytes() } else { unit.to_be_bytes() });
        }
        bytes
    }

    /// A header, then enough short rows to push what follows past the sniffed prefix.
    fn past_the_prefix() -> (Vec<u8>, u64) {
        let mut bytes = b"email,name\n".to_vec();
        let mut rows = 1;
        while bytes.len() <= SNIFF_BYTES {
            bytes.extend_from_slice(b"someone@example.com,Someone\n");
            rows += 1;
        }
        (bytes, rows)
    }

    fn expect_error(bytes: &[u8]) -> CsvError {
        match read_all(bytes) {
            Ok(_) => panic!("expected an error"),
            Err(error) => error,
        }
    }

    #[test]
    fn utf8_without_bom_is_read() {
        let (headers, records) = read_all("email,name\nrenee@example.com,Renée\n".as_bytes()).unwrap();
        assert_eq!(headers, ["email", "name"]);
        assert_eq!(fields(&records), [["renee@example.com", "Renée"]]);
    }

    #[test]
    fn utf8_bom_is_removed_from_the_first_header() {
        let reader = RecordReader::new(&b"\xEF\xBB\xBFemail,phone\n"[..], DEFAULT_MAX_RECORD_BYTES).unwrap();
        assert_eq!(reader.headers(), ["email", "phone"]);
        assert_eq!(
            reader.sniffed(),
            Sniffed {
                encoding: UTF_8,
                delimiter: b',',
                has_bom: true
            }
        );
    }

    #[test]
    fn a_second_bom_is_removed_from_the_first_header() {
        let (headers, _) = read_all("\u{feff}\u{feff}email\n".as_bytes()).unwrap();
        assert_eq!(headers, ["email"]);
    }

    #[test]
    fn utf16_le_with_bom_is_decoded() {
        let bytes = utf16("email;name\r\njose@example.com;José\r\n", true, true);
        let mut reader = RecordReader::new(&bytes[..], DEFAULT_MAX_RECORD_BYTES).unwrap();
        assert_eq!(
            reader.sniffed(),
            Sniffed {
                encoding: UTF_16LE,
                delimiter: b';',
                has_bom: true
            }
        );
        assert_eq!(reader.headers(), ["email", "name"]);
        assert_eq!(reader.next_record().unwrap().unwrap().fields, ["jose@example.com", "José"]);
    }

    #[test]
    fn utf16_be_with_bom_is_decoded() {
        let bytes = utf16("email\tname\n李@example.com\t李\n", false, true);
        let mut reader = RecordReader::new(&bytes[..], DEFAULT_MAX_RECORD_BYTES).unwrap();
        assert_eq!(
            reader.sniffed(),
            Sniffed {
                encoding: UTF_16BE,
                delimiter: b'\t',
                has_bom: true
            }
        );
        assert_eq!(reader.next_record().unwrap().unwrap().fields, ["李@example.com", "李"]);
    }

    #[test]
    fn utf16_le_without_bom_is_detected_from_the_nul_pattern() {
        let bytes = utf16("email,name\nanna@example.com,Anna\n", true, false);
        let mut reader = RecordReader::new(&bytes[..], DEFAULT_MAX_RECORD_BYTES).unwrap();
        assert_eq!(
            reader.sniffed(),
            Sniffed {
                encoding: UTF_16LE,
                delimiter: b',',
                has_bom: false
            }
        );
        assert_eq!(reader.headers(), ["email", "name"]);
        assert_eq!(reader.next_record().unwrap().unwrap().fields, ["anna@example.com", "Anna"]);
    }

    #[test]
    fn utf16_be_without_bom_is_detected_from_the_nul_pattern() {
        let bytes = utf16("email,name\nanna@example.com,Anna\n", false, false);
        let sniffed = sniff(&bytes).unwrap();
        assert_eq!(sniffed.encoding, UTF_16BE);
        let (headers, records) = read_all(&bytes).unwrap();
        assert_eq!(headers, ["email", "name"]);
        assert_eq!(fields(&records), [["anna@example.com", "Anna"]]);
    }

    #[test]
    fn an_unpaired_surrogate_in_utf16_fails_its_row() {
        let mut bytes = utf16("email\na@example.com\n", true, true);
        bytes.extend_from_slice(&0xd800u16.to_le_bytes());
        bytes.extend_from_slice(&utf16("x@example.com\n", true, false));
        let error = expect_error(&bytes);
        assert_eq!(error.row, Some(3));
        assert!(error.message.starts_with("the file is not valid UTF-16 here"), "{error}");
    }

    #[test]
    fn windows_1252_is_guessed_when_the_prefix_is_not_utf8() {
        let bytes = b"email;voornaam;achternaam\r\nrenee@example.com;Ren\xe9e;M\xfcller\r\nfrancois@example.com;Fran\xe7ois;L\xe9ger\r\n";
        let mut reader = RecordReader::new(&bytes[..], DEFAULT_MAX_RECORD_BYTES).unwrap();
        assert_eq!(reader.sniffed().encoding, encoding_rs::WINDOWS_1252);
        assert_eq!(reader.sniffed().delimiter, b';');
        assert_eq!(
            reader.next_record().unwrap().unwrap().fields,
            ["renee@example.com", "Renée", "Müller"]
        );
        assert_eq!(
            reader.next_record().unwrap().unwrap().fields,
            ["francois@example.com", "François", "Léger"]
        );
    }

    #[test]
    fn a_utf8_character_cut_at_the_prefix_end_still_sniffs_as_utf8() {
        assert_eq!(sniff(&"email\né".as_bytes()[..7]).unwrap().encoding, UTF_8);

        let mut bytes = b"email,name\n".to_vec();
        while bytes.len() < SNIFF_BYTES - 1 {
            bytes.push(if bytes.len().is_multiple_of(80) { b'\n' } else { b'a' });
        }
        bytes.extend_from_slice("é,€\n".as_bytes());
        let mut reader = RecordReader::new(&bytes[..], DEFAULT_MAX_RECORD_BYTES).unwrap();
        assert_eq!(reader.sniffed().encoding, UTF_8);
        let mut last = None;
        while let Some(record) = reader.next_record().unwrap() {
            last = Some(record);
        }
        assert!(last.unwrap().fields[0].ends_with('é'));
    }

    #[test]
    fn invalid_utf8_after_the_prefix_fails_the_row_that_contains_it() {
        let (mut bytes, rows) = past_the_prefix();
        bytes.extend_from_slice(b"secret@example.com,Ren\xe9e\n");
        let error = expect_error(&bytes);
        assert_eq!(error.row, Some(rows + 1));
        assert_eq!(
            error.message,
            "the file is not valid UTF-8 here; save it as UTF-8 (or UTF-16) and import again"
        );
        assert!(!error.to_string().contains("secret"));
    }

    #[test]
    fn rows_before_invalid_utf8_are_returned() {
        let (mut bytes, rows) = past_the_prefix();
        bytes.extend_from_slice(b"\xff\n");
        let mut reader = RecordReader::new(&bytes[..], DEFAULT_MAX_RECORD_BYTES).unwrap();
        for row in 2..=rows {
            assert_eq!(reader.next_record().unwrap().unwrap().row, row);
        }
        assert_eq!(reader.next_record().unwrap_err().row, Some(rows + 1));
    }

    #[test]
    fn utf8_cut_at_the_end_of_the_file_fails_the_last_row() {
        let (mut bytes, rows) = past_the_prefix();
        bytes.extend_from_slice(b"a@example.com,\xc3");
        assert_eq!(expect_error(&bytes).row, Some(rows + 1));
    }

    #[test]
    fn a_literal_replacement_character_is_accepted() {
        let (mut bytes, _) = past_the_prefix();
        bytes.extend_from_slice("x@example.com,\u{fffd}\n".as_bytes());
        let (_, records) = read_all(&bytes).unwrap();
        assert_eq!(records.last().unwrap().fields[1], "\u{fffd}");
    }

    #[test]
    fn nul_bytes_in_the_prefix_are_rejected() {
        let error = expect_error(b"email,name\na@example.com,\0\0\0\n");
        assert_eq!(
            error,
            CsvError {
                row: None,
                message: NUL_BYTES.to_owned()
            }
        );
        assert_eq!(error.to_string(), "the file contains NUL bytes: it is not a text CSV file");
    }

    #[test]
    fn a_nul_byte_after_the_prefix_fails_its_row() {
        let (mut bytes, rows) = past_the_prefix();
        bytes.extend_from_slice(b"a@example.com,ok\nb@example.com,\0\n");
        let error = expect_error(&bytes);
        assert_eq!(
            error,
            CsvError {
                row: Some(rows + 2),
                message: NUL_BYTES.to_owned()
            }
        );
    }

    #[test]
    fn empty_files_are_rejected() {
        for bytes in [&b""[..], b"\xEF\xBB\xBF", b"\xFF\xFE", b" \n\t\r\n  ", b"\n\n\n", b",,\n , \n"] {
            assert_eq!(
                expect_error(bytes),
                CsvError {
                    row: None,
                    message: EMPTY_FILE.to_owned()
                }
            );
        }
    }

    #[test]
    fn blank_lines_before_the_header_are_skipped() {
        let (headers, records) = read_all(b"\n  \n,,\nemail\na@example.com\n").unwrap();
        assert_eq!(headers, ["email"]);
        assert_eq!(records[0].row, 2);
    }

    #[test]
    fn the_delimiter_is_the_most_frequent_outside_quotes() {
        assert_eq!(sniff(b"email;first;last\n").unwrap().delimiter, b';');
        assert_eq!(sniff(b"email\tfirst\tlast\n").unwrap().delimiter, b'\t');
        assert_eq!(sniff(b"email,first,last\n").unwrap().delimiter, b',');
        assert_eq!(sniff(b"\"a,b,c\";\"d\";e\n").unwrap().delimiter, b';');
        assert_eq!(sniff(b"email;phone\na,b,c,d,e\n").unwrap().delimiter, b';');
        assert_eq!(sniff(b"\n \nemail;phone\n").unwrap().delimiter, b';');
    }

    #[test]
    fn comma_is_the_default_delimiter() {
        assert_eq!(sniff(b"email\n").unwrap().delimiter, b',');
        assert_eq!(
            sniff(b"").unwrap(),
            Sniffed {
                encoding: UTF_8,
                delimiter: b',',
                has_bom: false
            }
        );
    }

    #[test]
    fn header_names_are_trimmed() {
        let (headers, records) = read_all(b" email , First Name \n a@example.com , Anna \n").unwrap();
        assert_eq!(headers, ["email", "First Name"]);
        assert_eq!(fields(&records), [[" a@example.com ", " Anna "]]);
    }

    #[test]
    fn an_empty_header_name_is_rejected_with_its_column_number() {
        let error = expect_error(b"email,,phone\n");
        assert_eq!(
            error,
            CsvError {
                row: None,
                message: "header column 2 is empty".to_owned()
            }
        );
        assert_eq!(expect_error(b"email, \n").message, "header column 2 is empty");
    }

    #[test]
    fn duplicate_header_names_are_rejected_case_insensitively() {
        let error = expect_error(b"email,phone, Email \n");
        assert_eq!(error.to_string(), r#"column "Email" appears twice in the header"#);
    }

    #[test]
    fn too_many_header_columns_are_rejected() {
        let header = (0..10_000).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",");
        let error = expect_error(header.as_bytes());
        assert_eq!(error.to_string(), "the header has 10000 columns; at most 256 are supported");

        let header = (0..MAX_COLUMNS).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(read_all(header.as_bytes()).unwrap().0.len(), MAX_COLUMNS);
    }

    #[test]
    fn a_row_longer_than_the_limit_is_fatal() {
        let mut bytes = b"email,note\na@example.com,short\n".to_vec();
        bytes.extend_from_slice(b"b@example.com,");
        bytes.extend(std::iter::repeat_n(b'x', 100));
        bytes.extend_from_slice(b"\nc@example.com,short\n");
        let error = read_all_with(&bytes, 64).unwrap_err();
        assert_eq!(
            error.to_string(),
            "row 3: a row is longer than 64 bytes (an unbalanced quote or a binary file?)"
        );
    }

    #[test]
    fn a_row_at_the_limit_is_accepted() {
        let row = format!("{}\n", "x".repeat(63));
        let bytes = format!("email\n{row}{row}");
        let (_, records) = read_all_with(bytes.as_bytes(), 64).unwrap();
        assert_eq!(records.len(), 2);
        let longer = format!("email\n{row}x{row}");
        assert_eq!(read_all_with(longer.as_bytes(), 64).unwrap_err().row, Some(3));
    }

    #[test]
    fn the_limit_is_named_in_mib() {
        assert_eq!(
            too_long(9, DEFAULT_MAX_RECORD_BYTES).to_string(),
            "row 9: a row is longer than 1 MiB (an unbalanced quote or a binary file?)"
        );
        assert_eq!(human_size(4096), "4 KiB");
    }

    /// Produces `email\n"` and then `len` bytes of one endless field, counting what
    /// has been pulled from it.
    struct HugeField {
        head: &'static [u8],
        len: u64,
        pulled: Rc<Cell<u64>>,
    }

    impl Read for HugeField {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let pulled = self.pulled.get();
            let head = self.head.len() as u64;
            if pulled >= head + self.len {
                return Ok(0);
            }
            let count = buf.len().min(usize::try_from(head + self.len - pulled).unwrap());
            for (i, byte) in buf[..count].iter_mut().enumerate() {
                let at = pulled + i as u64;
                *byte = if at < head { self.head[at as usize] } else { b'a' };
            }
            self.pulled.set(pulled + count as u64);
            Ok(count)
        }
    }

    #[test]
    fn a_huge_field_is_rejected_without_buffering_it_whole() {
        for head in [&b"email\n\""[..], b"email\n"] {
            let pulled = Rc::new(Cell::new(0));
            let source = HugeField {
                head,
                len: 100 << 20,
                pulled: Rc::clone(&pulled),
            };
            let mut reader = RecordReader::new(source, DEFAULT_MAX_RECORD_BYTES).unwrap();
            let error = reader.next_record().unwrap_err();
            assert_eq!(
                error.to_string(),
                "row 2: a row is longer than 1 MiB (an unbalanced quote or a binary file?)"
            );
            assert!(
                pulled.get() < (DEFAULT_MAX_RECORD_BYTES + SNIFF_BYTES + 64 * 1024) as u64,
                "pulled {}",
                pulled.get()
            );
        }
    }

    #[test]
    fn the_reader_stays_failed_after_a_fatal_error() {
        let mut bytes = b"email\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', 200));
        bytes.extend_from_slice(b"\na@example.com\n");
        let mut reader = RecordReader::new(&bytes[..], 64).unwrap();
        let first = reader.next_record().unwrap_err();
        assert_eq!(reader.next_record().unwrap_err(), first);
    }

    #[test]
    fn an_unclosed_quote_at_the_end_of_the_file_is_fatal() {
        let error = expect_error(b"email,note\na@example.com,fine\nb@example.com,\"never closed\nc@example.com,x\n");
        assert_eq!(error.to_string(), "row 3: a quoted field is not closed before the end of the file");
        assert_eq!(expect_error(b"email,\"note\n").row, Some(1));
        assert_eq!(expect_error(b"email\n\"").row, Some(2));
    }

    #[test]
    fn quoted_fields_with_newlines_and_doubled_quotes_are_read() {
        let bytes = b"email,note\r\na@example.com,\"line one\r\nline \"\"two\"\", end\"\r\nb@example.com,\"\"\r\n";
        let (_, records) = read_all(bytes).unwrap();
        assert_eq!(
            fields(&records),
            [["a@example.com", "line one\r\nline \"two\", end"], ["b@example.com", ""]]
        );
        assert_eq!(records[1].row, 3);
    }

    #[test]
    fn a_quote_inside_an_unquoted_field_is_literal() {
        let (_, records) = read_all(b"email,screen\na@example.com,27\" wide\nb@example.com,\"a\"b\n").unwrap();
        assert_eq!(fields(&records), [["a@example.com", "27\" wide"], ["b@example.com", "ab"]]);
    }

    #[test]
    fn rows_with_a_different_field_count_are_returned_as_they_are() {
        let (_, records) = read_all(b"email,phone\na@example.com\nb@example.com,+31,extra\n").unwrap();
        assert_eq!(fields(&records), [vec!["a@example.com"], vec!["b@example.com", "+31", "extra"]]);
    }

    #[test]
    fn blank_lines_are_skipped_and_not_counted() {
        let (_, records) = read_all(b"email\n\na@example.com\n\r\n\nb@example.com").unwrap();
        assert_eq!(records.iter().map(|r| r.row).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(fields(&records), [["a@example.com"], ["b@example.com"]]);
    }

    #[test]
    fn error_display_names_the_row_when_there_is_one() {
        assert_eq!(CsvError::at(7, "broken").to_string(), "row 7: broken");
        assert_eq!(CsvError::file("broken").to_string(), "broken");
    }

    #[test]
    fn record_debug_does_not_show_fields() {
        let record = Record {
            row: 2,
            fields: vec!["secret@example.com".to_owned()],
        };
        assert_eq!(format!("{record:?}"), "Record { row: 2, fields: <1 fields> }");
    }

    #[test]
    fn the_reader_is_send_when_its_source_is() {
        fn assert_send<T: Send>() {}
        assert_send::<RecordReader<std::fs::File>>();
    }

    fn interesting_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            3 => any::<u8>(),
            2 => prop::sample::select(vec![b'"', b',', b';', b'\t', b'\n', b'\r', b' ', b'a']),
            1 => prop::sample::select(vec![0x00, 0xef, 0xbb, 0xbf, 0xff, 0xfe, 0xc3, 0xa9, 0xd8]),
        ]
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(interesting_byte(), 0..4096), max in 1usize..512) {
            if let Ok(mut reader) = RecordReader::new(&bytes[..], max) {
                let mut records = 0;
                while let Ok(Some(_)) = reader.next_record() {
                    records += 1;
                    prop_assert!(records <= bytes.len());
                }
            }
        }

        #[test]
        fn written_tables_read_back_identically(
            header in prop::collection::btree_set("[a-z][a-z0-9_]{0,8}", 1..6),
            rows in prop::collection::vec(prop::collection::vec("[^\\x00]{0,12}", 1..6), 0..20),
            delimiter in prop::sample::select(vec![b',', b';', b'\t']),
            as_utf16 in any::<bool>(),
        ) {
            let header: Vec<String> = header.into_iter().collect();
            // A single column has no delimiter to detect.
            let delimiter = if header.len() == 1 { b',' } else { delimiter };
            let mut writer = csv::WriterBuilder::new()
                .delimiter(delimiter)
                .quote_style(csv::QuoteStyle::Always)
                .flexible(true)
                .from_writer(Vec::new());
            writer.write_record(&header).unwrap();
            for row in &rows {
                writer.write_record(row).unwrap();
            }
            let written = writer.into_inner().unwrap();
            let bytes = if as_utf16 { utf16(std::str::from_utf8(&written).unwrap(), true, true) } else { written };

            let mut reader = RecordReader::new(&bytes[..], DEFAULT_MAX_RECORD_BYTES).unwrap();
            prop_assert_eq!(reader.sniffed().delimiter, delimiter);
            prop_assert_eq!(reader.headers(), &header[..]);
            for (index, row) in rows.iter().enumerate() {
                let record = reader.next_record().unwrap().unwrap();
                prop_assert_eq!(record.row, index as u64 + 2);
                prop_assert_eq!(&record.fields, row);
            }
            prop_assert!(reader.next_record().unwrap().is_none());
        }
    }
}
