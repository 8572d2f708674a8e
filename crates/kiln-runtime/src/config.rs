//! The OCI runtime configuration (`config.json`) for a [`RunSpec`], as a pure function.
//!
//! What goes in mirrors what docker and BuildKit give a `RUN` step: namespaces pid, ipc, uts and
//! mount (plus network for [`Network::Private`] and [`Network::None`]), the default mounts (`/proc`, a tmpfs `/dev` with
//! `/dev/pts`, `/dev/shm` and `/dev/mqueue`, read-only `/sys` and cgroup), docker's default
//! capability set, docker's masked and read-only paths, `noNewPrivileges: false` and no rlimits
//! (hosts without `CAP_SYS_RESOURCE` cannot raise them, and the runtime keeps its own). With
//! [`Network::Host`] the host's `/etc/resolv.conf` and `/etc/hosts` are bound read-only; with
//! [`Network::Private`] the namespace and the two files the runtime made for the run
//! ([`NetworkFiles`]). No seccomp or AppArmor profile is applied.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{MountSpec, Network, RunSpec};

/// The OCI runtime-spec version written into `config.json`.
pub const OCI_VERSION: &str = "1.0.2";

/// docker's default capabilities (moby `oci/caps/defaults.go`, also BuildKit's).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability Linux knows, indexed by its number (the bit in `/proc/self/status`'s `CapBnd`).
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// docker's masked paths (hidden behind `/dev/null` or an empty read-only tmpfs).
pub const MASKED_PATHS: [&str; 10] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// docker's read-only paths.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The host files bound read-only into a container on the host network (and the destinations of
/// the generated ones on a private network).
pub const HOST_NETWORK_FILES: [&str; 2] = ["/etc/resolv.conf", "/etc/hosts"];

/// What the runtime made on the host for one [`Network::Private`] run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkFiles {
    /// The network namespace the container joins (a bind-mounted namespace file).
    pub netns: PathBuf,
    /// Bound read-only over `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// Bound read-only over `/etc/hosts`.
    pub hosts: PathBuf,
}

/// `config.json` of the OCI runtime spec (the subset kiln writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// Runtime-spec version.
    pub oci_version: String,
    /// The process to run.
    pub process: Process,
    /// The root filesystem.
    pub root: Root,
    /// Hostname (needs a UTS namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Mounts, in order.
    pub mounts: Vec<Mount>,
    /// Linux specifics.
    pub linux: Linux,
}

/// `process` of `config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    /// Always false: output is streamed through pipes.
    pub terminal: bool,
    /// The user.
    pub user: User,
    /// argv.
    pub args: Vec<String>,
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Capability sets.
    pub capabilities: Capabilities,
    /// `PR_SET_NO_NEW_PRIVS` (false, as docker: setuid binaries such as `su` keep working).
    pub no_new_privileges: bool,
}

/// `process.user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
}

/// `process.capabilities` (inheritable and ambient stay empty, as in docker since 23.0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Bounding set.
    pub bounding: Vec<String>,
    /// Effective set.
    pub effective: Vec<String>,
    /// Permitted set.
    pub permitted: Vec<String>,
}

/// `root`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    /// Absolute path of the root directory.
    pub path: std::path::PathBuf,
    /// Mounted read-only.
    pub readonly: bool,
}

/// One entry of `mounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the container.
    pub destination: String,
    /// Filesystem type (`bind` for bind mounts).
    #[serde(rename = "type")]
    pub kind: String,
    /// Host path (bind) or a label for the filesystem.
    pub source: String,
    /// Mount options.
    #[serde(default)]
    pub options: Vec<String>,
}

impl Mount {
    fn new(destination: &str, kind: &str, source: &str, options: &[&str]) -> Self {
        Mount {
            destination: destination.to_owned(),
            kind: kind.to_owned(),
            source: source.to_owned(),
            options: options.iter().map(|o| (*o).to_owned()).collect(),
        }
    }

    /// Whether this is a bind mount.
    pub fn is_bind(&self) -> bool {
        self.kind == "bind"
    }
}

/// `linux`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    /// Namespaces to create.
    pub namespaces: Vec<Namespace>,
    /// Cgroup resources (only the device rules).
    pub resources: Resources,
    /// Paths hidden from the process.
    pub masked_paths: Vec<String>,
    /// Paths remounted read-only.
    pub readonly_paths: Vec<String>,
}

/// One entry of `linux.namespaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// `pid`, `ipc`, `uts`, `mount` or `network`.
    #[serde(rename = "type")]
    pub kind: String,
    /// An existing namespace to join instead of a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

/// `linux.resources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Device cgroup rules (the runtime adds its defaults: null, zero, full, random, urandom, tty, ptmx).
    pub devices: Vec<DeviceRule>,
}

