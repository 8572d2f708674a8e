//! The one DAG runner of kiln: in-tree images (a child after its parent) and Dockerfile stages (a stage
//! after the stages it copies or mounts from) both run through [`run`].
//!
//! Nodes run on scoped threads, each as soon as every node it depends on has finished, at most `jobs` at
//! a time. Results are handed to `on_done` on the calling thread, one at a time and before any dependent
//! starts, so the caller can record them (a stage's state, an index record) without locks of its own. The
//! first failure (of a node or of `on_done`) stops new nodes from starting; those running finish, and the
//! failure is returned.

use std::sync::mpsc;

/// Why [`run`] did not run every node.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DagError<E> {
    /// A node, or `on_done` for a node, failed.
    #[error(transparent)]
    Failed(E),
    /// A node depends on a node that does not exist, or the dependencies form a cycle.
    #[error("node {node} can never start: it depends on {missing}, which is unknown or in a cycle")]
    Unsatisfiable {
        /// The node that never became ready.
        node: usize,
        /// The dependency it waits on.
        missing: usize,
    },
}

/// Runs `work` for every node `0..deps.len()`, node `i` once every node in `deps[i]` has finished (a
/// node listed as its own dependency is ignored), at most `jobs` at a time (at least one).
pub fn run<T, E, W, D>(deps: &[Vec<usize>], jobs: usize, work: W, mut on_done: D) -> Result<(), DagError<E>>
where
    T: Send,
    E: Send,
    W: Fn(usize) -> Result<T, E> + Sync,
    D: FnMut(usize, T) -> Result<(), E>,
{
    let count = deps.len();
    let jobs = jobs.max(1);
    let mut started = vec![false; count];
    let mut finished = vec![false; count];
    let mut failure = None;
    let (tx, rx) = mpsc::channel::<(usize, Result<T, E>)>();
    std::thread::scope(|scope| {
        let work = &work;
        let mut running = 0usize;
        loop {
            if failure.is_none() {
                for node in 0..count {
                    if running >= jobs {
                        break;
                    }
                    let ready = deps[node]
                        .iter()
                        .all(|&d| d == node || finished.get(d).copied().unwrap_or(false));
                    if !started[node] && ready {
                        started[node] = true;
                        running += 1;
                        let tx = tx.clone();
                        scope.spawn(move || {
                            let _ = tx.send((node, work(node)));
                        });
                    }
                }
            }
            if running == 0 {
                break;
            }
            let Ok((node, result)) = rx.recv() else { break };
            running -= 1;
            match result.and_then(|value| on_done(node, value)) {
                Ok(()) => finished[node] = true,
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
    });
    if let Some(e) = failure {
        return Err(DagError::Failed(e));
    }
    match (0..count).find(|&n| !started[n]) {
        Some(node) => {
            let missing = deps[node]
                .iter()
                .copied()
                .find(|&d| d != node && !finished.get(d).copied().unwrap_or(false))
                .unwrap_or(node);
            Err(DagError::Unsatisfiable { node, missing })
        }
        None => Ok(()),
    }
}

/// The number of nodes to run at once by default: one per core.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn children_run_after_parents_and_independent_nodes_together() {
        // 0 ← 1 ← 3, 0 ← 2; 4 alone.
        let deps = vec![vec![], vec![0], vec![0], vec![1], vec![]];
        let log = Mutex::new(Vec::new());
        let concurrent = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let mut done = Vec::new();
        run(
            &deps,
            2,
            |node| {
                let now = concurrent.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                log.lock().unwrap().push(("start", node));
                std::thread::sleep(Duration::from_millis(20));
                concurrent.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, String>(node * 10)
            },
            |node, value| {
                assert_eq!(value, node * 10);
                done.push(node);
                Ok(())
            },
        )
        .unwrap();
        let position = |n: usize| done.iter().position(|&d| d == n).unwrap();
        assert!(position(0) < position(1) && position(1) < position(3) && position(0) < position(2));
        let log = log.lock().unwrap();
        let started = |n: usize| log.iter().position(|&(_, d)| d == n).unwrap();
        assert!(started(3) > started(1));
        assert_eq!(most.load(Ordering::SeqCst), 2, "two at a time, never more");
        assert_eq!(done.len(), 5);
    }

    #[test]
    fn the_first_failure_stops_new_nodes_and_is_returned() {
        let deps = vec![vec![], vec![0], vec![1]];
        let ran = Mutex::new(Vec::new());
        let result = run(
            &deps,
            4,
            |node| {
                ran.lock().unwrap().push(node);
                if node == 1 {
                    Err(format!("node {node} broke"))
                } else {
                    Ok(())
                }
            },
            |_, ()| Ok(()),
        );
        assert_eq!(result, Err(DagError::Failed("node 1 broke".to_owned())));
        assert_eq!(
            *ran.lock().unwrap(),
            vec![0, 1],
            "the child of a failed node never starts"
        );
    }

    #[test]
    fn a_failing_on_done_counts_as_the_nodes_failure() {
        let deps = vec![vec![], vec![0]];
        let result = run(&deps, 1, Ok::<_, String>, |node, _| {
            if node == 0 {
                Err("cannot record".to_owned())
            } else {
                Ok(())
            }
        });
        assert_eq!(result, Err(DagError::Failed("cannot record".to_owned())));
    }

    #[test]
    fn cycles_and_unknown_dependencies_are_errors_not_hangs() {
        let cycle = vec![vec![1], vec![0]];
        assert_eq!(
            run(&cycle, 2, Ok::<_, String>, |_, _| Ok(())),
            Err(DagError::Unsatisfiable { node: 0, missing: 1 })
        );
        let unknown = vec![vec![7]];
        assert_eq!(
            run(&unknown, 2, Ok::<_, String>, |_, _| Ok(())),
            Err(DagError::Unsatisfiable { node: 0, missing: 7 })
        );
        let own = vec![vec![0]];
        assert_eq!(run(&own, 2, Ok::<_, String>, |_, _| Ok(())), Ok(()));
        let empty: Vec<Vec<usize>> = Vec::new();
        assert_eq!(run(&empty, 2, Ok::<_, String>, |_, _: usize| Ok(())), Ok(()));
    }
}
