#![allow(clippy::unwrap_used, clippy::expect_used)] // test code fails loudly by design

mod api;
mod cli;
mod crash;
mod helpers;
mod import;
mod matrix;
mod passkeys;
mod pg;
mod plaintext;
mod postgres;
mod readme;
mod soft_authenticator;
mod store;
mod support;
mod users;
