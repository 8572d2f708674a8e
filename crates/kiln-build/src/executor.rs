//! Executes an evaluated Dockerfile: bases resolved from the store, stages in order, each step either
//! taken from the instruction cache or carried out on an overlay snapshot, and the target stage written
//! to the store as a config and an OCI manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use kiln_dockerfile::{Base, BuildDescription, EvalOptions, Source, Stage, Step, StepArgs};
use kiln_oci::compress::{Compression, LayerWriter};
use kiln_oci::manifest::Descriptor;
use kiln_oci::{Digest, ImageStore};
use kiln_rootfs::root::Root;
use kiln_rootfs::tree::Tree;
use kiln_runtime::{Network, OutputSink, Runtime, Stream};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::cache::{CachedStep, LayerRecord, StepCache, StepKey};
use crate::config::{BaseConfig, HistoryEntry, image_config_json, read_base_config};
use crate::context::{BuildContext, Content, EntryKind};
use crate::copy::{CopyParams, Sources};
use crate::error::{BuildError, StepAt};
use crate::layers::LayerDirs;
use crate::remote::{Downloads, is_git, is_url};
use crate::snapshot::Snapshot;

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// The in-tree parent image (a store name) for `FROM $DOCKER_IMAGE_PARENT`.
    pub parent_image: Option<String>,
    /// Store names for references as written in FROM (an in-tree parent named by its image name).
    pub aliases: BTreeMap<String, String>,
    /// Timestamps are clamped to this (seconds since the epoch); also the config's `created`.
    pub source_date_epoch: i64,
    /// Compression of new layers.
    pub compression: Compression,
    /// Run every step even when the cache has it.
    pub no_cache: bool,
    /// The Dockerfile's label in messages.
    pub file_label: String,
    /// `--secret id=…,src=…`.
    pub secrets: BTreeMap<String, PathBuf>,
    /// `--ssh ID=SOCKET`: ssh agents that `RUN --mount=type=ssh` may use.
    pub ssh_agents: BTreeMap<String, PathBuf>,
    /// Whether `RUN --security=insecure` may run with every capability (`--allow security.insecure`).
    pub allow_insecure: bool,
    /// The network of RUN steps without `--network` (or with `--network=default`): a private one
    /// (`kiln build --network`).
    pub network: Network,
    /// Whether `RUN --network=host` may share the host's network (`--allow network.host`).
    pub allow_host_network: bool,
    /// Whether a plain COPY from the context into new paths writes its layer straight from the
    /// context (the same bytes as going through the overlay; off only to compare the two).
    pub direct_copy: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            build_args: BTreeMap::new(),
            target: None,
            parent_image: None,
            aliases: BTreeMap::new(),
            source_date_epoch: 0,
            compression: Compression::Zstd,
            no_cache: false,
            file_label: "Dockerfile".to_owned(),
            secrets: BTreeMap::new(),
            ssh_agents: BTreeMap::new(),
            allow_insecure: false,
            network: Network::Private,
            allow_host_network: false,
            direct_copy: true,
        }
    }
}

/// What happened to a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    /// Taken from the cache.
    Cached,
    /// About to run.
    Running,
    /// Ran.
    Done,
    /// Only changed the image config.
    Metadata,
}

/// Receives progress and RUN output.
pub trait Events: Sync {
    /// A step changed state.
    fn step(&self, stage: usize, at: &StepAt, status: StepStatus);
    /// Output of a RUN step.
    fn output(&self, stream: Stream, bytes: &[u8]);
}

/// Events that go nowhere.
#[derive(Debug, Default)]
pub struct Quiet;

impl Events for Quiet {
    fn step(&self, _: usize, _: &StepAt, _: StepStatus) {}
    fn output(&self, _: Stream, _: &[u8]) {}
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The manifest written to the store (no ref is set: the caller names it).
    pub manifest: Descriptor,
    /// Number of layers of the image.
    pub layers: usize,
    /// Sum of the compressed layer sizes.
    pub size: u64,
    /// Filesystem steps executed / taken from the cache.
    pub executed: usize,
    /// Steps taken from the cache.
    pub cached: usize,
    /// The Dockerfile's non-fatal findings (BuildKit's lint rules).
    pub warnings: Vec<kiln_dockerfile::Warning>,
}

/// A base image as the builder uses it.
#[derive(Debug, Clone)]
struct BaseImage {
    manifest_digest: Digest,
    layers: Vec<LayerRecord>,
    config: BaseConfig,
}

/// A stage's state while its steps run.
#[derive(Debug, Clone)]
struct StageState {
    layers: Vec<LayerRecord>,
    base: BaseConfig,
    history: Vec<HistoryEntry>,
    key: StepKey,
    user: Option<String>,
    workdir: Option<String>,
}

/// The builder: a store, its state folder and a runtime.
pub struct Builder<'a> {
    store: &'a ImageStore,
    state: PathBuf,
    runtime: &'a dyn Runtime,
    events: &'a dyn Events,
}

impl std::fmt::Debug for Builder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder").field("state", &self.state).finish()
    }
}

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

