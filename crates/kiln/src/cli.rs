//! Command-line flags, as the user types them. `settings` turns them into validated paths and modes.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// kiln builds, caches and ships the container images a repository defines in its own source tree.
///
/// It reads image definitions (taskgraph's kind.yml, kiln.toml, or an images/ folder), computes context
/// hashes and cache digests, and looks them up in an index to plan what must be built.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, propagate_version = true, max_term_width = 110)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Repository root (default: the nearest folder upwards with kiln.toml, taskcluster/config.yml or images/).
    #[arg(short = 'C', long = "repo", global = true, value_name = "DIR")]
    pub repo: Option<PathBuf>,

    /// Use this folder of image folders instead of the repository's configuration.
    #[arg(long, global = true, value_name = "DIR")]
    pub images: Option<PathBuf>,

    /// Hash mode: `taskgraph` (byte-exact with taskgraph 24.5.1) or `native` (kiln's own).
    /// Default: taskgraph for taskgraph layouts, native otherwise, unless kiln.toml says.
    #[arg(long, global = true, value_enum)]
    pub hash_mode: Option<HashModeArg>,

    /// taskgraph's run-task folder for `# %include-run-task` [default: kiln.toml's `run-task-dir`, else the
    /// taskgraph package of the repository's .venv/venv, $VIRTUAL_ENV or python3, else src/taskgraph/run-task].
    #[arg(long, global = true, env = "KILN_RUN_TASK_DIR", value_name = "DIR")]
    pub run_task_dir: Option<PathBuf>,

    /// Where kiln keeps its state (stat cache, default index) [default: <repo>/.kiln].
    #[arg(long, global = true, env = "KILN_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// The index database [default: <state-dir>/index.sqlite].
    #[arg(long, global = true, env = "KILN_INDEX", value_name = "FILE")]
    pub index: Option<PathBuf>,

    /// Do not print warnings.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// The image content store (an OCI image layout) [default: <state-dir>/store, or
    /// ~/.local/share/kiln/store outside a repository].
    #[arg(long, global = true, env = "KILN_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HashModeArg {
    Taskgraph,
    Native,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the repository's images: name, folder, parent, kind.
    Images(ImagesArgs),
    /// Plan: for every image its context hash, cache digest, index routes, and whether it is cached or must be built.
    Plan(PlanArgs),
    /// Write the context of an image (exactly the bytes that are hashed) to a .tar, .tar.gz or .tar.zst.
    Context(ContextArgs),
    /// Print an image's cache digest; with --explain, each part that goes into it.
    Digest(DigestArgs),
    /// Read and write the index of built images.
    #[command(subcommand)]
    Index(IndexCommand),
    /// Parse and evaluate a Dockerfile as BuildKit does; print its stages and instructions. Files over
    /// 4 MiB, instructions over 1 MiB and values expanding past 1 MiB are refused, naming the line
    /// (docs/dockerfile-json.md lists the limits).
    Dockerfile(DockerfileArgs),
    /// Run an OCI distribution registry (the CI intermediate or buildset registry). Needs no repository.
    Serve(Box<ServeArgs>),
    /// Maintenance of a `kiln serve` root while no server runs on it: gc and fsck.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Images in the content store: import, ls, inspect, export, rm (see docs/cli.md).
    #[command(subcommand)]
    Image(ImageCommand),
    /// Remove the content store's blobs that no image or build-cache record references, and the
    /// builder's unpacked layers and scratch folders that nothing needs (docs/cli.md).
    ///
    /// The build cache is kept: a build of an unchanged Dockerfile after `kiln gc` runs no step (unless
    /// --drop-build-cache). Waits for the builds and imports running on the store to finish.
    Gc(GcArgs),
    /// Build in-tree images that the plan marks `build` (parents first), or one Dockerfile with
    /// --dockerfile; write `image.tar.zst` artifacts and record built images in the index.
    Build(BuildArgs),
    /// Push an image of the content store to a registry (docs/cli.md).
    Push(PushArgs),
    /// Pull an image from a registry into the content store.
    Pull(PullArgs),
    /// Copy an image between registries (docker://REF), the store (store:NAME), archives (.tar, .tar.zst,
    /// .oci.tar) and OCI layouts (oci:DIR[:TAG]).
    Copy(CopyArgs),
    /// Put the manifest a reference points to under more tags of its repository (no blob moves).
    Tag(TagArgs),
    /// Tag a temporary tag's manifest with final tags, then delete the temporary tag (never the manifest).
    Promote(TagArgs),
    /// Delete tags, never manifests; with --older-than, sweep a repository's leaked temporary tags.
    Untag(UntagArgs),
    /// Push an in-tree image (built first if the store lacks it) under a temporary tag for the gate
    /// pipeline; `kiln promote` gives it its final tags after merge.
    Upload(UploadArgs),
    /// Publish a registry image (VERSION, HASH, REGISTRY files): push <registry>/<name>:<version>
    /// (never over another digest), move `latest`, record the digest in HASH.
    Publish(PublishArgs),
    /// Move a buildset's images to (`push`) or from (`pull`) the intermediate registry, where they are
    /// tagged `<build-id>_<tag>` (docs/speculative-images.md).
    #[command(subcommand)]
    Speculative(SpeculativeCommand),
}

