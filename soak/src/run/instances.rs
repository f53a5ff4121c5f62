//! Instances of the `multi_app` example, each on its own port, restartable on that port.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Variables of the caller's environment that would change what the instances run: they
/// get exactly the soak's.
const OWN_PREFIXES: [&str; 5] = ["SESSION_", "DATABASE_", "REDIS_", "LOGIN_", "BIND_"];

pub(super) struct Instance {
    pub index: usize,
    pub port: u16,
    binary: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Instance {
    pub(super) fn new(
        index: usize,
        binary: &Path,
        dir: &Path,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            index,
            port: super::servers::free_port()?,
            binary: binary.to_owned(),
            env,
            log: dir.join(format!("instance-{index}.log")),
            child: None,
        })
    }

    pub(super) fn log(&self) -> &Path {
        &self.log
    }

    /// Starts it and waits for its `listening on` line (after its migrations).
    pub(super) async fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(&self.binary);
        for (var, _) in std::env::vars() {
            if OWN_PREFIXES.iter().any(|p| var.starts_with(p)) {
                command.env_remove(var);
            }
        }
        let mut child = command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("BIND_ADDR", format!("127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let listening = async {
            while let Some(line) = lines.next_line().await? {
                if line.starts_with("listening on") {
                    return Ok(true);
                }
            }
            Ok::<bool, std::io::Error>(false)
        };
        let ready = tokio::time::timeout(Duration::from_secs(120), listening).await;
        // The instructions that follow are not needed: drain them so the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        match ready {
            Ok(Ok(true)) => {
                self.child = Some(child);
                Ok(())
            }
            _ => {
                let _ = child.kill().await;
                bail!(
                    "instance {} did not start (see {})",
                    self.index,
                    self.log.display()
                )
            }
        }
    }

    /// `SIGKILL`, and reaped.
    pub(super) async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Whether it died on its own (it must not).
    pub(super) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}
