#![doc = include_str!("../README.md")]
#![allow(clippy::print_stderr)] // skip reasons go to the test's stderr on purpose

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether peers are required: CI sets `KILN_REQUIRE_PEERS=1` so a missing tool fails the test.
fn peers_required() -> bool {
    std::env::var("KILN_REQUIRE_PEERS").as_deref() == Ok("1")
}

/// Skip (false, with a printed reason) or, in CI, panic: the one policy for missing prerequisites.
fn missing(what: &str) -> bool {
    if peers_required() {
        panic!("{what} is required (KILN_REQUIRE_PEERS=1) but missing");
    }
    eprintln!("skipping: {what} is missing (set KILN_REQUIRE_PEERS=1 to fail instead)");
    false
}

/// Whether `tool` is on PATH.
pub fn require_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
    found || missing(&format!("the `{tool}` tool"))
}

/// Whether the test runs as root (mounts, runc).
pub fn require_root() -> bool {
    let uid = fs_err::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned));
    uid.as_deref() == Some("0") || missing("root")
}

/// A non-loopback IPv4 address of this host (the source address of its default route), for tests
/// that show a container reaches the host's network but not its loopback; `None` without a default
/// route.
pub fn host_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // TEST-NET-2: a UDP connect only picks the route, nothing is sent.
    socket.connect("198.51.100.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// Assemble the busybox-static root filesystem under `dir/rootfs` and return its path, or `None`
/// (after the skip/panic policy) when `/bin/busybox` is not installed.
pub fn busybox_root(dir: &Path) -> Option<PathBuf> {
    if !Path::new("/bin/busybox").is_file() {
        missing("busybox-static's /bin/busybox");
        return None;
    }
    let root = dir.join("rootfs");
    for sub in ["bin", "etc", "tmp", "root", "proc", "sys", "dev"] {
        fs_err::create_dir_all(root.join(sub)).expect("create rootfs folder");
    }
    fs_err::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|a| *a != "busybox")
    {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("applet symlink");
    }
    fs_err::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .expect("write passwd");
    fs_err::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("write group");
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
    Some(root)
}

/// Points podman (run by `cmd`) at storage and configuration under `dir/podman`, away from the system's,
/// with runc and ulimits this host allows (docs/peers.md).
pub fn podman_env(dir: &Path, cmd: &mut Command) {
    let conf = dir.join("podman");
    fs_err::create_dir_all(&conf).expect("create podman folder");
    fs_err::write(
        conf.join("storage.conf"),
        format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/storage\"\nrunroot = \"{0}/run\"\n",
            conf.display()
        ),
    )
    .expect("write storage.conf");
    // tmp_dir is podman's own too: the default /run/libpod is shared by every podman on the host, and
    // one test's `podman system reset` removes it under another test's running podman.
    fs_err::write(
        conf.join("containers.conf"),
        format!(
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             [engine]\nruntime = \"runc\"\ntmp_dir = \"{}/tmp\"\n",
            conf.display()
        ),
    )
    .expect("write containers.conf");
    cmd.env("CONTAINERS_STORAGE_CONF", conf.join("storage.conf"))
        .env("CONTAINERS_CONF", conf.join("containers.conf"));
}

/// podman with storage and configuration of its own under `dir/podman` ([`podman_env`]); dropping it
/// runs `podman system reset` and unmounts what podman left mounted below `dir`.
#[derive(Debug)]
pub struct Podman {
    dir: PathBuf,
}

impl Podman {
    /// podman keeping its state under `dir`.
    pub fn new(dir: &Path) -> Podman {
        Podman { dir: dir.to_owned() }
    }

    /// `podman ARGS` with this storage, to run as the caller likes (more arguments, env, a failure).
    pub fn command(&self, args: &[&str]) -> Command {
        self.tool("podman", args)
    }

    /// `podman`, `buildah` or `skopeo` with ARGS, sharing this storage and configuration.
    pub fn tool(&self, name: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(name);
        cmd.args(args);
        podman_env(&self.dir, &mut cmd);
        cmd
    }

    /// Runs `podman ARGS`, which must succeed; returns its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        run(&mut self.command(args))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.command(&["system", "reset", "--force"]).output();
        unmount_below(&self.dir);
    }
}

/// The stdout of a command that must have succeeded (else a panic showing both outputs).
pub fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// Runs `cmd`, which must succeed; returns its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the command starts");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// Lazily unmounts every mount point below `dir`, deepest first: podman and buildah leave their storage's
/// overlay mounted after a test, which would keep the test's temp folder from being removed.
pub fn unmount_below(dir: &Path) {
    let prefix = dir.to_string_lossy().into_owned();
    let mountinfo = fs_err::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount").arg("-l").arg(&point).output();
    }
}

/// A registry process (`kiln serve`, `docker-registry`) listening on `addr`, killed when dropped (also when
/// a test panics).
#[derive(Debug)]
pub struct Server {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    child: std::process::Child,
    log: Option<PathBuf>,
}

impl Server {
    /// Stops the server now with SIGKILL (to prove later answers do not need it, or to crash it).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the server wrote to its log file so far ([`start_kiln_serve_logging`]); empty without one.
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log).ok())
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in kiln serve's `listening on http(s)://ADDR` line, if `text` holds it.
fn listening_addr(text: &str) -> Option<String> {
    let rest = text
        .split("listening on http://")
        .nth(1)
        .or_else(|| text.split("listening on https://").nth(1))?;
    Some(rest.split_whitespace().next().unwrap_or_default().to_owned())
}

