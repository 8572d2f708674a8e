//! Context hashes: taskgraph's SHA-256 of the tar stream, or kiln's native per-file Merkle hash; both
//! skip all content reads when the stat cache shows an unchanged context.

use std::io::{Read, Write};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::context::{Context, Entry, Source};
use crate::error::TreeError;
use crate::model::HashMode;
use crate::stat_cache::{CachedContext, StatCache};
use crate::stream::write_tar;

/// A computed context hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextHash {
    /// Lowercase hex SHA-256.
    pub hex: String,
    /// taskgraph mode: bytes in the tar stream; native mode: content bytes.
    pub size: u64,
    /// Whether it came from the stat cache without reading any content.
    pub cached: bool,
}

/// A `Write` that feeds SHA-256.
#[derive(Default)]
pub struct HashSink(pub Sha256);

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A `Write` that feeds SHA-256 and passes the bytes on.
pub struct TeeHash<W> {
    /// The hasher.
    pub hasher: Sha256,
    /// Where the bytes go.
    pub inner: W,
}

impl<W: Write> Write for TeeHash<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Everything the context hash depends on, without content: names, sources and their stat data.
fn fingerprint(ctx: &Context) -> ([u8; 32], bool) {
    let mut h = Sha256::new();
    h.update(b"kiln-fingerprint-v1\0");
    h.update(ctx.mode.as_str().as_bytes());
    let mut racy = false;
    for entry in &ctx.entries {
        h.update(b"\0");
        h.update(entry.name.as_bytes());
        h.update(b"\0");
        match &entry.source {
            Source::File { path, meta } => {
                racy |= StatCache::is_racy(meta);
                h.update(path.as_os_str().as_encoded_bytes());
                h.update(b"\0");
                for field in [
                    meta.dev,
                    meta.ino,
                    meta.size,
                    meta.mtime_ns as u64,
                    meta.ctime_ns as u64,
                    u64::from(meta.mode),
                ] {
                    h.update(field.to_le_bytes());
                }
            }
            Source::Bytes(bytes) => {
                h.update(b"bytes\0");
                h.update(Sha256::digest(bytes.as_slice()));
            }
        }
    }
    (h.finalize().into(), racy)
}

/// The context hash of `ctx` in its mode, using and updating `cache`.
pub fn context_hash(ctx: &Context, cache: &StatCache) -> Result<ContextHash, TreeError> {
    let (key, racy) = fingerprint(ctx);
    if let Some(hit) = cache.context(&key) {
        return Ok(ContextHash {
            hex: hex::encode(hit.hash),
            size: hit.size,
            cached: true,
        });
    }
    let (hash, size) = match ctx.mode {
        HashMode::Taskgraph => taskgraph_hash(ctx)?,
        HashMode::Native => native_hash(ctx, cache)?,
    };
    if !racy {
        cache.put_context(key, CachedContext { hash, size });
    }
    Ok(ContextHash {
        hex: hex::encode(hash),
        size,
        cached: false,
    })
}

/// taskgraph's context hash: SHA-256 of the tar stream.
fn taskgraph_hash(ctx: &Context) -> Result<([u8; 32], u64), TreeError> {
    let (sink, size) = write_tar(ctx, HashSink::default())?;
    Ok((sink.0.finalize().into(), size))
}

fn file_digest(ctx: &Context, entry: &Entry, cache: &StatCache) -> Result<[u8; 32], TreeError> {
    let (path, meta) = match &entry.source {
        Source::Bytes(bytes) => return Ok(Sha256::digest(bytes.as_slice()).into()),
        Source::File { path, meta } => (path, meta),
    };
    if let Some(digest) = cache.file_digest(path, meta) {
        return Ok(digest);
    }
    let mut file = std::fs::File::open(path).map_err(|e| TreeError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(TreeError::io(path, e)),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    if total != meta.size {
        return Err(TreeError::ContextFile {
            image: ctx.image.clone(),
            path: path.clone(),
            message: format!(
                "changed while being read (expected {} bytes, read {total}); try again",
                meta.size
            ),
        });
    }
    let digest: [u8; 32] = hasher.finalize().into();
    if !StatCache::is_racy(meta) {
        cache.put_file(path, *meta, digest);
    }
    Ok(digest)
}

/// kiln's native context hash (`docs/hash-formats.md`): a Merkle hash over one line per entry,
/// `<mode octal> <size> <sha256 hex> <name>\n`, after the header `kiln-context-v1\n`. File digests are
/// computed in parallel and cached by stat data.
fn native_hash(ctx: &Context, cache: &StatCache) -> Result<([u8; 32], u64), TreeError> {
    let leaves: Vec<[u8; 32]> = ctx
        .entries
        .par_iter()
        .map(|entry| file_digest(ctx, entry, cache))
        .collect::<Result<_, _>>()?;
    let mut h = Sha256::new();
    h.update(b"kiln-context-v1\n");
    for (entry, leaf) in ctx.entries.iter().zip(&leaves) {
        let line = format!(
            "{:o} {} {} {}\n",
            ctx.mode_of(entry),
            entry.size(),
            hex::encode(leaf),
            entry.name
        );
        h.update(line.as_bytes());
    }
    Ok((h.finalize().into(), ctx.content_bytes()))
}
