#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod roundtrip;
mod support;
mod unpack;
