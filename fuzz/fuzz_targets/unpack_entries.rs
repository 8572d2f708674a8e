//! Structured layer tars: entries of every kind over a small alphabet of names that collide,
//! escape, hide one another and pass through each other (`..`, absolute, whiteouts, opaque markers,
//! duplicates, hard and symbolic links). unpack_layer must never panic; nothing may appear beside the
//! destination; a successful unpack holds no `.wh.` name (all became devices or xattrs).
#![no_main]

use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 22] = [
    "a", "a/b", "a/b/c", "b", "..", "../x", "a/../b", "/a", "a/", ".wh.a", "a/.wh.b", "a/.wh..wh..opq",
    ".wh..wh..opq", "./", "c", "b/c", ".wh..wh.plnk/x", "a/b/.wh.c", "/", ".", "l/x", "l",
];
const LINKS: [&str; 8] = ["a", "a/b", "/etc/passwd", "/", "", "..", "b/c", "/tmp"];
const KINDS: [u8; 9] = [b'0', b'1', b'2', b'5', b'3', b'4', b'6', b'7', b'x'];

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
}

fn header(out: &mut Vec<u8>, name: &[u8], kind: u8, link: &[u8], mode: u32, data: &[u8]) {
    let mut h = [0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], data.len() as u64);
    octal(&mut h[136..148], 1_600_000_000);
    h[156] = kind;
    h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], 1);
    octal(&mut h[337..345], 3);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    octal(&mut h[148..155], u64::from(sum));
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
}

fn check_no_whiteout_names(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).expect("read dest") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        assert!(!name.to_string_lossy().starts_with(".wh."), "{:?} left as a name", entry.path());
        if entry.file_type().expect("type").is_dir() {
            check_no_whiteout_names(&entry.path());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut tar = Vec::new();
    for chunk in data.chunks_exact(4).take(64) {
        let kind = KINDS[usize::from(chunk[0]) % KINDS.len()];
        let name = NAMES[usize::from(chunk[1]) % NAMES.len()].as_bytes();
        let link = LINKS[usize::from(chunk[2] & 0x0f) % LINKS.len()].as_bytes();
        let content: Vec<u8> = match (kind, chunk[2] >> 4) {
            (b'x', n) => {
                let (key, value) = if n % 2 == 0 { ("path", "a/b/c") } else { ("SCHILY.xattr.user.k", "value") };
                // key.len() + value.len() + 3 (space, '=', newline) + 2 digits: every record here is 10..99 bytes.
                format!("{} {key}={value}\n", key.len() + value.len() + 5).into_bytes()
            }
            (b'0' | b'7', n) => vec![b'z'; usize::from(n) * 100],
            _ => Vec::new(),
        };
        let mode = [0o644, 0o4755, 0o1777, 0o000][usize::from(chunk[3]) % 4];
        header(&mut tar, name, kind, link, mode, &content);
    }
    tar.extend_from_slice(&[0u8; 1024]);

    let dir = tempfile::tempdir().expect("temp dir");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).expect("outside dir");
    let dest = dir.path().join("dest");
    let result = kiln_rootfs::unpack_layer(&tar[..], &dest, &kiln_rootfs::UnpackLimits::default());
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read temp dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    let expected: &[&str] = if result.is_ok() { &["dest", "outside"] } else { &["outside"] };
    assert_eq!(names, expected, "{result:?}");
    assert!(std::fs::read_dir(&outside).expect("outside").next().is_none(), "written outside");
    if result.is_ok() {
        check_no_whiteout_names(&dest);
    }
});
