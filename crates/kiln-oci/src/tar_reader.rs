//! The one reader of tar headers in kiln: layer unpack, `kiln image import` (archives and root
//! filesystems), the layer checks of [`crate::layer_check`] and ADD of local archives all read entries
//! through [`TarReader`], so what one accepts the others accept too.
//!
//! It reads what real tar writers produce — GNU tar, busybox tar, bsdtar, Python's `tarfile`, Go's
//! `archive/tar`, the `tar` crate — and refuses only what is invalid:
//!
//! - Numeric fields are octal, padded with spaces or NULs on either side (an empty field is 0), or
//!   GNU base-256 (negative mtimes before 1970 included). Anything else is an error naming the entry
//!   and the field.
//! - The device fields are read only for character and block devices: writers leave them empty, NUL
//!   or garbage on other entries.
//! - Names join the POSIX `prefix` field (ustar magic `ustar\0`), not the GNU atime/ctime at the same
//!   place (GNU magic `ustar  `); GNU long names and links (`L`, `K`) and PAX records (`path`,
//!   `linkpath`, `uid`, `gid`, `mtime`, `size`, `SCHILY.xattr.*`) override the header; a PAX `size`
//!   decides how many content bytes follow (files of 8 GiB and more).
//! - The checksum may be the unsigned or the signed sum (old Sun tars), as Go and GNU tar accept.
//! - Refused: a bad checksum, GNU sparse files (type `S` or PAX `GNU.sparse.*`: their content is a
//!   sparse map, not the file), content on entries that have none (directories, links, devices,
//!   fifos: Go and the `tar` crate would read the stream differently), ids beyond 32 bits, extension
//!   headers over [`TarLimits::max_header_bytes`], names over [`TarLimits::max_name_len`], two
//!   extension headers of one kind before one entry, and an extension header with no entry after it.
//!
//! The stream ends at the first zero block or at the end of the input on a block boundary.

use std::io::{self, Read};

pub use tar::EntryType;

const BLOCK: u64 = 512;

/// Bounds on what one header may hold in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TarLimits {
    /// Largest PAX or GNU long-name/long-link extension header, in bytes (held in memory).
    pub max_header_bytes: u64,
    /// Longest entry name or link target, in bytes.
    pub max_name_len: usize,
}

/// The default of [`TarLimits::max_header_bytes`]: 1 MiB.
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 1 << 20;
/// The default of [`TarLimits::max_name_len`]: Linux's `PATH_MAX`.
pub const DEFAULT_MAX_NAME_LEN: usize = 4096;

impl Default for TarLimits {
    fn default() -> Self {
        TarLimits {
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_name_len: DEFAULT_MAX_NAME_LEN,
        }
    }
}

