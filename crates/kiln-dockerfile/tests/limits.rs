//! Issue 11, item 9: small Dockerfiles that grow without end. Each fails fast, naming its line, and
//! without allocating much more than its own text (a counting allocator watches).
#![allow(clippy::unwrap_used, missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kiln_dockerfile::{Error, ErrorKind, EvalOptions, Limits, evaluate};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only sizes are counted.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: the caller's layout is passed on as it is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One test at a time: the counters are global.
static SERIAL: Mutex<()> = Mutex::new(());

/// Evaluates `text`, which must fail; returns the error, the time taken and the most bytes allocated
/// at once beyond what was live before.
fn fails(text: &str, options: &EvalOptions) -> (Error, Duration, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let started = Instant::now();
    let err = evaluate(text, options).unwrap_err();
    let took = started.elapsed();
    (err, took, PEAK.load(Ordering::Relaxed) - before)
}

fn assert_fast(took: Duration, peak: usize) {
    assert!(took < Duration::from_millis(500), "took {took:?}");
    assert!(peak < 32 << 20, "allocated {peak} bytes at once");
}

#[test]
fn regression_doubling_a_value_fails_fast_naming_its_line() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut text = String::from("FROM scratch\nARG A=0123456789abcdef\n");
    for _ in 0..40 {
        text.push_str("ENV A=$A$A\n");
    }
    text.push_str("RUN echo $A\n");
    let (err, took, peak) = fails(&text, &EvalOptions::default());
    assert_fast(took, peak);
    // 16 bytes doubled 17 times pass 1 MiB: the 17th ENV, line 19.
    assert_eq!(err.line, 19, "{err}");
    assert!(
        err.to_string()
            .contains("the expanded value exceeds the limit of 1048576 bytes"),
        "{err}"
    );
    // ARG defaults double the same way.
    let text = text.replace("ENV A=", "ARG A=");
    let (err, took, peak) = fails(&text, &EvalOptions::default());
    assert_fast(took, peak);
    assert_eq!(err.line, 19, "{err}");
}

#[test]
fn regression_a_50_mb_line_fails_fast_without_a_big_allocation() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut text = String::from("FROM scratch\nRUN echo ");
    text.push_str(&"a".repeat(50 << 20));
    text.push('\n');
    // The whole file is over the limit: refused before it is read line by line.
    let (err, took, peak) = fails(&text, &EvalOptions::default());
    assert_fast(took, peak);
    assert_eq!(
        (err.line, err.kind.clone()),
        (
            1,
            ErrorKind::TooLarge {
                what: "the Dockerfile",
                limit: 4 << 20
            }
        )
    );
    // With no file limit, the line itself is refused, naming line 2, still without a copy of it.
    let options = EvalOptions {
        limits: Limits {
            file_bytes: usize::MAX,
            ..Limits::default()
        },
        ..EvalOptions::default()
    };
    let (err, took, peak) = fails(&text, &options);
    assert_fast(took, peak);
    assert_eq!(err.line, 2, "{err}");
    assert!(
        err.to_string()
            .contains("the instruction exceeds the limit of 1048576 bytes"),
        "{err}"
    );
    // Continuation lines add up to the same limit; heredoc bodies have one of their own.
    let long = format!(
        "FROM scratch\nRUN a \\\n{}\\\n{}\n",
        "b".repeat(600 << 10),
        "c".repeat(600 << 10)
    );
    let (err, ..) = fails(&long, &EvalOptions::default());
    assert!(err.to_string().contains("continuation lines joined"), "{err}");
    let heredoc = format!("FROM scratch\nRUN <<EOF\n{}EOF\n", "line\n".repeat(300 << 10));
    let (err, ..) = fails(&heredoc, &EvalOptions::default());
    assert_eq!(err.line, 2, "{err}");
    assert!(err.to_string().contains("the heredoc body exceeds"), "{err}");
}

#[test]
fn regression_patterns_and_copies_of_big_values_are_bounded() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut grow = String::from("FROM scratch\nARG A=0123456789abcdef\n");
    for _ in 0..15 {
        grow.push_str("ARG A=$A$A\n");
    }
    // `A` is 512 KiB: a replacement of every character by `A` again would be 2^38 bytes.
    let text = format!("{grow}ENV B=${{A//?/$A}}\n");
    let (err, took, peak) = fails(&text, &EvalOptions::default());
    assert_fast(took, peak);
    assert_eq!(err.line, 18, "{err}");
    // A pattern that backtracks over all of `A` for each of its prefixes: bounded in steps.
    let text = format!("{grow}ENV B=${{A%%*x*y}}\n");
    let (err, took, _) = fails(&text, &EvalOptions::default());
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(err.line, 18, "{err}");
    assert!(err.to_string().contains("takes too long"), "{err}");
    // Every RUN holds the stage's environment: 3 MiB of variables and many RUN lines.
    let mut text = format!("{grow}ENV B=$A$A C=$A$A D=$A$A\n");
    for _ in 0..100 {
        text.push_str("RUN true\n");
    }
    let (err, took, _) = fails(&text, &EvalOptions::default());
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(err.to_string().contains("what the evaluation produces"), "{err}");
    assert!(err.line > 18 && err.line < 60, "{err}");
    // So does every stage built on another.
    let mut text =
        format!("{grow}ENV B=$A$A C=$A$A D=$A$A\n").replacen("FROM scratch", "FROM scratch AS s0", 1);
    for i in 0..100 {
        text.push_str(&format!("FROM s{i} AS s{}\n", i + 1));
    }
    let (err, took, _) = fails(&text, &EvalOptions::default());
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
}
