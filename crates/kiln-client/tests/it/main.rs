//! kiln-client against real registries: kiln's own (in-process) and Debian's docker-registry.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod auth;
mod multiarch;
mod resume;
mod roundtrip;
mod support;
mod tags;
mod tamper;
