//! Test helpers: a raw tar writer (for hostile archives no tar library would write) and a tree
//! listing that records every piece of metadata a layer carries.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A tar archive assembled block by block.
#[derive(Default)]
pub struct RawTar {
    pub bytes: Vec<u8>,
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
}

/// Fields of one raw entry.
pub struct Raw<'a> {
    pub name: &'a [u8],
    pub kind: u8,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    pub link: &'a [u8],
    pub dev: (u32, u32),
    pub data: &'a [u8],
    /// Size written in the header (defaults to the data's length when `None`).
    pub size: Option<u64>,
}

impl<'a> Raw<'a> {
    pub fn file(name: &'a str, data: &'a [u8]) -> Self {
        Self {
            name: name.as_bytes(),
            kind: b'0',
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            link: b"",
            dev: (0, 0),
            data,
            size: None,
        }
    }
    pub fn dir(name: &'a str) -> Self {
        Self {
            kind: b'5',
            mode: 0o755,
            ..Self::file(name, b"")
        }
    }
    pub fn symlink(name: &'a str, target: &'a str) -> Self {
        Self {
            kind: b'2',
            mode: 0o777,
            link: target.as_bytes(),
            ..Self::file(name, b"")
        }
    }
    pub fn hardlink(name: &'a str, target: &'a str) -> Self {
        Self {
            kind: b'1',
            link: target.as_bytes(),
            ..Self::file(name, b"")
        }
    }
    pub fn device(name: &'a str, kind: u8, major: u32, minor: u32) -> Self {
        Self {
            kind,
            dev: (major, minor),
            ..Self::file(name, b"")
        }
    }
}

impl RawTar {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one entry; names and links longer than 100 bytes are cut (use `pax` before).
    pub fn push(&mut self, e: Raw<'_>) -> &mut Self {
        let mut h = [0u8; 512];
        let n = e.name.len().min(100);
        h[..n].copy_from_slice(&e.name[..n]);
        octal(&mut h[100..108], u64::from(e.mode));
        octal(&mut h[108..116], u64::from(e.uid));
        octal(&mut h[116..124], u64::from(e.gid));
        octal(&mut h[124..136], e.size.unwrap_or(e.data.len() as u64));
        octal(&mut h[136..148], e.mtime);
        h[156] = e.kind;
        let l = e.link.len().min(100);
        h[157..157 + l].copy_from_slice(&e.link[..l]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        octal(&mut h[329..337], u64::from(e.dev.0));
        octal(&mut h[337..345], u64::from(e.dev.1));
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        octal(&mut h[148..155], u64::from(sum));
        self.bytes.extend_from_slice(&h);
        self.bytes.extend_from_slice(e.data);
        self.pad();
        self
    }

    /// Appends a PAX extended header with these records.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (key, value) in records {
            let rest = key.len() + value.len() + 3;
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} {key}=").as_bytes());
            body.extend_from_slice(value);
            body.push(b'\n');
        }
        self.push(Raw {
            kind: b'x',
            ..Raw::file("PaxHeader", &body)
        })
    }

    fn pad(&mut self) {
        self.bytes.resize(self.bytes.len().next_multiple_of(512), 0);
    }

    /// The archive with its two zero end blocks.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut bytes = self.bytes.clone();
        bytes.extend_from_slice(&[0u8; 1024]);
        bytes
    }
}

/// Everything a layer records about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    /// File contents (hashed down to length + a checksum), link target, or device numbers.
    pub payload: String,
    pub xattrs: Vec<(String, String)>,
}

fn checksum(bytes: &[u8]) -> u64 {
    // FNV-1a: enough to tell contents apart in a test.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn xattrs_of(path: &Path) -> Vec<(String, String)> {
    let mut names = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(path, &mut names[..]).unwrap_or(0);
    let mut out: Vec<(String, String)> = names[..n]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .filter(|s| !s.starts_with(b"security.selinux"))
        .map(|name| {
            let mut value = vec![0u8; 65536];
            let name_os = std::ffi::OsStr::from_bytes(name);
            let m = rustix::fs::lgetxattr(path, name_os, &mut value[..]).unwrap();
            (
                String::from_utf8_lossy(name).into_owned(),
                format!("{:?}", &value[..m]),
            )
        })
        .collect();
    out.sort();
    out
}

/// The tree under `root` (not including the root itself), by path; hard links are shown as the
/// group of paths sharing an inode in `links`.
pub fn list_tree(root: &Path) -> (BTreeMap<String, Node>, Vec<Vec<String>>) {
    let mut nodes = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let ft = meta.file_type();
            use std::os::unix::fs::FileTypeExt;
            let (kind, payload) = if ft.is_dir() {
                stack.push(path.clone());
                ("dir", String::new())
            } else if ft.is_symlink() {
                (
                    "symlink",
                    std::fs::read_link(&path).unwrap().to_string_lossy().into_owned(),
                )
            } else if ft.is_file() {
                let data = std::fs::read(&path).unwrap();
                ("file", format!("{} bytes, {:x}", data.len(), checksum(&data)))
            } else if ft.is_fifo() {
                ("fifo", String::new())
            } else if ft.is_char_device() {
                (
                    "char",
                    format!(
                        "{}:{}",
                        rustix::fs::major(meta.rdev()),
                        rustix::fs::minor(meta.rdev())
                    ),
                )
            } else if ft.is_block_device() {
                (
                    "block",
                    format!(
                        "{}:{}",
                        rustix::fs::major(meta.rdev()),
                        rustix::fs::minor(meta.rdev())
                    ),
                )
            } else {
                ("other", String::new())
            };
            if !ft.is_dir() && meta.nlink() > 1 {
                inodes
                    .entry((meta.dev(), meta.ino()))
                    .or_default()
                    .push(rel.clone());
            }
            nodes.insert(
                rel,
                Node {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    mtime: meta.mtime(),
                    payload,
                    xattrs: xattrs_of(&path),
                },
            );
        }
    }
    let mut links: Vec<Vec<String>> = inodes
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .filter(|v| v.len() > 1)
        .collect();
    links.sort();
    (nodes, links)
}

/// The entry names of a tar, in order, with their type flags.
pub fn tar_names(bytes: &[u8]) -> Vec<(String, char)> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                e.header().entry_type().as_byte() as char,
            )
        })
        .collect()
}
