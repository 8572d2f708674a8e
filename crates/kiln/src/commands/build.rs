//! `kiln build`: in-tree images the plan marks `build`, parents first; or one Dockerfile with
//! `--dockerfile`. In-tree images get an `image.tar.zst` artifact and index records, in that order: a
//! record is only written once its artifact is complete.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use kiln_build::{BuildOptions, Builder, context::BuildContext};
use kiln_index::Status;
use kiln_oci::ImageStore;
use kiln_oci::compress::Compression;
use kiln_oci::export::{ExportFormat, export};
use kiln_plan::naming::{artifact_path, store_name};
use kiln_plan::{Plan, PlanEntry, Workspace};
use kiln_runtime::{Network, RuncRuntime};
use serde::Serialize;

use crate::cli::{BuildArgs, BuildSettingsArgs, GlobalArgs, LayerCompressionArg, NetworkArg, ScopeArgs};
use crate::commands::image::open_store;
use crate::commands::plan::hash_and_route;
use crate::output::stdout;
use crate::progress::BuildProgress;
use crate::settings::run_scope;

fn parse_pairs(items: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("{what} `{item}` is not KEY=VALUE"),
        })
        .collect()
}

fn parse_secrets(items: &[String]) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for item in items {
        let fields = parse_pairs(
            &item.split(',').map(str::to_owned).collect::<Vec<_>>(),
            "--secret field",
        )?;
        let (Some(id), Some(src)) = (fields.get("id"), fields.get("src").or(fields.get("source"))) else {
            bail!("--secret `{item}` needs id=ID,src=FILE");
        };
        let src = PathBuf::from(src);
        if !src.is_file() {
            bail!("--secret {id}: {} is not a file", src.display());
        }
        out.insert(id.clone(), src);
    }
    Ok(out)
}

/// `--ssh ID[=SOCKET]`: each agent must be a listening socket (key files are refused: kiln forwards
/// agents, it does not hold keys).
fn parse_ssh_agents(items: &[String]) -> Result<BTreeMap<String, PathBuf>> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = BTreeMap::new();
    for item in items {
        let (id, socket) = match item.split_once('=') {
            Some((id, socket)) => (id, PathBuf::from(socket)),
            None => {
                let Some(socket) = std::env::var_os("SSH_AUTH_SOCK") else {
                    bail!(
                        "--ssh {item}: no socket given and SSH_AUTH_SOCK is not set (use --ssh {item}=SOCKET)"
                    );
                };
                (item.as_str(), PathBuf::from(socket))
            }
        };
        if id.is_empty() || id.contains(',') {
            bail!("--ssh `{item}` needs ID[=SOCKET]");
        }
        let meta = fs_err::metadata(&socket).with_context(|| format!("--ssh {id}"))?;
        if !meta.file_type().is_socket() {
            bail!(
                "--ssh {id}: {} is not an agent socket (kiln forwards ssh agents; load keys with ssh-add)",
                socket.display()
            );
        }
        out.insert(id.to_owned(), socket);
    }
    Ok(out)
}

fn options(args: &BuildSettingsArgs, target: Option<String>, file_label: String) -> Result<BuildOptions> {
    Ok(BuildOptions {
        build_args: parse_pairs(&args.build_args, "--build-arg")?,
        target,
        parent_image: None,
        aliases: BTreeMap::new(),
        source_date_epoch: args.source_date_epoch,
        compression: match args.layer_compression {
            LayerCompressionArg::Gzip => Compression::Gzip,
            LayerCompressionArg::Zstd => Compression::Zstd,
        },
        no_cache: args.no_cache,
        file_label,
        secrets: parse_secrets(&args.secrets)?,
        ssh_agents: parse_ssh_agents(&args.ssh)?,
        allow_insecure: args.allow.iter().any(|a| a == "security.insecure"),
        network: match args.network {
            NetworkArg::Default => Network::Private,
            NetworkArg::Host => Network::Host,
            NetworkArg::None => Network::None,
        },
        // `--network host` asks for the host's network on the command line as much as the entitlement.
        allow_host_network: args.network == NetworkArg::Host
            || args.allow.iter().any(|a| a == "network.host"),
        direct_copy: true,
    })
}