/// Why a tar stream is refused. Every variant names the entry at fault (or the last good one).
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// An entry is invalid or unsupported.
    #[error("tar entry {entry:?}: {reason}")]
    Entry {
        /// The entry's name as written (lossy UTF-8).
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// A limit was exceeded.
    #[error("tar entry {entry:?}: {what} exceeds the limit of {limit}")]
    Limit {
        /// The entry at which the limit was reached.
        entry: String,
        /// Which quantity.
        what: &'static str,
        /// The limit in force.
        limit: u64,
    },
    /// The stream cannot be read (truncated, I/O error, a corrupt header).
    #[error("reading the tar after entry {after:?}: {source}")]
    Read {
        /// The last entry read successfully (empty at the start).
        after: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl TarError {
    pub(crate) fn entry(name: &[u8], reason: impl Into<String>) -> TarError {
        TarError::Entry {
            entry: lossy(name),
            reason: reason.into(),
        }
    }
}

/// One entry, its header and the extension headers before it folded together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    /// What it is (`Regular` also for type `\0` of old tars).
    pub kind: EntryType,
    /// The name as written (a long name or PAX `path` if there was one).
    pub name: Vec<u8>,
    /// The link target of symlinks and hard links (empty for others).
    pub link: Vec<u8>,
    /// Permission bits with setuid/setgid/sticky (file-type bits some writers add are dropped).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch (negative before 1970).
    pub mtime: i64,
    /// Nanoseconds of the modification time (from a PAX `mtime`; 0 otherwise).
    pub mtime_nsec: u32,
    /// Device major and minor numbers of character and block devices (0 for every other kind).
    pub dev: (u32, u32),
    /// Content bytes that follow the header.
    pub size: u64,
    /// Extended attributes from PAX `SCHILY.xattr.*` records, in the order written.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl TarEntry {
    /// The name for messages.
    pub fn name_lossy(&self) -> String {
        lossy(&self.name)
    }
}

pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Extension headers seen before the entry they describe.
#[derive(Default)]
struct Pending {
    pax: Option<Vec<u8>>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

/// Reads the entries of a tar stream one after the other: [`TarReader::next_entry`], then (if wanted)
/// the entry's content through [`TarReader::content`]; unread content is skipped by the next call.
pub struct TarReader<R> {
    inner: R,
    limits: TarLimits,
    /// Content bytes of the current entry not read yet, and the padding after them.
    remaining: u64,
    padding: u64,
    /// The last entry returned, for messages.
    last: String,
    done: bool,
}

impl<R: Read> TarReader<R> {
    /// A reader of `inner` (uncompressed) within `limits`.
    pub fn new(inner: R, limits: TarLimits) -> Self {
        TarReader {
            inner,
            limits,
            remaining: 0,
            padding: 0,
            last: String::new(),
            done: false,
        }
    }

    /// The underlying stream, positioned after the last byte read (after the end-of-archive block once
    /// [`TarReader::next_entry`] returned `None`).
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The name of the last entry returned (empty before the first).
    pub fn last_name(&self) -> &str {
        &self.last
    }

    fn read_error(&self, source: io::Error) -> TarError {
        TarError::Read {
            after: self.last.clone(),
            source,
        }
    }

    fn corrupt(&self, message: impl Into<String>) -> TarError {
        self.read_error(io::Error::new(io::ErrorKind::InvalidData, message.into()))
    }

    fn skip(&mut self, n: u64) -> Result<(), TarError> {
        let skipped =
            io::copy(&mut (&mut self.inner).take(n), &mut io::sink()).map_err(|e| self.read_error(e))?;
        if skipped != n {
            return Err(self.read_error(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the tar ends inside an entry",
            )));
        }
        Ok(())
    }

    /// One 512-byte block; `None` at the end of the input on a block boundary.
    fn block(&mut self) -> Result<Option<[u8; 512]>, TarError> {
        let mut block = [0u8; 512];
        let mut filled = 0;
        while filled < block.len() {
            match self.inner.read(&mut block[filled..]) {
                Ok(0) if filled == 0 => return Ok(None),
                Ok(0) => {
                    return Err(self.read_error(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the tar ends inside a header",
                    )));
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_error(e)),
            }
        }
        Ok(Some(block))
    }

    /// The next entry, or `None` at the end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<TarEntry>, TarError> {
        if self.done {
            return Ok(None);
        }
        let rest = self.remaining + self.padding;
        self.remaining = 0;
        self.padding = 0;
        self.skip(rest)?;
        let mut pending = Pending::default();
        loop {
            let Some(block) = self.block()? else {
                return self.end(&pending);
            };
            if block.iter().all(|&b| b == 0) {
                return self.end(&pending);
            }
            let header = Header(&block);
            header.check_sum().map_err(|reason| self.corrupt(reason))?;
            let kind = EntryType::new(block[156]);
            let slot = match kind {
                EntryType::XHeader => Some(&mut pending.pax),
                EntryType::GNULongName => Some(&mut pending.long_name),
                EntryType::GNULongLink => Some(&mut pending.long_link),
                EntryType::XGlobalHeader => None,
                _ => {
                    let entry = self.entry(&header, kind, &mut pending)?;
                    self.last = entry.name_lossy();
                    self.remaining = entry.size;
                    self.padding = padding(entry.size);
                    return Ok(Some(entry));
                }
            };
            let raw_name = header.raw_name();
            let size = header
                .number("size", 124..136)
                .and_then(|n| u64::try_from(n).map_err(|_| "bad size field: negative".to_owned()))
                .map_err(|reason| TarError::entry(&raw_name, reason))?;
            if size > self.limits.max_header_bytes {
                return Err(TarError::Limit {
                    entry: format!(
                        "{} (extension header before the entry after {:?})",
                        lossy(&raw_name),
                        self.last
                    ),
                    what: "an extension header's size",
                    limit: self.limits.max_header_bytes,
                });
            }
            let mut body = Vec::with_capacity(size as usize);
            (&mut self.inner)
                .take(size)
                .read_to_end(&mut body)
                .map_err(|e| self.read_error(e))?;
            if body.len() as u64 != size {
                return Err(self.read_error(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the tar ends inside an extension header",
                )));
            }
            self.skip(padding(size))?;
            if let Some(slot) = slot {
                if slot.is_some() {
                    return Err(self.corrupt("two extension headers of one kind describe the same entry"));
                }
                *slot = Some(body);
            }
        }
    }

    fn end(&mut self, pending: &Pending) -> Result<Option<TarEntry>, TarError> {
        self.done = true;
        if pending.pax.is_some() || pending.long_name.is_some() || pending.long_link.is_some() {
            return Err(self.read_error(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "extension header with no entry after it",
            )));
        }
        Ok(None)
    }

    /// The entry of `header`, with the pending extension headers applied.
    fn entry(
        &self,
        header: &Header<'_>,
        kind: EntryType,
        pending: &mut Pending,
    ) -> Result<TarEntry, TarError> {
        let mut name = header.raw_name();
        let mut link = header.link();
        if let Some(long) = pending.long_name.take() {
            name = trim_nuls(long);
        }
        if let Some(long) = pending.long_link.take() {
            link = trim_nuls(long);
        }
        let field = |what: &'static str, range: std::ops::Range<usize>| {
            header
                .number(what, range)
                .map_err(|reason| TarError::entry(&name, reason))
        };
        let id = |what: &'static str, value: i64| {
            u32::try_from(value)
                .map_err(|_| TarError::entry(&name, format!("{what} {value} is out of range")))
        };
        let mode = field("mode", 100..108)?;
        if mode < 0 {
            return Err(TarError::entry(
                &name,
                format!("bad mode field: {mode} is negative"),
            ));
        }
        // File-type bits some writers add (0o100644) are dropped.
        let mode = (mode & 0o7777) as u32;
        let mut uid = id("uid", field("uid", 108..116)?)?;
        let mut gid = id("gid", field("gid", 116..124)?)?;
        let size = field("size", 124..136)?;
        let mut size = u64::try_from(size)
            .map_err(|_| TarError::entry(&name, format!("bad size field: {size} is negative")))?;
        let mut mtime = field("mtime", 136..148)?;
        let mut mtime_nsec = 0;
        let dev = if matches!(kind, EntryType::Char | EntryType::Block) {
            (
                id("devmajor", field("devmajor", 329..337)?)?,
                id("devminor", field("devminor", 337..345)?)?,
            )
        } else {
            (0, 0)
        };
        let mut xattrs = Vec::new();
        if let Some(pax) = pending.pax.take() {
            for record in tar::PaxExtensions::new(&pax) {
                let record = record.map_err(|e| TarError::entry(&name, format!("bad PAX header: {e}")))?;
                let (key, value) = (record.key_bytes(), record.value_bytes());
                let bad = |what: &str| TarError::entry(&name, format!("bad PAX {what} {:?}", lossy(value)));
                match key {
                    b"path" => name = value.to_vec(),
                    b"linkpath" => link = value.to_vec(),
                    b"uid" => uid = decimal(value).ok_or_else(|| bad("uid"))?,
                    b"gid" => gid = decimal(value).ok_or_else(|| bad("gid"))?,
                    b"size" => size = decimal(value).ok_or_else(|| bad("size"))?,
                    b"mtime" => (mtime, mtime_nsec) = pax_time(value).ok_or_else(|| bad("mtime"))?,
                    _ if key.starts_with(b"GNU.sparse.") => {
                        return Err(TarError::entry(
                            &name,
                            "a GNU sparse file (PAX GNU.sparse records) is not supported; \
                             write the tar without --sparse",
                        ));
                    }
                    _ => {
                        if let Some(xattr) = key.strip_prefix(b"SCHILY.xattr.")
                            && !xattr.is_empty()
                        {
                            xattrs.push((xattr.to_vec(), value.to_vec()));
                        }
                    }
                }
            }
        }
        let limit = self.limits.max_name_len;
        for (what, bytes) in [("the name's length", &name), ("the link target's length", &link)] {
            if bytes.len() > limit {
                return Err(TarError::Limit {
                    entry: lossy(&name[..name.len().min(limit)]),
                    what,
                    limit: limit as u64,
                });
            }
        }
        if kind == EntryType::GNUSparse {
            return Err(TarError::entry(
                &name,
                "a GNU sparse file is not supported; write the tar without --sparse",
            ));
        }
        let header_only = matches!(
            kind,
            EntryType::Directory
                | EntryType::Symlink
                | EntryType::Link
                | EntryType::Char
                | EntryType::Block
                | EntryType::Fifo
        );
        if header_only && size != 0 {
            return Err(TarError::entry(
                &name,
                format!("a {kind:?} entry with {size} bytes of content"),
            ));
        }
        Ok(TarEntry {
            kind,
            name,
            link,
            mode,
            uid,
            gid,
            mtime,
            mtime_nsec,
            dev,
            size,
            xattrs,
        })
    }

    /// The content of the entry last returned by [`TarReader::next_entry`] (what is left of it).
    pub fn content(&mut self) -> Content<'_, R> {
        Content { reader: self }
    }
}

