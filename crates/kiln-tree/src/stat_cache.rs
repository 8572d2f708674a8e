//! The stat cache: remembers, per file, the content digest for a (device, inode, size, mtime, ctime,
//! mode) tuple, and per context the hash for a fingerprint of all its entries' metadata. An unchanged tree
//! is then re-planned from `stat` calls alone.
//!
//! Racy entries are never stored: a file modified within [`RACY_WINDOW_NS`] of the save could change
//! again without its mtime moving (coarse timestamps), so it is hashed again next time. Only the mtime
//! decides raciness: any later write moves it; the ctime is part of the key but not of this test.
//!
//! On-disk format (`docs/on-disk.md`): magic `KILNSC01`, then little-endian records; the file is written
//! to a temp file and renamed, and a file that does not parse is ignored (it is only a cache).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::fsmeta::FileMeta;

const MAGIC: &[u8; 8] = b"KILNSC01";
/// Files modified this close to the save are not cached.
pub const RACY_WINDOW_NS: i64 = 2_000_000_000;
/// Above this many file records, only those used by the last run are kept.
const MAX_FILES: usize = 2_000_000;

/// A cached context hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedContext {
    /// The context hash bytes.
    pub hash: [u8; 32],
    /// The size of the tar stream (taskgraph mode) or of the content (native mode).
    pub size: u64,
}

/// Per-file records: metadata, content digest, and whether this run used it.
type FileRecords = HashMap<PathBuf, (FileMeta, [u8; 32], bool)>;

#[derive(Default)]
struct State {
    /// Per-file records, parsed from `unparsed_files` on first use: a warm re-plan whose contexts all
    /// hit never needs them.
    files: FileRecords,
    unparsed_files: Option<Vec<u8>>,
    contexts: HashMap<[u8; 32], (CachedContext, bool)>,
    dirty: bool,
}

impl State {
    fn files(&mut self) -> &mut FileRecords {
        if let Some(bytes) = self.unparsed_files.take() {
            self.files = parse_files(&bytes).unwrap_or_default();
        }
        &mut self.files
    }
}

/// A stat cache loaded from (and saved to) one file. Safe to share between hashing threads.
pub struct StatCache {
    path: Option<PathBuf>,
    state: Mutex<State>,
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    }
    fn digest(&mut self) -> Option<[u8; 32]> {
        self.take(32).and_then(|b| b.try_into().ok())
    }
}

/// Parses the header and the contexts; the file records that follow are kept unparsed.
fn parse(bytes: &[u8]) -> Option<State> {
    let mut r = Reader { bytes };
    if r.take(8)? != MAGIC {
        return None;
    }
    let mut state = State::default();
    let contexts = r.u64()?;
    for _ in 0..contexts {
        let key = r.digest()?;
        let hash = r.digest()?;
        let size = r.u64()?;
        state.contexts.insert(key, (CachedContext { hash, size }, false));
    }
    state.unparsed_files = Some(r.bytes.to_vec());
    Some(state)
}

fn parse_files(bytes: &[u8]) -> Option<FileRecords> {
    let mut r = Reader { bytes };
    let count = r.u64()?;
    let mut files = HashMap::with_capacity(usize::try_from(count).unwrap_or(0).min(bytes.len() / 80));
    for _ in 0..count {
        let len = r.u32()? as usize;
        let path = std::str::from_utf8(r.take(len)?).ok()?;
        let meta = FileMeta {
            dev: r.u64()?,
            ino: r.u64()?,
            size: r.u64()?,
            mtime_ns: r.i64()?,
            ctime_ns: r.i64()?,
            mode: r.u32()?,
        };
        let digest = r.digest()?;
        files.insert(PathBuf::from(path), (meta, digest, false));
    }
    r.bytes.is_empty().then_some(files)
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(i64::MAX)
}

impl StatCache {
    /// A cache that is never saved.
    pub fn in_memory() -> Self {
        Self {
            path: None,
            state: Mutex::new(State::default()),
        }
    }

