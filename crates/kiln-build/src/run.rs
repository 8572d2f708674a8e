//! RUN: the runtime process spec of a step — argv, environment, user, working directory, network and the
//! `--mount`s, each mount's source prepared on the host first.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use kiln_dockerfile::{HeredocFile, Mount, MountType, StepArgs};
use kiln_rootfs::{PinnedMount, Root};
use kiln_runtime::{MountSpec, Network, RunSpec};

/// What a RUN step needs from the build around it to set up its mounts.
pub trait MountSources {
    /// The host folder to bind for `--mount=type=bind` from the stage/image `from`,
    /// or the build context when `from` is `None`.
    fn bind_source(&self, from: Option<&str>) -> Result<PathBuf, String>;
    /// The host folder of the cache mount `mount` (with this id), held as its `sharing` mode says for
    /// the duration of the step, and created with its `uid`, `gid` and `mode` when new.
    fn cache_dir(&self, mount: &Mount, id: &str) -> Result<PathBuf, String>;
    /// The host file of a secret.
    fn secret(&self, id: &str) -> Option<PathBuf>;
    /// A socket forwarding to the ssh agent `id` for the duration of the step, owned by `uid:gid` with
    /// `mode`; `None` when the build was given no such agent.
    fn ssh_agent(&self, id: &str, uid: u32, gid: u32, mode: u32) -> Result<Option<PathBuf>, String>;
    /// A scratch folder for files kiln makes for this step (heredoc scripts).
    fn scratch(&self) -> &Path;
    /// A writable throwaway view of the folder `source` for the duration of the step: what the RUN
    /// writes there is dropped afterwards and never reaches `source`.
    fn writable_view(&self, source: &Path) -> Result<PathBuf, String>;
}

/// What a RUN's `--mount`s add to its container.
#[derive(Debug, Default)]
pub struct Mounts {
    /// The runtime mounts.
    pub specs: Vec<MountSpec>,
    /// `KEY=value` environment entries (secrets with `env=`).
    pub env: Vec<String>,
    /// Files made for this step only (secret and writable-bind copies), removed when dropped.
    pub step_files: Vec<tempfile::TempPath>,
    /// The bind sources pinned for this step, unmounted when dropped.
    pub pins: Vec<PinnedMount>,
}

