//! `kiln serve --print-client-config CLIENT`: the mirror configuration a client needs to pull docker.io and
//! every mirrored registry host through this registry (docs/speculative-images.md). Non-docker.io hosts are
//! reached under `/v2/<host>/…`, the names the buildset registry keeps them under.

use std::fmt::Write as _;
use std::path::Path;

use crate::cli::ClientKind;

/// How clients reach the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `HOST:PORT`.
    pub address: String,
    /// `None`: plain HTTP. `Some(None)`: HTTPS with a certificate clients trust already. `Some(Some(ca))`:
    /// HTTPS whose CA clients must be given.
    pub ca: Option<Option<std::path::PathBuf>>,
    /// Mirrored registry hosts besides docker.io.
    pub mirrors: Vec<String>,
}

impl Target {
    fn scheme(&self) -> &'static str {
        if self.ca.is_some() { "https" } else { "http" }
    }

    fn plain(&self) -> bool {
        self.ca.is_none()
    }

    fn ca(&self) -> Option<&Path> {
        self.ca.as_ref().and_then(|c| c.as_deref())
    }
}

/// The configuration text for `client`, and notes for stderr (what the text cannot say).
pub fn render(client: ClientKind, t: &Target) -> (String, Vec<String>) {
    let addr = &t.address;
    let mut notes = Vec::new();
    let mut out = String::new();
    let ca_note = |dir: &str| {
        t.ca().map(|ca| {
            format!(
                "trust the registry's CA: copy {} to {dir}/{addr}/ca.crt",
                ca.display()
            )
        })
    };
    match client {
        ClientKind::Docker => {
            let mut doc = serde_json::json!({
                "registry-mirrors": [format!("{}://{addr}", t.scheme())],
            });
            if t.plain() {
                doc["insecure-registries"] = serde_json::json!([addr]);
            }
            out = serde_json::to_string_pretty(&doc).unwrap_or_default();
            out.push('\n');
            notes.push(
                "merge into /etc/docker/daemon.json and restart dockerd; the Docker daemon mirrors docker.io only"
                    .to_owned(),
            );
            if !t.mirrors.is_empty() {
                notes.push(format!(
                    "for {} pull {addr}/<host>/<name> directly",
                    t.mirrors.join(", ")
                ));
            }
            notes.extend(ca_note("/etc/docker/certs.d"));
        }
        ClientKind::Podman => {
            let _ = writeln!(
                out,
                "# registries.conf (podman, buildah, skopeo): /etc/containers/registries.conf.d/50-kiln-buildset.conf\n\
                 # or $CONTAINERS_REGISTRIES_CONF\n"
            );
            let insecure = if t.plain() { "insecure = true\n" } else { "" };
            let _ = writeln!(out, "[[registry]]\nlocation = \"{addr}\"\n{insecure}");
            for (host, location) in mirror_locations(t) {
                let _ = writeln!(
                    out,
                    "[[registry]]\nprefix = \"{host}\"\nlocation = \"{host}\"\n\n\
                     [[registry.mirror]]\nlocation = \"{location}\"\n{insecure}"
                );
            }
            notes.extend(ca_note("/etc/containers/certs.d"));
        }
        ClientKind::Containerd => {
            for (host, _) in mirror_locations(t) {
                let server = kiln_client::reference::endpoint_of(&host);
                let _ = writeln!(
                    out,
                    "# /etc/containerd/certs.d/{host}/hosts.toml\nserver = \"https://{server}\"\n"
                );
                if host == "docker.io" {
                    let _ = writeln!(out, "[host.\"{}://{addr}\"]", t.scheme());
                } else {
                    let _ = writeln!(out, "[host.\"{}://{addr}/v2/{host}\"]", t.scheme());
                    let _ = writeln!(out, "  override_path = true");
                }
                let _ = writeln!(out, "  capabilities = [\"pull\", \"resolve\"]");
                if let Some(ca) = t.ca() {
                    let _ = writeln!(out, "  ca = \"{}\"", ca.display());
                }
                out.push('\n');
            }
            notes.push(
                "containerd reads these with `config_path = \"/etc/containerd/certs.d\"` in its CRI registry \
                 section (ctr: --hosts-dir /etc/containerd/certs.d)"
                    .to_owned(),
            );
        }
        ClientKind::Buildkit => {
            let _ = writeln!(out, "# buildkitd.toml\n");
            for (host, location) in mirror_locations(t) {
                let _ = writeln!(out, "[registry.\"{host}\"]\n  mirrors = [\"{location}\"]\n");
            }
            let _ = writeln!(out, "[registry.\"{addr}\"]");
            if t.plain() {
                let _ = writeln!(out, "  http = true");
            }
            if let Some(ca) = t.ca() {
                let _ = writeln!(out, "  ca = [\"{}\"]", ca.display());
            }
        }
    }
    (out, notes)
}

