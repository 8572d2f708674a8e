//! kiln-registry's integration tests: the real server in-process on 127.0.0.1:0, driven with raw HTTP and
//! with the real skopeo.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod api;
mod auth;
mod gc;
mod limits;
mod metrics;
mod pull_through;
mod skopeo;
mod support;
mod tls;
mod uploads;
