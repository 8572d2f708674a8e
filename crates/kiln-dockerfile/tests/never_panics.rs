//! Property tests: parsing and evaluation never panic, whatever the input.

use kiln_dockerfile::{EvalOptions, evaluate, parse};
use proptest::prelude::*;

/// Fragments that steer random input into the interesting parts of the grammar.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("FROM ".to_string()),
        Just("FROM a AS b\n".to_string()),
        Just("RUN ".to_string()),
        Just("COPY ".to_string()),
        Just("ADD ".to_string()),
        Just("ENV ".to_string()),
        Just("ARG ".to_string()),
        Just("ONBUILD ".to_string()),
        Just("HEALTHCHECK ".to_string()),
        Just("SHELL ".to_string()),
        Just("EXPOSE ".to_string()),
        Just("--mount=type=cache,target=/x ".to_string()),
        Just("--from=".to_string()),
        Just("<<EOF\n".to_string()),
        Just("<<-'E'\n".to_string()),
        Just("EOF\n".to_string()),
        Just("${A:-${B#*}}".to_string()),
        Just("${".to_string()),
        Just("$A".to_string()),
        Just("[\"a\", \"b\"]".to_string()),
        Just("[".to_string()),
        Just("\\\n".to_string()),
        Just("`\n".to_string()),
        Just("# escape=`\n".to_string()),
        Just("# comment\n".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just(" ".to_string()),
        Just("\n".to_string()),
        Just("\t".to_string()),
        "[a-z0-9=:/.*#%?+-]{0,8}".prop_map(|s| s),
        any::<char>().prop_map(|c| c.to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse(&text);
        let _ = evaluate(&text, &EvalOptions::default());
    }

    #[test]
    fn dockerfile_like_text_never_panics(parts in proptest::collection::vec(fragment(), 0..40)) {
        let text: String = parts.concat();
        let _ = parse(&text);
        let opts = EvalOptions { target: Some("b".to_string()), ..EvalOptions::default() };
        let _ = evaluate(&text, &opts);
        let _ = evaluate(&format!("FROM a AS b\n{text}"), &EvalOptions::default());
    }

    #[test]
    fn errors_always_have_a_location(parts in proptest::collection::vec(fragment(), 0..30)) {
        let text: String = parts.concat();
        if let Err(e) = evaluate(&text, &EvalOptions::default()) {
            prop_assert!(e.line >= 1);
            prop_assert!(e.column >= 1);
            prop_assert!(!e.to_string().is_empty());
        }
    }
}