/// `kiln speculative push|pull`.
#[derive(Debug, Subcommand)]
pub enum SpeculativeCommand {
    /// Copy `BUILDSET/NAME:TAG` to `INTERMEDIATE/NAME:<build-id>_TAG` for each image.
    Push(SpeculativeArgs),
    /// Copy `INTERMEDIATE/NAME:<build-id>_TAG` to `BUILDSET/NAME:TAG` for each image.
    Pull(SpeculativeArgs),
}

#[derive(Debug, Args)]
pub struct SpeculativeArgs {
    /// Images as the buildset registry names them, `NAME:TAG` (`org/app:1.0`, `quay.io/org/app:1.0`).
    #[arg(required = true, value_name = "NAME:TAG")]
    pub names: Vec<String>,

    /// The build the images belong to (a tag prefix: letters, digits, `_`, `.`, `-`).
    #[arg(long, value_name = "ID")]
    pub build: String,

    /// The buildset registry (`HOST:PORT`).
    #[arg(long, value_name = "HOST:PORT")]
    pub buildset: String,

    /// The intermediate registry (`HOST:PORT`).
    #[arg(long, value_name = "HOST:PORT")]
    pub intermediate: String,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Flags of every command that talks to a registry.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Credentials for the registries this command talks to [default: $REGISTRY_AUTH_FILE,
    /// $DOCKER_CONFIG/config.json or ~/.docker/config.json, with their credential helpers].
    #[arg(long, value_name = "USER:PASSWORD")]
    pub creds: Option<String>,

    /// Folder of CA certificates (*.crt) and client certificates (*.cert with *.key) [default:
    /// /etc/containers/certs.d/HOST and /etc/docker/certs.d/HOST].
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,

    /// Accept any TLS certificate and allow plain HTTP to any registry (loopback registries may always use
    /// plain HTTP). Same as --tls-verify=false.
    #[arg(long)]
    pub insecure: bool,

    /// Verify TLS certificates (`--tls-verify=false` is --insecure).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub tls_verify: bool,

    /// Blobs transferred at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,

    /// A request fails, and is retried, when no byte moves for this long: while a blob is sent, while an
    /// answer is awaited, or while it is read (`10s`, `2m`) [default: 30s]. Transfers of any size go on
    /// as long as bytes move.
    #[arg(long, env = "KILN_READ_TIMEOUT", value_name = "DURATION")]
    pub read_timeout: Option<String>,

    /// Print the result as JSON on stdout (see docs/cli.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The store image (`kiln image ls`).
    pub image: String,

    /// Where to push: `[registry/]repository[:tag]`.
    pub reference: String,

    /// A repository of the same registry that has the image's blobs: they are mounted, not uploaded.
    #[arg(long, value_name = "REPOSITORY")]
    pub mount_from: Option<String>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Which images of a multi-arch index to take.
#[derive(Debug, Clone, Args)]
pub struct PlatformArgs {
    /// The platform to take from a multi-arch index, `os/arch[/variant]` [default: this host's].
    #[arg(long, value_name = "PLATFORM", conflicts_with = "all")]
    pub platform: Option<String>,

    /// Take the whole index and every image it lists.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// What to pull: `[registry/]repository[:tag][@digest]`.
    pub reference: String,

    /// The name in the store [default: the full reference].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    #[command(flatten)]
    pub platforms: PlatformArgs,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source: docker://REF (or a bare reference), store:NAME, FILE.tar|.tar.zst|.oci.tar, oci:DIR[:TAG].
    pub source: String,

    /// Destination, in the same forms.
    pub destination: String,

    #[command(flatten)]
    pub platforms: PlatformArgs,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// The source: `[registry/]repository:tag` (or `@digest`).
    pub reference: String,

    /// Tags to add in the same repository.
    #[arg(required = true, value_name = "TAG")]
    pub tags: Vec<String>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct UntagArgs {
    /// Tags to delete (`repository:tag`); with --older-than, repositories to sweep.
    #[arg(required = true, value_name = "REF")]
    pub references: Vec<String>,

    /// Only tags whose image was created longer ago than this (`24h`, `7d`); the positional arguments are
    /// then repositories.
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<String>,

    /// With --older-than: only tags matching this glob.
    #[arg(
        long = "match",
        value_name = "GLOB",
        default_value = "*",
        requires = "older_than"
    )]
    pub pattern: String,

    /// Print what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// An in-tree image (built if needed), or a store image such as `kiln/<image>:<cache-digest>`.
    pub image: String,

    /// The registry and namespace to push to: the image goes to `<REGISTRY>/<image>` [default: the
    /// image's REGISTRY file, for registry images].
    #[arg(long = "registry", value_name = "REGISTRY")]
    pub to: Option<String>,

    /// The temporary tag, e.g. `change_<N>_<tag>`.
    #[arg(long, value_name = "TAG")]
    pub temporary_tag: String,

    #[command(flatten)]
    pub scope: ScopeArgs,

    /// Used only when the image must be built first (as `kiln build IMAGE --force` would).
    #[command(flatten, next_help_heading = "Building (when the store lacks the image)")]
    pub build: BuildSettingsArgs,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// A registry image of the repository (its folder, or the images root, has REGISTRY; it has VERSION).
    pub image: String,

    /// More tags for the same manifest (repeatable): a branch, a date.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,

    /// Also write the manifest digest to this file.
    #[arg(long, value_name = "FILE")]
    pub digest_file: Option<PathBuf>,

    #[command(flatten)]
    pub scope: ScopeArgs,

    /// Used only when the image must be built first (as `kiln build IMAGE --force` would).
    #[command(flatten, next_help_heading = "Building (when the store lacks the image)")]
    pub build: BuildSettingsArgs,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `kiln image …`: a command shape other tools script against (docs/cli.md).
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import a docker-archive (.tar, .tar.gz, .tar.zst), an OCI layout folder or OCI archive, or a root
    /// filesystem (a folder or a tar) as a single-layer image.
    Import(ImageImportArgs),
    /// List the store's images: name, manifest digest, size.
    Ls(ImageLsArgs),
    /// Print an image's manifest and config as JSON.
    Inspect(ImageInspectArgs),
    /// Write an image: the extension picks the format (.tar, .tar.zst docker-archive; .oci.tar OCI archive;
    /// a folder for an OCI layout).
    Export(ImageExportArgs),
    /// Remove image names (blobs stay until `kiln gc`).
    Rm(ImageRmArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    Default,
    Host,
    None,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LayerCompressionArg {
    Gzip,
    Zstd,
}

#[derive(Debug, Args)]
pub struct ImageImportArgs {
    /// The archive, OCI layout folder, or root filesystem (folder or tar).
    pub path: PathBuf,

    /// Name to give the image (required for a root filesystem; replaces the archive's names).
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub name: Option<String>,

    /// Compression of layers that arrive uncompressed.
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: LayerCompressionArg,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImageLsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImageInspectArgs {
    /// The image name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ImageExportArgs {
    /// The image name.
    pub name: String,

    /// Output file or folder; the extension picks the format.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImageRmArgs {
    /// Image names.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `kiln gc [--drop-build-cache] [--dry-run] [--json]`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Also remove the build cache: every instruction-cache record, the layers only they kept, every
    /// unpacked layer folder and every `RUN --mount=type=cache` folder. The next build runs every step.
    #[arg(long)]
    pub drop_build_cache: bool,

    /// Print what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `kiln serve --listen 127.0.0.1:5000 --root DIR`: a command shape other tools script against.
///
/// Every option can also be set in a TOML file given with --config (docs/registry-config.md); a flag given
/// on the command line wins over the file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Read settings from this TOML file (keys mirror the flags: `listen`, `root`, `[auth] mode`, …;
    /// see docs/registry-config.md). Flags given on the command line win over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address and port to listen on (`IP:PORT`; port 0 picks a free one, printed on stderr at start)
    /// [default: 127.0.0.1:5000]. On anything but a loopback address kiln refuses to start in `open` auth
    /// mode unless --allow-anonymous-push is given.
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<SocketAddr>,

    /// Folder holding the registry's blobs, manifests, tags and uploads (created if absent; layout in
    /// docs/registry-storage.md). Required, here or as `root` in the config file.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Allow anyone who can reach a non-loopback --listen address to push and delete (`open` auth mode
    /// off loopback).
    #[arg(long)]
    pub allow_anonymous_push: bool,

    /// The largest manifest accepted, in bytes (larger: 413) [default: 4194304].
    #[arg(long, value_name = "BYTES")]
    pub max_manifest_size: Option<usize>,

    /// Who may do what without credentials: `open` (anyone pulls, pushes, deletes), `anonymous-read`
    /// (anyone pulls; pushing and deleting need a user: the CI intermediate registry), `restricted`
    /// (everything needs a user) [default: anonymous-read with --htpasswd, else open]. Config: `[auth] mode`.
    #[arg(long = "auth", value_enum, value_name = "MODE")]
    pub auth_mode: Option<AuthModeArg>,

    /// Users and their bcrypt password hashes (`htpasswd -B`; other hash kinds are refused).
    /// Config: `[auth] htpasswd`; per-user access rules are `[[auth.access]]` entries there.
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,

    /// The key that signs bearer tokens (a file of at least 32 bytes) [default: <root>/token.key, generated
    /// with mode 0600 if absent]. Config: `[auth] token-key`.
    #[arg(long, value_name = "FILE")]
    pub token_key: Option<PathBuf>,

    /// How long issued tokens last (`30s`, `5m`, `1h`) [default: 5m]. Config: `[auth] token-ttl`.
    #[arg(long, value_name = "DURATION")]
    pub token_ttl: Option<String>,

    /// Check Basic credentials on every request instead of the Docker token flow (`GET /token`).
    /// Config: `[auth] token = false`.
    #[arg(long)]
    pub no_token: bool,

    /// The token endpoint URL put in challenges [default: <scheme>://<Host header>/token].
    /// Config: `[auth] realm`.
    #[arg(long, value_name = "URL")]
    pub realm: Option<String>,

    /// The service name in challenges and tokens [default: kiln]. Config: `[auth] service`.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,

    /// Serve HTTPS with this PEM certificate chain (leaf first; with --tls-key). Config: `[tls] cert`.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert. Config: `[tls] key`.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve HTTPS with a generated CA and server certificate kept in <root>/tls (reused on restart); the
    /// CA's path is printed at start for clients to trust (skopeo/podman: --cert-dir <root>/tls).
    /// Config: `[tls] self-signed = true`.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_self_signed: bool,

    /// Collect garbage this often while serving (`30m`, `6h`) [default: 1h with --expire-tags, else
    /// off]. Config: `[gc] interval`.
    #[arg(long, value_name = "DURATION")]
    pub gc_interval: Option<String>,

    /// GC keeps uploads, links and blobs younger than this whatever references them [default: 1h].
    /// Config: `[gc] grace`.
    #[arg(long, value_name = "DURATION")]
    pub gc_grace: Option<String>,

    /// Expire tags matching a glob this long after their last push, at each GC (`change_*=24h`;
    /// repeatable). Config: `[gc] expire-tags = ["change_*=24h"]`.
    #[arg(long, value_name = "PATTERN=DURATION")]
    pub expire_tags: Vec<String>,

    /// Open upload sessions allowed per repository; one more answers 429 TOOMANYREQUESTS (0: no cap)
    /// [default: 256]. Config: `[uploads] per-repository`.
    #[arg(long, value_name = "N")]
    pub uploads_per_repository: Option<usize>,

    /// Open upload sessions allowed per client (its user when it logged in, else its IP address); one
    /// more answers 429 TOOMANYREQUESTS (0: no cap) [default: 64]. Config: `[uploads] per-client`.
    #[arg(long, value_name = "N")]
    pub uploads_per_client: Option<usize>,

    /// An upload session that no request used for this long expires (then 404 BLOB_UPLOAD_UNKNOWN); swept
    /// every minute whether or not GC runs [default: 15m]. Config: `[uploads] idle-timeout`.
    #[arg(long, value_name = "DURATION")]
    pub uploads_idle_timeout: Option<String>,

    /// Connections served at once; more wait, unaccepted, until one closes [default: 1024]. Config:
    /// `[http] max-connections`.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// How long a client may take to send a request's headers from their first byte (and a TLS
    /// handshake from the connection's start) before the connection is closed [default: 10s]. Config:
    /// `[http] header-timeout`.
    #[arg(long, value_name = "DURATION")]
    pub header_timeout: Option<String>,

    /// Close a connection that has no request in flight and no byte of a new one for this long
    /// [default: 60s]. Config: `[http] idle-timeout`.
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,

    /// Fail a request whose body sends nothing for this long (an upload chunk is undone), and close a
    /// connection whose client takes no byte of a response for this long [default: 60s]. Config:
    /// `[http] stall-timeout`.
    #[arg(long, value_name = "DURATION")]
    pub stall_timeout: Option<String>,

    /// How the access log (one line per request, plus blob mount and upload events) is written on
    /// stderr: `text` or `json` (one object per line) [default: text]. KILN_LOG=warn silences it; metrics
    /// are at GET /metrics (docs/registry-observability.md). Config: `log-format`.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormatArg>,

    /// Buildset registry: the intermediate registry to pull speculative images from, as
    /// `<name>:<build-id>_<tag>` for each --speculative-build (docs/speculative-images.md). What the
    /// registry lacks is fetched from there, then from the --mirror of the image's registry host, verified
    /// and cached. Config: `[pull-through] upstream`; its credentials: `[pull-through.credentials."HOST"]`.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,

    /// A build whose speculative images this buildset uses (repeatable; the first that has a tag wins, so
    /// give the change nearest ahead in the queue first). Config: `[pull-through] speculative-builds`.
    #[arg(long, value_name = "ID")]
    pub speculative_build: Vec<String>,

    /// Pull images of registry HOST (`docker.io` for names without a host, `quay.io`, …) that neither
    /// this registry nor the intermediate one has from URL [default URL: the host's own registry;
    /// repeatable]. Config: `[pull-through] mirrors = { "docker.io" = "URL" }`.
    #[arg(long, value_name = "HOST[=URL]")]
    pub mirror: Vec<String>,

    /// Folder of CA certificates (*.crt) and client certificates for the upstream registries.
    /// Config: `[pull-through] cert-dir`.
    #[arg(long, value_name = "DIR")]
    pub upstream_cert_dir: Option<PathBuf>,

    /// Accept any TLS certificate from the upstream registries. Config: `[pull-through] insecure`.
    #[arg(long)]
    pub upstream_insecure: bool,

    /// A request to an upstream registry fails (502 after retries) when no byte moves for this long
    /// [default: 30s]. Config: `[pull-through] read-timeout`.
    #[arg(long, value_name = "DURATION")]
    pub upstream_read_timeout: Option<String>,

    /// Print the mirror configuration a client needs to pull docker.io and every --mirror host through
    /// this registry, for this --listen address and TLS setup, then exit: `docker` (daemon.json
    /// registry-mirrors and insecure-registries), `podman` (registries.conf [[registry]] entries with
    /// mirrors; also skopeo and buildah), `containerd` (a hosts.toml per registry host) or `buildkit`
    /// (buildkitd.toml [registry] sections).
    #[arg(long, value_enum, value_name = "CLIENT")]
    pub print_client_config: Option<ClientKind>,

    /// The address clients reach this registry at, in --print-client-config [default: the --listen
    /// address, or this host's name when listening on every address].
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
}

/// `kiln serve --log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormatArg {
    Text,
    Json,
}

/// A client whose mirror configuration `kiln serve --print-client-config` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientKind {
    Docker,
    Podman,
    Containerd,
    Buildkit,
}

/// `kiln registry …`: offline maintenance of a registry root.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Remove what no tag reaches: walks image manifests, indexes and referrers from every tag; keeps
    /// anything younger than --grace (uploads in flight); prints what it removed. Refuses to run while a
    /// `kiln serve` uses the root (its online GC, --gc-interval, is the safe way then).
    Gc(RegistryGcArgs),
    /// Verify every blob's digest and every tag, manifest, layer and referrer link; print each problem
    /// with its path and exit 1 if there is any.
    Fsck(RegistryFsckArgs),
}

#[derive(Debug, Args)]
pub struct RegistryGcArgs {
    /// The registry root (as given to `kiln serve --root`).
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,

