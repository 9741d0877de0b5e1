//! consentry: a self-hosted, security-first customer-data platform. This crate holds
//! the encrypted contact vault (contacts, consent ledger, lists, imports, exports),
//! its tamper-evident audit log, and the CLI and HTTP API over them.
//!
//! Layers, from the bottom: `domain` (pure types), `crypto` (keys and sealing),
//! `audit` (chain and verification), `store` (the `Store` trait and its backends),
//! `access` (who may do what, masking), `vault` and `import` (the service functions
//! that the CLI and the HTTP API both call), `http` and `cli` (thin adapters).

pub mod access;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod import;
pub mod metrics;
pub mod startup;
pub mod store;
pub mod vault;
