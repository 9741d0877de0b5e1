//! Arbitrary bytes through the CSV reader: it may reject them, never panic, and must
//! stop (end of file or a fatal error) with a small record limit.

#![no_main]

use consentry::import::csv_reader::RecordReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut reader) = RecordReader::new(data, 4096) {
        while let Ok(Some(_)) = reader.next_record() {}
    }
});