/// The runtime, with Ctrl-C (and SIGTERM) stopping whatever RUN is in progress: the process inside a
/// container is PID 1 and would ignore SIGINT, so kiln kills it and the build ends as interrupted.
fn runtime(args: &BuildSettingsArgs) -> Arc<RuncRuntime> {
    let runtime = Arc::new(
        RuncRuntime::new(args.runtime.clone(), PathBuf::from("/run/kiln-runc"))
            .with_slirp4netns(args.slirp4netns.clone()),
    );
    let for_signal = Arc::clone(&runtime);
    if let Err(e) = ctrlc::set_handler(move || {
        eprintln!("interrupted: stopping running steps");
        for_signal.kill_all();
    }) {
        tracing::debug!("no Ctrl-C handler: {e}");
    }
    runtime
}

impl Summary {
    fn cached(image: String, manifest_digest: String) -> Summary {
        Summary {
            image,
            status: "cached",
            manifest_digest,
            size: 0,
            seconds: 0.0,
            steps_run: 0,
            steps_cached: 0,
            artifact: None,
            artifact_digest: None,
            routes: Vec::new(),
        }
    }
}

#[derive(Serialize)]
struct Summary {
    image: String,
    status: &'static str,
    manifest_digest: String,
    size: u64,
    seconds: f64,
    steps_run: usize,
    steps_cached: usize,
    artifact: Option<PathBuf>,
    artifact_digest: Option<String>,
    routes: Vec<String>,
}

