//! The byte-exact tar stream that taskgraph hashes (Python `tarfile`, GNU format, with taskgraph's
//! `HackedType` patch). See `docs/hash-formats.md` and taskgraph-compat §1.5.
//!
//! Written by hand rather than with the `tar` crate: the stream must match Python's bytes exactly
//! (device fields of `0000000\0`, the GNU magic, the checksum layout, the 10240-byte record padding), and
//! those are details a general tar writer rightly does not let a caller pin.

use std::io::{self, Write};

/// Size of a tar block.
pub const BLOCK: usize = 512;
/// Python's `tarfile.RECORDSIZE`: the stream is padded with zeros to a multiple of it.
pub const RECORD: u64 = 20 * BLOCK as u64;
/// taskgraph's fixed mtime, 2016-01-01T00:00:00Z.
pub const TASKGRAPH_MTIME: u64 = 1_451_606_400;

const NAME_LEN: usize = 100;
const LONGLINK_NAME: &[u8] = b"././@LongLink";

/// One tar header block.
pub type Header = [u8; BLOCK];

/// Writes `value` as NUL-terminated octal into `field`, or with the GNU base-256 encoding when it does not
/// fit, exactly as Python's `tarfile.itn` does for GNU_FORMAT.
fn put_number(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    // 8^digits: the smallest value that no longer fits in `digits` octal digits.
    let limit = 1u128 << (3 * digits);
    if u128::from(value) < limit {
        let text = format!("{value:0digits$o}");
        field[..digits].copy_from_slice(text.as_bytes());
        field[digits] = 0;
    } else {
        field[0] = 0x80;
        let mut rest = value;
        for byte in field[1..].iter_mut().rev() {
            *byte = (rest & 0xff) as u8;
            rest >>= 8;
        }
    }
}

fn put_bytes(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

fn finish_checksum(block: &mut Header) {
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}\0");
    block[148..155].copy_from_slice(text.as_bytes());
}

fn base_header(name: &[u8], mode: u32, size: u64, mtime: u64, typeflag: u8) -> Header {
    let mut block = [0u8; BLOCK];
    put_bytes(&mut block[0..NAME_LEN], name);
    put_number(&mut block[100..108], u64::from(mode));
    put_number(&mut block[108..116], 0);
    put_number(&mut block[116..124], 0);
    put_number(&mut block[124..136], size);
    put_number(&mut block[136..148], mtime);
    block[156] = typeflag;
    block[257..265].copy_from_slice(b"ustar  \0");
    // devmajor/devminor as taskgraph's HackedType makes Python >= 3.9 write them.
    put_number(&mut block[329..337], 0);
    put_number(&mut block[337..345], 0);
    finish_checksum(&mut block);
    block
}

/// The header blocks for a regular file entry: a GNU long-name header and its payload first when the
/// UTF-8 name is longer than 100 bytes, then the file's own header (name cut at 100 bytes, possibly inside
/// a multi-byte character, as Python does).
pub fn file_headers(name: &str, mode: u32, size: u64) -> Vec<u8> {
    let name = name.as_bytes();
    let mut out = Vec::with_capacity(3 * BLOCK);
    if name.len() > NAME_LEN {
        let payload_len = name.len() + 1;
        out.extend_from_slice(&base_header(LONGLINK_NAME, 0, payload_len as u64, 0, b'L'));
        out.extend_from_slice(name);
        out.push(0);
        pad_to_block(&mut out);
    }
    out.extend_from_slice(&base_header(name, mode & 0o7777, size, TASKGRAPH_MTIME, b'0'));
    out
}

fn pad_to_block(buf: &mut Vec<u8>) {
    let rem = buf.len() % BLOCK;
    if rem != 0 {
        buf.resize(buf.len() + BLOCK - rem, 0);
    }
}

/// Zero bytes needed after `size` bytes of content to reach a block boundary.
pub fn content_padding(size: u64) -> usize {
    let rem = (size % BLOCK as u64) as usize;
    if rem == 0 { 0 } else { BLOCK - rem }
}

/// The end of the archive for a stream of `offset` bytes so far: two zero blocks, then zeros up to the
/// next multiple of [`RECORD`].
pub fn trailer_len(offset: u64) -> u64 {
    let end = offset + 2 * BLOCK as u64;
    let rem = end % RECORD;
    2 * BLOCK as u64 + if rem == 0 { 0 } else { RECORD - rem }
}

