//! Image references as `docker pull` reads them: `[registry/]repository[:tag][@digest]`.

use std::fmt;
use std::str::FromStr;

use kiln_oci::Digest;

use crate::error::ClientError;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's distribution API.
pub const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";

/// A parsed image reference. `registry` is `docker.io` when the name has no registry part; a Docker Hub
/// name without `/` gets the `library/` prefix; a reference with neither tag nor digest means `:latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The registry host (with port), e.g. `localhost:5000`, `docker.io`.
    pub registry: String,
    /// The repository path, e.g. `library/busybox`.
    pub repository: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest, if any (it wins over the tag when fetching).
    pub digest: Option<Digest>,
}

impl Reference {
    /// What to ask the registry for: the digest if given, else the tag (`latest` when neither).
    pub fn target(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// The tag, `latest` when none was given.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository at a digest (no tag).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host to connect to (`registry-1.docker.io` for `docker.io`).
    pub fn endpoint(&self) -> &str {
        endpoint_of(&self.registry)
    }
}

/// The host serving `registry`'s API.
pub fn endpoint_of(registry: &str) -> &str {
    if registry == DOCKER_HUB || registry == "index.docker.io" {
        DOCKER_HUB_ENDPOINT
    } else {
        registry
    }
}

/// Whether `host[:port]` is a loopback address (`localhost`, `127.0.0.0/8`, `[::1]`).
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn invalid(input: &str, reason: impl Into<String>) -> ClientError {
    ClientError::InvalidReference {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ joined by `.`, `_`, `__` or `-`s.
    !c.is_empty()
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
        && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `tag` is a valid tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`).
pub fn is_valid_tag(tag: &str) -> bool {
    valid_tag(tag)
}

impl FromStr for Reference {
    type Err = ClientError;

    fn from_str(input: &str) -> Result<Reference, ClientError> {
        let input = input.strip_prefix("docker://").unwrap_or(input);
        if input.is_empty() || input.len() > 512 {
            return Err(invalid(input, "must have 1 to 512 characters"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => (
                rest,
                Some(d.parse::<Digest>().map_err(|e| invalid(input, e.to_string()))?),
            ),
            None => (input, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag.to_owned())),
            _ => (rest, None),
        };
        if let Some(tag) = &tag
            && !valid_tag(tag)
        {
            return Err(invalid(
                input,
                format!("tag `{tag}` must match [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}"),
            ));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.starts_with('[') =>
            {
                (first.to_owned(), path.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        if registry.is_empty()
            || !registry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
        {
            return Err(invalid(
                input,
                format!("registry `{registry}` is not a host[:port]"),
            ));
        }
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_owned()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !repository.split('/').all(valid_component) {
            return Err(invalid(
                input,
                format!(
                    "repository `{repository}` must be lowercase components ([a-z0-9] joined by . _ -) separated by /"
                ),
            ));
        }
        Ok(Reference {
            registry,
            repository,
            tag: if tag.is_none() && digest.is_none() {
                Some("latest".to_owned())
            } else {
                tag
            },
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        s.parse().unwrap()
    }

    #[test]
    fn docker_hub_defaults() {
        let b = r("busybox");
        assert_eq!(
            (b.registry.as_str(), b.repository.as_str()),
            ("docker.io", "library/busybox")
        );
        assert_eq!(b.tag.as_deref(), Some("latest"));
        assert_eq!(b.endpoint(), "registry-1.docker.io");
        assert_eq!(r("user/app:1").repository, "user/app");
        assert_eq!(
            r("docker://index.docker.io/x:2").to_string(),
            "docker.io/library/x:2"
        );
    }

    #[test]
    fn registry_port_tag_and_digest() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let x = r(&format!("localhost:5000/a/b:t1@{d}"));
        assert_eq!(x.registry, "localhost:5000");
        assert_eq!(x.repository, "a/b");
        assert_eq!(x.tag.as_deref(), Some("t1"));
        assert_eq!(x.target(), d);
        assert_eq!(x.to_string(), format!("localhost:5000/a/b:t1@{d}"));
        let y = r(&format!("quay.io/x@{d}"));
        assert_eq!(y.tag, None);
        assert_eq!(r("localhost/x").registry, "localhost");
        assert_eq!(r("127.0.0.1:41000/x").target(), "latest");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "UPPER/x",
            "x:",
            "x:-bad",
            "host:5000/",
            "a//b",
            "x@sha256:12",
            "x:a/b:c@",
        ] {
            assert!(bad.parse::<Reference>().is_err(), "{bad:?}");
        }
        let err = "x/Y".parse::<Reference>().unwrap_err().to_string();
        assert!(err.contains("x/Y"), "{err}");
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost:5000",
            "127.0.0.1:1",
            "127.1.2.3",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["example.com:5000", "10.0.0.1:5000", "docker.io"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
