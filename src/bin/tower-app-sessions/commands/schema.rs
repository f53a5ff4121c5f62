//! `migrate`: the crate's PostgreSQL migrations through `Sessions::pending_migrations` and
//! `Sessions::migrate`: what will change, then the change; nothing to do is one line.

use serde_json::json;

use super::Result;
use crate::connect::connect;
use crate::output::Output;
use crate::{Outcome, SchemaArgs};

pub(crate) async fn run(out: &Output, cluster: bool, args: SchemaArgs) -> Result<Outcome> {
    let c = connect(cluster).await?;
    // What connecting logged about missing triggers is what this command is for.
    out.discard_warnings();
    if c.sessions.postgres_store().is_none() {
        let text = vec![format!(
            "nothing to migrate: no DATABASE_URL (SESSION_ENV={}), and Redis needs no migration",
            c.sessions.environment()
        )];
        out.emit(
            json!({ "dry_run": args.dry_run, "pending": [], "applied": [] }),
            &text,
        );
        return Ok(Outcome::Clean);
    }
    let pending = c
        .sessions
        .pending_migrations()
        .await
        .map_err(|e| e.to_string())?;
    let steps: Vec<String> = pending.iter().map(ToString::to_string).collect();
    if steps.is_empty() {
        out.emit(
            json!({ "dry_run": args.dry_run, "pending": [], "applied": [] }),
            &["nothing to migrate: the database is up to date".to_owned()],
        );
        return Ok(Outcome::Clean);
    }
    if args.dry_run {
        let mut text = vec![format!("{} to do (dry run: nothing changed):", steps.len())];
        text.extend(steps.iter().map(|s| format!("  {s}")));
        text.push("run `tower-app-sessions migrate` to apply".to_owned());
        out.emit(
            json!({ "dry_run": true, "pending": steps, "applied": [] }),
            &text,
        );
        return Ok(Outcome::Clean);
    }
    c.sessions.migrate().await.map_err(|e| e.to_string())?;
    let mut text = vec![format!("applied {}:", steps.len())];
    text.extend(steps.iter().map(|s| format!("  {s}")));
    out.emit(
        json!({ "dry_run": false, "pending": [], "applied": steps }),
        &text,
    );
    Ok(Outcome::Clean)
}