/// Turns `--mount`s into runtime mounts. `from_names` gives, per mount with a `from=`, the name of the
/// stage/image to take it from (the evaluator's `mount_sources`, in order).
pub fn mounts(mounts: &[Mount], from_names: &[String], sources: &dyn MountSources) -> Result<Mounts, String> {
    let mut out = Vec::new();
    let mut env = Vec::new();
    let mut step_files = Vec::new();
    let mut pins = Vec::new();
    let mut ssh_mounts = 0usize;
    let mut from_names = from_names.iter();
    for mount in mounts {
        let from = if mount.from.is_some() {
            from_names.next().map(String::as_str)
        } else {
            None
        };
        let target = mount.target.clone().unwrap_or_default();
        match mount.kind {
            MountType::Bind => {
                let base = sources.bind_source(from)?;
                let sub = crate::context::clean(mount.source.as_deref().unwrap_or(""));
                // Resolved inside the source root and pinned on a mount point kiln makes: the runtime is
                // never given a path into the stage, image or context, whose symlinks the host follows.
                let pin = pin(&base, &sub, mount.from.as_deref(), sources.scratch())?;
                let mut source = pin.path().to_owned();
                if !mount.readonly {
                    // As in BuildKit, a writable bind gets a throwaway copy: binding the source itself
                    // would let the build write into the user's tree or another stage.
                    source = if pin.is_dir() {
                        sources.writable_view(&source)?
                    } else {
                        let copy = step_file(sources.scratch(), "rw-bind-")?;
                        fs_err::copy(&source, &copy).map_err(|e| e.to_string())?;
                        let path = copy.to_path_buf();
                        step_files.push(copy);
                        path
                    };
                }
                pins.push(pin);
                out.push(MountSpec::Bind {
                    source,
                    destination: target,
                    readonly: mount.readonly,
                });
            }
            MountType::Cache => {
                if mount.from.is_some() || mount.source.is_some() {
                    // Never silently an empty cache where the Dockerfile asked for a seeded one.
                    return Err(
                        "`--mount=type=cache` with `from=` or `source=` (a cache seeded from a stage \
                                or image) is not supported: copy the files into the cache in the RUN step"
                            .to_owned(),
                    );
                }
                let id = mount.id.clone().unwrap_or_else(|| target.clone());
                let dir = sources.cache_dir(mount, &id)?;
                out.push(MountSpec::Bind {
                    source: dir,
                    destination: target,
                    readonly: mount.readonly,
                });
            }
            MountType::Tmpfs => out.push(MountSpec::Tmpfs {
                destination: target,
                size: mount.size,
            }),
            MountType::Secret => {
                let id = mount
                    .id
                    .clone()
                    .or_else(|| mount.env.clone())
                    .unwrap_or_else(|| target.rsplit('/').next().unwrap_or_default().to_owned());
                let Some(file) = sources.secret(&id) else {
                    if mount.required {
                        return Err(format!(
                            "secret `{id}` is required but was not given (use --secret id={id},src=FILE)"
                        ));
                    }
                    continue;
                };
                if let Some(name) = &mount.env {
                    let value = fs_err::read_to_string(&file)
                        .map_err(|e| format!("secret `{id}` cannot be read as text for env={name}: {e}"))?;
                    env.push(format!("{name}={value}"));
                    // With env= and no target, BuildKit mounts nothing.
                    if mount.target.is_none() {
                        continue;
                    }
                }
                let destination = if target.is_empty() {
                    format!("/run/secrets/{id}")
                } else {
                    target
                };
                // A private copy with the mount's owner and mode (BuildKit: 0:0, 0400), never the user's
                // file itself, whose mode and owner the RUN's user may not match.
                let copy = secret_copy(&file, sources.scratch(), mount)?;
                out.push(MountSpec::Bind {
                    source: copy.to_path_buf(),
                    destination,
                    readonly: true,
                });
                step_files.push(copy);
            }
            MountType::Ssh => {
                let id = mount.id.clone().unwrap_or_else(|| "default".to_owned());
                let uid = mount.uid.unwrap_or(0);
                let gid = mount.gid.unwrap_or(0);
                let Some(socket) = sources.ssh_agent(&id, uid, gid, mount.mode.unwrap_or(0o600))? else {
                    if mount.required {
                        return Err(format!(
                            "ssh agent `{id}` is required but was not given (use --ssh {id}[=SOCKET])"
                        ));
                    }
                    continue;
                };
                let destination = if target.is_empty() {
                    format!("/run/buildkit/ssh_agent.{ssh_mounts}")
                } else {
                    target
                };
                // As BuildKit: the first ssh mount is the RUN's SSH_AUTH_SOCK.
                if ssh_mounts == 0 {
                    env.push(format!("SSH_AUTH_SOCK={destination}"));
                }
                ssh_mounts += 1;
                out.push(MountSpec::Bind {
                    source: socket,
                    destination,
                    readonly: false,
                });
            }
        }
    }
    Ok(Mounts {
        specs: out,
        env,
        step_files,
        pins,
    })
}

/// Pins `sub` of the bind source `base` (of the stage or image `from`, else the context) on a new mount
/// point in `scratch`, for the step only.
fn pin(base: &Path, sub: &str, from: Option<&str>, scratch: &Path) -> Result<PinnedMount, String> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let root = Root::open(base).map_err(|e| e.to_string())?;
    let mount_point = scratch.join(format!("bind-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    PinnedMount::pin(&root, Path::new(sub), &mount_point).map_err(|e| {
        let what = match from {
            Some(name) => format!("`{name}`"),
            None => "the build context".to_owned(),
        };
        format!("bind mount source `/{sub}` in {what}: {e}")
    })
}

/// A new empty file in `scratch`, removed when the returned path is dropped.
fn step_file(scratch: &Path, prefix: &str) -> Result<tempfile::TempPath, String> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in(scratch)
        .map(tempfile::NamedTempFile::into_temp_path)
        .map_err(|e| format!("cannot create a file in {}: {e}", scratch.display()))
}

/// Copies the secret `file` into `scratch` as the mount asks (owner `uid:gid`, default 0:0; `mode`,
/// default 0400). The file is created with the final mode before any byte is written.
fn secret_copy(file: &Path, scratch: &Path, mount: &Mount) -> Result<tempfile::TempPath, String> {
    // tempfile creates the file 0600, so the secret is never readable by others on the way.
    let copy = step_file(scratch, "secret-")?;
    let mode = mount.mode.unwrap_or(0o400) & 0o7777;
    let mut from = fs_err::File::open(file).map_err(|e| e.to_string())?;
    let mut to = fs_err::OpenOptions::new()
        .write(true)
        .open(&copy)
        .map_err(|e| e.to_string())?;
    std::io::copy(&mut from, &mut to).map_err(|e| format!("{}: {e}", copy.display()))?;
    set_owner_mode(&copy, mount.uid.unwrap_or(0), mount.gid.unwrap_or(0), mode)?;
    Ok(copy)
}