struct Run<'b> {
    builder: &'b Builder<'b>,
    context: &'b BuildContext,
    options: &'b BuildOptions,
    description: BuildDescription,
    bases: BTreeMap<String, BaseImage>,
    done: std::sync::Mutex<BTreeMap<usize, StageState>>,
    cache: StepCache,
    layer_dirs: LayerDirs,
    stat_cache: kiln_tree::StatCache,
    executed: AtomicUsize,
    cached: AtomicUsize,
    scratch: kiln_rootfs::WorkDir,
    context_dir: std::sync::OnceLock<PathBuf>,
    downloads: Downloads,
}

/// A layer a step described instead of writing it into its overlay (`copy_layer`), with what its files
/// are read from kept mounted until the layer is written.
struct DescribedLayer {
    tree: Tree,
    _source_view: Option<Snapshot>,
}

/// What the Dockerfile evaluator needs from the build options (base configs are added by the build).
fn eval_options(options: &BuildOptions) -> EvalOptions {
    EvalOptions {
        build_args: options.build_args.clone(),
        target: options.target.clone(),
        parent_image: options.parent_image.clone(),
        predeclare_parent_arg: options.parent_image.is_some(),
        file_name: Some(options.file_label.clone()),
        // kiln builds for the machine it runs on: TARGETPLATFORM and BUILDPLATFORM are both the host's.
        target_platform: Some(host_platform()),
        build_platform: Some(host_platform()),
        ..EvalOptions::default()
    }
}

/// `os/arch` of this machine.
fn host_platform() -> String {
    let (os, arch) = kiln_oci::host_platform();
    format!("{os}/{arch}")
}

/// A stage's `FROM --platform` must name the host's platform: kiln runs RUN steps natively, with no
/// emulation, and pulls bases for the host only.
fn check_platform(stage: &Stage, file: &str) -> Result<(), BuildError> {
    let Some(platform) = &stage.platform else {
        return Ok(());
    };
    let host = host_platform();
    let os_arch: Vec<&str> = platform.split('/').take(2).collect();
    if os_arch.join("/") != host {
        return Err(BuildError::step(
            &stage_at(file, stage),
            format!("FROM --platform={platform}: kiln builds for this machine's platform ({host}) only"),
        ));
    }
    Ok(())
}

/// The image references a build reads (stage bases, `COPY --from` and `--mount from=` images), other than
/// those `options.aliases` maps to store names: what must be in the store (or pulled) before it starts.
pub fn base_references(dockerfile: &str, options: &BuildOptions) -> Result<Vec<String>, BuildError> {
    let eval = eval_options(options);
    let description = kiln_dockerfile::evaluate(dockerfile, &eval)?;
    Ok(base_references_of(&description, &options.file_label)
        .into_iter()
        .map(|(reference, _)| reference)
        .filter(|r| !options.aliases.contains_key(r) && options.parent_image.as_ref() != Some(r))
        .collect())
}