    /// Loads the cache at `path`; a missing or unreadable file gives an empty cache.
    pub fn load(path: &Path) -> Self {
        let state = std::fs::read(path)
            .ok()
            .and_then(|bytes| parse(&bytes))
            .unwrap_or_default();
        Self {
            path: Some(path.to_owned()),
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The content digest of `path` if its metadata is unchanged.
    pub fn file_digest(&self, path: &Path, meta: &FileMeta) -> Option<[u8; 32]> {
        let mut state = self.lock();
        let (cached, digest, used) = state.files().get_mut(path)?;
        if cached != meta {
            return None;
        }
        *used = true;
        Some(*digest)
    }

    /// Records the content digest of `path`.
    pub fn put_file(&self, path: &Path, meta: FileMeta, digest: [u8; 32]) {
        let mut state = self.lock();
        state.files().insert(path.to_owned(), (meta, digest, true));
        state.dirty = true;
    }

    /// The context hash recorded for `fingerprint`.
    pub fn context(&self, fingerprint: &[u8; 32]) -> Option<CachedContext> {
        let mut state = self.lock();
        let (cached, used) = state.contexts.get_mut(fingerprint)?;
        *used = true;
        Some(*cached)
    }

    /// Records a context hash.
    pub fn put_context(&self, fingerprint: [u8; 32], cached: CachedContext) {
        let mut state = self.lock();
        state.contexts.insert(fingerprint, (cached, true));
        state.dirty = true;
    }

    /// Writes the cache back (atomically) if anything changed. Racy entries are left out.
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let mut state = self.lock();
        if !state.dirty {
            return Ok(());
        }
        let horizon = now_ns().saturating_sub(RACY_WINDOW_NS);
        let mut out = Vec::with_capacity(64 + state.contexts.len() * 72);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(state.contexts.len() as u64).to_le_bytes());
        for (key, (cached, _)) in &state.contexts {
            out.extend_from_slice(key);
            out.extend_from_slice(&cached.hash);
            out.extend_from_slice(&cached.size.to_le_bytes());
        }
        let files = state.files();
        let keep_unused = files.len() <= MAX_FILES;
        let kept: Vec<_> = files
            .iter()
            .filter(|(path, (meta, _, used))| {
                (keep_unused || *used) && meta.mtime_ns < horizon && path.to_str().is_some()
            })
            .collect();
        out.reserve(kept.len() * 120);
        out.extend_from_slice(&(kept.len() as u64).to_le_bytes());
        for (path, (meta, digest, _)) in kept {
            let text = path.to_str().unwrap_or_default().as_bytes();
            out.extend_from_slice(&(text.len() as u32).to_le_bytes());
            out.extend_from_slice(text);
            out.extend_from_slice(&meta.dev.to_le_bytes());
            out.extend_from_slice(&meta.ino.to_le_bytes());
            out.extend_from_slice(&meta.size.to_le_bytes());
            out.extend_from_slice(&meta.mtime_ns.to_le_bytes());
            out.extend_from_slice(&meta.ctime_ns.to_le_bytes());
            out.extend_from_slice(&meta.mode.to_le_bytes());
            out.extend_from_slice(digest);
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut tmp = tempfile_in(path)?;
        tmp.1.write_all(&out)?;
        tmp.1.sync_all()?;
        std::fs::rename(&tmp.0, path)
    }

    /// Whether a file with this metadata may be cached now (not racy).
    pub fn is_racy(meta: &FileMeta) -> bool {
        let horizon = now_ns().saturating_sub(RACY_WINDOW_NS);
        meta.mtime_ns >= horizon
    }
}

fn tempfile_in(path: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let file = std::fs::File::create(&tmp)?;
    Ok((tmp, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: u64) -> FileMeta {
        FileMeta {
            dev: 1,
            ino: 2,
            size,
            mtime_ns: 1_000,
            ctime_ns: 1_000,
            mode: 0o644,
        }
    }

    #[test]
    fn round_trips_and_detects_changed_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache");
        let cache = StatCache::load(&file);
        cache.put_file(Path::new("/a"), meta(3), [7; 32]);
        cache.put_context(
            [1; 32],
            CachedContext {
                hash: [2; 32],
                size: 10,
            },
        );
        cache.save().unwrap();

        let again = StatCache::load(&file);
        assert_eq!(again.file_digest(Path::new("/a"), &meta(3)), Some([7; 32]));
        assert_eq!(again.file_digest(Path::new("/a"), &meta(4)), None);
        assert_eq!(
            again.context(&[1; 32]),
            Some(CachedContext {
                hash: [2; 32],
                size: 10
            })
        );
    }

    #[test]
    fn racy_files_are_not_saved() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache");
        let cache = StatCache::load(&file);
        let fresh = FileMeta {
            mtime_ns: now_ns(),
            ..meta(1)
        };
        cache.put_file(Path::new("/fresh"), fresh, [1; 32]);
        cache.save().unwrap();
        assert_eq!(
            StatCache::load(&file).file_digest(Path::new("/fresh"), &fresh),
            None
        );
    }

    #[test]
    fn garbage_file_is_an_empty_cache() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache");
        std::fs::write(&file, b"KILNSC01\xff\xff").unwrap();
        assert_eq!(
            StatCache::load(&file).file_digest(Path::new("/a"), &meta(1)),
            None
        );
    }
}