/// Gives what a mount makes on the host (a secret copy, a cache folder, an agent socket) the mount's
/// owner and permission bits, owner first: a chown clears setuid/setgid bits.
pub(crate) fn set_owner_mode(path: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| format!("{}: {e}", path.display()))?;
    fs_err::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777))
        .map_err(|e| e.to_string())
}

/// Writes a heredoc script to the scratch folder and mounts it where the evaluator's argv expects it.
pub fn script_mount(path: &str, heredoc: &HeredocFile, scratch: &Path) -> Result<MountSpec, String> {
    use std::os::unix::fs::PermissionsExt;
    let file = scratch.join(format!("script-{}", heredoc.name.replace('/', "_")));
    fs_err::write(&file, heredoc.content.as_bytes()).map_err(|e| e.to_string())?;
    fs_err::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    Ok(MountSpec::Bind {
        source: file,
        destination: path.to_owned(),
        readonly: true,
    })
}

/// The network of a RUN from its `--network` flag: `default` (or none given) is the build's default
/// (`kiln build --network`, a private network unless asked otherwise). `host` is only reached once
/// [`refusal`] has let it through.
pub fn network(flag: Option<&str>, default: Network) -> Result<Network, String> {
    match flag {
        None | Some("default") => Ok(default),
        Some("host") => Ok(Network::Host),
        Some("none") => Ok(Network::None),
        Some(other) => Err(format!("unknown --network `{other}` (use default, host or none)")),
    }
}

/// Why a step asks for more than the build allows (BuildKit's entitlements), or `None`: `RUN
/// --network=host` reaches the host's network, its loopback services included, and needs `--allow
/// network.host`; `RUN --security=insecure` gets every capability and needs `--allow
/// security.insecure`. Checked for every step before any runs or comes from the cache.
pub fn refusal(args: &StepArgs, allow_host_network: bool, allow_insecure: bool) -> Option<&'static str> {
    let StepArgs::Run {
        network, security, ..
    } = args
    else {
        return None;
    };
    if network.as_deref() == Some("host") && !allow_host_network {
        return Some(
            "RUN --network=host would reach the host's network, its loopback services included; \
             allow it with --allow network.host",
        );
    }
    if security.as_deref() == Some("insecure") && !allow_insecure {
        return Some(
            "RUN --security=insecure runs with every capability; allow it with --allow security.insecure",
        );
    }
    None
}

/// Puts the parts together.
#[allow(clippy::too_many_arguments)]
pub fn spec(
    id: String,
    rootfs: PathBuf,
    argv: Vec<String>,
    env: Vec<String>,
    cwd: String,
    ids: (u32, u32, Vec<u32>),
    network: Network,
    mounts: Vec<MountSpec>,
    insecure: bool,
) -> RunSpec {
    RunSpec {
        id,
        rootfs,
        argv,
        env,
        cwd,
        uid: ids.0,
        gid: ids.1,
        additional_gids: ids.2,
        network,
        mounts,
        hostname: "kiln".to_owned(),
        insecure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(network: Option<&str>, security: Option<&str>) -> StepArgs {
        StepArgs::Run {
            argv: vec!["true".to_owned()],
            env: Vec::new(),
            mounts: Vec::new(),
            mount_sources: Vec::new(),
            network: network.map(str::to_owned),
            security: security.map(str::to_owned),
            heredocs: Vec::new(),
            script_path: None,
        }
    }

    #[test]
    fn the_default_network_is_the_build_s_and_host_is_an_entitlement() {
        assert_eq!(network(None, Network::Private), Ok(Network::Private));
        assert_eq!(network(Some("default"), Network::None), Ok(Network::None));
        assert_eq!(network(Some("none"), Network::Private), Ok(Network::None));
        assert!(network(Some("bridge"), Network::Private).is_err());

        let host = run(Some("host"), None);
        assert!(refusal(&host, false, true).is_some_and(|m| m.contains("--allow network.host")));
        assert_eq!(refusal(&host, true, false), None);
        let insecure = run(None, Some("insecure"));
        assert!(refusal(&insecure, true, false).is_some_and(|m| m.contains("--allow security.insecure")));
        assert_eq!(refusal(&insecure, false, true), None);
        assert_eq!(refusal(&run(Some("none"), Some("sandbox")), false, false), None);
    }
}