    /// Print what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Keep uploads, links and blobs younger than this [default: 1h].
    #[arg(long, value_name = "DURATION")]
    pub grace: Option<String>,

    /// Expire tags matching a glob this long after their last push (`change_*=24h`; repeatable).
    #[arg(long, value_name = "PATTERN=DURATION")]
    pub expire_tags: Vec<String>,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RegistryFsckArgs {
    /// The registry root (as given to `kiln serve --root`).
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,

    /// Print the problems as JSON (`[{path, problem}]`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthModeArg {
    Open,
    AnonymousRead,
    Restricted,
}

#[derive(Debug, Args)]
pub struct DockerfileArgs {
    /// The Dockerfile (`-` for stdin). Does not need a repository.
    pub file: PathBuf,

    /// Build arg override, `KEY=value` (repeatable).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,

    /// The stage to build; stages it does not need are pruned.
    #[arg(long)]
    pub target: Option<String>,

    /// Target platform (`os/arch[/variant]`).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,

    /// The in-tree parent image that `FROM $DOCKER_IMAGE_PARENT` names.
    #[arg(long, value_name = "IMAGE")]
    pub parent_image: Option<String>,

    /// Print the evaluated description as JSON (see docs/dockerfile-json.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Where a plan or a build runs: trust level and pull-request flag.
#[derive(Debug, Clone, Args)]
pub struct ScopeArgs {
    /// Trust level of this run (1 = least trusted). Lookups search this level and every more trusted one.
    #[arg(long, default_value_t = 1)]
    pub level: u8,

