//! Turn an overlayfs *upper* directory (or any directory: a full layer) into a reproducible,
//! uncompressed OCI layer tar.
//!
//! ## The bytes, pinned
//! - **Order**: depth first, the names of each directory of the upper sorted by bytes, each
//!   directory's entry before its contents: the order in which docker's overlay2 differ
//!   (`filepath.Walk` of the upper) writes a layer. A whiteout therefore sits where the name it
//!   hides sorts (`c/new`, `c/.wh.sub`, `c/.wh.z`, `c/z2`). An opaque directory's
//!   `DIR/.wh..wh..opq` marker follows the directory's entry at once, before its contents, so an
//!   applier clears the lower contents before it adds this layer's.
//! - **Headers**: POSIX ustar (`ustar\0` `00`), names relative without `./`, directories ending in
//!   `/`, the mode's permission bits with setuid/setgid/sticky, uid/gid exact, uname/gname empty,
//!   mtime in whole seconds (clamped to `SOURCE_DATE_EPOCH` when given), no atime/ctime, device
//!   numbers in octal (zero for non-devices). What does not fit a ustar field (names or link
//!   targets over 100 bytes, ids over 2097151, sizes from 8 GiB, mtimes before 1970 or past
//!   year 2242) goes in a PAX `x` header named `././@PaxHeader` (mode 0644, owner 0, mtime 0), and so do the
//!   xattrs (`SCHILY.xattr.NAME`); PAX records are sorted by key. The archive ends with two zero
//!   blocks (no record padding), as Go's `archive/tar` writes it.
//! - **Whiteouts**: a 0:0 character device `NAME` becomes an empty regular file `.wh.NAME` (mode 0,
//!   owner 0:0, the device's mtime clamped); a directory with `trusted.overlay.opaque=y` gets the
//!   marker `DIR/.wh..wh..opq` (same fields, the directory's clamped mtime).
//! - **Hard links**: of the non-directories sharing an inode inside the tree, the first in walk
//!   order is written as itself and the others as link entries naming it.
//! - **Xattrs**: all but `trusted.overlay.*` and `security.selinux`; `trusted.overlay.redirect`
//!   and `trusted.overlay.metacopy` are refused (kiln mounts with `redirect_dir=off,metacopy=off`,
//!   so their presence means the upper directory came from elsewhere). Sockets are skipped, as
//!   docker does.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::error::RootfsError;
use crate::sys;

pub(crate) const BLOCK: usize = 512;
const NAME_LEN: usize = 100;
const COPY_BUFFER: usize = 1 << 20;

/// How to write the layer.
#[derive(Debug, Clone, Default)]
pub struct CaptureOptions {
    /// Clamp every mtime to at most this many seconds since the epoch (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<i64>,
    /// Also give each captured file on disk the times its tar entry says (mtime clamped, in whole
    /// seconds; atime the same), so the folder reads exactly as the layer does once unpacked from its
    /// blob. A builder that keeps the captured folder as the layer's unpacked form needs this: otherwise
    /// a later step would see other times on a fresh build than on one that unpacked a cached layer.
    pub set_times_on_disk: bool,
}

/// What a capture wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Tar entries written (whiteouts and opaque markers included, PAX headers not).
    pub entries: u64,
    /// Content bytes of regular files written.
    pub bytes: u64,
    /// Length of the whole tar stream.
    pub tar_bytes: u64,
}

/// Writes the directory `upper` as an uncompressed layer tar to `out`, streaming (file contents
/// pass through a 1 MiB buffer). The same tree always gives the same bytes; see the module doc
/// for the exact format.
pub fn capture_layer(
    upper: &Path,
    out: impl Write,
    options: &CaptureOptions,
) -> Result<CaptureStats, RootfsError> {
    let root = sys::open_dir(rustix::fs::CWD, upper).map_err(|e| RootfsError::Io {
        path: upper.to_path_buf(),
        source: e.into(),
    })?;
    let mut capture = Capture {
        out,
        upper,
        epoch: options.source_date_epoch,
        set_times_on_disk: options.set_times_on_disk,
        links: HashMap::new(),
        stats: CaptureStats::default(),
        buffer: vec![0; COPY_BUFFER],
    };
    capture.walk(&root, &[])?;
    capture.emit(&[0u8; 2 * BLOCK], b"")?;
    Ok(capture.stats)
}