/// Starts `kiln serve` (given as `cmd`, with `--listen 127.0.0.1:0`) and waits for its
/// `listening on http(s)://ADDR` line; the rest of its stderr is echoed to the test's stderr.
#[allow(clippy::zombie_processes)] // `Server` kills and waits for it when dropped
pub fn start_kiln_serve(cmd: &mut Command) -> Server {
    use std::io::BufRead as _;
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kiln serve starts");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr is piped"));
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kiln serve stopped before listening:\n{text}");
        }
        text.push_str(&line);
        if let Some(addr) = listening_addr(&line) {
            let label = addr.clone();
            std::thread::spawn(move || {
                for line in stderr.lines().map_while(Result::ok) {
                    eprintln!("[{label}] {line}");
                }
            });
            return Server {
                addr,
                child,
                log: None,
            };
        }
    }
}

/// [`start_kiln_serve`] with kiln serve's stderr in the file `log` (read it with [`Server::log_text`]).
#[allow(clippy::zombie_processes)] // `Server` kills and waits for it when dropped
pub fn start_kiln_serve_logging(cmd: &mut Command, log: &Path) -> Server {
    let file = fs_err::File::create(log).expect("create the log file");
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(file.into_parts().0)
        .spawn()
        .expect("kiln serve starts");
    let mut server = Server {
        addr: String::new(),
        child,
        log: Some(log.to_owned()),
    };
    let started = std::time::Instant::now();
    loop {
        let text = server.log_text();
        if let Some(addr) = listening_addr(&text) {
            server.addr = addr;
            return server;
        }
        let stopped = server.child.try_wait().ok().flatten().is_some();
        assert!(!stopped, "kiln serve stopped before listening:\n{text}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "kiln serve is slow to start:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Starts Debian's `docker-registry` (distribution 2.8) on a free loopback port with its storage in
/// `dir`, or `None` (after the skip/panic policy) when it is not installed.
pub fn start_docker_registry(dir: &Path) -> Option<Server> {
    if !require_tool("docker-registry") {
        return None;
    }
    fs_err::create_dir_all(dir).expect("create registry folder");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.join("reg.yml");
    fs_err::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
             http: {{addr: {addr}}}\n",
            dir.join("data").display()
        ),
    )
    .expect("write reg.yml");
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("docker-registry starts");
    let server = Server {
        addr,
        child,
        log: None,
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(&server.addr).is_ok() {
            return Some(server);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("docker-registry did not listen on {}", server.addr);
}

/// A private `dockerd` (Debian's docker.io) with its data, exec root and socket under a folder of its own,
/// stopped and cleaned up when dropped.
#[derive(Debug)]
pub struct Dockerd {
    dir: PathBuf,
    child: std::process::Child,
}

impl Dockerd {
    /// Starts dockerd under `dir` (docs/peers.md's command line: no iptables, no bridge) and waits for its
    /// socket to answer; `None` (after the skip/panic policy) when dockerd or root is missing.
    pub fn start(dir: &Path) -> Option<Dockerd> {
        if !require_root() || !require_tool("dockerd") || !require_tool("docker") {
            return None;
        }
        fs_err::create_dir_all(dir).expect("create dockerd folder");
        let log = std::fs::File::create(dir.join("dockerd.log")).expect("create dockerd.log");
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .args([
                "--storage-driver=overlay2",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd starts");
        let dockerd = Dockerd {
            dir: dir.to_owned(),
            child,
        };
        for _ in 0..300 {
            if dockerd
                .command()
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return Some(dockerd);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let log = fs_err::read_to_string(dir.join("dockerd.log")).unwrap_or_default();
        panic!("dockerd did not answer on its socket within 30 s:\n{log}");
    }

    /// A `docker` command talking to this dockerd.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env(
            "DOCKER_HOST",
            format!("unix://{}", self.dir.join("docker.sock").display()),
        )
        .env("DOCKER_CONFIG", self.dir.join("client"));
        cmd
    }

    /// Runs `docker ARGS…` against this dockerd and returns its stdout; on failure panics with the
    /// command's output and the end of dockerd's own log (what the daemon saw is otherwise lost with the
    /// test's temporary folder).
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().expect("docker runs");
        if out.status.success() {
            return String::from_utf8(out.stdout).expect("stdout is UTF-8");
        }
        let log = fs_err::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "docker {args:?} failed:\n{}\n{}\n--- the last lines of dockerd.log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM lets dockerd stop its containerd and unmount what it mounted; kill it if it hangs.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .output();
        for _ in 0..100 {
            if self.child.try_wait().is_ok_and(|s| s.is_some()) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        unmount_below(&self.dir);
    }
}

/// Sends `GET path` to `addr` over plain HTTP/1.1 as written, with `headers` (`Name: value`) and
/// `Connection: close`; returns the response head (empty when none came) and whatever body arrived
/// before the connection ended, cleanly or not. For what a client library would hide or normalise: raw
/// paths, a body cut short.
pub fn raw_get(addr: &str, path: &str, headers: &[&str]) -> (String, Vec<u8>) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the server");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send the request");
    let mut response = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        response.extend_from_slice(&buf[..n]);
    }
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |p| p + 4);
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    (head, response[end..].to_vec())
}
