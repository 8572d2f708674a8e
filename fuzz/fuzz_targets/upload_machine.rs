//! The registry's upload session state machine: sequences of POST/PATCH/PUT/GET/DELETE with arbitrary
//! Content-Range, bodies and digests against the in-process registry, checked against a model
//! (`kiln_registry::fuzzing::upload_sequence` documents the invariants).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kiln_registry::fuzzing::upload_sequence(data));
