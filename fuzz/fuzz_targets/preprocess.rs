//! `# %ARG` / `# %include` preprocessing of arbitrary Dockerfile bytes must never panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut args = BTreeMap::new();
    args.insert("ARCH".to_owned(), "amd64".to_owned());
    args.insert("A".to_owned(), "é$A".to_owned());
    if let Ok(out) = kiln_tree::preprocess(data, &args) {
        // Includes are found only on lines that start with the directive.
        for include in &out.includes {
            if let kiln_tree::IncludeRequest::Path { path, .. } = include {
                assert!(!path.is_empty());
            }
        }
    }
});
