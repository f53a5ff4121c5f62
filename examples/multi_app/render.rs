//! The pages' HTML pieces: the frame of every page (navigation between the apps, the
//! stylesheet link, the theme), the notices, the sign-in form and the sessions table. Every
//! value goes through maud, which escapes it.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use tower_app_sessions::manage::SessionInfo;

/// What a page says after a redirect: a code in the query, a fixed text here.
const NOTICES: [(&str, &str); 11] = [
    ("wrong-password", "Wrong email or password."),
    (
        "not-admitted",
        "This account cannot use the admin panel: only admin, operator and support accounts \
         can. Use the web app instead.",
    ),
    ("registered", "Account created; you are signed in."),
    (
        "not-registered",
        "That account could not be created (taken, or an invalid email or password).",
    ),
    ("session-ended", "The session was ended."),
    ("not-found", "No such session."),
    (
        "others-ended",
        "Every other session was ended; this one continues.",
    ),
    (
        "reauthentication-required",
        "Wrong password: nothing was ended.",
    ),
    ("saved", "Preferences saved."),
    ("forbidden", "Your role may not end sessions."),
    ("no-user", "No user with that email."),
];

/// The notice of a code; "sessions ended" says how many (`ended`, a count the redirect
/// carries; anything but a number gives the sentence without one).
pub(crate) fn notice_text(code: Option<&str>, ended: Option<&str>) -> Option<String> {
    let code = code?;
    if code == "user-sessions-ended" {
        return Some(match ended.and_then(|n| n.parse::<u64>().ok()) {
            Some(0) => "The user had no active session: nothing was ended.".to_owned(),
            Some(1) => "1 session was ended.".to_owned(),
            Some(n) => format!("{n} sessions were ended."),
            None => "The user's sessions were ended.".to_owned(),
        });
    }
    NOTICES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, text)| (*text).to_owned())
}

/// The two apps, for the navigation bar.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    Web,
    Admin,
}

pub(crate) fn page(site: Site, title: &str, theme: Option<&str>, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" data-theme=[theme] {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href="/assets/style.css";
            }
            body {
                nav {
                    span.brand { "tower-app-sessions demo" }
                    a href="/web/" aria-current=[(site == Site::Web).then_some("page")] { "Web app" }
                    a href="/admin/" aria-current=[(site == Site::Admin).then_some("page")] { "Admin panel" }
                }
                main { (body) }
            }
        }
    };
    super::no_store(markup.into_response())
}

/// The stylesheet of every page: a static text, cacheable (it holds nothing about anyone).
pub(crate) async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("style.css"),
    )
        .into_response()
}

/// The notices that say something was refused: shown as alerts.
const REFUSALS: [&str; 6] = [
    "wrong-password",
    "not-admitted",
    "not-registered",
    "not-found",
    "reauthentication-required",
    "forbidden",
];

pub(crate) fn notice(code: Option<&str>, ended: Option<&str>) -> Markup {
    let role = if code.is_some_and(|code| REFUSALS.contains(&code)) {
        "alert"
    } else {
        "status"
    };
    html! {
        @if let Some(text) = notice_text(code, ended) {
            p.notice role=(role) { (text) }
        }
    }
}