    /// This run is a pull request: it writes only the `cache.pr` namespace and also reads it.
    #[arg(long)]
    pub pull_request: bool,

    /// Push date used in `pushdate` routes (RFC 3339, or `now`).
    #[arg(long, value_name = "TIME", default_value = "now")]
    pub build_date: String,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Images to plan (with their parents); default: all.
    #[arg(value_name = "IMAGE")]
    pub names: Vec<String>,

    #[command(flatten)]
    pub scope: ScopeArgs,

    /// Only count an indexed image as cached if it does not expire before this time
    /// (RFC 3339, `now`, or a duration from now such as `7d`).
    #[arg(long, value_name = "TIME", default_value = "now")]
    pub deadline: String,

    /// Print JSON: an array with one object per image, in dependency order (see docs/cli.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ContextArgs {
    /// The image.
    pub image: String,

    /// Output file; the extension picks the format: .tar, .tar.gz (taskgraph's artifact format) or .tar.zst.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct DigestArgs {
    /// The image.
    pub image: String,

    /// Print every part of the digest, one per line, after the digest.
    #[arg(long)]
    pub explain: bool,
}

#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Record a built image under the routes its build writes (computed from the current tree).
    Add(IndexAddArgs),
    /// List routes and their records.
    Ls(IndexLsArgs),
    /// Remove records that have expired.
    Gc,
}

#[derive(Debug, Args)]
pub struct IndexAddArgs {
    /// The image.
    pub image: String,

