//! Arbitrary text through `EmailAddress::parse`: it may reject it, never panic.

#![no_main]

use consentry::domain::EmailAddress;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = EmailAddress::parse(&String::from_utf8_lossy(data));
});
