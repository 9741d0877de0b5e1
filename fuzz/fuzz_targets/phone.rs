//! Arbitrary text through `PhoneNumber::parse` with a default region: it may reject
//! it, never panic.

#![no_main]

use consentry::domain::{PhoneNumber, Region};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = PhoneNumber::parse(&String::from_utf8_lossy(data), Some(Region::parse("NL").unwrap()));
});
