//! Layer tars from anywhere: unpack_layer must never panic, and whatever it returns, nothing may
//! appear beside the destination (no temporary left, nothing written through a symlink), and the
//! destination exists only on success.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).expect("outside dir");
    let dest = dir.path().join("dest");
    let limits = kiln_rootfs::UnpackLimits {
        max_entries: 2_000,
        max_bytes: 4 << 20,
        ..kiln_rootfs::UnpackLimits::default()
    };
    let result = kiln_rootfs::unpack_layer(data, &dest, &limits);
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read temp dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    let expected: &[&str] = if result.is_ok() { &["dest", "outside"] } else { &["outside"] };
    assert_eq!(names, expected, "{result:?}");
    assert!(std::fs::read_dir(&outside).expect("outside").next().is_none(), "written outside");
});