impl<'a> Builder<'a> {
    /// A builder on `store`, keeping its state (unpacked layers, cache records, cache mounts) in
    /// `<store>/kiln-build`.
    pub fn new(store: &'a ImageStore, runtime: &'a dyn Runtime, events: &'a dyn Events) -> Builder<'a> {
        Builder {
            store,
            state: store.root().join(crate::STATE_DIR),
            runtime,
            events,
        }
    }

    /// Builds `dockerfile` (its text) with `context`; returns the manifest stored.
    pub fn build(
        &self,
        dockerfile: &str,
        context: &BuildContext,
        options: &BuildOptions,
    ) -> Result<BuildOutput, BuildError> {
        let mut eval = eval_options(options);
        // Held for the whole build: garbage collection must not remove the layers written before the
        // manifest that names them exists (the caller names it while holding its own lock).
        let _writing = self.store.lock_for_writing()?;
        // The first pass finds the base images; the second sees their configs (ENV, ONBUILD, USER…).
        let first = kiln_dockerfile::evaluate(dockerfile, &eval)?;
        let mut bases = BTreeMap::new();
        for (reference, at) in base_references_of(&first, &options.file_label) {
            let base = self.load_base(&reference, options.aliases.get(&reference), &at)?;
            eval.base_images
                .insert(reference.clone(), base.config.dockerfile.clone());
            bases.insert(reference, base);
        }
        let description = kiln_dockerfile::evaluate(dockerfile, &eval)?;
        refuse_unallowed(&description, options)?;
        fs_err::create_dir_all(&self.state).map_err(|e| BuildError::io(&self.state, e))?;
        // Every file and mount of the build lives in one private folder (secret copies, step overlays,
        // pinned bind sources), locked while the build runs: what a killed build left is swept here.
        let scratch_root = self.state.join("tmp");
        let swept = kiln_rootfs::workdir::sweep_dead(&scratch_root)?;
        if swept.folders > 0 {
            tracing::info!(
                "removed {} folder(s) and {} mount(s) that killed builds left in {}",
                swept.folders,
                swept.mounts,
                scratch_root.display()
            );
        }
        let scratch = kiln_rootfs::WorkDir::create(&scratch_root, "build-")?;
        let run = Run {
            builder: self,
            context,
            options,
            description,
            bases,
            done: std::sync::Mutex::new(BTreeMap::new()),
            cache: StepCache::new(self.state.join("cache")),
            layer_dirs: LayerDirs::new(self.state.join("layers")),
            stat_cache: kiln_tree::StatCache::load(&self.state.join("stat-cache")),
            executed: AtomicUsize::new(0),
            cached: AtomicUsize::new(0),
            downloads: Downloads::new(scratch.path().join("downloads"), options.allow_host_network),
            scratch,
            context_dir: std::sync::OnceLock::new(),
        };
        let result = run.all_stages();
        let _ = run.stat_cache.save();
        result
    }

    fn load_base(
        &self,
        reference: &str,
        alias: Option<&String>,
        at: &StepAt,
    ) -> Result<BaseImage, BuildError> {
        let missing = || BuildError::MissingBase {
            at: at.clone(),
            reference: reference.to_owned(),
        };
        let name = match alias {
            Some(name) => name.clone(),
            None => kiln_oci::image::normalize_name(reference).map_err(|_| missing())?,
        };
        let image_ref = self.store.get(&name)?.ok_or_else(missing)?;
        let image = self.store.resolve(&image_ref.descriptor)?;
        let raw: Value = serde_json::from_slice(&image.config)
            .map_err(|e| BuildError::step(at, format!("the config of `{reference}` is not JSON: {e}")))?;
        let diff_ids: Vec<Digest> = raw["rootfs"]["diff_ids"]
            .as_array()
            .map(|ids| ids.iter().filter_map(|d| d.as_str()?.parse().ok()).collect())
            .unwrap_or_default();
        if diff_ids.len() != image.manifest.layers.len() {
            return Err(BuildError::step(
                at,
                format!(
                    "`{reference}` has {} layers but its config lists {} diff IDs",
                    image.manifest.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let layers = image
            .manifest
            .layers
            .iter()
            .zip(diff_ids)
            .map(|(blob, diff_id)| LayerRecord {
                blob: blob.clone(),
                diff_id,
            })
            .collect();
        Ok(BaseImage {
            manifest_digest: image.manifest_descriptor.digest,
            layers,
            config: read_base_config(&raw),
        })
    }
}

fn step_at(file: &str, step: &Step) -> StepAt {
    let mut instruction: String = step.source.chars().take(120).collect();
    if instruction.len() < step.source.len() {
        instruction.push('…');
    }
    StepAt {
        file: file.to_owned(),
        line: step.location.start_line,
        instruction,
    }
}

fn stage_at(file: &str, stage: &Stage) -> StepAt {
    StepAt {
        file: file.to_owned(),
        line: stage.location.start_line,
        instruction: format!("FROM (stage {})", stage.index),
    }
}

/// The first step that asks for more than `options` allow (`run::refusal`), refused before any step
/// runs or comes from the cache.
fn refuse_unallowed(description: &BuildDescription, options: &BuildOptions) -> Result<(), BuildError> {
    for step in description.stages.iter().flat_map(|stage| &stage.instructions) {
        if let Some(message) =
            crate::run::refusal(&step.args, options.allow_host_network, options.allow_insecure)
        {
            return Err(BuildError::step(&step_at(&options.file_label, step), message));
        }
    }
    Ok(())
}

/// Every image reference a build reads: stage bases, `COPY --from` and `--mount from=` images.
fn base_references_of(description: &BuildDescription, file: &str) -> Vec<(String, StepAt)> {
    let mut out: Vec<(String, StepAt)> = Vec::new();
    let mut add = |reference: &str, at: StepAt| {
        if !out.iter().any(|(r, _)| r == reference) {
            out.push((reference.to_owned(), at));
        }
    };
    for stage in &description.stages {
        match &stage.base {
            Base::Image { reference } | Base::Parent { reference } => add(reference, stage_at(file, stage)),
            Base::Scratch | Base::Stage { .. } => {}
        }
        for step in &stage.instructions {
            let sources: Vec<&Source> = match &step.args {
                StepArgs::Copy {
                    from: Some(source), ..
                } => vec![source],
                StepArgs::Run { mount_sources, .. } => mount_sources.iter().collect(),
                _ => Vec::new(),
            };
            for source in sources {
                if let Source::Image { reference } = source {
                    add(reference, step_at(file, step));
                }
            }
        }
    }
    out
}

struct Sink<'e>(&'e dyn Events);

impl OutputSink for Sink<'_> {
    fn write(&mut self, stream: Stream, bytes: &[u8]) {
        self.0.output(stream, bytes);
    }
}

impl Run<'_> {
    fn file(&self) -> &str {
        &self.options.file_label
    }

    fn stage_state(&self, index: usize) -> Option<StageState> {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&index)
            .cloned()
    }

    /// Runs the stages, each as soon as the stages it depends on are done, independent ones concurrently
    /// (one per core; `kiln_plan::dag`). The first failure stops new stages from starting.
    fn all_stages(&self) -> Result<BuildOutput, BuildError> {
        let stages = self.description.stages.clone();
        let position = |index: usize| stages.iter().position(|s| s.index == index).unwrap_or(usize::MAX);
        let deps: Vec<Vec<usize>> = stages
            .iter()
            .map(|stage| stage.depends_on.iter().map(|&d| position(d)).collect())
            .collect();
        kiln_plan::dag::run(
            &deps,
            kiln_plan::dag::default_jobs(),
            |node| self.stage(&stages[node]),
            |node, state| {
                self.done
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(stages[node].index, state);
                Ok(())
            },
        )
        .map_err(|e| match e {
            kiln_plan::dag::DagError::Failed(e) => e,
            unsatisfiable => BuildError::io(Path::new(self.file()), unsatisfiable.to_string()),
        })?;
        let target = self.description.target.index;
        let state = self.stage_state(target).ok_or_else(|| {
            BuildError::io(
                Path::new(self.file()),
                format!("target stage {target} was not built"),
            )
        })?;
        let stage_config = stages
            .iter()
            .find(|s| s.index == target)
            .map(|s| s.config.clone())
            .unwrap_or_default();
        let (os, arch) = kiln_oci::host_platform();
        let mut platform = Map::new();
        platform.insert("architecture".into(), Value::from(arch));
        platform.insert("os".into(), Value::from(os));
        let diff_ids: Vec<Digest> = state.layers.iter().map(|l| l.diff_id.clone()).collect();
        let config = image_config_json(
            &state.base,
            &platform,
            &stage_config,
            &state.history,
            &diff_ids,
            self.options.source_date_epoch,
        );
        let layers: Vec<kiln_oci::compress::StoredLayer> = state
            .layers
            .iter()
            .map(|l| kiln_oci::compress::StoredLayer {
                descriptor: l.blob.clone(),
                diff_id: l.diff_id.clone(),
                uncompressed_size: 0,
            })
            .collect();
        let manifest = kiln_oci::import::store_image(self.builder.store, &config, &layers)?;
        Ok(BuildOutput {
            manifest,
            layers: state.layers.len(),
            size: state.layers.iter().map(|l| l.blob.size).sum(),
            warnings: self.description.warnings.clone(),
            executed: self.executed.load(Ordering::Relaxed),
            cached: self.cached.load(Ordering::Relaxed),
        })
    }

    fn stage(&self, stage: &Stage) -> Result<StageState, BuildError> {
        check_platform(stage, self.file())?;
        let mut state = match &stage.base {
            Base::Scratch => StageState {
                layers: Vec::new(),
                base: BaseConfig::default(),
                history: Vec::new(),
                key: StepKey::base("scratch"),
                user: None,
                workdir: None,
            },
            Base::Image { reference } | Base::Parent { reference } => {
                let base = self
                    .bases
                    .get(reference)
                    .cloned()
                    .ok_or_else(|| BuildError::MissingBase {
                        at: stage_at(self.file(), stage),
                        reference: reference.clone(),
                    })?;
                StageState {
                    layers: base.layers.clone(),
                    key: StepKey::base(&base.manifest_digest.to_string()),
                    user: base.config.dockerfile.user.clone(),
                    workdir: base.config.dockerfile.workdir.clone(),
                    base: base.config,
                    history: Vec::new(),
                }
            }
            Base::Stage { index, .. } => {
                let mut state = self.stage_state(*index).ok_or_else(|| {
                    BuildError::step(
                        &stage_at(self.file(), stage),
                        format!("stage {index} was not built first"),
                    )
                })?;
                // The new stage's history continues the earlier stage's.
                let mut history = std::mem::take(&mut state.history);
                let base_history: Vec<Value> = history
                    .drain(..)
                    .map(|h| {
                        let mut m = Map::new();
                        m.insert("created_by".into(), Value::from(h.created_by));
                        if h.empty_layer {
                            m.insert("empty_layer".into(), Value::from(true));
                        }
                        Value::Object(m)
                    })
                    .collect();
                state.base.history.extend(base_history);
                state
            }
        };
        for step in &stage.instructions {
            self.step(stage.index, step, &mut state)?;
        }
        Ok(state)
    }

    fn step(&self, stage: usize, step: &Step, state: &mut StageState) -> Result<(), BuildError> {
        let at = step_at(self.file(), step);
        let created_by = step.source.clone();
        let mut description = serde_json::json!({
            "keyword": step.keyword,
            "args": step.args,
            "user": state.user,
            "workdir": state.workdir,
        });
        match (&step.args, step.keyword.as_str()) {
            (StepArgs::Value { value }, "USER") => {
                state.user = Some(value.clone());
            }
            (StepArgs::Value { value }, "WORKDIR") => {
                state.workdir = Some(value.clone());
                let path = value.clone();
                // BuildKit makes the folders as USER, read as --chown reads it; a user the image
                // does not know gets root-owned folders there (the next RUN fails instead).
                let user = state.user.clone().filter(|u| !u.is_empty());
                return self.fs_step(stage, &at, state, description, created_by, |_, root, _| {
                    let (uid, gid) = user
                        .as_deref()
                        .and_then(|u| crate::copy::owner(root, u).ok())
                        .unwrap_or((0, 0));
                    root.mkdir_all(Path::new(path.trim_start_matches('/')), 0o755, uid, gid)
                        .map_err(|e| BuildError::step(&at, e.to_string()))?;
                    Ok(None)
                });
            }
            (StepArgs::Copy { .. }, _) | (StepArgs::Run { .. }, _) => {
                description["inputs"] = Value::from(self.inputs_digest(step, &at)?);
                let step = step.clone();
                let user = state.user.clone();
                let workdir = state.workdir.clone();
                let at2 = at.clone();
                return self.fs_step(
                    stage,
                    &at,
                    state,
                    description,
                    created_by,
                    move |run, root, merged| {
                        run.execute(&step, &at2, root, merged, user.as_deref(), workdir.as_deref())
                    },
                );
            }
            _ => {}
        }
        if step.keyword != "ARG" {
            state.history.push(HistoryEntry {
                created_by,
                empty_layer: true,
            });
        }
        state.key = state.key.then(description.to_string().as_bytes());
        self.builder.events.step(stage, &at, StepStatus::Metadata);
        Ok(())
    }

    fn fs_step(
        &self,
        stage: usize,
        at: &StepAt,
        state: &mut StageState,
        description: Value,
        created_by: String,
        action: impl FnOnce(&Self, &Root, &Path) -> Result<Option<DescribedLayer>, BuildError>,
    ) -> Result<(), BuildError> {
        let key = state.key.then(description.to_string().as_bytes());
        let blobs = self.builder.store.blobs();
        let cached = if self.options.no_cache {
            None
        } else {
            self.cache.get(&key, blobs)
        };
        let layer = match cached {
            Some(step) => {
                self.cached.fetch_add(1, Ordering::Relaxed);
                self.builder.events.step(stage, at, StepStatus::Cached);
                step.layer
            }
            None => {
                self.builder.events.step(stage, at, StepStatus::Running);
                let lowers = self.lowers(&state.layers)?;
                let snapshot = Snapshot::mount(self.scratch.path(), &lowers)?;
                let root = Root::open(snapshot.merged()).map_err(|e| BuildError::io(snapshot.merged(), e))?;
                let merged = snapshot.merged().to_owned();
                let described = action(self, &root, &merged)?;
                drop(root);
                let layer = match described {
                    Some(described) => {
                        drop(snapshot);
                        self.store_tree(&described.tree)?
                    }
                    None => snapshot.commit(
                        blobs,
                        self.options.compression,
                        self.options.source_date_epoch,
                        &self.layer_dirs,
                    )?,
                };
                self.cache.put(&key, &CachedStep { layer: layer.clone() })?;
                self.executed.fetch_add(1, Ordering::Relaxed);
                self.builder.events.step(stage, at, StepStatus::Done);
                layer
            }
        };
        state.history.push(HistoryEntry {
            created_by,
            empty_layer: layer.is_none(),
        });
        if let Some(layer) = layer {
            state.layers.push(layer);
        }
        state.key = key;
        Ok(())
    }

    /// Writes a described layer into the store (`None` for an empty tree). Its folder is unpacked from
    /// the blob only if a later step needs it.
    fn store_tree(&self, tree: &Tree) -> Result<Option<LayerRecord>, BuildError> {
        if tree.is_empty() {
            return Ok(None);
        }
        let mut writer = LayerWriter::new(self.builder.store.blobs(), self.options.compression)?;
        let options = kiln_rootfs::capture::CaptureOptions {
            source_date_epoch: Some(self.options.source_date_epoch),
            ..Default::default()
        };
        kiln_rootfs::tree::write_tree(tree, &mut writer, &options)
            .map_err(|e| BuildError::io(&self.builder.state, format!("cannot write the layer: {e}")))?;
        let stored = writer.finish()?;
        Ok(Some(LayerRecord {
            blob: stored.descriptor,
            diff_id: stored.diff_id,
        }))
    }

    /// The unpacked folders of `layers`, top-most first.
    fn lowers(&self, layers: &[LayerRecord]) -> Result<Vec<PathBuf>, BuildError> {
        let blobs = self.builder.store.blobs();
        let mut out = layers
            .iter()
            .map(|l| self.layer_dirs.ensure(blobs, l))
            .collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }

    /// uid, gid and supplementary groups of a RUN as `user` in the image at `root`. As in BuildKit, an
    /// unset user is root with root's supplementary groups, and the primary group is always among the
    /// supplementary ones (its fix for CVE-2023-25173).
    fn ids(&self, root: &Root, user: Option<&str>, at: &StepAt) -> Result<(u32, u32, Vec<u32>), BuildError> {
        let user = user.filter(|u| !u.is_empty()).unwrap_or("0");
        let (name, group) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user, None),
        };
        let ids = kiln_rootfs::users::lookup_user(root, name, group)
            .map_err(|e| BuildError::step(at, e.to_string()))?;
        let mut groups = ids.additional_gids;
        if !groups.contains(&ids.gid) {
            groups.insert(0, ids.gid);
        }
        Ok((ids.uid, ids.gid, groups))
    }

    /// A digest of what a COPY or RUN reads besides its instruction: context files, other stages.
    fn inputs_digest(&self, step: &Step, at: &StepAt) -> Result<String, BuildError> {
        let mut h = Sha256::new();
        match &step.args {
            StepArgs::Copy {
                sources,
                from,
                checksum,
                ..
            } => match from {
                None => {
                    for source in sources {
                        if step.keyword == "ADD" {
                            refuse_url(source, at)?;
                            if checksum.is_some() && !is_url(source) {
                                return Err(BuildError::step(
                                    at,
                                    format!("ADD --checksum applies to http(s) URLs only, not to `{source}`"),
                                ));
                            }
                            if is_url(source) {
                                let download = self
                                    .downloads
                                    .get(source, checksum.as_deref())
                                    .map_err(|m| BuildError::step(at, m))?;
                                h.update(b"url\0");
                                h.update(source.as_bytes());
                                h.update(download.sha256.as_bytes());
                                continue;
                            }
                        }
                        let names = self.context.select(source).map_err(|m| BuildError::step(at, m))?;
                        for name in names {
                            self.hash_context(&name, &mut h)?;
                        }
                    }
                }
                Some(source) => h.update(self.source_key(source, at)?.as_bytes()),
            },
            StepArgs::Run {
                mounts,
                mount_sources,
                ..
            } => {
                let mut from = mount_sources.iter();
                for mount in mounts {
                    if mount.from.is_some() {
                        if let Some(source) = from.next() {
                            h.update(self.source_key(source, at)?.as_bytes());
                        }
                    } else if mount.kind == kiln_dockerfile::MountType::Bind {
                        let name = crate::context::clean(mount.source.as_deref().unwrap_or(""));
                        self.hash_context(&name, &mut h)?;
                    }
                }
            }
            _ => {}
        }
        Ok(hex::encode(h.finalize()))
    }

    fn source_key(&self, source: &Source, at: &StepAt) -> Result<String, BuildError> {
        match source {
            Source::Stage { index, .. } => self
                .stage_state(*index)
                .map(|s| s.key.hex())
                .ok_or_else(|| BuildError::step(at, format!("stage {index} was not built first"))),
            Source::Image { reference } => self
                .bases
                .get(reference)
                .map(|b| b.manifest_digest.to_string())
                .ok_or_else(|| BuildError::MissingBase {
                    at: at.clone(),
                    reference: reference.clone(),
                }),
        }
    }

    /// Hashes the entry `name` of the context and everything below it: names, kinds, modes, clamped
    /// mtimes and content digests (from the stat cache when a file is unchanged).
    fn hash_context(&self, name: &str, h: &mut Sha256) -> Result<(), BuildError> {
        let epoch = self.options.source_date_epoch;
        let context = self.context;
        let entries = context.get(name).into_iter().chain(context.below(name));
        for entry in entries {
            h.update(entry.name.as_bytes());
            h.update([0]);
            h.update(entry.mode.to_le_bytes());
            h.update(entry.mtime.min(epoch).to_le_bytes());
            match (&entry.kind, &entry.content) {
                (EntryKind::Symlink(target), _) => {
                    h.update(b"l");
                    h.update(target.as_bytes());
                }
                (EntryKind::Dir, _) => h.update(b"d"),
                (EntryKind::File, Content::Bytes(bytes)) => {
                    h.update(b"f");
                    h.update(Sha256::digest(bytes.as_slice()));
                }
                (EntryKind::File, Content::Path(path, meta)) => {
                    h.update(b"f");
                    h.update(self.file_digest(path, meta)?);
                }
                (EntryKind::File, Content::None) => h.update(b"f"),
            }
        }
        Ok(())
    }

    fn file_digest(&self, path: &Path, meta: &kiln_tree::FileMeta) -> Result<[u8; 32], BuildError> {
        if let Some(digest) = self.stat_cache.file_digest(path, meta) {
            return Ok(digest);
        }
        let mut file = fs_err::File::open(path).map_err(|e| BuildError::context(path, e.to_string()))?;
        let mut h = kiln_tree::HashSink(Sha256::new());
        std::io::copy(&mut file, &mut h).map_err(|e| BuildError::context(path, e.to_string()))?;
        let digest: [u8; 32] = h.0.finalize().into();
        self.stat_cache.put_file(path, *meta, digest);
        Ok(digest)
    }

    /// Carries out a COPY/ADD or RUN on the mounted snapshot.
    fn execute(
        &self,
        step: &Step,
        at: &StepAt,
        root: &Root,
        merged: &Path,
        user: Option<&str>,
        workdir: Option<&str>,
    ) -> Result<Option<DescribedLayer>, BuildError> {
        let workdir = workdir.unwrap_or("/").to_owned();
        match &step.args {
            StepArgs::Copy {
                sources,
                heredocs,
                dest,
                from,
                chown,
                chmod,
                parents,
                exclude,
                unpack,
                checksum,
                ..
            } => {
                let owner = match chown {
                    Some(spec) => Some(crate::copy::owner(root, spec).map_err(|m| BuildError::step(at, m))?),
                    None => None,
                };
                let chmod = match chmod {
                    Some(text) => Some(
                        u32::from_str_radix(text, 8)
                            .ok()
                            .filter(|m| *m <= 0o7777)
                            .ok_or_else(|| {
                                BuildError::step(at, format!("--chmod `{text}` is not an octal mode"))
                            })?,
                    ),
                    None => None,
                };
                let params = CopyParams {
                    dest: dest.clone(),
                    workdir,
                    owner,
                    chmod,
                    parents: *parents,
                    exclude: exclude.clone(),
                };
                if !heredocs.is_empty() {
                    let inline = crate::context::BuildContext::from_heredocs(heredocs);
                    let names: Vec<String> = heredocs.iter().map(|h| h.name.clone()).collect();
                    crate::copy::copy(root, &Sources::Context(&inline), &names, &params)
                        .map_err(|m| BuildError::step(at, m))?;
                }
                let mut sources = sources.clone();
                if step.keyword == "ADD" && from.is_none() {
                    sources = self.add_archives(root, &sources, &params, *unpack, checksum.as_deref(), at)?;
                }
                if sources.is_empty() {
                    return Ok(None);
                }
                let sources = &sources;
                // `COPY --from` reads a view of the source stage or image, kept mounted until the
                // layer is written when the copy is described.
                let view = match from {
                    None => None,
                    Some(source) => {
                        let layers = self.source_layers(source, at)?;
                        let lowers = self.lowers(&layers)?;
                        Some(Snapshot::mount(self.scratch.path(), &lowers)?)
                    }
                };
                let source_files = match &view {
                    None => Sources::Context(self.context),
                    Some(view) => Sources::Tree(view.merged()),
                };
                let items = crate::copy::plan(root, &source_files, sources, &params)
                    .map_err(|m| BuildError::step(at, m))?;
                // Heredoc files and extracted archives are already in the overlay.
                if step.keyword == "COPY"
                    && heredocs.is_empty()
                    && self.options.direct_copy
                    && let Some(tree) = crate::copy_layer::describe(
                        root,
                        merged,
                        &items,
                        params.owner.unwrap_or((0, 0)),
                        self.options.source_date_epoch,
                    )
                {
                    return Ok(Some(DescribedLayer {
                        tree,
                        _source_view: view,
                    }));
                }
                crate::copy::write(root, &items, &params).map_err(|m| BuildError::step(at, m))?;
                Ok(None)
            }
            StepArgs::Run {
                argv,
                env,
                mounts,
                mount_sources,
                network,
                security,
                heredocs,
                script_path,
            } => {
                let ids = self.ids(root, user, at)?;
                let mut from_names = Vec::new();
                let mut views = Vec::new();
                for source in mount_sources {
                    let layers = self.source_layers(source, at)?;
                    let lowers = self.lowers(&layers)?;
                    let view = Snapshot::mount(self.scratch.path(), &lowers)?;
                    from_names.push(view.merged().display().to_string());
                    views.push(view);
                }
                let sources = RunMounts {
                    run: self,
                    writable_views: Default::default(),
                    cache_leases: Default::default(),
                    ssh_agents: Default::default(),
                };
                let crate::run::Mounts {
                    mut specs,
                    env: mount_env,
                    step_files: _step_files,
                    pins: _pins,
                } = crate::run::mounts(mounts, &from_names, &sources).map_err(|m| BuildError::step(at, m))?;
                if let (Some(path), Some(heredoc)) = (script_path, heredocs.first()) {
                    specs.push(
                        crate::run::script_mount(path, heredoc, self.scratch.path())
                            .map_err(|m| BuildError::step(at, m))?,
                    );
                }
                let network = crate::run::network(network.as_deref(), self.options.network)
                    .map_err(|m| BuildError::step(at, m))?;
                // Allowed: `refuse_unallowed` checked every step before the build started.
                let insecure = security.as_deref() == Some("insecure");
                let id = format!(
                    "kiln-{}-{}",
                    std::process::id(),
                    RUN_COUNTER.fetch_add(1, Ordering::Relaxed)
                );
                let spec = crate::run::spec(
                    id,
                    merged.to_owned(),
                    argv.clone(),
                    env.iter().cloned().chain(mount_env).collect(),
                    workdir,
                    ids,
                    network,
                    specs,
                    insecure,
                );
                let mut sink = Sink(self.builder.events);
                let outcome = self
                    .builder
                    .runtime
                    .run(&spec, &mut sink)
                    .map_err(|e| BuildError::step(at, e.to_string()))?;
                drop(sources);
                drop(views);
                let code = match outcome.signal {
                    Some(signal) => 128 + signal,
                    None => outcome.exit_code,
                };
                if code != 0 {
                    return Err(BuildError::RunFailed { at: at.clone(), code });
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// ADD's extra rules for context sources: local tar archives are extracted into the destination
    /// (unless `--unpack=false`); http(s) URLs are downloaded (see `remote`). Returns the sources left to
    /// copy.
    fn add_archives(
        &self,
        root: &Root,
        sources: &[String],
        params: &CopyParams,
        unpack: Option<bool>,
        checksum: Option<&str>,
        at: &StepAt,
    ) -> Result<Vec<String>, BuildError> {
        let mut plain = Vec::new();
        for source in sources {
            refuse_url(source, at)?;
            if is_url(source) {
                let download = self
                    .downloads
                    .get(source, checksum)
                    .map_err(|m| BuildError::step(at, m))?;
                crate::copy::write_download(root, &download, source, sources.len() > 1, params)
                    .map_err(|m| BuildError::step(at, m))?;
                continue;
            }
            for name in self.context.select(source).map_err(|m| BuildError::step(at, m))? {
                let archive = match self.context.get(&name) {
                    Some(entry) => match (&entry.kind, &entry.content) {
                        (EntryKind::File, Content::Path(path, _))
                            if unpack != Some(false) && crate::archive::is_archive(path) =>
                        {
                            Some(path.clone())
                        }
                        _ => None,
                    },
                    None => None,
                };
                match archive {
                    Some(path) => {
                        let dest = if params.dest.starts_with('/') {
                            params.dest.clone()
                        } else {
                            format!("{}/{}", params.workdir.trim_end_matches('/'), params.dest)
                        };
                        crate::archive::extract(root, &path, Path::new(&crate::context::clean(&dest)))
                            .map_err(|m| BuildError::step(at, m))?;
                    }
                    None => plain.push(name),
                }
            }
        }
        Ok(plain)
    }

    /// The layers of a stage or image named by `--from`.
    fn source_layers(&self, source: &Source, at: &StepAt) -> Result<Vec<LayerRecord>, BuildError> {
        match source {
            Source::Stage { index, .. } => self
                .stage_state(*index)
                .map(|s| s.layers.clone())
                .ok_or_else(|| BuildError::step(at, format!("stage {index} was not built first"))),
            Source::Image { reference } => {
                self.bases
                    .get(reference)
                    .map(|b| b.layers.clone())
                    .ok_or_else(|| BuildError::MissingBase {
                        at: at.clone(),
                        reference: reference.clone(),
                    })
            }
        }
    }

    /// The context as a folder (for `RUN --mount=type=bind`): a folder context is used as it is; an in-tree
    /// context is written out once per build.
    fn context_dir(&self) -> Result<PathBuf, String> {
        if let Some(dir) = self.context_dir.get() {
            return Ok(dir.clone());
        }
        let dir = self.scratch.path().join("context");
        self.context.write_to(&dir).map_err(|e| e.to_string())?;
        let _ = self.context_dir.set(dir.clone());
        Ok(dir)
    }
}

/// ADD of git repositories and of URLs other than http(s) is not implemented: refuse it with a way out.
fn refuse_url(source: &str, at: &StepAt) -> Result<(), BuildError> {
    if is_git(source) {
        return Err(BuildError::step(
            at,
            format!(
                "ADD of the git repository `{source}` is not supported: clone it in a RUN step or COPY a \
                 checkout from the context"
            ),
        ));
    }
    if source.contains("://") && !is_url(source) {
        return Err(BuildError::step(
            at,
            format!(
                "ADD from `{source}` is not supported (only http(s) URLs and the context are): fetch it \
                 in a RUN step or COPY it from the context"
            ),
        ));
    }
    Ok(())
}

struct RunMounts<'r, 'b> {
    run: &'r Run<'b>,
    /// The throwaway overlays of writable bind mounts, unmounted when the step's mounts go.
    writable_views: std::cell::RefCell<Vec<Snapshot>>,
    /// The cache mounts held for the step.
    cache_leases: std::cell::RefCell<Vec<crate::cache_mount::CacheLease>>,
    /// The ssh agent sockets of the step.
    ssh_agents: std::cell::RefCell<Vec<crate::ssh_agent::AgentProxy>>,
}

impl crate::run::MountSources for RunMounts<'_, '_> {
    fn bind_source(&self, from: Option<&str>) -> Result<PathBuf, String> {
        match from {
            Some(view) => Ok(PathBuf::from(view)),
            None => self.run.context_dir(),
        }
    }

    fn cache_dir(&self, mount: &kiln_dockerfile::Mount, id: &str) -> Result<PathBuf, String> {
        let (dir, lease) =
            crate::cache_mount::acquire(&self.run.builder.state.join("cache-mounts"), mount, id)?;
        self.cache_leases.borrow_mut().push(lease);
        Ok(dir)
    }

    fn secret(&self, id: &str) -> Option<PathBuf> {
        self.run.options.secrets.get(id).cloned()
    }

    fn ssh_agent(&self, id: &str, uid: u32, gid: u32, mode: u32) -> Result<Option<PathBuf>, String> {
        let Some(agent) = self.run.options.ssh_agents.get(id) else {
            return Ok(None);
        };
        let proxy = crate::ssh_agent::AgentProxy::start(agent, uid, gid, mode)?;
        let socket = proxy.socket().to_owned();
        self.ssh_agents.borrow_mut().push(proxy);
        Ok(Some(socket))
    }

    fn scratch(&self) -> &Path {
        self.run.scratch.path()
    }

    fn writable_view(&self, source: &Path) -> Result<PathBuf, String> {
        let view = Snapshot::mount(self.run.scratch.path(), &[source.to_owned()])
            .map_err(|e| format!("cannot make a writable view of {}: {e}", source.display()))?;
        let merged = view.merged().to_owned();
        self.writable_views.borrow_mut().push(view);
        Ok(merged)
    }
}