    /// The built image's manifest digest (sha256:…).
    #[arg(long, value_name = "DIGEST")]
    pub image_digest: String,

    /// The digest of its image.tar.zst artifact (sha256:…).
    #[arg(long, value_name = "DIGEST")]
    pub artifact_digest: Option<String>,

    #[command(flatten)]
    pub scope: ScopeArgs,

    /// Expiry (RFC 3339 or a duration from now such as `28d`); default: the repository's expiry for the level.
    #[arg(long, value_name = "TIME")]
    pub expires: Option<String>,
}

#[derive(Debug, Args)]
pub struct IndexLsArgs {
    /// Only routes starting with this prefix.
    #[arg(default_value = "")]
    pub prefix: String,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn parse() -> Cli {
    Cli::parse()
}

/// `kiln build`: a command shape other tools script against (docs/cli.md).
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// In-tree images to build; their parents are built first when the plan says so.
    #[arg(value_name = "IMAGE", conflicts_with = "dockerfile")]
    pub names: Vec<String>,

    /// Build every image of the repository that the plan marks `build`.
    #[arg(long, conflicts_with = "dockerfile")]
    pub all: bool,

    /// Build this Dockerfile outside any image tree (with --context and -t).
    #[arg(short = 'f', long, value_name = "FILE")]
    pub dockerfile: Option<PathBuf>,