/// A writer that counts the bytes going through it, to place the trailer.
pub struct TarWriter<W: Write> {
    inner: W,
    offset: u64,
}

impl<W: Write> TarWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self { inner, offset: 0 }
    }

    /// Writes the headers of a regular file entry.
    pub fn start_file(&mut self, name: &str, mode: u32, size: u64) -> io::Result<()> {
        let headers = file_headers(name, mode, size);
        self.write_raw(&headers)
    }

    /// Writes content bytes of the current entry.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Pads the current entry, whose content was `size` bytes, to a block boundary.
    pub fn end_file(&mut self, size: u64) -> io::Result<()> {
        const ZEROS: [u8; BLOCK] = [0; BLOCK];
        let pad = content_padding(size);
        self.write_raw(&ZEROS[..pad])
    }

    /// Writes a whole in-memory entry.
    pub fn append_bytes(&mut self, name: &str, mode: u32, content: &[u8]) -> io::Result<()> {
        self.start_file(name, mode, content.len() as u64)?;
        self.write_raw(content)?;
        self.end_file(content.len() as u64)
    }

    /// Writes the trailer and returns the inner writer and the total length.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        let zeros = vec![0u8; trailer_len(self.offset) as usize];
        self.write_raw(&zeros)?;
        Ok((self.inner, self.offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(block: &[u8], start: usize, len: usize) -> &[u8] {
        &block[start..start + len]
    }

    #[test]
    fn short_name_header_matches_python_layout() {
        let h = file_headers("Dockerfile", 0o644, 5);
        assert_eq!(h.len(), BLOCK);
        assert_eq!(&h[..10], b"Dockerfile");
        assert!(h[10..100].iter().all(|&b| b == 0));
        assert_eq!(field(&h, 100, 8), b"0000644\0");
        assert_eq!(field(&h, 108, 8), b"0000000\0");
        assert_eq!(field(&h, 124, 12), b"00000000005\0");
        assert_eq!(field(&h, 136, 12), b"12641340600\0");
        assert_eq!(h[156], b'0');
        assert_eq!(field(&h, 257, 8), b"ustar  \0");
        assert_eq!(field(&h, 329, 8), b"0000000\0");
        assert_eq!(field(&h, 337, 8), b"0000000\0");
        assert_eq!(h[155], b' ');
        assert_eq!(h[154], 0);
    }

    #[test]
    fn checksum_counts_field_as_spaces() {
        let h = file_headers("a", 0o755, 0);
        let mut copy = h.clone();
        copy[148..156].copy_from_slice(b"        ");
        let sum: u32 = copy.iter().map(|&b| u32::from(b)).sum();
        let text = std::str::from_utf8(&h[148..154]).unwrap();
        assert_eq!(u32::from_str_radix(text, 8).unwrap(), sum);
    }

    #[test]
    fn size_of_8_gib_switches_to_base_256() {
        let just_below = file_headers("f", 0o644, (1 << 33) - 1);
        assert_eq!(field(&just_below, 124, 12), b"77777777777\0");
        let at = file_headers("f", 0o644, 1 << 33);
        let mut expected = [0u8; 12];
        expected[0] = 0x80;
        expected[7] = 0x02; // 2^33 big-endian in the 11 trailing bytes
        assert_eq!(field(&at, 124, 12), &expected);
    }

    #[test]
    fn long_name_gets_longlink_header() {
        let name = "x".repeat(101);
        let h = file_headers(&name, 0o644, 0);
        assert_eq!(h.len(), 3 * BLOCK);
        assert_eq!(&h[..13], LONGLINK_NAME);
        assert_eq!(field(&h, 100, 8), b"0000000\0");
        assert_eq!(field(&h, 124, 12), b"00000000146\0"); // 102 bytes
        assert_eq!(field(&h, 136, 12), b"00000000000\0");
        assert_eq!(h[156], b'L');
        assert_eq!(&h[BLOCK..BLOCK + 101], name.as_bytes());
        assert_eq!(h[BLOCK + 101], 0);
        assert_eq!(&h[2 * BLOCK..2 * BLOCK + 100], &name.as_bytes()[..100]);
    }

    #[test]
    fn trailer_pads_to_record() {
        assert_eq!(trailer_len(0), RECORD);
        assert_eq!(trailer_len(512 * 3), RECORD - 512 * 3);
        assert_eq!(trailer_len(RECORD - 1024), 1024);
        assert_eq!(trailer_len(RECORD - 512), 1024 + RECORD - 512);
    }
}
