//! The example's pages over a real socket, as a browser's requests reach them: anti-framing
//! headers on every answer, sign-out back to the app's own page, a plain user's right
//! password on the admin page, "End all sessions" counted and the empty table, support's
//! view-only sentence, sessions told apart, the theme applied, a wrong-typed stored value
//! that locks nobody out, and tables of hostile input for the fields and routes the pages
//! added.

use super::{login, Call, Server};

/// A form post (`application/x-www-form-urlencoded`, sent as is).
fn form(call: Call, body: &str) -> Call {
    let mut call = call.header("content-type", "application/x-www-form-urlencoded");
    call.body = Some(body.to_owned());
    call
}

/// The user id of `email`, as the admin's JSON API finds it.
async fn user_id(server: &Server, admin: &str, email: &str) -> String {
    let found = server
        .get(&format!("/admin/users?email={}", email.replace('@', "%40")))
        .bearer(admin)
        .send()
        .await;
    found.assert_status(200);
    found.json()["id"].as_str().expect("an id").to_owned()
}

/// The `data-handle` rows of a page's sessions table, in order, and whether each is the
/// current one.
fn rows(page: &str) -> Vec<(String, bool)> {
    page.split("<tr")
        .skip(1)
        .filter_map(|row| {
            let handle = row.split("data-handle=\"").nth(1)?.split('"').next()?;
            Some((handle.to_owned(), row.starts_with(" class=\"current\"")))
        })
        .collect()
}

#[tokio::test]
async fn no_answer_can_be_framed() {
    let server = Server::start("multi_app");
    let web = login(&server, "web", "user@example.com", "user-password")
        .await
        .token();
    let answers = [
        ("the web sign-in page", server.get("/web/")),
        (
            "the web page signed in",
            server.get("/web/").cookie("__Host-web_sid", &web),
        ),
        ("the admin page", server.get("/admin/")),
        ("the stylesheet", server.get("/assets/style.css")),
        ("a JSON 401", server.get("/web/me")),
        ("a JSON 200", server.get("/web/me").bearer(&web)),
        (
            "a form's redirect",
            form(
                server.post("/admin/form/login"),
                "email=nobody%40example.com&password=wrong-password",
            ),
        ),
        ("a 404", server.get("/nowhere")),
        ("the metrics", server.get("/metrics")),
    ];
    for (what, call) in answers {
        let reply = call.send().await;
        assert_eq!(reply.headers["x-frame-options"], "DENY", "{what}");
        let policy = reply.headers["content-security-policy"]
            .to_str()
            .expect("ASCII");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{what}: {policy}"
        );
        assert_eq!(
            reply
                .headers
                .get_all("content-security-policy")
                .iter()
                .count(),
            1,
            "{what}: one policy"
        );
    }
}

#[tokio::test]
async fn signing_out_of_each_app_lands_on_its_own_page() {
    let server = Server::start("multi_app");
    for (app, email, password, cookie) in [
        (
            "admin",
            "admin@example.com",
            "admin-password",
            "__Host-admin_sid",
        ),
        ("web", "user@example.com", "user-password", "__Host-web_sid"),
    ] {
        let token = login(&server, app, email, password).await.token();
        let out = server
            .post(&format!("/{app}/form/logout"))
            .cookie(cookie, &token)
            .send()
            .await;
        out.assert_status(303);
        assert_eq!(out.headers["location"], format!("/{app}/"), "{app}");
        server
            .get(&format!("/{app}/me"))
            .bearer(&token)
            .send()
            .await
            .assert_status(401);
    }
}