/// The content of one entry; reading past what the tar holds is an [`io::ErrorKind::UnexpectedEof`].
pub struct Content<'a, R> {
    reader: &'a mut TarReader<R>,
}

impl<R: Read> Read for Content<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.reader.remaining;
        if remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let n = self.reader.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the tar ends inside {:?}", self.reader.last),
            ));
        }
        self.reader.remaining -= n as u64;
        Ok(n)
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

fn trim_nuls(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    bytes
}

/// The bytes of a NUL-terminated field.
fn text(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// A header block.
struct Header<'a>(&'a [u8; 512]);

impl Header<'_> {
    fn is_posix(&self) -> bool {
        &self.0[257..263] == b"ustar\0"
    }

    /// The name field, joined to the POSIX prefix field.
    fn raw_name(&self) -> Vec<u8> {
        let name = text(&self.0[0..100]);
        let prefix = if self.is_posix() {
            text(&self.0[345..500])
        } else {
            &[]
        };
        if prefix.is_empty() {
            return name.to_vec();
        }
        let mut out = Vec::with_capacity(prefix.len() + 1 + name.len());
        out.extend_from_slice(prefix);
        out.push(b'/');
        out.extend_from_slice(name);
        out
    }

    fn link(&self) -> Vec<u8> {
        text(&self.0[157..257]).to_vec()
    }

    fn number(&self, what: &str, range: std::ops::Range<usize>) -> Result<i64, String> {
        let raw = &self.0[range];
        parse_number(raw).ok_or_else(|| format!("bad {what} field {:?}", lossy(raw)))
    }

    /// The stored checksum is the unsigned or the signed sum of the header with the field as spaces.
    fn check_sum(&self) -> Result<(), String> {
        let stored = parse_number(&self.0[148..156])
            .ok_or_else(|| format!("bad checksum field {:?}", lossy(&self.0[148..156])))?;
        let (mut unsigned, mut signed) = (0i64, 0i64);
        for (i, &b) in self.0.iter().enumerate() {
            let b = if (148..156).contains(&i) { b' ' } else { b };
            unsigned += i64::from(b);
            signed += i64::from(b as i8);
        }
        if stored == unsigned || stored == signed {
            Ok(())
        } else {
            Err(format!(
                "header checksum mismatch (header {:?})",
                lossy(&self.raw_name())
            ))
        }
    }
}