fn print_summary(args: &BuildArgs, summaries: &[Summary]) -> Result<()> {
    stdout(|out| {
        if args.json {
            serde_json::to_writer_pretty(&mut *out, summaries)?;
            return writeln!(out);
        }
        let width = summaries.iter().map(|s| s.image.len()).max().unwrap_or(5).max(5);
        writeln!(
            out,
            "{:width$}  {:7}  {:19}  {:>10}  {:>7}  STEPS RUN/CACHED",
            "IMAGE", "STATUS", "DIGEST", "SIZE", "TIME"
        )?;
        for s in summaries {
            writeln!(
                out,
                "{:width$}  {:7}  {:19}  {:>10}  {:>6.2}s  {}/{}",
                s.image,
                s.status,
                &s.manifest_digest[..s.manifest_digest.len().min(19)],
                human_size(s.size),
                s.seconds,
                s.steps_run,
                s.steps_cached
            )?;
        }
        Ok(())
    })
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

pub fn run(global: &GlobalArgs, args: &BuildArgs) -> Result<()> {
    match &args.dockerfile {
        Some(dockerfile) => single(global, args, dockerfile),
        None => tree(&crate::settings::workspace(global)?, global, args),
    }
}

/// `kiln build --dockerfile F [--context DIR] -t NAME`.
fn single(global: &GlobalArgs, args: &BuildArgs, dockerfile: &Path) -> Result<()> {
    let (_, text) = crate::commands::dockerfile::read_dockerfile(dockerfile)?;
    // A bare file name (`-f Dockerfile`) is in the current folder.
    let context_dir = match &args.context {
        Some(dir) => dir.clone(),
        None => kiln_oci::files::parent_dir(dockerfile).to_owned(),
    };
    if !context_dir.is_dir() {
        bail!("the build context {} is not a folder", context_dir.display());
    }
    let ignore = read_dockerignore(&context_dir, dockerfile)?;
    let context = BuildContext::from_dir(&context_dir, ignore.as_ref())?;
    let store = open_store(global)?;
    let tags = args
        .tags
        .iter()
        .map(|t| kiln_oci::image::normalize_name(t))
        .collect::<Result<Vec<_>, _>>()?;
    let name = tags
        .first()
        .cloned()
        .unwrap_or_else(|| "kiln-build:latest".to_owned());
    let started = Instant::now();
    let mut options = options(
        &args.settings,
        args.target.clone(),
        dockerfile.display().to_string(),
    )?;
    // A taskgraph child Dockerfile built alone: `--build-arg DOCKER_IMAGE_PARENT=IMAGE` names its parent, and
    // `FROM $DOCKER_IMAGE_PARENT` needs no `ARG`, as in the in-tree build.
    options.parent_image = options.build_args.get("DOCKER_IMAGE_PARENT").cloned();
    pull_missing_bases(global, &store, &text, &options)?;
    let _writing = store.lock_for_writing()?;
    let progress = BuildProgress::new(global.quiet);
    let events = progress.image(&name);
    let runtime = runtime(&args.settings);
    let built = Builder::new(&store, &*runtime, &events).build(&text, &context, &options)?;
    progress.warnings(&options.file_label, &built.warnings);
    for tag in &tags {
        store.set_ref(tag, &built.manifest)?;
    }
    if let Some(output) = &args.output {
        if tags.is_empty() {
            store.set_ref(&name, &built.manifest)?;
        }
        export(&store, &name, output, ExportFormat::for_path(output)?)?;
    }
    print_summary(
        args,
        &[Summary {
            image: name,
            status: if built.executed == 0 { "cached" } else { "built" },
            manifest_digest: built.manifest.digest.to_string(),
            size: built.size,
            seconds: started.elapsed().as_secs_f64(),
            steps_run: built.executed,
            steps_cached: built.cached,
            artifact: args.output.clone(),
            artifact_digest: None,
            routes: Vec::new(),
        }],
    )
}

/// Whether a reference names its registry (`host.tld/…`, `host:port/…`, `localhost/…`): only those are
/// pulled when missing; a Docker Hub short name is never fetched behind the user's back.
fn names_a_registry(reference: &str) -> bool {
    reference
        .split_once('/')
        .is_some_and(|(host, _)| host.contains(['.', ':']) || host == "localhost")
}

/// Pulls the bases `dockerfile` needs that are missing from the store and name a registry, through the
/// registry client (credentials from the usual auth files; plain HTTP only to loopback registries).
fn pull_missing_bases(
    global: &GlobalArgs,
    store: &ImageStore,
    dockerfile: &str,
    options: &BuildOptions,
) -> Result<()> {
    let missing: Vec<(String, String)> = kiln_build::base_references(dockerfile, options)?
        .into_iter()
        .filter(|r| names_a_registry(r))
        .filter_map(|r| kiln_oci::image::normalize_name(&r).ok().map(|name| (r, name)))
        .filter(|(_, name)| store.get(name).ok().flatten().is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let registry = crate::cli::RegistryArgs {
        creds: None,
        cert_dir: None,
        insecure: false,
        tls_verify: true,
        jobs: 4,
        json: false,
        read_timeout: std::env::var("KILN_READ_TIMEOUT").ok(),
    };
    let client = crate::commands::registry::client(global, &registry)?;
    let platforms = kiln_client::PlatformChoice::One(kiln_client::Platform::host());
    for (reference, name) in missing {
        if !global.quiet {
            eprintln!("pulling base image {reference}");
        }
        let source = crate::commands::registry::parse_reference(&reference)?;
        crate::commands::registry::block_on(async {
            client
                .pull_image(&source, store, &name, &platforms)
                .await
                .with_context(|| {
                    format!("base image `{reference}` is not in the store and pulling it failed")
                })
        })?;
    }
    Ok(())
}

/// `.dockerignore` of the context, or `<Dockerfile>.dockerignore` next to the Dockerfile (BuildKit
/// prefers the latter).
fn read_dockerignore(context: &Path, dockerfile: &Path) -> Result<Option<kiln_tree::DockerIgnore>> {
    let specific = PathBuf::from(format!("{}.dockerignore", dockerfile.display()));
    let path = if specific.is_file() {
        specific
    } else {
        context.join(".dockerignore")
    };
    if !path.is_file() {
        return Ok(None);
    }
    let text = fs_err::read_to_string(&path)?;
    let ignore = kiln_tree::DockerIgnore::parse(&text)
        .map_err(|(line, message)| anyhow::anyhow!("{}:{line}: {message}", path.display()))?;
    Ok(Some(ignore))
}

/// In-tree builds, with their summary on stdout.
fn tree(ws: &Workspace, global: &GlobalArgs, args: &BuildArgs) -> Result<()> {
    if args.names.is_empty() && !args.all {
        bail!("name the images to build, or use --all");
    }
    let names: Vec<String> = if args.all {
        ws.repo.images.iter().map(|i| i.name.clone()).collect()
    } else {
        args.names.clone()
    };
    let request = TreeRequest {
        names,
        force: args.force,
        scope: &args.scope,
        artifacts: args.artifacts.clone(),
        settings: &args.settings,
    };
    let summaries = build_tree(ws, global, &request)?;
    print_summary(args, &summaries)
}

/// What an in-tree build is asked for, whoever asks (`kiln build IMAGE…`, and `kiln upload`/`publish`
/// for an image the store lacks).
pub(crate) struct TreeRequest<'a> {
    /// The images wanted (their parents are planned too).
    pub names: Vec<String>,
    /// Build the wanted images even when the index has them.
    pub force: bool,
    /// The trust scope of the run.
    pub scope: &'a ScopeArgs,
    /// Where artifacts go (default `<state>/artifacts`).
    pub artifacts: Option<PathBuf>,
    /// How images are built.
    pub settings: &'a BuildSettingsArgs,
}

/// In-tree builds as `kiln build IMAGE…` does them, printing no summary (for `kiln upload`/`publish`,
/// whose stdout is the pushed reference).
pub(crate) fn build_tree_quietly(
    ws: &Workspace,
    global: &GlobalArgs,
    request: &TreeRequest<'_>,
) -> Result<()> {
    build_tree(ws, global, request).map(drop)
}

fn build_tree(ws: &Workspace, global: &GlobalArgs, args: &TreeRequest<'_>) -> Result<Vec<Summary>> {
    let names = &args.names;
    let config = &ws.repo.config;
    let scope = run_scope(args.scope, config.index.max_level)?;
    let entries = hash_and_route(ws, global, names, &scope)?;
    let index = ws.index_for_writing()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let plan = Plan::resolve(entries, &index, now)?;
    let (entries, statuses) = (&plan.entries, &plan.statuses);
    let store = open_store(global)?;
    let artifacts = args.artifacts.clone().unwrap_or_else(|| ws.artifacts_dir());
    let runtime = runtime(args.settings);
    let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();

    // An image is built when the plan says so (or --force), or when a child that is built needs it as a
    // base and this store does not have it.
    let build = plan.build_set(&wanted, args.force, |entry| {
        Ok::<_, anyhow::Error>(
            store
                .get(&store_name(&entry.image.name, &entry.hashes.digest.hex))?
                .is_some(),
        )
    })?;

    let mut summaries: Vec<Summary> = Vec::new();
    for (entry, status) in entries.iter().zip(statuses) {
        let name = &entry.image.name;
        if !build.contains(name) && wanted.contains(name.as_str()) {
            let found = match status {
                Status::Cached(hit) => hit.record.image_digest.clone(),
                Status::Build(_) => String::new(),
            };
            summaries.push(Summary::cached(name.clone(), found));
        }
    }

    // Images whose parents are done build concurrently, up to one per core; index records are written
    // on this thread, as each build (artifact included) completes.
    let todo: Vec<&PlanEntry<'_>> = entries.iter().filter(|e| build.contains(&e.image.name)).collect();
    let deps: Vec<Vec<usize>> = todo
        .iter()
        .map(|entry| {
            let parent = entry.image.parent.as_deref();
            todo.iter()
                .position(|e| Some(e.image.name.as_str()) == parent)
                .into_iter()
                .collect()
        })
        .collect();
    let shared = TreeBuild {
        global,
        settings: args.settings,
        config,
        entries,
        store: &store,
        runtime: &runtime,
        artifacts: &artifacts,
        progress: &BuildProgress::new(global.quiet),
    };
    kiln_plan::dag::run(
        &deps,
        kiln_plan::dag::default_jobs(),
        |node| build_one(&shared, todo[node]),
        |node, summary: Summary| {
            let entry = todo[node];
            if let Some(digest) = &summary.artifact_digest
                && !entry.routes.is_empty()
            {
                let record = entry.record(ws, &scope, &summary.manifest_digest, Some(digest), None);
                kiln_index::Index::insert(&index, &entry.routes, &record)?;
            }
            summaries.push(summary);
            Ok(())
        },
    )
    .map_err(|e| match e {
        kiln_plan::dag::DagError::Failed(e) => e,
        unsatisfiable => anyhow::anyhow!("{unsatisfiable}"),
    })?;
    // The summary lists images in plan order (parents first), whatever order they finished in.
    let position = |name: &str| {
        entries
            .iter()
            .position(|e| e.image.name == name)
            .unwrap_or(usize::MAX)
    };
    summaries.sort_by_key(|s| position(&s.image));
    Ok(summaries)
}

/// What every in-tree build of one run shares.
struct TreeBuild<'a> {
    global: &'a GlobalArgs,
    settings: &'a BuildSettingsArgs,
    config: &'a kiln_tree::RepoConfig,
    entries: &'a [PlanEntry<'a>],
    store: &'a ImageStore,
    runtime: &'a RuncRuntime,
    artifacts: &'a Path,
    progress: &'a BuildProgress,
}

