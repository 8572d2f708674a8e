//! A manifest or index of any media type pushed to the in-process registry: accepted exactly when
//! `parse_manifest` accepts it and everything it references is there, then read back byte-exact
//! (`kiln_registry::fuzzing::manifest_put` documents the invariants).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kiln_registry::fuzzing::manifest_put(data));
