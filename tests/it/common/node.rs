//! The TypeScript apps' Redis adapter, run for real: node with ioredis, from the directory
//! `TS_INTEROP_DIR` names (`.ci/run` installs ioredis into a cache directory there), else
//! installed once into `target/ts-interop` with npm. Where node, npm or the package registry is
//! not available, tests that need it are skipped (`skip`): a failure under CI, a line in
//! `scripts/test`'s closing list of skipped tests elsewhere.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// `RedisSessionAdapter` as the TypeScript apps have it (`get`, `set`, `delete`, `extend`),
/// in plain JavaScript, then a script: `get` the session, `extend` it by an hour, read the
/// TTL, `set` back what `get` returned (as an app that updates a session does), and print
/// what it saw as JSON.
const ADAPTER: &str = r#"
const Redis = require('ioredis');
class RedisSessionAdapter {
  constructor(redis, context) { this.redis = redis; this.context = context; }
  generateSessionKey(sessionId) {
    if (this.context) return `session:${this.context}:${sessionId}`;
    return `session:${sessionId}`;
  }
  async get(sessionId) {
    try {
      const data = await this.redis.get(this.generateSessionKey(sessionId));
      if (!data) return null;
      const parsed = JSON.parse(data);
      if (parsed.expires_at < Date.now()) { await this.delete(sessionId); return null; }
      return parsed;
    } catch { return null; }
  }
  async set(sessionId, data, ttl) {
    await this.redis.set(this.generateSessionKey(sessionId), JSON.stringify(data), 'EX', ttl);
  }
  async delete(sessionId) {
    try { await this.redis.del(this.generateSessionKey(sessionId)); } catch {}
  }
  async extend(sessionId, ttl) {
    try { await this.redis.expire(this.generateSessionKey(sessionId), ttl); } catch {}
  }
}
(async () => {
  const [url, context, id] = process.argv.slice(2);
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  const adapter = new RedisSessionAdapter(redis, context);
  const got = await adapter.get(id);
  await adapter.extend(id, 3600);
  const ttl = await redis.ttl(adapter.generateSessionKey(id));
  if (got) await adapter.set(id, got, ttl);
  console.log(JSON.stringify({ get: got, ttl_after_extend: ttl }));
  redis.disconnect();
})().catch((e) => { console.error(e); process.exit(1); });
"#;

pub(crate) struct Node {
    dir: PathBuf,
}

static INSTALL: Mutex<()> = Mutex::new(());

/// node with ioredis, or `None` to skip the calling test, recorded as skipped (under CI the
/// call fails the test instead).
pub(crate) fn with_ioredis() -> Option<Node> {
    let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::var_os("TS_INTEROP_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ts-interop"),
        PathBuf::from,
    );
    let skip = |why: &str| {
        super::skip::skip(&format!("the TypeScript adapter cannot run: {why}"));
        None
    };
    if Command::new("node").arg("--version").output().is_err() {
        return skip("no `node` on PATH (Debian: apt-get install nodejs npm)");
    }
    if !dir.join("node_modules/ioredis").exists() {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            return skip(&format!("cannot create {}: {e}", dir.display()));
        }
        let installed = Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--silent",
                "ioredis@5",
            ])
            .current_dir(&dir)
            .status();
        match installed {
            Ok(status) if status.success() => {}
            Ok(status) => return skip(&format!("`npm install ioredis@5` failed ({status})")),
            Err(e) => return skip(&format!("no `npm` ({e})")),
        }
    }
    if let Err(e) = std::fs::write(dir.join("adapter.js"), ADAPTER) {
        return skip(&format!("cannot write {}/adapter.js: {e}", dir.display()));
    }
    Some(Node { dir })
}

impl Node {
    /// Runs the adapter script on session `id` of `context`; its JSON output.
    pub(crate) fn run_adapter(&self, redis_url: &str, context: &str, id: &str) -> String {
        let out = Command::new("node")
            .arg(self.dir.join("adapter.js"))
            .args([redis_url, context, id])
            .current_dir(&self.dir)
            .output()
            .expect("node runs");
        assert!(
            out.status.success(),
            "adapter failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }
}
