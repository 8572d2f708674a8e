//! `kiln serve`: runs the OCI distribution registry of `kiln-registry` on a filesystem root.

use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use kiln_registry::{FsStorage, RegistryConfig};

use crate::cli::ServeArgs;

pub fn run(args: &ServeArgs) -> Result<()> {
    if !args.listen.ip().is_loopback() && !args.allow_anonymous_push {
        bail!(
            "refusing to serve on non-loopback address {} without authentication; \
             pass --allow-anonymous-push to let anyone who reaches it push and delete",
            args.listen
        );
    }
    let storage = FsStorage::open(&args.root)
        .with_context(|| format!("cannot open registry root {}", args.root.display()))?;
    let router = kiln_registry::router(Arc::new(storage), RegistryConfig::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener
            .local_addr()
            .context("cannot read the listening address")?;
        // Scripts read this line to learn the port when --listen ends in :0.
        eprintln!(
            "kiln serve: listening on http://{addr} (root {})",
            args.root.display()
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