/// One tar entry's header fields.
pub(crate) struct Header<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) kind: u8,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) size: u64,
    pub(crate) mtime: i64,
    pub(crate) link: &'a [u8],
    pub(crate) dev: (u32, u32),
    pub(crate) xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

impl<'a> Header<'a> {
    /// A whiteout or opaque marker: an empty regular file, mode 0, owner 0:0.
    fn marker(name: &'a [u8], mtime: i64) -> Self {
        Self {
            name,
            kind: b'0',
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            mtime,
            link: b"",
            dev: (0, 0),
            xattrs: &[],
        }
    }
}

struct Capture<'p, W> {
    out: W,
    upper: &'p Path,
    epoch: Option<i64>,
    set_times_on_disk: bool,
    /// First path of each multiply-linked inode, by (device, inode).
    links: HashMap<(u64, u64), Vec<u8>>,
    stats: CaptureStats,
    buffer: Vec<u8>,
}

pub(crate) fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = Vec::with_capacity(prefix.len() + name.len() + 1);
    path.extend_from_slice(prefix);
    path.extend_from_slice(name);
    path
}

fn as_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// Writes `value` as zero-padded octal with a NUL terminator into `field`; false when it does not
/// fit.
fn put_octal(field: &mut [u8], value: u64) -> bool {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    if text.len() > digits {
        return false;
    }
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
    true
}

/// One PAX record: `LEN key=value\n`, LEN counting the whole record including itself.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = key.len() + value.len() + 3; // space, '=', newline
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// A ustar header block; `checksum` is filled in.
fn ustar_block(h: &Header<'_>, name: &[u8], link: &[u8], fits: &mut Fits) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    block[..name.len()].copy_from_slice(name);
    put_octal(&mut block[100..108], u64::from(h.mode));
    fits.uid = put_octal(&mut block[108..116], u64::from(h.uid));
    if !fits.uid {
        put_octal(&mut block[108..116], 0);
    }
    fits.gid = put_octal(&mut block[116..124], u64::from(h.gid));
    if !fits.gid {
        put_octal(&mut block[116..124], 0);
    }
    fits.size = put_octal(&mut block[124..136], h.size);
    if !fits.size {
        put_octal(&mut block[124..136], 0);
    }
    fits.mtime = u64::try_from(h.mtime).is_ok_and(|m| put_octal(&mut block[136..148], m));
    if !fits.mtime {
        put_octal(&mut block[136..148], 0);
    }
    block[156] = h.kind;
    block[157..157 + link.len()].copy_from_slice(link);
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    put_octal(&mut block[329..337], u64::from(h.dev.0));
    put_octal(&mut block[337..345], u64::from(h.dev.1));
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    put_octal(&mut block[148..155], u64::from(sum));
    block[155] = b' ';
    block
}

/// Which numeric fields fit their ustar field.
#[derive(Default)]
struct Fits {
    uid: bool,
    gid: bool,
    size: bool,
    mtime: bool,
}

