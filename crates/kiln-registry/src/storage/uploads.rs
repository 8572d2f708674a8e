//! Upload sessions of the filesystem storage: their table in memory, caps, expiry, and the sink a request
//! writes through (`docs/registry-storage.md`, "Upload sessions").
//!
//! A session is `uploads/<id>/{meta,data}` on disk and an entry in [`Sessions`]. An idle session holds no
//! file descriptor: its writer is parked (hash state and length only) and reopened by the next request.
//! Every change of a session's state happens under the table's mutex; file removals happen outside it,
//! after the session was marked [`State::Gone`], so that no request can pick it up while its files go:
//!
//! - a request checks a session out (`Idle` → `Busy`) and hands it back when its sink drops;
//! - a `DELETE` of a busy session only raises its cancel flag: the request holding it stops writing and
//!   removes the files when it ends (its answer is 404 `BLOB_UPLOAD_UNKNOWN`, never a 500);
//! - the final `PUT` marks the session `Gone` before it commits, unless it was cancelled first (then it
//!   answers 404); a `DELETE`, `PATCH` or `PUT` arriving during the commit finds no session (404);
//! - expiry and garbage collection take only idle sessions.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use kiln_oci::{Algorithm, BlobWriter, Digest, ParkedWriter};

use super::fs::list_names;
use super::{FsStorage, StorageError, UploadLimits, UploadSink};
use crate::names::RepoName;

/// What a session is doing.
enum State {
    /// No request uses it since `since`; `writer` is the hash state of `data` (`None`: hash the file on
    /// next use, e.g. after a restart).
    Idle {
        writer: Option<Box<ParkedWriter>>,
        since: Instant,
    },
    /// A request has it checked out; a `DELETE` meanwhile raises `cancel`.
    Busy { cancel: Arc<AtomicBool> },
    /// Being finished or removed: unknown to every request.
    Gone,
}

struct Session {
    /// From `meta`; `None` when it is unreadable (only expiry and GC touch such a session).
    repo: Option<String>,
    /// Who opened it, for the per-client cap (`None`: the registry itself, or opened before a restart).
    client: Option<String>,
    state: State,
}

/// The upload sessions of one storage, and their limits.
pub(super) struct Sessions {
    table: Mutex<HashMap<String, Session>>,
    limits: UploadLimits,
}

impl Sessions {
    pub(super) fn new(limits: UploadLimits) -> Sessions {
        Sessions {
            table: Mutex::new(HashMap::new()),
            limits,
        }
    }
}

/// `Instant::now()` minus how long ago `path` was modified (a session known only from its files).
fn idle_since(path: &std::path::Path, now: Instant) -> Instant {
    let age = fs_err::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or(Duration::ZERO);
    now.checked_sub(age).unwrap_or(now)
}

impl FsStorage {
    fn table(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        // A poisoned table only means a request panicked while holding it; the table stays usable.
        self.sessions().table.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn upload_limits(&self) -> UploadLimits {
        self.sessions().limits
    }

    /// A session found on disk but not in the table (opened before a restart): idle since its files last
    /// changed. `None` if its folder is gone: it ended meanwhile. Called under the table's lock, which
    /// ending a session takes after removing the folder, so no ended session comes back.
    fn disk_session(&self, id: &str, repo: Option<String>, now: Instant) -> Option<Session> {
        let dir = self.upload_dir(id);
        if !dir.is_dir() {
            return None;
        }
        let data = dir.join("data");
        let since = idle_since(if data.exists() { &data } else { &dir }, now);
        Some(Session {
            repo,
            client: None,
            state: State::Idle { writer: None, since },
        })
    }

    /// Registers the sessions on disk that the table lacks (opened before a restart, or torn).
    pub(super) fn register_disk_sessions(&self) -> Result<(), StorageError> {
        let names = list_names(&self.root().join("uploads"))?;
        let now = Instant::now();
        let found: Vec<(String, Option<String>)> = names
            .into_iter()
            .map(|id| {
                let repo = self.read_upload_meta(&id).map(|(repo, _)| repo);
                (id, repo)
            })
            .collect();
        let mut table = self.table();
        for (id, repo) in found {
            if let Entry::Vacant(v) = table.entry(id)
                && let Some(session) = self.disk_session(v.key(), repo, now)
            {
                v.insert(session);
            }
        }
        Ok(())
    }

    /// Runs `f` on session `id` of `repo` under the table's lock. A session idle past the timeout is
    /// removed first and, like one being finished or removed, is [`StorageError::UploadUnknown`].
    fn with_session<T>(
        &self,
        repo: &RepoName,
        id: &str,
        f: impl FnOnce(&mut Session) -> Result<T, StorageError>,
    ) -> Result<(Algorithm, T), StorageError> {
        let algorithm = self.upload_meta(repo, id)?;
        let timeout = self.upload_limits().idle_timeout;
        let now = Instant::now();
        let mut table = self.table();
        let session = match table.entry(id.to_owned()) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => match self.disk_session(id, Some(repo.to_string()), now) {
                Some(session) => v.insert(session),
                None => return Err(StorageError::upload_unknown(repo, id)),
            },
        };
        match &session.state {
            State::Gone => Err(StorageError::upload_unknown(repo, id)),
            State::Idle { since, .. } if now.duration_since(*since) >= timeout => {
                session.state = State::Gone;
                drop(table);
                self.end_session(id);
                Err(StorageError::upload_unknown(repo, id))
            }
            _ => Ok((algorithm, f(session)?)),
        }
    }

