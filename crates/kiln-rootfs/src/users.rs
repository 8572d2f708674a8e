//! User and group names resolved from an image's `/etc/passwd` and `/etc/group`, read through a
//! [`Root`] (so a symlinked `/etc/passwd` resolves inside the image, never to the host's).
//!
//! Two rules, because BuildKit has two:
//! - [`lookup_chown`] (`COPY --chown`, `ADD --chown`): BuildKit's file operation. A numeric user
//!   gives that uid **and the same number as gid**; a user name gives the uid and primary gid of
//!   its passwd line. A group, when given, overrides the gid (numeric, or a name from
//!   `/etc/group`). No supplementary groups. Files are read only for names.
//! - [`lookup_user`] (the `USER` of a RUN step; [`lookup`] is this rule): runc's `GetExecUser`, as
//!   BuildKit calls it. `uid:gid` both numeric is taken as is, with no file read. Otherwise the
//!   user is looked up in passwd by name, or by uid when numeric: a found line gives uid and
//!   primary gid; a numeric user with no line (or no passwd file) gives that uid and **gid 0**; a
//!   name with no line is an error. A group, when given, is looked up by name or gid in
//!   `/etc/group` (a number not found is taken as is, a name not found is an error) and then no
//!   supplementary groups are set; without a group, the supplementary groups are those of
//!   `/etc/group` whose member list names the user (in file order).
//!
//! Lines that cannot be parsed (too few fields, non-numeric ids) are skipped.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::error::RootfsError;
use crate::root::Root;

const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";
/// Bound on what is read of a passwd or group file (a hostile image could make it huge).
const MAX_FILE: u64 = 64 << 20;

/// The ids a user specification resolves to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ids {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids (only [`lookup_user`] sets them).
    pub additional_gids: Vec<u32>,
}

/// Parses a decimal id as Go's `strconv.ParseUint(s, 10, 32)` would (digits only).
fn numeric(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The lines of `file` in the root split on `:`, or `None` when it does not exist.
fn read_db(root: &Root, file: &str) -> Result<Option<Vec<Vec<String>>>, RootfsError> {
    let handle = match root.open_file(Path::new(file)) {
        Ok(handle) => handle,
        Err(RootfsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let mut lines = Vec::new();
    for line in BufReader::new(handle.take(MAX_FILE)).split(b'\n') {
        let line = line.map_err(|source| RootfsError::Io {
            path: file.into(),
            source,
        })?;
        let line = String::from_utf8_lossy(&line);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        lines.push(line.split(':').map(str::to_owned).collect());
    }
    Ok(Some(lines))
}

struct PasswdLine {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupLine {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn passwd(root: &Root) -> Result<Option<Vec<PasswdLine>>, RootfsError> {
    Ok(read_db(root, PASSWD)?.map(|lines| {
        lines
            .into_iter()
            .filter_map(|f| {
                Some(PasswdLine {
                    uid: numeric(f.get(2)?)?,
                    gid: numeric(f.get(3)?)?,
                    name: f.into_iter().next()?,
                })
            })
            .collect()
    }))
}

fn groups(root: &Root) -> Result<Option<Vec<GroupLine>>, RootfsError> {
    Ok(read_db(root, GROUP)?.map(|lines| {
        lines
            .into_iter()
            .filter_map(|f| {
                Some(GroupLine {
                    gid: numeric(f.get(2)?)?,
                    members: f
                        .get(3)
                        .map(|m| {
                            m.split(',')
                                .filter(|s| !s.is_empty())
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default(),
                    name: f.into_iter().next()?,
                })
            })
            .collect()
    }))
}

fn unknown_user(user: &str) -> RootfsError {
    RootfsError::UnknownUser {
        user: user.to_owned(),
        file: PASSWD.into(),
    }
}

fn unknown_group(group: &str) -> RootfsError {
    RootfsError::UnknownGroup {
        group: group.to_owned(),
        file: GROUP.into(),
    }
}

/// A group by name, or by gid when numeric (a number not in the file is taken as is).
fn find_group(root: &Root, group: &str) -> Result<u32, RootfsError> {
    let id = numeric(group);
    let found = groups(root)?.and_then(|lines| {
        lines
            .into_iter()
            .find(|g| match id {
                Some(id) => g.gid == id,
                None => g.name == group,
            })
            .map(|g| g.gid)
    });
    found.or(id).ok_or_else(|| unknown_group(group))
}

/// The ids of `COPY --chown=user[:group]` (BuildKit's rule; see the module doc).
pub fn lookup_chown(root: &Root, user: &str, group: Option<&str>) -> Result<Ids, RootfsError> {
    let (uid, mut gid) = match numeric(user) {
        Some(id) => (id, id),
        None => {
            let lines = passwd(root)?.ok_or_else(|| unknown_user(user))?;
            let line = lines
                .iter()
                .find(|l| l.name == user)
                .ok_or_else(|| unknown_user(user))?;
            (line.uid, line.gid)
        }
    };
    if let Some(group) = group {
        gid = match numeric(group) {
            Some(id) => id,
            None => {
                let lines = groups(root)?.ok_or_else(|| unknown_group(group))?;
                lines
                    .iter()
                    .find(|g| g.name == group)
                    .map(|g| g.gid)
                    .ok_or_else(|| unknown_group(group))?
            }
        };
    }
    Ok(Ids {
        uid,
        gid,
        additional_gids: Vec::new(),
    })
}

/// The ids of `USER user[:group]` for a RUN step (runc's rule; see the module doc). An empty
/// user means root.
pub fn lookup_user(root: &Root, user: &str, group: Option<&str>) -> Result<Ids, RootfsError> {
    let user = if user.is_empty() { "0" } else { user };
    let uid_arg = numeric(user);
    if let (Some(uid), Some(Some(gid))) = (uid_arg, group.map(numeric)) {
        return Ok(Ids {
            uid,
            gid,
            additional_gids: Vec::new(),
        });
    }
    let found = passwd(root)?.and_then(|lines| {
        lines.into_iter().find(|l| match uid_arg {
            Some(id) => l.uid == id,
            None => l.name == user,
        })
    });
    let (mut ids, name) = match (found, uid_arg) {
        (Some(line), _) => (
            Ids {
                uid: line.uid,
                gid: line.gid,
                additional_gids: Vec::new(),
            },
            Some(line.name),
        ),
        (None, Some(uid)) => (
            Ids {
                uid,
                gid: 0,
                additional_gids: Vec::new(),
            },
            None,
        ),
        (None, None) => return Err(unknown_user(user)),
    };
    match (group, name) {
        (Some(group), _) => ids.gid = find_group(root, group)?,
        (None, Some(name)) => {
            ids.additional_gids = groups(root)?
                .unwrap_or_default()
                .into_iter()
                .filter(|g| g.members.contains(&name))
                .map(|g| g.gid)
                .collect();
        }
        (None, None) => {}
    }
    Ok(ids)
}

/// The ids of `USER`: [`lookup_user`].
pub fn lookup(root: &Root, user: &str, group: Option<&str>) -> Result<Ids, RootfsError> {
    lookup_user(root, user, group)
}