    /// The build context for --dockerfile [default: the Dockerfile's folder].
    #[arg(long, value_name = "DIR", requires = "dockerfile")]
    pub context: Option<PathBuf>,

    /// Name to give the image built from --dockerfile in the store (repeatable).
    #[arg(short = 't', long = "tag", value_name = "NAME", requires = "dockerfile")]
    pub tags: Vec<String>,

    /// The stage to build (default: the last).
    #[arg(long, value_name = "STAGE", requires = "dockerfile")]
    pub target: Option<String>,

    /// Build in-tree images even when the index already has them.
    #[arg(long, conflicts_with = "dockerfile")]
    pub force: bool,

    // How images are built (also what `kiln upload` and `kiln publish` use when they build).
    #[command(flatten)]
    pub settings: BuildSettingsArgs,

    /// Where in-tree builds write `<image>/image.tar.zst` [default: <state-dir>/artifacts].
    #[arg(long, value_name = "DIR", conflicts_with = "dockerfile")]
    pub artifacts: Option<PathBuf>,

    /// Also write the image built from --dockerfile to this file (.tar, .tar.zst, .oci.tar) or folder.
    #[arg(short, long, value_name = "PATH", requires = "dockerfile")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub scope: ScopeArgs,

    /// Print the summary as JSON (one object per image).
    #[arg(long)]
    pub json: bool,
}

/// How images are built: the part of `kiln build`'s flags that `kiln upload` and `kiln publish` share for
/// the images they build first.
#[derive(Debug, Clone, Args)]
pub struct BuildSettingsArgs {
    /// Build argument (repeatable); for in-tree images these add to the image's own args.
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,