/// A numeric header field: octal text padded with spaces or NULs on either side (empty is 0), or
/// GNU base-256 (two's complement, high bit of the first byte set). `None` when it is neither.
pub fn parse_number(field: &[u8]) -> Option<i64> {
    let first = *field.first()?;
    if first & 0x80 != 0 {
        let invert = if first & 0x40 != 0 { 0xff } else { 0 };
        let mut value: u64 = 0;
        for (i, &byte) in field.iter().enumerate() {
            let mut byte = byte ^ invert;
            if i == 0 {
                byte &= 0x7f;
            }
            if value >> 56 != 0 {
                return None;
            }
            value = (value << 8) | u64::from(byte);
        }
        let value = i64::try_from(value).ok()?;
        return Some(if invert == 0xff { !value } else { value });
    }
    let pad = |b: &u8| *b == b' ' || *b == 0;
    let Some(start) = field.iter().position(|b| !pad(b)) else {
        return Some(0);
    };
    let end = field.iter().rposition(|b| !pad(b)).map_or(start, |e| e + 1);
    let digits = &field[start..end];
    if !digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    let digits = std::str::from_utf8(digits).ok()?;
    i64::try_from(u64::from_str_radix(digits, 8).ok()?).ok()
}

fn decimal<T: std::str::FromStr>(value: &[u8]) -> Option<T> {
    let text = std::str::from_utf8(value).ok()?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A PAX time (`-12.5`, `1700000000.123456789`): seconds and nanoseconds, the nanoseconds positive.
fn pax_time(value: &[u8]) -> Option<(i64, u32)> {
    let text = std::str::from_utf8(value).ok()?;
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let negative = int.starts_with('-');
    let digits = int.strip_prefix('-').unwrap_or(int);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut secs: i64 = int.parse().ok()?;
    let nine: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let mut nsec: u32 = nine.parse().ok()?;
    if negative && nsec > 0 {
        secs = secs.checked_sub(1)?;
        nsec = 1_000_000_000 - nsec;
    }
    Some((secs, nsec))
}

/// A header block as GNU tar writes it (device fields NUL), `fields` (byte ranges and raw values)
/// replaced, checksum filled in.
#[cfg(test)]
pub(crate) fn test_block(name: &[u8], kind: u8, fields: &[(std::ops::Range<usize>, &[u8])]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(b"00000000000\0");
    h[136..148].copy_from_slice(b"14712074320\0");
    h[156] = kind;
    h[257..265].copy_from_slice(b"ustar  \0");
    for (range, value) in fields {
        h[range.clone()].fill(0);
        h[range.start..range.start + value.len()].copy_from_slice(value);
    }
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(name: &[u8], kind: u8, fields: &[(std::ops::Range<usize>, &[u8])]) -> Vec<u8> {
        test_block(name, kind, fields)
    }

    fn entries(tar: &[u8]) -> Result<Vec<TarEntry>, TarError> {
        let mut reader = TarReader::new(tar, TarLimits::default());
        let mut out = Vec::new();
        while let Some(entry) = reader.next_entry()? {
            out.push(entry);
        }
        Ok(out)
    }

    fn one(block: Vec<u8>) -> Result<TarEntry, TarError> {
        let mut tar = block;
        tar.extend_from_slice(&[0u8; 1024]);
        entries(&tar).map(|mut e| e.remove(0))
    }

    #[test]
    fn numbers_as_real_writers_write_them() {
        assert_eq!(parse_number(b"0000644\0"), Some(0o644));
        assert_eq!(parse_number(b"   644 \0"), Some(0o644));
        assert_eq!(parse_number(b"\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(parse_number(b"        "), Some(0));
        assert_eq!(parse_number(b"0000644 "), Some(0o644));
        // GNU base-256: a big uid, and an mtime before 1970.
        assert_eq!(parse_number(&[0x80, 0, 0, 0, 0x01, 0, 0, 0]), Some(1 << 24));
        assert_eq!(parse_number(&[0xff; 12]), Some(-1));
        assert_eq!(parse_number(b"0000x44\0"), None);
    }

    #[test]
    fn gnu_busybox_and_python_device_fields_are_ignored_on_files() {
        // GNU tar, busybox tar and Python leave the device fields of files NUL; some put spaces or
        // junk there.
        for dev in [&b"\0\0\0\0\0\0\0\0"[..], b"        ", b"junk\0\0\0\0"] {
            let e = one(block(b"etc/hello", b'0', &[(329..337, dev), (337..345, dev)])).unwrap();
            assert_eq!((e.kind, e.dev, e.mode), (EntryType::Regular, (0, 0), 0o644));
        }
        let e = one(block(
            b"dev/null",
            b'3',
            &[(329..337, b"\0"), (337..345, b"0000003\0")],
        ))
        .unwrap();
        assert_eq!(e.dev, (0, 3));
    }

    #[test]
    fn invalid_header_fields_are_refused_naming_the_entry() {
        let cases: [(u8, std::ops::Range<usize>, &[u8], &str); 6] = [
            (b'0', 100..108, b"06x4\0", "bad mode field"),
            (b'0', 108..116, b"-1\0", "bad uid field"),
            (b'0', 116..124, b"12 34\0", "bad gid field"),
            (b'0', 136..148, b"soon\0", "bad mtime field"),
            (b'3', 329..337, b"8\0", "bad devmajor field"),
            (b'4', 337..345, b"0x10\0", "bad devminor field"),
        ];
        for (kind, range, value, message) in cases {
            let err = one(block(b"usr/bin/tool", kind, &[(range, value)])).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("\"usr/bin/tool\"") && text.contains(message),
                "{message}: {text}"
            );
        }
        // A uid that does not fit 32 bits (base-256).
        let big = [0x80, 0, 0, 0x01, 0, 0, 0, 0];
        let err = one(block(b"big", b'0', &[(108..116, &big)])).unwrap_err();
        assert!(
            err.to_string().contains("uid 4294967296 is out of range"),
            "{err}"
        );
        // A corrupt checksum names the header.
        let mut corrupt = block(b"etc/passwd", b'0', &[]);
        corrupt[0] = b'E';
        let err = one(corrupt).unwrap_err();
        assert!(
            err.to_string()
                .contains("checksum mismatch (header \"Etc/passwd\")"),
            "{err}"
        );
        // Content on a directory, a GNU sparse file.
        let err = one(block(b"d/", b'5', &[(124..136, b"00000000001\0")])).unwrap_err();
        assert!(err.to_string().contains("Directory entry with 1 bytes"), "{err}");
        let err = one(block(b"holes", b'S', &[])).unwrap_err();
        assert!(err.to_string().contains("GNU sparse"), "{err}");
    }

    #[test]
    fn posix_prefix_pax_records_and_content() {
        let mut tar = Vec::new();
        let mut posix = block(
            b"name",
            b'0',
            &[(257..265, b"ustar\x0000"), (345..351, b"a/long")],
        );
        posix[124..136].copy_from_slice(b"00000000003\0");
        posix[148..156].fill(b' ');
        let sum: u32 = posix.iter().map(|&b| u32::from(b)).sum();
        posix[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        tar.extend_from_slice(&posix);
        tar.extend_from_slice(b"abc");
        tar.resize(tar.len().next_multiple_of(512), 0);
        let records = b"15 mtime=-1.25\n18 uid=4000000000\n";
        tar.extend_from_slice(&block(
            b"././@PaxHeader",
            b'x',
            &[(124..136, format!("{:011o}\0", records.len()).as_bytes())],
        ));
        tar.extend_from_slice(records);
        tar.resize(tar.len().next_multiple_of(512), 0);
        tar.extend_from_slice(&block(b"old", b'0', &[]));
        // A PAX size decides how much content follows (the header's size is 0 here).
        let records = b"10 size=5\n";
        tar.extend_from_slice(&block(b"x", b'x', &[(124..136, b"00000000012\0")]));
        tar.extend_from_slice(records);
        tar.resize(tar.len().next_multiple_of(512), 0);
        tar.extend_from_slice(&block(b"sized", b'0', &[]));
        tar.extend_from_slice(b"12345");
        tar.resize(tar.len().next_multiple_of(512), 0);
        tar.extend_from_slice(&block(b"after", b'5', &[]));
        tar.extend_from_slice(&[0u8; 1024]);
        let mut reader = TarReader::new(&tar[..], TarLimits::default());
        let first = reader.next_entry().unwrap().unwrap();
        assert_eq!(first.name, b"a/long/name");
        let mut content = String::new();
        reader.content().read_to_string(&mut content).unwrap();
        assert_eq!(content, "abc");
        let second = reader.next_entry().unwrap().unwrap();
        assert_eq!(
            (second.mtime, second.mtime_nsec, second.uid),
            (-2, 750_000_000, 4_000_000_000)
        );
        let sized = reader.next_entry().unwrap().unwrap();
        assert_eq!((sized.name.as_slice(), sized.size), (&b"sized"[..], 5));
        assert_eq!(reader.next_entry().unwrap().unwrap().name, b"after");
        assert!(reader.next_entry().unwrap().is_none());
        assert!(reader.next_entry().unwrap().is_none());
    }
}