/// Builds one in-tree image, names it in the store and writes its artifact.
fn build_one(run: &TreeBuild<'_>, entry: &PlanEntry<'_>) -> Result<Summary> {
    let TreeBuild {
        global,
        settings,
        config,
        entries,
        store,
        runtime,
        artifacts,
        progress,
    } = *run;
    let name = entry.image.name.clone();
    let digest = &entry.hashes.digest.hex;
    let started = Instant::now();
    // Until the image is named, `kiln gc` must not collect its fresh layers.
    let _writing = store.lock_for_writing()?;
    let tree_context = kiln_tree::collect(config, entry.image)?;
    let context = BuildContext::from_tree(&tree_context);
    let dockerfile = match tree_context
        .entries
        .iter()
        .find(|e| e.name == "Dockerfile")
        .map(|e| &e.source)
    {
        Some(kiln_tree::Source::Bytes(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        _ => bail!("image `{name}` has no Dockerfile in its context"),
    };
    let mut options = options(
        settings,
        None,
        format!("{}/Dockerfile", entry.image.dir.display()),
    )?;
    for (k, v) in &entry.image.args {
        options.build_args.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if let Some(parent) = &entry.image.parent {
        let parent_entry = entries
            .iter()
            .find(|e| &e.image.name == parent)
            .with_context(|| format!("parent `{parent}` of `{name}` was not planned"))?;
        let parent_ref = store_name(parent, &parent_entry.hashes.digest.hex);
        if store.get(&parent_ref)?.is_none() {
            bail!(
                "parent image `{parent}` of `{name}` is not in the store {}",
                store.root().display()
            );
        }
        options.parent_image = Some(parent_ref.clone());
        options.aliases.insert(parent.clone(), parent_ref);
    }
    pull_missing_bases(global, store, &dockerfile, &options)?;
    let events = progress.image(&name);
    let built = Builder::new(store, runtime, &events)
        .build(&dockerfile, &context, &options)
        .with_context(|| format!("building image `{name}`"))?;
    progress.warnings(&options.file_label, &built.warnings);
    let store_ref = store_name(&name, digest);
    store.set_ref(&store_ref, &built.manifest)?;
    let artifact = artifact_path(artifacts, &name);
    fs_err::create_dir_all(artifacts.join(&name))?;
    export(
        store,
        &store_ref,
        &artifact,
        ExportFormat::DockerArchive { zstd: true },
    )?;
    let artifact_digest = file_digest(&artifact)?;
    Ok(Summary {
        image: name,
        status: "built",
        manifest_digest: built.manifest.digest.to_string(),
        size: built.size,
        seconds: started.elapsed().as_secs_f64(),
        steps_run: built.executed,
        steps_cached: built.cached,
        artifact: Some(artifact),
        artifact_digest: Some(artifact_digest),
        routes: entry.routes.clone(),
    })
}

fn file_digest(path: &Path) -> Result<String> {
    use sha2::Digest as _;
    let mut file = fs_err::File::open(path)?;
    let mut h = kiln_tree::HashSink(sha2::Sha256::new());
    std::io::copy(&mut file, &mut h)?;
    Ok(format!("sha256:{}", hex::encode(h.0.finalize())))
}
