//! [`RecordingRuntime`]: a test double that records every [`RunSpec`] (feature `test-support`).

use std::sync::Mutex;

use crate::{OutputSink, RunOutcome, RunSpec, Runtime, RuntimeError};

type Handler = dyn Fn(&RunSpec, &mut dyn OutputSink) -> Result<RunOutcome, RuntimeError> + Send + Sync;

/// A [`Runtime`] that runs nothing: it records each spec and lets a closure decide the outcome
/// (and write files into `spec.rootfs`, or output to the sink), so the logic above the runtime is
/// testable without root.
///
/// ```
/// use kiln_runtime::{CollectedOutput, RecordingRuntime, RunOutcome, RunSpec, Runtime, Stream};
///
/// let root = tempfile::tempdir().unwrap();
/// let runtime = RecordingRuntime::with_handler(|spec, out| {
///     std::fs::write(spec.rootfs.join("built"), "yes").unwrap();
///     out.write(Stream::Stdout, b"done\n");
///     Ok(RunOutcome::from_exit_code(0))
/// });
/// let spec = RunSpec::new("step-1", root.path(), vec!["make".into()]);
/// let mut out = CollectedOutput::default();
/// assert!(runtime.run(&spec, &mut out).unwrap().success());
/// assert_eq!(runtime.runs(), [spec]);
/// assert_eq!(out.stdout_text(), "done\n");
/// assert!(root.path().join("built").exists());
/// ```
pub struct RecordingRuntime {
    runs: Mutex<Vec<RunSpec>>,
    handler: Box<Handler>,
}

impl RecordingRuntime {
    /// Every run succeeds (exit code 0) and writes nothing.
    pub fn new() -> Self {
        Self::with_handler(|_, _| Ok(RunOutcome::from_exit_code(0)))
    }

    /// Each run's outcome (and effects) come from `handler`.
    pub fn with_handler(
        handler: impl Fn(&RunSpec, &mut dyn OutputSink) -> Result<RunOutcome, RuntimeError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        RecordingRuntime {
            runs: Mutex::new(Vec::new()),
            handler: Box::new(handler),
        }
    }

    /// The specs run so far, in order.
    pub fn runs(&self) -> Vec<RunSpec> {
        self.runs.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Default for RecordingRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RecordingRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingRuntime")
            .field("runs", &self.runs())
            .finish_non_exhaustive()
    }
}

impl Runtime for RecordingRuntime {
    fn run(&self, spec: &RunSpec, output: &mut dyn OutputSink) -> Result<RunOutcome, RuntimeError> {
        if let Ok(mut runs) = self.runs.lock() {
            runs.push(spec.clone());
        }
        (self.handler)(spec, output)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{CollectedOutput, Network};

    #[test]
    fn records_specs_and_returns_the_handler_s_outcome() {
        let runtime = RecordingRuntime::with_handler(|spec, _| {
            if spec.argv[0] == "fail" {
                Ok(RunOutcome::from_exit_code(3))
            } else {
                Err(RuntimeError::Start {
                    id: spec.id.clone(),
                    message: "no such binary".into(),
                })
            }
        });
        let mut a = RunSpec::new("a", "/r", vec!["fail".into()]);
        a.network = Network::None;
        let b = RunSpec::new("b", "/r", vec!["missing".into()]);
        let mut out = CollectedOutput::default();
        assert_eq!(runtime.run(&a, &mut out).unwrap().exit_code, 3);
        assert!(runtime.run(&b, &mut out).is_err());
        assert_eq!(runtime.runs(), [a, b]);
        assert!(
            RecordingRuntime::default()
                .run(&RunSpec::new("c", "/r", vec!["x".into()]), &mut out)
                .unwrap()
                .success()
        );
    }
}