/// docker.io and each mirrored host, with the mirror location clients use for it.
fn mirror_locations(t: &Target) -> Vec<(String, String)> {
    std::iter::once(("docker.io".to_owned(), t.address.clone()))
        .chain(
            t.mirrors
                .iter()
                .map(|h| (h.clone(), format!("{}/{h}", t.address))),
        )
        .collect()
}

/// The address clients use: `advertise`, else the listen address (this host's name for 0.0.0.0/::).
pub fn address(listen: std::net::SocketAddr, advertise: Option<&str>) -> String {
    if let Some(a) = advertise {
        return a.to_owned();
    }
    if listen.ip().is_unspecified() {
        let host = fs_err::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = host.trim();
        if !host.is_empty() {
            return format!("{host}:{}", listen.port());
        }
    }
    listen.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(ca: Option<Option<&str>>) -> Target {
        Target {
            address: "10.0.0.5:5000".to_owned(),
            ca: ca.map(|c| c.map(Into::into)),
            mirrors: vec!["quay.io".to_owned()],
        }
    }

    #[test]
    fn docker_gets_a_mirror_and_an_insecure_entry_over_http() {
        let (text, notes) = render(ClientKind::Docker, &target(None));
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["registry-mirrors"][0], "http://10.0.0.5:5000");
        assert_eq!(doc["insecure-registries"][0], "10.0.0.5:5000");
        assert!(notes.iter().any(|n| n.contains("quay.io")), "{notes:?}");
        let (text, notes) = render(ClientKind::Docker, &target(Some(Some("/r/tls/ca.crt"))));
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["registry-mirrors"][0], "https://10.0.0.5:5000");
        assert!(doc.get("insecure-registries").is_none());
        assert!(
            notes
                .iter()
                .any(|n| n.contains("/etc/docker/certs.d/10.0.0.5:5000/ca.crt")),
            "{notes:?}"
        );
    }

    #[test]
    fn podman_mirrors_each_host_under_its_prefix() {
        let (text, _) = render(ClientKind::Podman, &target(None));
        let doc: toml::Value = toml::from_str(&text).unwrap();
        let regs = doc["registry"].as_array().unwrap();
        assert_eq!(regs.len(), 3);
        assert_eq!(regs[2]["prefix"].as_str(), Some("quay.io"));
        assert_eq!(
            regs[2]["mirror"][0]["location"].as_str(),
            Some("10.0.0.5:5000/quay.io")
        );
        assert_eq!(regs[2]["mirror"][0]["insecure"].as_bool(), Some(true));
    }

    #[test]
    fn containerd_and_buildkit() {
        let (text, _) = render(ClientKind::Containerd, &target(Some(Some("/ca.crt"))));
        assert!(
            text.contains("# /etc/containerd/certs.d/quay.io/hosts.toml"),
            "{text}"
        );
        assert!(
            text.contains("[host.\"https://10.0.0.5:5000/v2/quay.io\"]"),
            "{text}"
        );
        assert!(
            text.contains("server = \"https://registry-1.docker.io\""),
            "{text}"
        );
        for file in text.split("# /etc/").skip(1) {
            toml::from_str::<toml::Value>(file.split_once('\n').unwrap().1).unwrap();
        }
        let (text, _) = render(ClientKind::Buildkit, &target(None));
        let doc: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(
            doc["registry"]["quay.io"]["mirrors"][0].as_str(),
            Some("10.0.0.5:5000/quay.io")
        );
        assert_eq!(doc["registry"]["10.0.0.5:5000"]["http"].as_bool(), Some(true));
    }
}