/// One device cgroup rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    /// Allow or deny.
    pub allow: bool,
    /// `r`, `w`, `m` combined.
    pub access: String,
}

/// The typed OCI configuration for `spec` (pure: reads nothing from the host). A
/// [`Network::Private`] spec gets a new network namespace with loopback only: what joins it to
/// slirp4netns is [`oci_spec_with_network`].
pub fn oci_spec(spec: &RunSpec) -> Spec {
    oci_spec_with_network(spec, None)
}

/// [`oci_spec`], with the namespace and files the runtime made for a [`Network::Private`] run
/// (ignored for the other networks).
pub fn oci_spec_with_network(spec: &RunSpec, private: Option<&NetworkFiles>) -> Spec {
    let caps: Vec<String> = if spec.insecure {
        ALL_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()
    };
    let private = private.filter(|_| spec.network == Network::Private);
    let mut namespaces: Vec<Namespace> = ["pid", "ipc", "uts", "mount"]
        .into_iter()
        .map(|kind| Namespace {
            kind: kind.to_owned(),
            path: None,
        })
        .collect();
    if spec.network != Network::Host {
        namespaces.push(Namespace {
            kind: "network".to_owned(),
            path: private.map(|p| p.netns.clone()),
        });
    }
    let (sys_mode, masked, readonly) = if spec.insecure {
        ("rw", Vec::new(), Vec::new())
    } else {
        (
            "ro",
            MASKED_PATHS.iter().map(|p| (*p).to_owned()).collect(),
            READONLY_PATHS.iter().map(|p| (*p).to_owned()).collect(),
        )
    };

    let mut mounts = vec![
        Mount::new("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        Mount::new(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        Mount::new(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        Mount::new(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        Mount::new("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
        Mount::new("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", sys_mode]),
        Mount::new(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        ),
    ];
    if spec.network == Network::Host {
        for file in HOST_NETWORK_FILES {
            mounts.push(Mount::new(file, "bind", file, &["rbind", "ro"]));
        }
    }
    if let Some(private) = private {
        for (file, source) in HOST_NETWORK_FILES
            .iter()
            .zip([&private.resolv_conf, &private.hosts])
        {
            mounts.push(Mount::new(
                file,
                "bind",
                &source.to_string_lossy(),
                &["rbind", "ro"],
            ));
        }
    }
    for mount in &spec.mounts {
        mounts.push(match mount {
            MountSpec::Bind {
                source,
                destination,
                readonly,
            } => Mount {
                destination: destination.clone(),
                kind: "bind".to_owned(),
                source: source.to_string_lossy().into_owned(),
                options: vec!["rbind".to_owned(), if *readonly { "ro" } else { "rw" }.to_owned()],
            },
            MountSpec::Tmpfs { destination, size } => {
                let mut options = vec!["nosuid".to_owned(), "nodev".to_owned()];
                options.extend(size.map(|s| format!("size={s}")));
                Mount {
                    destination: destination.clone(),
                    kind: "tmpfs".to_owned(),
                    source: "tmpfs".to_owned(),
                    options,
                }
            }
        });
    }

    Spec {
        oci_version: OCI_VERSION.to_owned(),
        process: Process {
            terminal: false,
            user: User {
                uid: spec.uid,
                gid: spec.gid,
                additional_gids: spec.additional_gids.clone(),
            },
            args: spec.argv.clone(),
            env: spec.env.clone(),
            cwd: spec.cwd.clone(),
            capabilities: Capabilities {
                bounding: caps.clone(),
                effective: caps.clone(),
                permitted: caps,
            },
            no_new_privileges: false,
        },
        root: Root {
            path: spec.rootfs.clone(),
            readonly: false,
        },
        hostname: (!spec.hostname.is_empty()).then(|| spec.hostname.clone()),
        mounts,
        linux: Linux {
            namespaces,
            resources: Resources {
                devices: vec![DeviceRule {
                    allow: spec.insecure,
                    access: "rwm".to_owned(),
                }],
            },
            masked_paths: masked,
            readonly_paths: readonly,
        },
    }
}

/// The OCI configuration for `spec` as JSON, exactly what is written to the bundle's
/// `config.json` (before [`restrict_capabilities`]).
pub fn runtime_config(spec: &RunSpec) -> serde_json::Value {
    serde_json::to_value(oci_spec(spec)).unwrap_or(serde_json::Value::Null)
}