    /// Removes the files and the entry of a session marked [`State::Gone`].
    fn end_session(&self, id: &str) {
        let dir = self.upload_dir(id);
        if let Err(e) = fs_err::remove_dir_all(&dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "cannot remove an ended upload session");
        }
        self.table().remove(id);
    }

    /// Ends every idle session unused for `idle_for` (all of them with [`Duration::ZERO`]); returns their
    /// folders. Sessions a request is using are never taken. `dry_run`: only says which.
    pub(crate) fn remove_idle_uploads(
        &self,
        idle_for: Duration,
        dry_run: bool,
    ) -> Result<Vec<PathBuf>, StorageError> {
        self.register_disk_sessions()?;
        let now = Instant::now();
        let mut ids = Vec::new();
        {
            let mut table = self.table();
            for (id, session) in table.iter_mut() {
                if let State::Idle { since, .. } = session.state
                    && now.duration_since(since) >= idle_for
                {
                    if !dry_run {
                        session.state = State::Gone;
                    }
                    ids.push(id.clone());
                }
            }
        }
        ids.sort();
        let mut removed = Vec::new();
        for id in ids {
            if !dry_run {
                self.end_session(&id);
            }
            removed.push(self.upload_dir(&id));
        }
        Ok(removed)
    }

    /// Ends the sessions unused for the idle timeout of [`UploadLimits`]; returns their folders. Also
    /// done on the way by every request that meets an expired session or opens a new one; `kiln serve`
    /// calls this periodically so that abandoned sessions do not stay on disk.
    pub fn expire_uploads(&self) -> Result<Vec<PathBuf>, StorageError> {
        self.remove_idle_uploads(self.upload_limits().idle_timeout, false)
    }

    pub(super) fn start_session(
        &self,
        repo: &RepoName,
        algorithm: Algorithm,
        client: Option<&str>,
    ) -> Result<Box<dyn UploadSink>, StorageError> {
        let limits = self.upload_limits();
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let cancel = Arc::new(AtomicBool::new(false));
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut table = self.table();
            let (mut in_repo, mut of_client) = (0, 0);
            for (other, session) in table.iter_mut() {
                match session.state {
                    State::Gone => continue,
                    State::Idle { since, .. } if now.duration_since(since) >= limits.idle_timeout => {
                        session.state = State::Gone;
                        expired.push(other.clone());
                        continue;
                    }
                    _ => {}
                }
                in_repo += usize::from(session.repo.as_deref() == Some(repo.as_str()));
                of_client += usize::from(client.is_some() && session.client.as_deref() == client);
            }
            let over = |limit: usize, count: usize| limit > 0 && count >= limit;
            let refused = if over(limits.per_repository, in_repo) {
                Some((format!("repository {repo}"), limits.per_repository))
            } else {
                client
                    .filter(|_| over(limits.per_client, of_client))
                    .map(|who| (format!("client {who}"), limits.per_client))
            };
            if refused.is_none() {
                // Reserved before any file exists, so that concurrent starts count it.
                table.insert(
                    id.clone(),
                    Session {
                        repo: Some(repo.to_string()),
                        client: client.map(str::to_owned),
                        state: State::Busy {
                            cancel: Arc::clone(&cancel),
                        },
                    },
                );
            }
            drop(table);
            for other in &expired {
                self.end_session(other);
            }
            if let Some((scope, limit)) = refused {
                return Err(StorageError::TooManyUploads {
                    scope,
                    limit,
                    idle_timeout: limits.idle_timeout,
                });
            }
        }
        // From here the sink owns the session: dropping it on an error below removes the session.
        let mut upload = FsUpload {
            storage: self.clone(),
            repo: repo.clone(),
            id: id.clone(),
            writer: None,
            cancel,
            ending: true,
        };
        let dir = self.upload_dir(&id);
        fs_err::create_dir_all(&dir)?;
        // No fsync: a session need not survive a crash (see `upload_meta`).
        fs_err::write(dir.join("meta"), format!("{repo}\n{algorithm}\n"))?;
        upload.writer = Some(self.blob_store().resume_writer(&dir.join("data"), algorithm)?);
        upload.ending = false;
        Ok(Box::new(upload))
    }

    pub(super) fn resume_session(
        &self,
        repo: &RepoName,
        id: &str,
    ) -> Result<Box<dyn UploadSink>, StorageError> {
        let (algorithm, (parked, cancel)) =
            self.with_session(repo, id, |session| match &mut session.state {
                State::Busy { .. } => Err(StorageError::UploadBusy { id: id.to_owned() }),
                State::Idle { writer, .. } => {
                    let parked = writer.take();
                    let cancel = Arc::new(AtomicBool::new(false));
                    session.state = State::Busy {
                        cancel: Arc::clone(&cancel),
                    };
                    Ok((parked, cancel))
                }
                State::Gone => Err(StorageError::upload_unknown(repo, id)),
            })?;
        let mut upload = FsUpload {
            storage: self.clone(),
            repo: repo.clone(),
            id: id.to_owned(),
            writer: None,
            cancel,
            ending: false,
        };
        // Dropping the writer-less upload on an error hands the session back (hashed again next time).
        let store = self.blob_store();
        upload.writer = Some(match parked {
            Some(parked) => store.unpark(*parked)?,
            None => store.resume_writer(&self.upload_dir(id).join("data"), algorithm)?,
        });
        Ok(Box::new(upload))
    }

    pub(super) fn session_offset(&self, repo: &RepoName, id: &str) -> Result<u64, StorageError> {
        let (_, known) = self.with_session(repo, id, |session| match &session.state {
            State::Busy { cancel } if cancel.load(Ordering::SeqCst) => {
                Err(StorageError::upload_unknown(repo, id))
            }
            State::Idle { writer: Some(w), .. } => Ok(Some(w.len())),
            _ => Ok(None),
        })?;
        if let Some(len) = known {
            return Ok(len);
        }
        let data = self.upload_dir(id).join("data");
        match fs_err::metadata(&data) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn cancel_session(&self, repo: &RepoName, id: &str) -> Result<(), StorageError> {
        let (_, remove_now) = self.with_session(repo, id, |session| match &session.state {
            // The request using it removes it when it ends.
            State::Busy { cancel } => {
                cancel.store(true, Ordering::SeqCst);
                Ok(false)
            }
            _ => {
                session.state = State::Gone;
                Ok(true)
            }
        })?;
        if remove_now {
            self.end_session(id);
        }
        Ok(())
    }
}

