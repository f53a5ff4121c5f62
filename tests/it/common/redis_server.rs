//! Throwaway `redis-server` processes on free loopback ports, for tests that kill, restart or
//! cluster a server. Each one lives in its own temporary directory and dies with its guard.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `REDIS_SERVER_BIN` (set by scripts/test), else `redis-server` from PATH.
pub(crate) fn server_bin() -> String {
    std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into())
}

/// `REDIS_CLI_BIN` (set by scripts/test), else `redis-cli` from PATH.
pub(crate) fn cli_bin() -> String {
    std::env::var("REDIS_CLI_BIN").unwrap_or_else(|_| "redis-cli".into())
}

/// The URL of the shared test Redis: `REDIS_URL`, else the local server's database 15.
///
/// `scripts/test` sets `REDIS_URL` to a database of the suite's own (15 unless
/// `TEST_REDIS_DB` says otherwise), checked empty before the run and emptied after it, so a
/// user's data (database 0) is never touched. Without `scripts/test` the default keeps to
/// database 15 as well. Pub/sub is not scoped to a database: tests that depend on the
/// invalidation bus start a Redis of their own ([`RedisServer`]).
pub(crate) fn shared_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_URL.into())
}

/// The shared test Redis when `REDIS_URL` is not set: the local server, the suite's database.
pub(crate) const DEFAULT_URL: &str = "redis://127.0.0.1:6379/15";

pub(crate) fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct loopback ports nothing listens on, from the kernel's ephemeral range: all
/// are held at once while they are picked, so they differ from each other.
pub(crate) fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("bound").port())
}

/// A loopback port at or above `min` that nothing listens on (for tests of high ports).
pub(crate) fn free_port_from(min: u16) -> u16 {
    (min..=u16::MAX)
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .unwrap_or_else(|| panic!("no free loopback port at or above {min}"))
}

pub(crate) struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// A server that keeps its data across [`kill`](Self::kill) + [`start`](Self::start)
    /// (append-only file, fsync always), so a restart is a real outage, not a wipe.
    pub(crate) fn start_persistent() -> Self {
        Self::launch(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// A plain in-memory server.
    pub(crate) fn start_plain() -> Self {
        Self::launch(&["--appendonly", "no"])
    }

    /// A plain server on which `KEYS` does not exist (renamed away), so anything that uses
    /// it fails: for code that must only ever SCAN.
    pub(crate) fn start_without_keys() -> Self {
        Self::launch(&["--appendonly", "no", "--rename-command", "KEYS", ""])
    }

    /// A plain server with extra configuration directives (`--name value` pairs).
    pub(crate) fn start_with(extra: &[&str]) -> Self {
        let mut args = vec!["--appendonly", "no"];
        args.extend_from_slice(extra);
        Self::launch(&args)
    }

    /// How many times the server has run `command` (`INFO commandstats`).
    pub(crate) fn calls(&self, command: &str) -> u64 {
        let prefix = format!("cmdstat_{}:calls=", command.to_ascii_lowercase());
        self.cli(&["INFO", "commandstats"])
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().expect("a call count"))
    }

    /// A cluster-enabled node (not yet joined), on a free port with its cluster bus on
    /// another free port.
    ///
    /// Redis puts the bus on `port + 10000` unless `--cluster-port` says otherwise, and then
    /// refuses any port above 55535. A port from the kernel can be anywhere in its ephemeral
    /// range (49152-65535 on many systems), so the bus always gets a port of its own.
    pub(crate) fn start_cluster_node() -> Self {
        let [port, bus] = free_ports::<2>();
        Self::start_cluster_node_on(port, bus)
    }

    /// A cluster-enabled node on `port`, its cluster bus on `bus`.
    pub(crate) fn start_cluster_node_on(port: u16, bus: u16) -> Self {
        Self::launch_on(port, &cluster_node_args(bus))
    }

    fn launch(extra: &[&str]) -> Self {
        Self::launch_on(free_port(), extra)
    }

    /// The `redis-server` command of this server, not yet started.
    pub(crate) fn command(port: u16, dir: &std::path::Path, extra: &[impl AsRef<str>]) -> Command {
        let mut command = Command::new(server_bin());
        command
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .args(extra.iter().map(AsRef::as_ref))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    fn launch_on(port: u16, extra: &[impl AsRef<str>]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tas-redis-{}-{port}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut server = Self {
            port,
            dir,
            extra: extra.iter().map(|s| s.as_ref().to_owned()).collect(),
            child: None,
        };
        server.start();
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on its port and waits until it answers PING.
    pub(crate) fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Self::command(self.port, &self.dir, &self.extra)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (apt-get install redis-server)",
                    server_bin()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn ping(&self) -> bool {
        Command::new(cli_bin())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "PING"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
            .unwrap_or(false)
    }

    /// SIGKILL: no shutdown, no save; clients see connections drop.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A `redis-cli` command against this server; returns stdout.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(cli_bin())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The arguments of a cluster node whose bus listens on `bus`.
pub(crate) fn cluster_node_args(bus: u16) -> Vec<String> {
    [
        "--appendonly",
        "no",
        "--cluster-enabled",
        "yes",
        "--cluster-node-timeout",
        "2000",
        "--cluster-port",
        &bus.to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Three cluster-enabled masters joined with `redis-cli --cluster create`.
pub(crate) struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub(crate) fn start() -> Self {
        Self::join((0..3).map(|_| RedisServer::start_cluster_node()).collect())
    }

    /// Joins running, cluster-enabled nodes into one cluster of masters.
    pub(crate) fn join(nodes: Vec<RedisServer>) -> Self {
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status = Command::new(cli_bin())
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli --cluster create runs");
        assert!(status.success(), "cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes
            .iter()
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        {
            assert!(Instant::now() < deadline, "cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { nodes }
    }

    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

impl RedisServer {
    /// A plain in-memory server that accepts `DEBUG` from local connections (Redis 7 refuses
    /// it by default), for tests that hang the server with `DEBUG SLEEP`.
    pub(crate) fn start_debuggable() -> Self {
        Self::launch(&["--appendonly", "no", "--enable-debug-command", "local"])
    }
}
