//! `kiln serve`: runs the OCI distribution registry of `kiln-registry` on a filesystem root.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use kiln_registry::FsStorage;

use crate::cli::ServeArgs;

mod client_config;
mod config;

/// `--print-client-config`: the text on stdout, notes on stderr.
fn print_client_config(args: &ServeArgs, client: crate::cli::ClientKind) -> Result<()> {
    let view = config::ClientView::load(args)?;
    let target = client_config::Target {
        address: client_config::address(view.listen, args.advertise.as_deref()),
        ca: view.ca,
        mirrors: view.mirrors,
    };
    let (text, notes) = client_config::render(client, &target);
    for note in notes {
        eprintln!("kiln serve: {note}");
    }
    crate::output::stdout(|out| out.write_all(text.as_bytes()))
}

pub fn run(args: &ServeArgs) -> Result<()> {
    if let Some(client) = args.print_client_config {
        return print_client_config(args, client);
    }
    let settings = config::Settings::load(args)?;
    crate::output::init_serve_logging(settings.json_log);
    let storage = FsStorage::open_with(&settings.root, settings.uploads)
        .with_context(|| format!("cannot open registry root {}", settings.root.display()))?;
    // Held while serving: `kiln registry gc` refuses to run beside this server (its sweep could not be
    // ordered against this process's writes), and so does a second server.
    let _root_lock = storage
        .lock_root()
        .with_context(|| format!("cannot serve {}", settings.root.display()))?;
    let mut registry = settings.registry.clone();
    let mut pulling = None;
    if let Some(options) = settings.pull_through.clone() {
        let describe = format!(
            "pulling through{}{}",
            options
                .intermediate
                .as_ref()
                .map(|i| format!(" intermediate {} (builds {})", i.url, options.builds.join(", ")))
                .unwrap_or_default(),
            options
                .mirrors
                .iter()
                .map(|(h, u)| format!(", {h} from {}", u.url))
                .collect::<String>()
        );
        registry.pull_through = Some(Arc::new(kiln_registry::pull_through::PullThrough::new(options)?));
        pulling = Some(describe);
    }
    let https = settings.tls != config::Tls::Off;
    registry.auth = Arc::new(
        settings
            .auth
            .build(https, &mut |m| eprintln!("kiln serve: {m}"))?,
    );
    let tls = match &settings.tls {
        config::Tls::Off => None,
        config::Tls::Files { cert, key } => Some(kiln_registry::tls::server_config(cert, key)?),
        config::Tls::SelfSigned => {
            let dir = settings.root.join("tls");
            let made = kiln_registry::tls::self_signed(&dir, &certificate_names(settings.listen))?;
            eprintln!(
                "kiln serve: TLS with a {} self-signed certificate; clients must trust the CA {} \
                 (skopeo/podman: --cert-dir {})",
                if made.generated { "new" } else { "reused" },
                made.ca.display(),
                dir.display()
            );
            Some(kiln_registry::tls::server_config(&made.cert, &made.key)?)
        }
    };
    let file_limit = raise_file_limit(settings.limits.max_connections);
    let gc_storage = storage.clone();
    let router = kiln_registry::router(Arc::new(storage), registry);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let addr = listener
            .local_addr()
            .context("cannot read the listening address")?;
        // Scripts read this line to learn the port when --listen ends in :0.
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!(
            "kiln serve: listening on {scheme}://{addr} (root {}, auth {})",
            settings.root.display(),
            settings.auth.mode.as_str()
        );
        if let Some(pulling) = &pulling {
            eprintln!("kiln serve: {pulling}");
        }
        tokio::spawn(expire_uploads(gc_storage.clone(), settings.uploads.idle_timeout));
        if let Some(warning) = &file_limit {
            eprintln!("kiln serve: {warning}");
        }
        if let Some((every, options)) = settings.gc.clone() {
            tokio::spawn(collect_garbage(gc_storage, every, options));
        }
        let options = kiln_registry::ServeOptions {
            tls,
            limits: settings.limits,
        };
        kiln_registry::serve(listener, router, options, shutdown_signal())
            .await
            .with_context(|| format!("registry on {addr} failed"))
    })
}

/// Raises the soft limit of open files to the hard one (as Go programs such as distribution do), so that
/// `max_connections` connections, each with a socket and a blob open, fit; a warning when they do not.
fn raise_file_limit(max_connections: usize) -> Option<String> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let mut warning = None;
    if limit.current < limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            warning = Some(format!("cannot raise the open-file limit: {e}"));
        }
    }
    let needed = 2 * max_connections as u64 + 64;
    match getrlimit(Resource::Nofile).current {
        Some(current) if current < needed => Some(format!(
            "the open-file limit ({current}) is below what {max_connections} connections may need \
             ({needed}); raise `ulimit -n` or lower --max-connections"
        )),
        _ => warning,
    }
}

/// The names a self-signed certificate covers: loopback, this host's name, and the listen address.
fn certificate_names(listen: std::net::SocketAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if let Ok(host) = fs_err::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && !names.iter().any(|n| n == host) {
            names.push(host.to_owned());
        }
    }
    let ip = listen.ip();
    if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
        names.push(ip.to_string());
    }
    names
}

/// Online GC: every `every`, on the blocking pool; a summary on stderr when something went.
async fn collect_garbage(
    storage: FsStorage,
    every: std::time::Duration,
    options: kiln_registry::storage::GcOptions,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await; // the first tick is immediate: let the server start first
    loop {
        tick.tick().await;
        let (s, o) = (storage.clone(), options.clone());
        match tokio::task::spawn_blocking(move || s.gc(&o)).await {
            Ok(Ok(r)) if r == Default::default() => {}
            Ok(Ok(r)) => eprintln!("kiln serve: gc removed {}", super::registry_admin::gc_counts(&r)),
            Ok(Err(e)) => eprintln!("kiln serve: gc failed: {e}"),
            Err(e) => eprintln!("kiln serve: gc task failed: {e}"),
        }
    }
}

/// Removes upload sessions idle past `timeout`, every minute (or a quarter of `timeout` when shorter),
/// whether or not GC runs. Requests meeting an expired session answer 404 on their own; this frees the
/// disk of sessions nobody comes back to.
async fn expire_uploads(storage: FsStorage, timeout: std::time::Duration) {
    let every = (timeout / 4).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(60),
    );
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let s = storage.clone();
        match tokio::task::spawn_blocking(move || s.expire_uploads()).await {
            Ok(Ok(expired)) if expired.is_empty() => {}
            Ok(Ok(expired)) => eprintln!(
                "kiln serve: expired {} upload sessions idle for {timeout:?}",
                expired.len()
            ),
            Ok(Err(e)) => eprintln!("kiln serve: upload expiry failed: {e}"),
            Err(e) => eprintln!("kiln serve: upload expiry task failed: {e}"),
        }
    }
}

/// Completes on Ctrl-C or SIGTERM; requests in flight then finish.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