/// A session checked out by one request.
struct FsUpload {
    storage: FsStorage,
    repo: RepoName,
    id: String,
    writer: Option<BlobWriter>,
    /// Raised by a `DELETE` while this request holds the session.
    cancel: Arc<AtomicBool>,
    /// The session ends when this sink drops (it is being finished, or could not be set up).
    ending: bool,
}

impl FsUpload {
    fn writer(&mut self) -> Result<&mut BlobWriter, StorageError> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(StorageError::upload_unknown(&self.repo, &self.id));
        }
        self.writer
            .as_mut()
            .ok_or_else(|| StorageError::Io(io::Error::other(format!("upload {} is closed", self.id))))
    }
}

impl Drop for FsUpload {
    fn drop(&mut self) {
        let writer = self.writer.take();
        let keep =
            !self.ending && !self.cancel.load(Ordering::SeqCst) && self.storage.upload_dir(&self.id).is_dir();
        let mut table = self.storage.table();
        let Some(session) = table.get_mut(&self.id) else {
            return;
        };
        if keep {
            session.state = State::Idle {
                writer: writer.map(|w| Box::new(w.park())),
                since: Instant::now(),
            };
            return;
        }
        session.state = State::Gone;
        drop(table);
        drop(writer);
        self.storage.end_session(&self.id);
    }
}

impl UploadSink for FsUpload {
    fn id(&self) -> &str {
        &self.id
    }

    fn offset(&self) -> u64 {
        self.writer.as_ref().map_or(0, BlobWriter::len)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.writer()?.write_all(bytes)?;
        Ok(())
    }

    fn truncate(&mut self, offset: u64) -> Result<(), StorageError> {
        if self.cancel.load(Ordering::SeqCst) {
            // Nothing to undo: the session goes when this request ends.
            return Ok(());
        }
        self.writer()?.truncate(offset)?;
        Ok(())
    }

    fn finish(mut self: Box<Self>, expected: &Digest) -> Result<u64, StorageError> {
        self.writer()?;
        // Whatever happens now, the session ends when this sink drops.
        self.ending = true;
        let mut writer = self
            .writer
            .take()
            .ok_or_else(|| StorageError::Io(io::Error::other(format!("upload {} is closed", self.id))))?;
        if writer.algorithm() != expected.algorithm() {
            // The session hashed with another algorithm than the final digest: re-hash the data once.
            let path = writer.path().to_owned();
            drop(writer);
            writer = self
                .storage
                .blob_store()
                .resume_writer(&path, expected.algorithm())?;
        }
        let size = writer.len();
        // The slow part (the data's fsync) before GC's gate: the commit below then has little to wait for.
        writer.sync()?;
        let gate = self.storage.reference_gate();
        {
            let mut table = self.storage.table();
            if self.cancel.load(Ordering::SeqCst) {
                // Cancelled before the commit: the DELETE won; dropping the sink removes the files.
                return Err(StorageError::upload_unknown(&self.repo, &self.id));
            }
            if let Some(session) = table.get_mut(&self.id) {
                session.state = State::Gone;
            }
        }
        let digest = writer.commit(Some(expected)).map_err(StorageError::uploaded)?;
        self.storage.link_blob(&self.repo, &digest)?;
        drop(gate);
        Ok(size)
    }
}
