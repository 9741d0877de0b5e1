//! Streaming CSV import and export of contacts.

pub mod csv_reader;
pub mod service;
