//! kiln-client against real registries: kiln's own (in-process) and Debian's docker-registry.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

/// Two tests in a module `$name`: `$body(&dyn Registry)` against kiln serve (in-process) and against
/// Debian's docker-registry (skipped, or failed under KILN_REQUIRE_PEERS=1, when it is missing).
macro_rules! on_both_registries {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn kiln_serve() {
                let registry = crate::support::kiln_serve().await;
                super::$body(&registry).await;
            }

            #[tokio::test]
            async fn distribution() {
                let Some(registry) = crate::support::Distribution::start(None).await else {
                    return;
                };
                super::$body(&registry).await;
            }
        }
    };
}

mod auth;
mod copy;
mod multiarch;
mod resume;
mod roundtrip;
mod stall;
mod support;
mod tags;
mod tamper;
mod tls;
