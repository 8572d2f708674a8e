//! Any bytes: parsing and evaluating must return, never panic.
#![no_main]

use kiln_dockerfile::{EvalOptions, evaluate, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse(&text);
    let _ = evaluate(&text, &EvalOptions::default());
    let opts = EvalOptions { target: Some("build".to_string()), ..EvalOptions::default() };
    let _ = evaluate(&text, &opts);
});
