//! Build progress on stderr: on a terminal (and `CI` unset), one spinner per image showing its current
//! step, with finished steps and RUN output printed above the spinners; otherwise plain lines, one per
//! step, RUN output passed through as it comes.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kiln_build::{Events, StepAt, StepStatus};
use kiln_runtime::Stream;

/// Progress of one `kiln build` run.
pub struct BuildProgress {
    multi: Option<MultiProgress>,
    quiet: bool,
}

impl BuildProgress {
    /// Bars when stderr is a terminal, `CI` is unset and `--quiet` was not given.
    pub fn new(quiet: bool) -> BuildProgress {
        let bars = !quiet && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        BuildProgress {
            multi: bars.then(MultiProgress::new),
            quiet,
        }
    }

    /// Prints the Dockerfile's warnings (unless `--quiet`).
    pub fn warnings(&self, file: &str, warnings: &[kiln_dockerfile::Warning]) {
        if self.quiet {
            return;
        }
        for w in warnings {
            let text = format!("warning: {file}:{}: {} ({})", w.line, w.message, w.rule);
            match &self.multi {
                Some(multi) => {
                    let _ = multi.println(text);
                }
                None => eprintln!("{text}"),
            }
        }
    }

    /// The events of one image's build.
    pub fn image(&self, name: &str) -> ImageProgress {
        let bar = self.multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{prefix}] {wide_msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(name.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        ImageProgress {
            image: name.to_owned(),
            quiet: self.quiet,
            multi: self.multi.clone(),
            bar,
            started: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(Vec::new()),
        }
    }
}

/// Events of one image: see the module doc.
pub struct ImageProgress {
    image: String,
    quiet: bool,
    multi: Option<MultiProgress>,
    bar: Option<ProgressBar>,
    /// When each stage's running step started (stages of one image run concurrently).
    started: Mutex<BTreeMap<usize, Instant>>,
    /// RUN output not yet ended by a newline (bars print whole lines).
    pending: Mutex<Vec<u8>>,
}

impl ImageProgress {
    fn line(&self, text: String) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }
}

impl Drop for ImageProgress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Events for ImageProgress {
    fn step(&self, stage: usize, at: &StepAt, status: StepStatus) {
        if self.quiet {
            return;
        }
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        let step = format!("{}:{} {}", at.file, at.line, at.instruction);
        match status {
            StepStatus::Metadata => {}
            StepStatus::Cached => self.line(format!("[{}] CACHED {step}", self.image)),
            StepStatus::Running => {
                started.insert(stage, Instant::now());
                match &self.bar {
                    Some(bar) => bar.set_message(step),
                    None => self.line(format!("[{}] {step}", self.image)),
                }
            }
            StepStatus::Done => {
                let took = started
                    .remove(&stage)
                    .map(|s| s.elapsed().as_secs_f64())
                    .unwrap_or_default();
                match &self.bar {
                    Some(_) => self.line(format!("[{}] {step} ({took:.2}s)", self.image)),
                    None => self.line(format!("[{}] done in {took:.2}s", self.image)),
                }
            }
        }
    }

    fn output(&self, _stream: Stream, bytes: &[u8]) {
        if self.quiet {
            return;
        }
        if self.multi.is_none() {
            let _ = std::io::stderr().write_all(bytes);
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.extend_from_slice(bytes);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            self.line(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
        }
    }
}
