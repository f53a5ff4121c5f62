//! The example's session management as JSON over a real socket: listing, ending one
//! session, ending the others behind the password, an admin's view and revocations, and a
//! table of hostile input for every new route (never a `5xx`, never anything ended).

use super::{login, Server};

/// The status of `GET /web/me` with `token` as a bearer: 200 while the session lives.
async fn web_me(server: &Server, token: &str) -> u16 {
    server
        .get("/web/me")
        .bearer(token)
        .send()
        .await
        .status
        .as_u16()
}

/// The handle of the session with `token`, from its own listing (the one marked current).
async fn own_handle(server: &Server, token: &str) -> String {
    let listed = server.get("/web/sessions").bearer(token).send().await;
    listed.assert_status(200);
    let listed = listed.json();
    listed
        .as_array()
        .expect("an array")
        .iter()
        .find(|s| s["current"] == true)
        .and_then(|s| s["handle"].as_str())
        .expect("the current session")
        .to_owned()
}

#[tokio::test]
async fn users_list_and_end_their_sessions_and_admins_end_anyones() {
    let server = Server::start("multi_app");
    let user = ("user@example.com", "user-password");
    let a = login(&server, "web", user.0, user.1).await.token();
    let b = login(&server, "web", user.0, user.1).await.token();
    let c = login(&server, "web", user.0, user.1).await.token();

    // The listing: three, newest first, this one marked, no token anywhere.
    let listed = server.get("/web/sessions").bearer(&a).send().await;
    listed.assert_status(200);
    let sessions = listed.json();
    let sessions = sessions.as_array().expect("an array");
    assert_eq!(sessions.len(), 3, "{}", listed.body);
    assert_eq!(sessions[2]["current"], true, "the oldest is a's");
    for token in [&a, &b, &c] {
        assert!(!listed.body.contains(token.as_str()), "{}", listed.body);
    }
    for field in [
        "handle",
        "context",
        "created_at",
        "last_seen",
        "expires_at",
        "ip",
        "user_agent",
        "current",
    ] {
        assert!(
            sessions[0].get(field).is_some(),
            "{field} in {}",
            sessions[0]
        );
    }
    assert_eq!(listed.headers["cache-control"], "no-store");

    // Ending b by its handle from a: 204, b is out, a and c are not; again: 404.
    let b_handle = own_handle(&server, &b).await;
    let path = format!("/web/sessions/{b_handle}");
    server
        .delete(&path)
        .bearer(&a)
        .send()
        .await
        .assert_status(204);
    assert_eq!(web_me(&server, &b).await, 401);
    server
        .delete(&path)
        .bearer(&a)
        .send()
        .await
        .assert_status(404);
    assert_eq!(web_me(&server, &c).await, 200);

    // Another user's handle is a 404, the same as a wrong one, and ends nothing.
    let other = login(&server, "web", "admin@example.com", "admin-password")
        .await
        .token();
    let other_handle = own_handle(&server, &other).await;
    let not_mine = format!("/web/sessions/{other_handle}");
    server
        .delete(&not_mine)
        .bearer(&a)
        .send()
        .await
        .assert_status(404);
    assert_eq!(web_me(&server, &other).await, 200);

    // The others, behind the password: wrong or missing is 401 reauthentication_required and
    // ends nothing; right, c ends and a moves to the returned token.
    let revoke = || server.post("/web/sessions/revoke-others").bearer(&a);
    for body in [
        r#"{"password":"wrong-password"}"#,
        "{}",
        r#"{"password":7}"#,
        "not json",
    ] {
        let reply = revoke().json(body).send().await;
        reply.assert_status(401);
        assert_eq!(reply.json()["error"], "reauthentication_required", "{body}");
    }
    assert_eq!(web_me(&server, &c).await, 200);
    let done = revoke()
        .json(r#"{"password":"user-password"}"#)
        .send()
        .await;
    done.assert_status(200);
    assert_eq!(done.json()["ended"], 1);
    let moved = done.json()["token"]
        .as_str()
        .expect("the new token")
        .to_owned();
    assert_eq!(web_me(&server, &c).await, 401);
    assert_eq!(web_me(&server, &a).await, 401);
    assert_eq!(web_me(&server, &moved).await, 200);

    // The admin panel: support lists but may not end; the admin ends one, then all.
    let support = login(&server, "admin", "support@example.com", "support-password")
        .await
        .token();
    let admin = login(&server, "admin", "admin@example.com", "admin-password")
        .await
        .token();
    let found = server
        .get("/admin/users?email=user@example.com")
        .bearer(&support)
        .send()
        .await;
    found.assert_status(200);
    let user_id = found.json()["id"].as_str().expect("an id").to_owned();
    let sessions_path = format!("/admin/users/{user_id}/sessions");
    let listed = server.get(&sessions_path).bearer(&support).send().await;
    listed.assert_status(200);
    assert_eq!(
        listed.json().as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.body
    );
    let handle = listed.json()[0]["handle"]
        .as_str()
        .expect("a handle")
        .to_owned();
    let one = format!("{sessions_path}/{handle}");
    server
        .delete(&one)
        .bearer(&support)
        .send()
        .await
        .assert_status(403);
    server
        .delete(&sessions_path)
        .bearer(&support)
        .send()
        .await
        .assert_status(403);
    assert_eq!(web_me(&server, &moved).await, 200);
    server
        .delete(&one)
        .bearer(&admin)
        .send()
        .await
        .assert_status(204);
    assert_eq!(web_me(&server, &moved).await, 401);
    let again = login(&server, "web", user.0, user.1).await.token();
    server
        .delete(&sessions_path)
        .bearer(&admin)
        .send()
        .await
        .assert_status(204);
    assert_eq!(web_me(&server, &again).await, 401);
    // The web panel's routes are not the admin's: a web session cannot list anyone.
    server
        .get(&sessions_path)
        .bearer(&other)
        .send()
        .await
        .assert_status(401);
}

/// Bad values on every new route: a clear 4xx, nothing ended, never a 5xx.
#[tokio::test]
async fn hostile_input_on_the_session_routes() {
    let server = Server::start("multi_app");
    let token = login(&server, "web", "user@example.com", "user-password")
        .await
        .token();
    let admin = login(&server, "admin", "admin@example.com", "admin-password")
        .await
        .token();
    let long = "A".repeat(10_000);
    let bad_handles: [(&str, &str); 9] = [
        ("too short", "AAAA"),
        ("one too long", "AAAAAAAAAAAAAAAAA"),
        ("padding", "AAAAAAAAAAAAAAA="),
        ("oversized", long.as_str()),
        ("non-UTF-8", "%FF%FEAAAAAAAAAAAAAA"),
        ("NUL", "AAAAAAAAAAAAAAA%00"),
        ("control character", "AAAAAAAAAAAAAAA%0A"),
        ("Cyrillic look-alike", "%D0%90AAAAAAAAAAAAAAA"),
        ("a path", "..%2F..%2Fadmin"),
    ];
    for (what, handle) in bad_handles {
        let reply = server
            .delete(&format!("/web/sessions/{handle}"))
            .bearer(&token)
            .send()
            .await;
        assert!(
            reply.status.is_client_error(),
            "{what}: {} {}",
            reply.status,
            reply.body
        );
        assert!(
            !reply.body.contains(handle),
            "{what}: the input is repeated"
        );
    }
    let bad_users: [(&str, &str); 5] = [
        ("not a uuid", "42"),
        ("oversized", long.as_str()),
        ("non-UTF-8", "%FF"),
        ("NUL", "00000000-0000-0000-0000-00000000000%00"),
        ("look-alike", "0000000０-0000-0000-0000-000000000000"),
    ];
    for (what, user) in bad_users {
        for method in ["GET", "DELETE"] {
            let path = format!("/admin/users/{user}/sessions");
            let call = if method == "GET" {
                server.get(&path)
            } else {
                server.delete(&path)
            };
            let reply = call.bearer(&admin).send().await;
            assert!(
                reply.status.is_client_error(),
                "{what} {method}: {}",
                reply.status
            );
        }
    }
    for query in [
        "",
        "?email=",
        "?email=%FF",
        "?email=a%00@example.com",
        "?emali=x",
    ] {
        let reply = server
            .get(&format!("/admin/users{query}"))
            .bearer(&admin)
            .send()
            .await;
        assert!(reply.status.is_client_error(), "{query}: {}", reply.status);
    }
    let oversized = format!(r#"{{"password":"{}"}}"#, "x".repeat(20_000));
    for body in [
        oversized.as_str(),
        r#"{"password":null}"#,
        r#"["user-password"]"#,
        "\u{0}",
    ] {
        let reply = server
            .post("/web/sessions/revoke-others")
            .bearer(&token)
            .json(body)
            .send()
            .await;
        assert!(reply.status.is_client_error(), "{}", reply.status);
    }
    // Nothing was ended by any of it.
    assert_eq!(web_me(&server, &token).await, 200);
    server
        .get("/admin/me")
        .bearer(&admin)
        .send()
        .await
        .assert_status(200);
}

/// The pages' forms: a cookie-authenticated post from another site is refused (`403`) and
/// ends nothing; from the same origin it ends the session and redirects (`303`); support
/// gets a `403` page for ending another user's sessions.
#[tokio::test]
async fn the_forms_refuse_other_sites_and_roles_that_may_not_end_sessions() {
    let server = Server::start("multi_app");
    let user = ("user@example.com", "user-password");
    let mine = login(&server, "web", user.0, user.1).await.token();
    let other = login(&server, "web", user.0, user.1).await.token();
    let handle = own_handle(&server, &other).await;
    let end = format!("/web/form/sessions/{handle}/end");
    for site in ["cross-site", "same-site"] {
        let reply = server
            .post(&end)
            .cookie("__Host-web_sid", &mine)
            .header("sec-fetch-site", site)
            .send()
            .await;
        reply.assert_status(403);
        assert_eq!(web_me(&server, &other).await, 200);
    }
    let evil = server
        .post(&end)
        .cookie("__Host-web_sid", &mine)
        .header("origin", "https://evil.example")
        .send()
        .await;
    evil.assert_status(403);
    assert_eq!(web_me(&server, &other).await, 200);
    let same = server
        .post(&end)
        .cookie("__Host-web_sid", &mine)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await;
    same.assert_status(303);
    assert_eq!(same.headers["location"], "/web/?notice=session-ended");
    assert_eq!(web_me(&server, &other).await, 401);

    // Support sees the user's sessions on the admin page but may not end them.
    let support = login(&server, "admin", "support@example.com", "support-password")
        .await
        .token();
    let page = server
        .get("/admin/?email=user%40example.com")
        .cookie("__Host-admin_sid", &support)
        .send()
        .await;
    page.assert_status(200);
    assert!(page.body.contains("Sessions of"), "{}", page.body);
    assert!(
        !page.body.contains("End all sessions"),
        "support gets no end buttons"
    );
    let found = server
        .get("/admin/users?email=user@example.com")
        .bearer(&support)
        .send()
        .await;
    let user_id = found.json()["id"].as_str().expect("an id").to_owned();
    let refused = server
        .post(&format!("/admin/form/users/{user_id}/sessions/end"))
        .cookie("__Host-admin_sid", &support)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await;
    refused.assert_status(403);
    assert!(
        refused.body.contains("may not end sessions"),
        "{}",
        refused.body
    );
    assert_eq!(web_me(&server, &mine).await, 200);
}