pub(crate) fn login_form(action: &str, title: &str) -> Markup {
    html! {
        section {
            form method="post" action=(action) id="login" {
                h2 { (title) }
                label { "Email" input type="email" name="email" autocomplete="username" required; }
                label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
        }
    }
}

/// "Chrome 126 on Linux", from the user agent; an agent no parser knows is shown as sent
/// (cut short, escaped by maud).
fn device(user_agent: Option<&str>) -> String {
    let Some(agent) = user_agent.filter(|ua| !ua.trim().is_empty()) else {
        return "Unknown device".to_owned();
    };
    let parsed = woothee::parser::Parser::new().parse(agent);
    let Some(parsed) = parsed.filter(|p| p.name != woothee::woothee::VALUE_UNKNOWN) else {
        let cut: String = agent.chars().take(60).collect();
        return if cut.len() < agent.len() {
            format!("{cut}…")
        } else {
            cut
        };
    };
    let major = parsed.version.split('.').next().unwrap_or_default();
    let browser = if major.is_empty() || major == woothee::woothee::VALUE_UNKNOWN {
        parsed.name.to_owned()
    } else {
        format!("{} {major}", parsed.name)
    };
    if parsed.os == woothee::woothee::VALUE_UNKNOWN {
        browser
    } else {
        format!("{browser} on {}", parsed.os)
    }
}

/// A time to the second, in UTC.
fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// How long ago `ms` was, at `now`. A session's last activity is known to its touch
/// interval (a minute), so under a minute reads "less than a minute ago".
fn ago(ms: i64, now: i64) -> String {
    let secs = (now - ms).max(0) / 1000;
    match secs {
        0..60 => "less than a minute ago".to_owned(),
        60..120 => "1 minute ago".to_owned(),
        120..3600 => format!("{} minutes ago", secs / 60),
        3600..7200 => "1 hour ago".to_owned(),
        7200..86_400 => format!("{} hours ago", secs / 3600),
        86_400..172_800 => "1 day ago".to_owned(),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// This device first, then the most recently active.
pub(crate) fn in_display_order(mut sessions: Vec<SessionInfo>) -> Vec<SessionInfo> {
    sessions.sort_by(|a, b| {
        b.current
            .cmp(&a.current)
            .then(b.last_seen.cmp(&a.last_seen))
            .then(b.created_at.cmp(&a.created_at))
    });
    sessions
}

/// What a row of the sessions table offers.
pub(crate) enum Actions<'a> {
    /// Only a sentence above the table (a role that can only view): no action column.
    None,
    /// "End this session" with the form action for each row; `sign_out` gives this device's
    /// row a "Sign out" button to that action instead.
    End {
        action: &'a dyn Fn(&SessionInfo) -> String,
        sign_out: Option<&'a str>,
    },
}

/// The sessions table, or a sentence when there are none (`empty`).
pub(crate) fn sessions_table(
    sessions: &[SessionInfo],
    now: i64,
    actions: &Actions<'_>,
    empty: &str,
) -> Markup {
    if sessions.is_empty() {
        return html! { p id="no-sessions" { (empty) } };
    }
    let with_actions = matches!(actions, Actions::End { .. });
    html! {
        table id="sessions" {
            tr {
                th { "Device" } th { "App" } th { "Address" } th { "Signed in" } th { "Last active" }
                @if with_actions { th { "Action" } }
            }
            @for s in sessions {
                tr.current[s.current] data-handle=(s.handle) {
                    td {
                        (device(s.user_agent.as_deref()))
                        @if s.current { span.badge { "This device" } }
                        br;
                        span.muted { "session " code { (s.handle) } }
                    }
                    td { (s.context) }
                    td { (s.ip.as_deref().unwrap_or("unknown")) }
                    td.when { (time(s.created_at)) }
                    td.when title=(time(s.last_seen)) {
                        @if s.current { "now" } @else { (ago(s.last_seen, now)) }
                    }
                    @if let Actions::End { action, sign_out } = actions {
                        td.when {
                            @match (s.current, sign_out) {
                                (true, Some(sign_out)) => {
                                    form.inline method="post" action=(sign_out) {
                                        button type="submit" { "Sign out" }
                                    }
                                }
                                _ => {
                                    form.inline method="post" action=(action(s)) {
                                        button type="submit" { "End this session" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_from_user_agents_good_and_hostile() {
        let long = format!("my-agent/{}", "9".repeat(10_000));
        let table: [(&str, Option<&str>, &str); 9] = [
            (
                "Chrome on Linux",
                Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"),
                "Chrome 126 on Linux",
            ),
            (
                "Firefox on Windows",
                Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"),
                "Firefox 128 on Windows 10",
            ),
            ("none", None, "Unknown device"),
            ("empty", Some(""), "Unknown device"),
            ("blank", Some("   "), "Unknown device"),
            ("unknown agent, shown as sent", Some("my-cli/1.0"), "my-cli/1.0"),
            ("markup (maud escapes it)", Some("<b>x</b>"), "<b>x</b>"),
            ("non-ASCII cut on a character", Some("агент"), "агент"),
            ("oversized", Some(long.as_str()), ""),
        ];
        for (what, agent, expected) in table {
            let shown = device(agent);
            if what == "oversized" {
                assert_eq!(shown.chars().count(), 61, "{what}: 60 characters and …");
                assert!(shown.ends_with('…'), "{what}");
            } else {
                assert_eq!(shown, expected, "{what}");
            }
        }
        let page = sessions_table(&[], 0, &Actions::None, "None <here>").into_string();
        assert_eq!(page, r#"<p id="no-sessions">None &lt;here&gt;</p>"#);
    }

    #[test]
    fn durations_read_as_people_say_them() {
        let now = 10 * 86_400_000;
        for (ago_ms, said) in [
            (0, "less than a minute ago"),
            (59_999, "less than a minute ago"),
            (60_000, "1 minute ago"),
            (119_999, "1 minute ago"),
            (120_000, "2 minutes ago"),
            (3_600_000, "1 hour ago"),
            (7_200_000, "2 hours ago"),
            (86_400_000, "1 day ago"),
            (3 * 86_400_000, "3 days ago"),
            // A time after `now` (clocks of two instances) is not "in the future".
            (-5_000, "less than a minute ago"),
        ] {
            assert_eq!(ago(now - ago_ms, now), said, "{ago_ms}");
        }
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(i64::MAX), "", "out of range: nothing, not a panic");
    }
}
