//! Image configs: reading what a base image's config says (for the Dockerfile evaluator) and writing the
//! config of a built image the way BuildKit does (the same field names, omitted when empty, no build-host
//! data, `created` from `SOURCE_DATE_EPOCH`).

use std::collections::BTreeMap;

use kiln_dockerfile::{HealthcheckConfig, ImageConfig};
use kiln_oci::Digest;
use serde_json::{Map, Value, json};

/// One `history` entry of an image config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The instruction that made it, e.g. `RUN /bin/sh -c make`.
    pub created_by: String,
    /// Whether the step produced no layer.
    pub empty_layer: bool,
}

/// The platform and history a base image passes on to a stage built from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BaseConfig {
    /// The raw `config` object's fields kiln understands, as the evaluator wants them.
    pub dockerfile: ImageConfig,
    /// `architecture`, `os`, `variant` (absent fields omitted).
    pub platform: Map<String, Value>,
    /// The base's `history`, kept verbatim.
    pub history: Vec<Value>,
}

fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    value?.as_array().map(|items| {
        items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    })
}

fn string(value: Option<&Value>) -> Option<String> {
    value?.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

fn keys(value: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = value
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// Reads a base image's config JSON (already verified against its digest).
pub fn read_base_config(raw: &Value) -> BaseConfig {
    let config = raw.get("config").cloned().unwrap_or(Value::Null);
    let c = |key: &str| config.get(key);
    let healthcheck = c("Healthcheck")
        .and_then(Value::as_object)
        .map(|h| HealthcheckConfig {
            test: strings(h.get("Test")).unwrap_or_default(),
            interval: h.get("Interval").and_then(Value::as_i64).unwrap_or(0),
            timeout: h.get("Timeout").and_then(Value::as_i64).unwrap_or(0),
            start_period: h.get("StartPeriod").and_then(Value::as_i64).unwrap_or(0),
            start_interval: h.get("StartInterval").and_then(Value::as_i64).unwrap_or(0),
            retries: h.get("Retries").and_then(Value::as_i64).unwrap_or(0),
        });
    let labels = c("Labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let dockerfile = ImageConfig {
        env: strings(c("Env")).unwrap_or_default(),
        user: string(c("User")),
        workdir: string(c("WorkingDir")),
        shell: strings(c("Shell")).unwrap_or_default(),
        cmd: strings(c("Cmd")),
        entrypoint: strings(c("Entrypoint")),
        labels,
        exposed_ports: keys(c("ExposedPorts")),
        volumes: keys(c("Volumes")),
        stop_signal: string(c("StopSignal")),
        healthcheck,
        onbuild: strings(c("OnBuild")).unwrap_or_default(),
        author: string(raw.get("author")),
    };
    let mut platform = Map::new();
    for key in ["architecture", "os", "variant"] {
        if let Some(v) = raw.get(key).filter(|v| v.is_string()) {
            platform.insert(key.to_owned(), v.clone());
        }
    }
    BaseConfig {
        dockerfile,
        platform,
        history: raw
            .get("history")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    }
}

fn set_map(out: &mut Map<String, Value>, key: &str, items: &[String]) {
    if !items.is_empty() {
        let map: Map<String, Value> = items.iter().map(|i| (i.clone(), json!({}))).collect();
        out.insert(key.to_owned(), Value::Object(map));
    }
}

fn config_object(c: &ImageConfig) -> Value {
    let mut out = Map::new();
    if let Some(user) = &c.user {
        out.insert("User".into(), json!(user));
    }
    set_map(&mut out, "ExposedPorts", &c.exposed_ports);
    if !c.env.is_empty() {
        out.insert("Env".into(), json!(c.env));
    }
    if let Some(entrypoint) = &c.entrypoint {
        out.insert("Entrypoint".into(), json!(entrypoint));
    }
    if let Some(cmd) = &c.cmd {
        out.insert("Cmd".into(), json!(cmd));
    }
    set_map(&mut out, "Volumes", &c.volumes);
    if let Some(workdir) = &c.workdir {
        out.insert("WorkingDir".into(), json!(workdir));
    }
    if !c.labels.is_empty() {
        out.insert("Labels".into(), json!(c.labels));
    }
    if let Some(signal) = &c.stop_signal {
        out.insert("StopSignal".into(), json!(signal));
    }
    if let Some(h) = &c.healthcheck {
        let mut hc = Map::new();
        hc.insert("Test".into(), json!(h.test));
        for (key, value) in [
            ("Interval", h.interval),
            ("Timeout", h.timeout),
            ("StartPeriod", h.start_period),
            ("StartInterval", h.start_interval),
            ("Retries", h.retries),
        ] {
            if value != 0 {
                hc.insert(key.into(), json!(value));
            }
        }
        out.insert("Healthcheck".into(), Value::Object(hc));
    }
    if !c.onbuild.is_empty() {
        out.insert("OnBuild".into(), json!(c.onbuild));
    }
    if !c.shell.is_empty() {
        out.insert("Shell".into(), json!(c.shell));
    }
    Value::Object(out)
}

/// RFC 3339 of a Unix time, as image configs write `created`.
pub fn rfc3339(epoch: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(epoch)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// The config JSON of a built stage: platform of the base (else `default_platform`), the stage's final
/// Dockerfile config, the base's history followed by this stage's, and the layers' diff IDs.
pub fn image_config_json(
    base: &BaseConfig,
    default_platform: &Map<String, Value>,
    stage: &ImageConfig,
    history: &[HistoryEntry],
    diff_ids: &[Digest],
    created_epoch: i64,
) -> Vec<u8> {
    let created = rfc3339(created_epoch);
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    let platform = if base.platform.is_empty() {
        default_platform
    } else {
        &base.platform
    };
    for (k, v) in platform {
        out.insert(k.clone(), v.clone());
    }
    if let Some(author) = &stage.author {
        out.insert("author".into(), json!(author));
    }
    out.insert("config".into(), config_object(stage));
    out.insert("created".into(), json!(created));
    let mut all_history = base.history.clone();
    for entry in history {
        let mut h = Map::new();
        h.insert("created".into(), json!(created));
        h.insert("created_by".into(), json!(entry.created_by));
        h.insert("comment".into(), json!("kiln.dockerfile.v0"));
        if entry.empty_layer {
            h.insert("empty_layer".into(), json!(true));
        }
        all_history.push(Value::Object(h));
    }
    out.insert("history".into(), Value::Array(all_history));
    let ids: Vec<String> = diff_ids.iter().map(Digest::to_string).collect();
    out.insert("rootfs".into(), json!({"type": "layers", "diff_ids": ids}));
    serde_json::to_vec(&out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_config_round_trips_through_a_built_config() {
        let raw = json!({
            "architecture": "amd64", "os": "linux",
            "config": {
                "Env": ["PATH=/bin", "A=1"], "User": "app", "WorkingDir": "/srv", "Cmd": ["sh"],
                "Labels": {"x": "y"}, "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}},
                "OnBuild": ["RUN true"], "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5}
            },
            "history": [{"created_by": "base"}],
            "container_config": {"Hostname": "leaked"}
        });
        let base = read_base_config(&raw);
        assert_eq!(base.dockerfile.user.as_deref(), Some("app"));
        assert_eq!(base.dockerfile.exposed_ports, vec!["80/tcp"]);
        assert_eq!(base.dockerfile.healthcheck.as_ref().map(|h| h.interval), Some(5));
        let digest: Digest = format!("sha256:{}", "a".repeat(64))
            .parse()
            .unwrap_or_else(|_| unreachable!());
        let built = image_config_json(
            &base,
            &Map::new(),
            &base.dockerfile,
            &[HistoryEntry {
                created_by: "RUN true".into(),
                empty_layer: false,
            }],
            &[digest],
            0,
        );
        let v: Value = serde_json::from_slice(&built).unwrap_or_default();
        assert_eq!(v["config"], raw["config"]);
        assert_eq!(v["architecture"], "amd64");
        assert!(v.get("container_config").is_none(), "build-host data is dropped");
        assert_eq!(v["history"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["created"], "1970-01-01T00:00:00Z");
        assert_eq!(read_base_config(&v).dockerfile, base.dockerfile);
    }
}
