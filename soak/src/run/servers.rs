//! Throwaway Redis and PostgreSQL servers on free loopback ports in a temporary directory,
//! as `scripts/test` starts them, that the nemesis can kill, pause and restart. Everything
//! is stopped and removed when they are dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A loopback port nothing listens on (now).
pub(super) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Polls `ready` every 100 ms until it says yes, for at most `limit`.
pub(super) async fn wait_until<F, Fut>(
    limit: Duration,
    what: &str,
    mut ready: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if ready().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what} was not ready within {limit:?}")
}

/// A redis-server of our own.
pub(super) struct Redis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    pub(super) async fn start(dir: &Path) -> anyhow::Result<Self> {
        let mut redis = Self {
            port: free_port()?,
            dir: dir.to_owned(),
            child: None,
        };
        redis.spawn().await?;
        Ok(redis)
    }

    pub(super) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts a fresh server (no persistence: a restart loses every key, as a crash of a
    /// cache-only Redis does) and waits for `PING`.
    pub(super) async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = self.dir.join("redis.log");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server (Debian: apt-get install redis-server)")?;
        self.child = Some(child);
        let port = self.port;
        wait_until(Duration::from_secs(10), "redis-server", || ping(port)).await
    }

    fn pid(&self) -> anyhow::Result<Pid> {
        let id = self
            .child
            .as_ref()
            .and_then(Child::id)
            .context("redis-server is not running")?;
        Ok(Pid::from_raw(i32::try_from(id)?))
    }

    /// `SIGKILL`, and reaped.
    pub(super) async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    pub(super) fn pause(&self) -> anyhow::Result<()> {
        Ok(kill(self.pid()?, Signal::SIGSTOP)?)
    }

    pub(super) fn resume(&self) -> anyhow::Result<()> {
        Ok(kill(self.pid()?, Signal::SIGCONT)?)
    }
}

/// Whether a Redis answers `PING` on `port` within half a second.
async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut buf = [0u8; 7];
        stream.read_exact(&mut buf).await?;
        Ok::<bool, std::io::Error>(&buf == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), attempt).await,
        Ok(Ok(true))
    )
}

/// A PostgreSQL cluster of our own (`initdb`, `pg_ctl`), owned by the `postgres` user when
/// we run as root (PostgreSQL refuses to run as root).
pub(super) struct Postgres {
    pub port: u16,
    bindir: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    /// The user to run the server as (`runuser -u`), when we are root.
    owner: Option<String>,
}

/// The directory with `initdb` and `pg_ctl`: `PATH` first, then the newest
/// `/usr/lib/postgresql/*/bin`.
fn pg_bindir() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Ok(dir);
            }
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .context("initdb/pg_ctl not found (Debian: apt-get install postgresql)")
}

impl Postgres {
    pub(super) async fn start(dir: &Path) -> anyhow::Result<Self> {
        let owner = nix::unistd::Uid::effective()
            .is_root()
            .then(|| "postgres".to_string());
        if let Some(owner) = &owner {
            let user = nix::unistd::User::from_name(owner)?
                .with_context(|| format!("no {owner} user to run PostgreSQL as"))?;
            std::os::unix::fs::chown(dir, Some(user.uid.as_raw()), Some(user.gid.as_raw()))?;
        }
        let pg = Self {
            port: free_port()?,
            bindir: pg_bindir()?,
            dir: dir.to_owned(),
            data: dir.join("data"),
            owner,
        };
        let initdb = pg.bindir.join("initdb");
        let data = pg.data.to_string_lossy().into_owned();
        pg.run(
            &initdb,
            &[
                "-D",
                &data,
                "--auth=trust",
                "-U",
                "postgres",
                "--no-locale",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )
        .await
        .context("initdb")?;
        pg.start_server().await?;
        pg.psql("postgres", "CREATE DATABASE soak").await?;
        Ok(pg)
    }

    /// The database the instances use, through `port` (a proxy's, or the server's).
    pub(super) fn url(&self, port: u16) -> String {
        // Plain TCP: the proxy reads the startup message to tell the listener apart.
        format!("postgres://postgres@127.0.0.1:{port}/soak?sslmode=disable")
    }

    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut command = match &self.owner {
            Some(owner) => {
                let mut c = Command::new("runuser");
                c.args(["-u", owner, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        command
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    async fn run(&self, program: &Path, args: &[&str]) -> anyhow::Result<String> {
        let out = self.command(program, args).output().await?;
        if !out.status.success() {
            bail!(
                "{} failed: {}",
                program.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts the server and waits until it accepts connections.
    pub(super) async fn start_server(&self) -> anyhow::Result<()> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories='{}' -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log").to_string_lossy().into_owned();
        let data = self.data.to_string_lossy().into_owned();
        self.run(
            &self.bindir.join("pg_ctl"),
            &[
                "start", "-D", &data, "-l", &log, "-w", "-t", "60", "-s", "-o", &options,
            ],
        )
        .await
        .context("pg_ctl start")?;
        Ok(())
    }

    /// The immediate shutdown: every server process aborted at once, no checkpoint, crash
    /// recovery at the next start — a crash, but one that leaves no orphan behind.
    pub(super) async fn kill(&self) -> anyhow::Result<()> {
        let data = self.data.to_string_lossy().into_owned();
        self.run(
            &self.bindir.join("pg_ctl"),
            &[
                "stop",
                "-D",
                &data,
                "-m",
                "immediate",
                "-w",
                "-t",
                "30",
                "-s",
            ],
        )
        .await
        .context("pg_ctl stop -m immediate")?;
        Ok(())
    }

    /// One statement through `psql`, its output (`-At`); within 10 s.
    pub(super) async fn psql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        let psql = self.bindir.join("psql");
        let psql = if psql.is_file() {
            psql
        } else {
            PathBuf::from("psql")
        };
        let port = self.port.to_string();
        let mut command = Command::new(psql);
        command
            .args([
                "-X",
                "-w",
                "-Atq",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
            ])
            .args(["-U", "postgres", "-d", database, "-c", sql])
            .env("PGCONNECT_TIMEOUT", "3")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(10), command.output())
            .await
            .context("psql timed out")??;
        if !out.status.success() {
            bail!("psql: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if !self.data.join("postmaster.pid").exists() {
            return;
        }
        let pg_ctl = self.bindir.join("pg_ctl");
        let mut command = match &self.owner {
            Some(owner) => {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", owner, "--"]).arg(pg_ctl);
                c
            }
            None => std::process::Command::new(pg_ctl),
        };
        let _ = command
            .arg("stop")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "10", "-s"])
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