    /// A secret for `RUN --mount=type=secret` (repeatable).
    #[arg(long = "secret", value_name = "id=ID,src=FILE")]
    pub secrets: Vec<String>,

    /// An ssh agent for `RUN --mount=type=ssh` (repeatable): `default` is $SSH_AUTH_SOCK; `ID=SOCKET` names
    /// another agent socket. The RUN gets a socket that forwards to it, never the keys themselves.
    #[arg(long = "ssh", value_name = "ID[=SOCKET]")]
    pub ssh: Vec<String>,

    /// Run every step even if the instruction cache has its result.
    #[arg(long)]
    pub no_cache: bool,

    /// Allow an entitlement (repeatable): `security.insecure` lets `RUN --security=insecure` run with every
    /// capability; `network.host` lets `RUN --network=host` share the host's network, its loopback
    /// services included.
    #[arg(long = "allow", value_name = "ENTITLEMENT", value_parser = ["security.insecure", "network.host"])]
    pub allow: Vec<String>,

    /// The network of RUN steps that do not choose one: `default` is a network namespace of their own
    /// with outbound access through slirp4netns (the host's loopback out of reach); `host` shares the
    /// host's (and allows `RUN --network=host`); `none` has loopback only.
    #[arg(long, value_enum, default_value = "default")]
    pub network: NetworkArg,

    /// The slirp4netns binary that gives RUN steps their own network.
    #[arg(
        long,
        env = "KILN_SLIRP4NETNS",
        default_value = "slirp4netns",
        value_name = "PATH"
    )]
    pub slirp4netns: PathBuf,

    /// Compression of new layers: zstd (fast; podman, skopeo, containerd pull it) or gzip (what Docker
    /// 20.10 and older can pull).
    #[arg(long, value_enum, default_value = "zstd")]
    pub layer_compression: LayerCompressionArg,

    /// File timestamps in new layers are clamped to this time, also the images' `created` (seconds since
    /// the epoch). 0 keeps builds of the same inputs identical whatever the clock says.
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0, value_name = "SECONDS")]
    pub source_date_epoch: i64,

    /// The OCI runtime for RUN steps (runc's command-line interface: runc, crun, youki).
    #[arg(long, env = "KILN_RUNTIME", default_value = "runc", value_name = "PATH")]
    pub runtime: PathBuf,
}