#[tokio::test]
async fn a_plain_users_right_password_on_the_admin_page_says_the_account_cannot_use_it() {
    let server = Server::start("multi_app");
    let sign_in = |email: &str, password: &str| {
        form(
            server.post("/admin/form/login"),
            &format!("email={}&password={password}", email.replace('@', "%40")),
        )
    };
    let refused = sign_in("user@example.com", "user-password").send().await;
    refused.assert_status(303);
    assert_eq!(refused.headers["location"], "/admin/?notice=not-admitted");
    assert!(refused.set_cookies().is_empty(), "no admin session");
    let page = server.get("/admin/?notice=not-admitted").send().await;
    page.assert_status(200);
    assert!(
        page.body
            .contains("This account cannot use the admin panel"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Wrong email or password"));
    assert!(
        page.body.contains(r#"href="/web/""#),
        "a way to the web app"
    );

    // A wrong password, or an unknown email, is still just that.
    for (email, password) in [
        ("user@example.com", "wrong-password"),
        ("nobody@example.com", "user-password"),
    ] {
        let reply = sign_in(email, password).send().await;
        assert_eq!(
            reply.headers["location"], "/admin/?notice=wrong-password",
            "{email}"
        );
    }
    // The JSON API keeps its 403.
    login(&server, "admin", "user@example.com", "user-password")
        .await
        .assert_status(403);
}

#[tokio::test]
async fn ending_all_sessions_of_a_user_counts_them_and_leaves_a_sentence() {
    let server = Server::start("multi_app");
    let admin = login(&server, "admin", "admin@example.com", "admin-password")
        .await
        .token();
    let user = user_id(&server, &admin, "user@example.com").await;
    let page = || {
        server
            .get(&format!("/admin/?user={user}"))
            .cookie("__Host-admin_sid", &admin)
    };
    let end_all = || {
        server
            .post(&format!("/admin/form/users/{user}/sessions/end"))
            .cookie("__Host-admin_sid", &admin)
    };
    for (sessions, said) in [
        (3, "3 sessions were ended."),
        (1, "1 session was ended."),
        (0, "The user had no active session: nothing was ended."),
    ] {
        for _ in 0..sessions {
            login(&server, "web", "user@example.com", "user-password")
                .await
                .assert_status(200);
        }
        let before = page().send().await;
        assert_eq!(rows(&before.body).len(), sessions, "{}", before.body);
        assert_eq!(
            before.body.contains(r#"id="end-all""#),
            sessions > 0,
            "the end-all button only when there is something to end"
        );
        let done = end_all().send().await;
        done.assert_status(303);
        let location = done.headers["location"].to_str().unwrap().to_owned();
        assert_eq!(
            location,
            format!("/admin/?user={user}&notice=user-sessions-ended&ended={sessions}")
        );
        let after = server
            .get(&location)
            .cookie("__Host-admin_sid", &admin)
            .send()
            .await;
        after.assert_status(200);
        assert!(after.body.contains(said), "{sessions}: {}", after.body);
        assert!(
            after.body.contains("This user has no active sessions."),
            "{}",
            after.body
        );
        assert!(!after.body.contains("<table"), "no bare headers");
        assert!(!after.body.contains(r#"id="end-all""#), "nothing to end");
    }
}

#[tokio::test]
async fn support_is_told_their_role_can_only_view() {
    let server = Server::start("multi_app");
    login(&server, "web", "user@example.com", "user-password")
        .await
        .assert_status(200);
    let support = login(&server, "admin", "support@example.com", "support-password")
        .await
        .token();
    let page = server
        .get("/admin/?email=user%40example.com")
        .cookie("__Host-admin_sid", &support)
        .send()
        .await;
    page.assert_status(200);
    assert_eq!(rows(&page.body).len(), 1, "{}", page.body);
    assert!(
        page.body
            .contains("Your role (support) can view sessions but not end them"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<th>Action</th>"), "no empty column");
    assert!(
        !page.body.contains("<button type=\"submit\">End"),
        "no buttons"
    );
    // The admin gets the column and the buttons.
    let admin = login(&server, "admin", "admin@example.com", "admin-password")
        .await
        .token();
    let page = server
        .get("/admin/?email=user%40example.com")
        .cookie("__Host-admin_sid", &admin)
        .send()
        .await;
    assert!(page.body.contains("<th>Action</th>"), "{}", page.body);
    assert!(!page.body.contains("view-only"), "{}", page.body);
}

#[tokio::test]
async fn your_sessions_are_told_apart_this_device_first_and_the_theme_shows() {
    let server = Server::start("multi_app");
    let firefox =
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let safari = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 \
                  (KHTML, like Gecko) Version/17.5 Safari/605.1.15";
    let sign_in = |agent: &str| {
        server
            .post("/web/login")
            .header("user-agent", agent)
            .json(r#"{"email":"user@example.com","password":"user-password"}"#)
    };
    // The older one is this device: it must still come first.
    let mine = sign_in(firefox).send().await.token();
    let other = sign_in(safari).send().await.token();
    let web = || server.get("/web/").cookie("__Host-web_sid", &mine);
    let page = web().send().await;
    page.assert_status(200);
    let listed = rows(&page.body);
    assert_eq!(listed.len(), 2, "{}", page.body);
    assert!(listed[0].1 && !listed[1].1, "this device first: {listed:?}");
    let first = page.body.split("<tr").nth(2).unwrap_or_default();
    let second = page.body.split("<tr").nth(3).unwrap_or_default();
    assert!(first.contains("Firefox 128 on Windows 10"), "{first}");
    assert!(first.contains("This device"), "{first}");
    assert!(second.contains("Safari 17 on Mac OSX"), "{second}");
    assert!(second.contains("less than a minute ago"), "{second}");
    let other_handle = &listed[1].0;
    assert!(
        second.contains(other_handle.as_str()),
        "the handle is shown"
    );
    // Times to the second.
    let stamp = first
        .split("<td class=\"when\">")
        .nth(1)
        .and_then(|cell| cell.split(" UTC").next())
        .expect("a sign-in time");
    assert!(
        chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S").is_ok(),
        "{stamp}"
    );
    assert!(!page.body.contains(&other), "no session id on the page");

    // No theme stored: the page says none; each choice then shows on the page.
    assert!(page.body.contains(r#"<html lang="en">"#), "{}", page.body);
    for theme in ["dark", "light", "dark"] {
        let saved = form(
            server
                .post("/web/form/preferences")
                .cookie("__Host-web_sid", &mine),
            &format!("theme={theme}"),
        )
        .send()
        .await;
        saved.assert_status(303);
        assert_eq!(saved.headers["location"], "/web/?notice=saved");
        let page = web().send().await;
        assert!(
            page.body
                .contains(&format!(r#"<html lang="en" data-theme="{theme}">"#)),
            "{theme}: {}",
            page.body
        );
    }
    let css = server.get("/assets/style.css").send().await;
    css.assert_status(200);
    assert_eq!(css.headers["content-type"], "text/css; charset=utf-8");
    assert!(css.body.contains(r#"html[data-theme="dark"]"#));
}

/// Bad values for the fields and routes the pages added: a clear 4xx (or the value
/// ignored), never a 5xx, never the input repeated, nothing changed.
#[tokio::test]
async fn hostile_input_on_the_pages() {
    let server = Server::start("multi_app");
    let web = login(&server, "web", "user@example.com", "user-password")
        .await
        .token();
    let preferences = || {
        server
            .post("/web/form/preferences")
            .cookie("__Host-web_sid", &web)
    };
    form(preferences(), "theme=dark")
        .send()
        .await
        .assert_status(303);
    let long = "x".repeat(20_000);
    let bodies: [(&str, String); 9] = [
        ("empty", String::new()),
        ("empty theme", "theme=".into()),
        ("unknown theme", "theme=purple".into()),
        ("NUL", "theme=dark%00".into()),
        ("markup", "theme=%3Cscript%3Ealert(1)%3C%2Fscript%3E".into()),
        ("oversized", format!("theme={long}")),
        ("non-UTF-8", "theme=%FF%FE".into()),
        ("twice", "theme=light&theme=dark".into()),
        ("look-alike", "theme=d%D0%B0rk".into()),
    ];
    for (what, body) in bodies {
        let reply = form(preferences(), &body).send().await;
        assert!(
            reply.status.is_client_error(),
            "{what}: {} {}",
            reply.status,
            reply.body
        );
        assert!(!reply.body.contains("script"), "{what}: input repeated");
    }
    let json = preferences().json(r#"{"theme":"light"}"#).send().await;
    assert!(
        json.status.is_client_error(),
        "JSON to the form: {}",
        json.status
    );
    let page = server
        .get("/web/")
        .cookie("__Host-web_sid", &web)
        .send()
        .await;
    assert!(
        page.body.contains(r#"data-theme="dark""#),
        "nothing changed the theme"
    );

    // The count of "sessions ended" comes from the query: anything but a number is the
    // sentence without one, and nothing of it is repeated.
    let admin = login(&server, "admin", "admin@example.com", "admin-password")
        .await
        .token();
    let counts = [
        ("word", "abc", "The user's sessions were ended."),
        ("negative", "-1", "The user's sessions were ended."),
        ("exponent", "1e3", "The user's sessions were ended."),
        (
            "over u64",
            "18446744073709551616",
            "The user's sessions were ended.",
        ),
        ("NUL", "1%00", "The user's sessions were ended."),
        ("markup", "%3Cscript%3E", "The user's sessions were ended."),
        ("empty", "", "The user's sessions were ended."),
        ("a number", "7", "7 sessions were ended."),
    ];
    for (what, ended, said) in counts {
        let reply = server
            .get(&format!("/admin/?notice=user-sessions-ended&ended={ended}"))
            .cookie("__Host-admin_sid", &admin)
            .send()
            .await;
        reply.assert_status(200);
        assert!(reply.body.contains(said), "{what}: {}", reply.body);
        assert!(!reply.body.contains("<script"), "{what}");
    }
    let unknown = server
        .get("/admin/?notice=%3Cb%3Ehi&ended=3")
        .cookie("__Host-admin_sid", &admin)
        .send()
        .await;
    unknown.assert_status(200);
    assert!(!unknown.body.contains("class=\"notice\""), "no notice");

    // The stylesheet route: GET only, exact name, a query changes nothing.
    for (what, call, status) in [
        ("POST", server.post("/assets/style.css"), 405),
        ("DELETE", server.delete("/assets/style.css"), 405),
        ("another name", server.get("/assets/STYLE.css"), 404),
        ("a path", server.get("/assets/..%2Fweb%2F"), 404),
        ("a query", server.get("/assets/style.css?%3Cscript%3E"), 200),
        ("a trailing slash", server.get("/assets/style.css/"), 200),
    ] {
        let reply = call.send().await;
        assert_eq!(reply.status.as_u16(), status, "{what}: {}", reply.body);
        assert!(!reply.body.contains("<script"), "{what}");
    }
    // None of it ended anything.
    server
        .get("/web/me")
        .bearer(&web)
        .send()
        .await
        .assert_status(200);
}

/// A stored theme or flash notice of the wrong type (written by another app straight into
/// the store) is ignored and logged: the user's own pages still answer `200`.
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_wrong_typed_stored_value_never_locks_the_user_out() {
    use serde_json::{json, Value};

    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let server = Server::start_with(
        "multi_app",
        &[("SESSION_ENV", "development"), ("REDIS_URL", &url)],
    );
    let client = redis::Client::open(url.as_str()).unwrap();
    let redis = client.get_multiplexed_async_connection().await.unwrap();
    let web = login(&server, "web", "user@example.com", "user-password")
        .await
        .token();
    let admin = login(&server, "admin", "admin@example.com", "admin-password")
        .await
        .token();
    let store = |key: String, data: Value| {
        let mut redis = redis.clone();
        async move {
            let record: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut redis)
                .await
                .unwrap();
            let mut record: Value = serde_json::from_str(&record.expect("the session")).unwrap();
            record["data"] = data;
            let () = redis::cmd("SET")
                .arg(&key)
                .arg(record.to_string())
                .arg("KEEPTTL")
                .query_async(&mut redis)
                .await
                .unwrap();
        }
    };
    let wrong: [(&str, Value); 6] = [
        ("a number", json!(7)),
        ("a boolean", json!(true)),
        ("an array", json!(["dark"])),
        ("an object", json!({"dark": true})),
        ("an unknown theme", json!("purple")),
        ("markup", json!("<script>")),
    ];
    for (what, value) in wrong {
        store(
            format!("session:web:{web}"),
            json!({ "theme": value, "flash.notice": value }),
        )
        .await;
        let page = server
            .get("/web/")
            .cookie("__Host-web_sid", &web)
            .send()
            .await;
        page.assert_status(200);
        assert!(
            page.body.contains(r#"<html lang="en">"#),
            "{what}: no theme"
        );
        assert!(!page.body.contains("<script>"), "{what}");
        let me = server.get("/web/me").bearer(&web).send().await;
        me.assert_status(200);
        let expected = value.as_str().map(str::to_owned);
        assert_eq!(
            me.json()["notice"].as_str().map(str::to_owned),
            expected,
            "{what}: a string notice is shown, anything else dropped"
        );
        server
            .get("/web/preferences")
            .bearer(&web)
            .send()
            .await
            .assert_status(200);

        store(
            format!("session:admin:{admin}"),
            json!({ "flash.notice": value }),
        )
        .await;
        let me = server.get("/admin/me").bearer(&admin).send().await;
        me.assert_status(200);
        server
            .get("/admin/")
            .cookie("__Host-admin_sid", &admin)
            .send()
            .await
            .assert_status(200);
    }
    for (app, token) in [("web", &web), ("admin", &admin)] {
        server
            .post(&format!("/{app}/logout"))
            .bearer(token)
            .send()
            .await
            .assert_status(204);
    }
}