/// Drop every capability that is not in `bounding_mask` (the host's `CapBnd`): a runtime cannot
/// give a container a capability it does not hold itself (here: `CAP_SYS_RESOURCE` is missing, so
/// `RUN --security=insecure` gets all the others).
pub fn restrict_capabilities(spec: &mut Spec, bounding_mask: u64) {
    let held = |name: &String| {
        ALL_CAPABILITIES
            .iter()
            .position(|c| c == name)
            .is_none_or(|bit| bounding_mask & (1u64 << bit) != 0)
    };
    let caps = &mut spec.process.capabilities;
    for set in [&mut caps.bounding, &mut caps.effective, &mut caps.permitted] {
        set.retain(held);
    }
}

/// The calling process's bounding capability set, from `/proc/self/status` (all bits when it
/// cannot be read).
pub fn host_bounding_capabilities() -> u64 {
    fs_err::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let hex = line.strip_prefix("CapBnd:")?.trim();
                u64::from_str_radix(hex, 16).ok()
            })
        })
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> RunSpec {
        let mut s = RunSpec::new(
            "step-1",
            "/var/lib/kiln/rootfs",
            vec!["/bin/sh".into(), "-c".into(), "true".into()],
        );
        s.env = vec!["PATH=/usr/bin:/bin".into(), "A=b".into()];
        s
    }

    fn destinations(v: &serde_json::Value) -> Vec<&str> {
        v["mounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["destination"].as_str())
            .collect()
    }

    #[test]
    fn process_fields_are_docker_defaults() {
        let v = runtime_config(&spec());
        assert_eq!(v["ociVersion"], "1.0.2");
        assert_eq!(
            v["process"],
            json!({
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": ["/bin/sh", "-c", "true"],
                "env": ["PATH=/usr/bin:/bin", "A=b"],
                "cwd": "/",
                "capabilities": {
                    "bounding": DEFAULT_CAPABILITIES,
                    "effective": DEFAULT_CAPABILITIES,
                    "permitted": DEFAULT_CAPABILITIES,
                },
                "noNewPrivileges": false,
            })
        );
        assert_eq!(
            v["root"],
            json!({"path": "/var/lib/kiln/rootfs", "readonly": false})
        );
        assert_eq!(v["hostname"], "kiln");
        assert!(
            v["process"].get("rlimits").is_none(),
            "no rlimits: the host cannot raise them"
        );
    }

    #[test]
    fn user_with_additional_groups() {
        let mut s = spec();
        (s.uid, s.gid, s.additional_gids) = (65534, 65534, vec![1, 2]);
        let v = runtime_config(&s);
        assert_eq!(
            v["process"]["user"],
            json!({"uid": 65534, "gid": 65534, "additionalGids": [1, 2]})
        );
    }

    #[test]
    fn host_network_shares_the_namespace_and_binds_resolv_conf() {
        let mut s = spec();
        s.network = Network::Host;
        let v = runtime_config(&s);
        assert_eq!(
            v["linux"]["namespaces"],
            json!([{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}])
        );
        assert_eq!(
            destinations(&v),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup",
                "/etc/resolv.conf",
                "/etc/hosts"
            ]
        );
        assert_eq!(
            v["mounts"][7],
            json!({"destination": "/etc/resolv.conf", "type": "bind", "source": "/etc/resolv.conf", "options": ["rbind", "ro"]})
        );
    }

    #[test]
    fn no_network_gets_its_own_namespace_and_no_host_files() {
        let mut s = spec();
        s.network = Network::None;
        let v = runtime_config(&s);
        assert_eq!(v["linux"]["namespaces"][4], json!({"type": "network"}));
        assert!(!destinations(&v).contains(&"/etc/resolv.conf"));
    }

    #[test]
    fn private_network_joins_the_runtime_s_namespace_and_binds_its_files() {
        let files = NetworkFiles {
            netns: "/b/netns".into(),
            resolv_conf: "/b/resolv.conf".into(),
            hosts: "/b/hosts".into(),
        };
        let v = serde_json::to_value(oci_spec_with_network(&spec(), Some(&files))).unwrap();
        assert_eq!(
            v["linux"]["namespaces"][4],
            json!({"type": "network", "path": "/b/netns"})
        );
        assert_eq!(
            v["mounts"].as_array().map(|m| m[7..].to_vec()),
            Some(vec![
                json!({"destination": "/etc/resolv.conf", "type": "bind", "source": "/b/resolv.conf", "options": ["rbind", "ro"]}),
                json!({"destination": "/etc/hosts", "type": "bind", "source": "/b/hosts", "options": ["rbind", "ro"]}),
            ])
        );
        // Without the runtime's namespace, a fresh one with loopback only: never the host's.
        let v = runtime_config(&spec());
        assert_eq!(v["linux"]["namespaces"][4], json!({"type": "network"}));
        assert_eq!(destinations(&v).len(), 7);
        // Other networks ignore the files.
        let mut none = spec();
        none.network = Network::None;
        let v = serde_json::to_value(oci_spec_with_network(&none, Some(&files))).unwrap();
        assert_eq!(v["linux"]["namespaces"][4], json!({"type": "network"}));
        assert!(!destinations(&v).contains(&"/etc/resolv.conf"));
    }

    #[test]
    fn default_mounts_are_docker_s() {
        let v = runtime_config(&spec());
        assert_eq!(
            v["mounts"][0],
            json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]})
        );
        assert_eq!(
            v["mounts"][1]["options"],
            json!(["nosuid", "strictatime", "mode=755", "size=65536k"])
        );
        assert_eq!(
            v["mounts"][5]["options"],
            json!(["nosuid", "noexec", "nodev", "ro"])
        );
        assert_eq!(v["mounts"][6]["type"], "cgroup");
        assert_eq!(v["linux"]["maskedPaths"], json!(MASKED_PATHS));
        assert_eq!(v["linux"]["readonlyPaths"], json!(READONLY_PATHS));
        assert_eq!(
            v["linux"]["resources"]["devices"],
            json!([{"allow": false, "access": "rwm"}])
        );
    }

    #[test]
    fn user_mounts_follow_the_defaults_in_order() {
        let mut s = spec();
        s.network = Network::None;
        s.mounts = vec![
            MountSpec::Bind {
                source: "/src".into(),
                destination: "/in".into(),
                readonly: true,
            },
            MountSpec::Bind {
                source: "/cache".into(),
                destination: "/root/.cache".into(),
                readonly: false,
            },
            MountSpec::Tmpfs {
                destination: "/scratch".into(),
                size: Some(1 << 20),
            },
            MountSpec::Tmpfs {
                destination: "/t2".into(),
                size: None,
            },
        ];
        let v = runtime_config(&s);
        assert_eq!(
            v["mounts"].as_array().map(|m| m[7..].to_vec()),
            Some(vec![
                json!({"destination": "/in", "type": "bind", "source": "/src", "options": ["rbind", "ro"]}),
                json!({"destination": "/root/.cache", "type": "bind", "source": "/cache", "options": ["rbind", "rw"]}),
                json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "size=1048576"]}),
                json!({"destination": "/t2", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}),
            ])
        );
    }

    #[test]
    fn insecure_gets_all_capabilities_and_nothing_masked() {
        let mut s = spec();
        s.insecure = true;
        let v = runtime_config(&s);
        assert_eq!(
            v["process"]["capabilities"]["bounding"],
            json!(ALL_CAPABILITIES.to_vec())
        );
        assert_eq!(v["linux"]["maskedPaths"], json!([]));
        assert_eq!(v["linux"]["readonlyPaths"], json!([]));
        assert_eq!(
            v["mounts"][5]["options"],
            json!(["nosuid", "noexec", "nodev", "rw"])
        );
        assert_eq!(
            v["linux"]["resources"]["devices"],
            json!([{"allow": true, "access": "rwm"}])
        );
    }

    #[test]
    fn empty_hostname_is_left_out() {
        let mut s = spec();
        s.hostname.clear();
        assert!(runtime_config(&s).get("hostname").is_none());
    }

    #[test]
    fn capabilities_the_host_lacks_are_dropped() {
        let mut s = spec();
        s.insecure = true;
        let mut oci = oci_spec(&s);
        // This host's CapBnd: everything but CAP_SYS_RESOURCE (bit 24).
        restrict_capabilities(&mut oci, 0x0000_01ff_feff_ffff);
        let caps = &oci.process.capabilities;
        assert_eq!(caps.bounding.len(), 40);
        assert!(!caps.bounding.iter().any(|c| c == "CAP_SYS_RESOURCE"));
        assert_eq!(caps.bounding, caps.effective);
        assert_eq!(caps.bounding, caps.permitted);

        let mut default = oci_spec(&spec());
        restrict_capabilities(&mut default, 0x0000_01ff_feff_ffff);
        assert_eq!(default.process.capabilities.bounding, DEFAULT_CAPABILITIES);
    }

    #[test]
    fn capability_table_matches_the_kernel_numbers() {
        assert_eq!(ALL_CAPABILITIES[21], "CAP_SYS_ADMIN");
        assert_eq!(ALL_CAPABILITIES[24], "CAP_SYS_RESOURCE");
        assert_eq!(ALL_CAPABILITIES[40], "CAP_CHECKPOINT_RESTORE");
        assert!(DEFAULT_CAPABILITIES.iter().all(|c| ALL_CAPABILITIES.contains(c)));
    }

    #[test]
    fn round_trips_through_serde() {
        let oci = oci_spec(&spec());
        let back: Spec = serde_json::from_value(runtime_config(&spec())).unwrap();
        assert_eq!(back, oci);
    }
}