/// The header blocks of one entry: a PAX header and its records when needed, then the ustar block.
pub(crate) fn header_blocks(h: &Header<'_>) -> Vec<u8> {
    let short_name = h.name.len() <= NAME_LEN;
    let short_link = h.link.len() <= NAME_LEN;
    let mut fits = Fits::default();
    let block = ustar_block(
        h,
        &h.name[..h.name.len().min(NAME_LEN)],
        &h.link[..h.link.len().min(NAME_LEN)],
        &mut fits,
    );
    let mut records: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    if !short_name {
        records.insert(b"path".to_vec(), h.name.to_vec());
    }
    if !short_link {
        records.insert(b"linkpath".to_vec(), h.link.to_vec());
    }
    for (key, value, fits) in [
        ("uid", i128::from(h.uid), fits.uid),
        ("gid", i128::from(h.gid), fits.gid),
        ("size", i128::from(h.size), fits.size),
        ("mtime", i128::from(h.mtime), fits.mtime),
    ] {
        if !fits {
            records.insert(key.as_bytes().to_vec(), value.to_string().into_bytes());
        }
    }
    for (key, value) in h.xattrs {
        records.insert(join(b"SCHILY.xattr.", key), value.clone());
    }
    let mut out = Vec::with_capacity(BLOCK * 3);
    if !records.is_empty() {
        let mut body = Vec::new();
        for (key, value) in &records {
            pax_record(&mut body, key, value);
        }
        let pax = Header {
            name: b"././@PaxHeader",
            kind: b'x',
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: body.len() as u64,
            mtime: 0,
            link: b"",
            dev: (0, 0),
            xattrs: &[],
        };
        out.extend_from_slice(&ustar_block(&pax, pax.name, b"", &mut Fits::default()));
        out.extend_from_slice(&body);
        out.resize(out.len().next_multiple_of(BLOCK), 0);
    }
    out.extend_from_slice(&block);
    out
}

