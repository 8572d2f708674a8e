//! `kiln serve`: runs the OCI distribution registry of `kiln-registry` on a filesystem root.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use kiln_registry::FsStorage;

use crate::cli::ServeArgs;

mod config;

pub fn run(args: &ServeArgs) -> Result<()> {
    let settings = config::Settings::load(args)?;
    let storage = FsStorage::open(&settings.root)
        .with_context(|| format!("cannot open registry root {}", settings.root.display()))?;
    let mut registry = settings.registry.clone();
    registry.auth = Arc::new(
        settings
            .auth
            .build(false, &mut |m| eprintln!("kiln serve: {m}"))?,
    );
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
        eprintln!(
            "kiln serve: listening on http://{addr} (root {}, auth {})",
            settings.root.display(),
            settings.auth.mode.as_str()
        );
        kiln_registry::serve(listener, router, shutdown_signal())
            .await
            .with_context(|| format!("registry on {addr} failed"))
    })
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
