//! `RUN --mount=type=ssh`: the RUN gets a socket of its own that forwards each connection to the ssh
//! agent given with `kiln build --ssh ID=SOCKET`. Forwarding (rather than binding the agent's socket into
//! the container) lets the socket have the mount's owner and mode — the agent's own socket usually
//! belongs to another user with mode 0600 — and keeps the agent's folder out of the container.
//!
//! Threads rather than async: a step has one or two agent connections at a time, each a short exchange.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A forwarding socket, open for one step; closed (and its folder removed) when dropped.
#[derive(Debug)]
pub(crate) struct AgentProxy {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl AgentProxy {
    /// Listens on a new socket (in a private folder under the system's temp folder: socket paths are
    /// limited to 107 bytes, which a store path may exceed) owned by `uid:gid` with `mode`, forwarding to
    /// the agent at `agent`.
    pub(crate) fn start(agent: &Path, uid: u32, gid: u32, mode: u32) -> Result<AgentProxy, String> {
        // Fail now, not inside the RUN, when the agent is not there.
        UnixStream::connect(agent).map_err(|e| format!("ssh agent {}: {e}", agent.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("kiln-ssh-")
            .tempdir()
            .map_err(|e| format!("cannot create a folder for the ssh agent socket: {e}"))?;
        let socket = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&socket).map_err(|e| format!("{}: {e}", socket.display()))?;
        crate::run::set_owner_mode(&socket, uid, gid, mode)?;
        // The folder is tempfile's 0700: the container reaches the socket through its bind mount only.
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (stop, agent) = (Arc::clone(&stop), agent.to_owned());
            std::thread::Builder::new()
                .name("kiln-ssh-agent".into())
                .spawn(move || accept_loop(&listener, &agent, &stop))
                .map_err(|e| format!("cannot start the ssh agent forwarder: {e}"))?
        };
        Ok(AgentProxy {
            socket,
            stop,
            accept: Some(accept),
            _dir: dir,
        })
    }

    /// The socket to bind into the container.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the loop sees the flag.
        let _ = UnixStream::connect(&self.socket);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: &UnixListener, agent: &Path, stop: &AtomicBool) {
    for client in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(upstream) = UnixStream::connect(agent) else {
            // The agent went away: the client sees its connection closed.
            continue;
        };
        let _ = std::thread::Builder::new()
            .name("kiln-ssh-conn".into())
            .spawn(move || forward(client, upstream));
    }
}

/// Copies both ways until either side closes.
fn forward(client: UnixStream, upstream: UnixStream) {
    let (Ok(mut client_read), Ok(mut upstream_write)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let to_agent = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut upstream_write);
        let _ = upstream_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut upstream_read, mut client_write) = (upstream, client);
    let _ = std::io::copy(&mut upstream_read, &mut client_write);
    let _ = client_write.shutdown(std::net::Shutdown::Write);
    let _ = to_agent.join();
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn forwards_each_connection_to_the_agent() {
        let tmp = tempfile::tempdir().unwrap();
        let agent_path = tmp.path().join("agent");
        let agent = UnixListener::bind(&agent_path).unwrap();
        // An "agent" that answers each request with its bytes reversed.
        std::thread::spawn(move || {
            for conn in agent.incoming() {
                let mut conn = conn.unwrap();
                let mut request = Vec::new();
                conn.read_to_end(&mut request).unwrap();
                request.reverse();
                conn.write_all(&request).unwrap();
            }
        });
        let proxy = AgentProxy::start(&agent_path, 0, 0, 0o600).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = fs_err::metadata(proxy.socket()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        for text in ["abc", "hello agent"] {
            let mut conn = UnixStream::connect(proxy.socket()).unwrap();
            conn.write_all(text.as_bytes()).unwrap();
            conn.shutdown(std::net::Shutdown::Write).unwrap();
            let mut answer = String::new();
            conn.read_to_string(&mut answer).unwrap();
            assert_eq!(answer, text.chars().rev().collect::<String>());
        }
        let socket = proxy.socket().to_owned();
        drop(proxy);
        assert!(!socket.exists(), "the socket goes with the proxy");
        assert!(AgentProxy::start(&tmp.path().join("missing"), 0, 0, 0o600).is_err());
    }
}