impl<W: Write> Capture<'_, W> {
    fn host_path(&self, rel: &[u8]) -> PathBuf {
        self.upper.join(OsStr::from_bytes(rel))
    }

    fn read_err(&self, rel: &[u8]) -> impl FnOnce(rustix::io::Errno) -> RootfsError {
        let path = self.host_path(rel);
        move |e| RootfsError::Io {
            path,
            source: e.into(),
        }
    }

    /// Gives `name` the atime and mtime `mtime` (whole seconds) unless it has them already.
    fn set_times(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        stat: &rustix::fs::Stat,
        mtime: i64,
        rel: &[u8],
    ) -> Result<(), RootfsError> {
        let exact = |secs: i64, nsecs: i64| secs == mtime && nsecs == 0;
        if exact(stat.st_mtime, stat.st_mtime_nsec as i64) && exact(stat.st_atime, stat.st_atime_nsec as i64)
        {
            return Ok(());
        }
        let time = rustix::fs::Timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        };
        let times = rustix::fs::Timestamps {
            last_access: time,
            last_modification: time,
        };
        rustix::fs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(self.read_err(rel))
    }

    fn clamp(&self, mtime: i64) -> i64 {
        match self.epoch {
            Some(epoch) => mtime.min(epoch),
            None => mtime,
        }
    }

    fn emit(&mut self, bytes: &[u8], rel: &[u8]) -> Result<(), RootfsError> {
        self.out.write_all(bytes).map_err(|source| RootfsError::Write {
            path: as_path(rel),
            source,
        })?;
        self.stats.tar_bytes += bytes.len() as u64;
        Ok(())
    }

    fn entry(&mut self, h: &Header<'_>) -> Result<(), RootfsError> {
        let blocks = header_blocks(h);
        self.emit(&blocks, h.name)?;
        self.stats.entries += 1;
        Ok(())
    }

    /// The xattrs to record for `name` in `dir`, and whether it is an opaque directory.
    fn xattrs(&self, dir: &OwnedFd, name: &OsStr, rel: &[u8]) -> Result<(sys::Xattrs, bool), RootfsError> {
        let all = sys::list_xattrs(&sys::proc_path(dir.as_fd(), name)).map_err(self.read_err(rel))?;
        let mut kept = Vec::new();
        let mut opaque = false;
        for (key, value) in all {
            if let Some(overlay) = key.strip_prefix(sys::OVERLAY_XATTR_PREFIX) {
                match overlay {
                    b"opaque" => opaque = value == b"y",
                    b"redirect" | b"metacopy" => {
                        return Err(RootfsError::Capture {
                            path: self.host_path(rel),
                            reason: format!(
                                "it has the overlayfs xattr {} (mount with redirect_dir=off,metacopy=off)",
                                String::from_utf8_lossy(&key)
                            ),
                        });
                    }
                    _ => {}
                }
            } else if key != b"security.selinux" {
                kept.push((key, value));
            }
        }
        Ok((kept, opaque))
    }

    fn walk(&mut self, dir: &OwnedFd, prefix: &[u8]) -> Result<(), RootfsError> {
        let names = sys::read_names(dir).map_err(self.read_err(prefix))?;
        for (name, _) in names {
            let rel = join(prefix, name.as_bytes());
            let stat =
                rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(self.read_err(&rel))?;
            let mtime = self.clamp(stat.st_mtime);
            if sys::is_whiteout(&stat) {
                let marker = join(prefix, &join(b".wh.", name.as_bytes()));
                self.entry(&Header::marker(&marker, mtime))?;
                continue;
            }
            if self.set_times_on_disk {
                self.set_times(dir, &name, &stat, mtime, &rel)?;
            }
            if name.as_bytes().starts_with(b".wh.") {
                return Err(RootfsError::Capture {
                    path: self.host_path(&rel),
                    reason: "a name starting with `.wh.` cannot be written in a layer (it means a whiteout)"
                        .into(),
                });
            }
            let file_type = FileType::from_raw_mode(stat.st_mode);
            if file_type == FileType::Socket {
                continue;
            }
            let mut h = Header {
                name: &rel,
                kind: b'0',
                mode: stat.st_mode & 0o7777,
                uid: stat.st_uid,
                gid: stat.st_gid,
                size: 0,
                mtime,
                link: b"",
                dev: (0, 0),
                xattrs: &[],
            };
            if file_type != FileType::Directory && stat.st_nlink > 1 {
                let key = (stat.st_dev, stat.st_ino);
                if let Some(first) = self.links.get(&key).cloned() {
                    h.kind = b'1';
                    h.link = &first;
                    self.entry(&h)?;
                    continue;
                }
                self.links.insert(key, rel.clone());
            }
            let (xattrs, opaque) = self.xattrs(dir, &name, &rel)?;
            h.xattrs = &xattrs;
            let target;
            match file_type {
                FileType::Directory => {
                    let dir_name = join(&rel, b"/");
                    h.name = &dir_name;
                    h.kind = b'5';
                    self.entry(&h)?;
                    if opaque {
                        let marker = join(&dir_name, b".wh..wh..opq");
                        self.entry(&Header::marker(&marker, mtime))?;
                    }
                    let sub = sys::open_dir(dir, &name).map_err(self.read_err(&rel))?;
                    self.walk(&sub, &dir_name)?;
                }
                FileType::RegularFile => {
                    h.size = stat.st_size as u64;
                    self.entry(&h)?;
                    self.content(dir, &name, &rel, h.size)?;
                }
                FileType::Symlink => {
                    target = rustix::fs::readlinkat(dir, &name, Vec::new()).map_err(self.read_err(&rel))?;
                    h.kind = b'2';
                    h.link = target.as_bytes();
                    self.entry(&h)?;
                }
                FileType::Fifo => {
                    h.kind = b'6';
                    self.entry(&h)?;
                }
                FileType::CharacterDevice | FileType::BlockDevice => {
                    h.kind = if file_type == FileType::CharacterDevice {
                        b'3'
                    } else {
                        b'4'
                    };
                    h.dev = (rustix::fs::major(stat.st_rdev), rustix::fs::minor(stat.st_rdev));
                    self.entry(&h)?;
                }
                other => {
                    return Err(RootfsError::Capture {
                        path: self.host_path(&rel),
                        reason: format!("unsupported file type {other:?}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Streams exactly `size` bytes of the file and pads them to a block; a file that changes size
    /// while it is read is an error (the layer would not match its header).
    fn content(&mut self, dir: &OwnedFd, name: &OsStr, rel: &[u8], size: u64) -> Result<(), RootfsError> {
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(self.read_err(rel))?;
        let mut file = std::fs::File::from(fd);
        let path = self.host_path(rel);
        let written = file_content(&mut file, size, &mut self.out, &mut self.buffer, &path, rel)?;
        self.stats.tar_bytes += written;
        self.stats.bytes += size;
        Ok(())
    }
}

/// Streams exactly `size` bytes of `file` (at host `path`) to `out` as the content of the tar entry
/// `entry`, then the zero padding to a whole block; returns the bytes written. A file that changes size
/// while it is read is an error: the layer would not match its header.
pub(crate) fn file_content(
    file: &mut std::fs::File,
    size: u64,
    out: &mut impl Write,
    buffer: &mut [u8],
    path: &Path,
    entry: &[u8],
) -> Result<u64, RootfsError> {
    let read_err = |source| RootfsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let write_err = |source| RootfsError::Write {
        path: as_path(entry),
        source,
    };
    let changed = || RootfsError::Capture {
        path: path.to_path_buf(),
        reason: "the file changed size while it was being read".into(),
    };
    let mut left = size;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buffer.len());
        let n = file.read(&mut buffer[..want]).map_err(read_err)?;
        if n == 0 {
            return Err(changed());
        }
        out.write_all(&buffer[..n]).map_err(write_err)?;
        left -= n as u64;
    }
    if file.read(&mut buffer[..1]).map_err(read_err)? != 0 {
        return Err(changed());
    }
    let pad = (BLOCK - (size % BLOCK as u64) as usize) % BLOCK;
    out.write_all(&[0u8; BLOCK][..pad]).map_err(write_err)?;
    Ok(size + pad as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let mut out = Vec::new();
        pax_record(&mut out, b"path", &[b'a'; 93]);
        let text = String::from_utf8(out.clone()).unwrap();
        let (len, _) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), out.len());
        for n in [0, 1, 5, 6, 7, 94, 95, 96, 990, 995, 996, 9990] {
            let mut out = Vec::new();
            pax_record(&mut out, b"k", &vec![b'v'; n]);
            let text = String::from_utf8(out.clone()).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), out.len(), "value of {n} bytes");
        }
    }

    #[test]
    fn header_fields_and_checksum() {
        let h = Header {
            name: b"etc/passwd",
            kind: b'0',
            mode: 0o4755,
            uid: 1000,
            gid: 100,
            size: 5,
            mtime: 1_700_000_000,
            link: b"",
            dev: (0, 0),
            xattrs: &[],
        };
        let blocks = header_blocks(&h);
        assert_eq!(blocks.len(), BLOCK);
        let parsed = tar::Header::from_byte_slice(&blocks);
        assert_eq!(parsed.path_bytes().as_ref(), b"etc/passwd");
        assert_eq!(parsed.mode().unwrap(), 0o4755);
        assert_eq!(parsed.uid().unwrap(), 1000);
        assert_eq!(parsed.size().unwrap(), 5);
        assert_eq!(parsed.mtime().unwrap(), 1_700_000_000);
        assert_eq!(parsed.cksum().unwrap(), {
            let mut copy = blocks.clone();
            copy[148..156].copy_from_slice(b"        ");
            copy.iter().map(|&b| u32::from(b)).sum::<u32>()
        });
        assert_eq!(&blocks[257..265], b"ustar\x0000");
    }

    #[test]
    fn big_values_and_long_names_go_to_pax() {
        let name = vec![b'n'; 300];
        let h = Header {
            name: &name,
            kind: b'0',
            mode: 0o644,
            uid: 3_000_000,
            gid: 1,
            size: 1 << 34,
            mtime: -5,
            link: b"",
            dev: (0, 0),
            xattrs: &[(b"user.a".to_vec(), b"\x00\x01".to_vec())],
        };
        let blocks = header_blocks(&h);
        assert_eq!(blocks[156], b'x');
        let size = tar::Header::from_byte_slice(&blocks[..BLOCK]).size().unwrap() as usize;
        let body = &blocks[BLOCK..BLOCK + size];
        let keys: Vec<_> = tar::PaxExtensions::new(body)
            .map(|r| r.unwrap().key().unwrap().to_owned())
            .collect();
        assert_eq!(keys, ["SCHILY.xattr.user.a", "mtime", "path", "size", "uid"]);
    }
}
