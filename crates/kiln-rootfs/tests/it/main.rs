#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod overlay;
mod root;
mod roundtrip;
mod support;
mod unpack;
mod users;
