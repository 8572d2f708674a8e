//! Manifest and index JSON from a client or an archive: parsing must never panic, and digests written
//! anywhere in it must be either valid or refused.
#![no_main]

use libfuzzer_sys::fuzz_target;

const TYPES: [Option<&str>; 4] = [
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let _ = kiln_oci::manifest::parse_manifest(body, TYPES[usize::from(selector) % TYPES.len()]);
    if let Ok(text) = std::str::from_utf8(body) {
        if let Ok(digest) = text.parse::<kiln_oci::Digest>() {
            // A digest that parses prints back to the same text.
            assert_eq!(digest.to_string(), text);
        }
    }
});
