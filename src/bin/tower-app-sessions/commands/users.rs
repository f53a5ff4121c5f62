//! `sessions` and `revoke`: one user's sessions, through `Sessions::list_user` and
//! `Sessions::revoke_user`, as the apps' admin pages call them.

use serde_json::json;
use tower_app_sessions::users::canonical_email;
use tower_app_sessions::{AppContext, Scope};
use uuid::Uuid;

use super::{context_of, count, quoted, store_error, time, Result};
use crate::connect::{connect, Connected};
use crate::output::Output;
use crate::{Outcome, RevokeArgs, UserArgs};

/// `--user`: a UUID, or an email address in its canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UserRef {
    Id(Uuid),
    Email(String),
}

impl UserRef {
    /// A UUID, else an email address (`canonical_email`, the form every resolver looks up);
    /// anything else is an error that says so.
    pub(crate) fn parse(value: &str) -> Result<Self> {
        if let Ok(id) = Uuid::parse_str(value) {
            return Ok(UserRef::Id(id));
        }
        canonical_email(value).map(UserRef::Email).map_err(|e| {
            format!(
                "--user {}: neither a UUID nor an email address ({e})",
                quoted(value)
            )
        })
    }
}

/// The user's id: as given, or through the user repository by email.
async fn user_id(c: &Connected, user: &UserRef) -> Result<Uuid> {
    let email = match user {
        UserRef::Id(id) => return Ok(*id),
        UserRef::Email(email) => email,
    };
    if c.sessions.postgres_store().is_none() {
        return Err("looking a user up by email needs DATABASE_URL; give the user's UUID".into());
    }
    match c.sessions.user_repository().find_by_email(email).await {
        Ok(Some(found)) => Ok(found.id),
        Ok(None) => Err("no user with that email".into()),
        Err(error) => Err(format!("users: {error}")),
    }
}

fn scope(context: Option<&AppContext>) -> Scope<'_> {
    context.map_or(Scope::AllContexts, Scope::Context)
}

pub(crate) async fn sessions(out: &Output, cluster: bool, args: UserArgs) -> Result<Outcome> {
    let user = UserRef::parse(&args.user)?;
    let context = context_of(args.context.as_deref())?;
    let c = connect(cluster).await?;
    c.require_schema().await?;
    let user = user_id(&c, &user).await?;
    let listed = c
        .sessions
        .list_user(&user, scope(context.as_ref()))
        .await
        .map_err(store_error("sessions"))?;
    let mut text = vec![format!(
        "{} of {user}",
        count(listed.len() as u64, "session", "sessions")
    )];
    for s in &listed {
        text.push(format!(
            "  {} {} created {} last seen {} ip {} agent {}",
            s.handle,
            s.context,
            time(s.created_at),
            time(s.last_seen),
            s.ip.as_deref().unwrap_or("-"),
            s.user_agent.as_deref().unwrap_or("-"),
        ));
    }
    out.emit(json!({ "user": user, "sessions": listed }), &text);
    Ok(Outcome::Clean)
}

pub(crate) async fn revoke(out: &Output, cluster: bool, args: RevokeArgs) -> Result<Outcome> {
    let user = UserRef::parse(&args.user)?;
    let context = if args.all {
        None
    } else {
        context_of(args.context.as_deref())?
    };
    let c = connect(cluster).await?;
    c.require_schema().await?;
    let user = user_id(&c, &user).await?;
    let ended = c
        .publishing()
        .await?
        .revoke_user(&user, scope(context.as_ref()))
        .await
        .map_err(store_error("sessions"))?;
    let scope = context.as_ref().map_or("every context", AppContext::as_str);
    let text = vec![format!(
        "ended {} of {user} ({scope})",
        count(ended, "session", "sessions")
    )];
    out.emit(
        json!({ "user": user, "ended": ended, "scope": scope }),
        &text,
    );
    Ok(Outcome::Clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_a_uuid_or_an_email_and_nothing_else() {
        let id = Uuid::new_v4();
        assert_eq!(UserRef::parse(&id.to_string()), Ok(UserRef::Id(id)));
        assert_eq!(
            UserRef::parse(" Ada@Example.com"),
            Ok(UserRef::Email("ada@example.com".into()))
        );
        for bad in [
            "",
            "not-a-uuid",
            "a@",
            "@b",
            "a@b@c",
            "a b@c",
            "x\u{0}@y",
            "\u{1b}[31m",
        ] {
            let error = UserRef::parse(bad).unwrap_err();
            assert!(error.starts_with("--user \""), "{error}");
            assert!(
                !error.contains('\u{1b}') && !error.contains('\u{0}'),
                "{error:?}"
            );
        }
    }
}
