//! The example's pages in a real browser: headless Chromium through WebDriver
//! (`chromedriver`, Debian packages `chromium` and `chromium-driver`). Without a driver the
//! test is skipped (`skip`): a failure under CI, which installs the packages (`.ci/run`);
//! elsewhere `scripts/test` names it in its closing list of skipped tests.
//!
//! Flow: two independent browser profiles sign in to web as the same user; the first sees
//! two sessions, its own first and marked, and ends the other; the second profile's next
//! page load is the sign-in form; the first switches to the dark theme and the page turns
//! dark; the web cookie does not open `/admin/`; the plain user's right password on the
//! admin page is told the account cannot use the panel; support sees a user's sessions and
//! that their role can only view; an admin in a third profile ends every session of the
//! user (the notice counts them, the empty table is a sentence, the button is gone) and the
//! first profile is signed out too. Cookies are checked as the browser stored them
//! (`__Host-` prefix, `Secure` on `http://127.0.0.1`, `HttpOnly`, `SameSite`). Screenshots
//! of the pages are taken on every run and written to `docs/` only when asked
//! (`UPDATE_SCREENSHOTS=1`): the tracked images change when someone means to change them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use super::Server;

/// A running chromedriver, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_program(names: &[&str], env: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

impl Driver {
    /// chromedriver on a free loopback port, once it answers; `None` when there is none.
    async fn start() -> Option<Driver> {
        let program = find_program(&["chromedriver"], "CHROMEDRIVER")?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(driver);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("chromedriver did not listen on port {port}");
    }

    /// A new browser with a profile of its own (chromedriver makes a fresh one per session).
    async fn browser(&self) -> Client {
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1100,800",
        ];
        args.push("--lang=en-US");
        let mut options = serde_json::json!({ "args": args });
        if let Some(chromium) =
            find_program(&["chromium", "chromium-browser", "google-chrome"], "CHROME")
        {
            options["binary"] = chromium.display().to_string().into();
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a browser session")
    }
}

const WAIT: Duration = Duration::from_secs(20);

async fn fill(client: &Client, css: &str, text: &str) {
    let field = client.find(Locator::Css(css)).await.expect(css);
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn wait_for(client: &Client, css: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(_) => return,
            // chromedriver answers a lookup made while the page is being replaced (a form
            // was just submitted) with this instead of an element or "no such element": the
            // next page is on its way, so look again (within the same bound).
            Err(fantoccini::error::CmdError::NotW3C(serde_json::Value::String(answer)))
                if answer == "aborted by navigation" && std::time::Instant::now() < deadline => {}
            Err(e) => panic!("{css} never appeared: {e}"),
        }
    }
}

async fn has(client: &Client, css: &str) -> bool {
    !client
        .find_all(Locator::Css(css))
        .await
        .expect("find")
        .is_empty()
}

/// Signs in through the form at `base/app/` and waits for the signed-in page.
async fn sign_in(client: &Client, base: &str, app: &str, email: &str, password: &str, then: &str) {
    client.goto(&format!("{base}/{app}/")).await.expect("goto");
    wait_for(client, "#login").await;
    fill(client, "#login input[name=email]", email).await;
    fill(client, "#login input[name=password]", password).await;
    click(client, "#login button").await;
    wait_for(client, then).await;
}

/// The handles of the session rows on the page, and which row is this device.
async fn rows(client: &Client) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for row in client
        .find_all(Locator::Css("#sessions tr[data-handle]"))
        .await
        .expect("rows")
    {
        let handle = row
            .attr("data-handle")
            .await
            .expect("attr")
            .unwrap_or_default();
        let class = row.attr("class").await.expect("attr").unwrap_or_default();
        out.push((handle, class.split_whitespace().any(|c| c == "current")));
    }
    out
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{name}: not a PNG image"
    );
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        let dir = Path::new(super::EXAMPLES_ROOT).join("docs");
        std::fs::create_dir_all(&dir).expect("docs/");
        std::fs::write(dir.join(name), png).expect("write screenshot");
    }
}

async fn text(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("text")
}

/// The page's computed background colour (the theme shows there).
async fn background(client: &Client) -> String {
    let value = client
        .execute(
            "return getComputedStyle(document.body).backgroundColor",
            vec![],
        )
        .await
        .expect("computed style");
    value.as_str().unwrap_or_default().to_owned()
}

async fn reload(client: &Client, url: &str) {
    client.goto(url).await.expect("goto");
}

#[tokio::test]
async fn two_devices_an_admin_and_the_cookies_as_a_browser_keeps_them() {
    let Some(driver) = Driver::start().await else {
        super::skip::skip(
            "no chromedriver on PATH (install the Debian packages chromium and \
             chromium-driver, or set CHROMEDRIVER)",
        );
        return;
    };
    let server = Server::start("multi_app");
    let base = format!("http://{}", server.addr);
    let web = format!("{base}/web/");
    let (first, second, admin) = (
        driver.browser().await,
        driver.browser().await,
        driver.browser().await,
    );
    let user = ("user@example.com", "user-password");

    // Two profiles, the same user.
    sign_in(&first, &base, "web", user.0, user.1, "#sessions").await;
    sign_in(&second, &base, "web", user.0, user.1, "#sessions").await;

    // The cookie as the browser keeps it.
    let cookies = first.get_all_cookies().await.expect("cookies");
    let cookie = cookies
        .iter()
        .find(|c| c.name() == "__Host-web_sid")
        .unwrap_or_else(|| panic!("no __Host-web_sid cookie in {cookies:?}"));
    assert_eq!(cookie.secure(), Some(true), "{cookie:?}");
    assert_eq!(cookie.http_only(), Some(true), "{cookie:?}");
    assert_eq!(cookie.path(), Some("/"), "{cookie:?}");
    assert_eq!(
        cookie.domain(),
        Some("127.0.0.1"),
        "a host-only cookie: {cookie:?}"
    );
    assert_eq!(
        cookie.same_site(),
        Some(cookie::SameSite::Lax),
        "{cookie:?}"
    );

    // The first profile sees both sessions, itself marked.
    reload(&first, &web).await;
    wait_for(&first, "#sessions").await;
    let listed = rows(&first).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed.iter().filter(|(_, current)| *current).count(), 1);
    assert!(listed[0].1, "this device is listed first: {listed:?}");
    assert!(text(&first, "#sessions tr.current")
        .await
        .contains("This device"));
    screenshot(&first, "web-sessions.png").await;
    let (other, _) = listed
        .iter()
        .find(|(_, current)| !current)
        .expect("the other")
        .clone();
    assert!(!first
        .source()
        .await
        .expect("source")
        .contains(&cookie.value().to_owned()));

    // It ends the other one.
    click(&first, &format!("tr[data-handle='{other}'] button")).await;
    wait_for(&first, ".notice").await;
    assert_eq!(rows(&first).await.len(), 1);

    // The second profile is signed out on its next page load.
    reload(&second, &web).await;
    wait_for(&second, "#login").await;
    assert!(!has(&second, "#sessions").await);

    // The theme preference changes the page.
    let light = background(&first).await;
    first
        .find(Locator::Css(
            "#preferences select[name=theme] option[value=dark]",
        ))
        .await
        .expect("the dark option")
        .click()
        .await
        .expect("choose dark");
    click(&first, "#preferences button").await;
    wait_for(&first, "html[data-theme=dark]").await;
    let dark = background(&first).await;
    assert_ne!(light, dark, "the dark theme changes the background");
    screenshot(&first, "web-dark-theme.png").await;

    // The plain user's right password on the admin page: this account cannot use it.
    sign_in(&second, &base, "admin", user.0, user.1, ".notice").await;
    let said = text(&second, ".notice").await;
    assert!(said.contains("cannot use the admin panel"), "{said}");
    screenshot(&second, "admin-not-admitted.png").await;

    // Support sees the user's sessions, and that their role can only view.
    sign_in(
        &second,
        &base,
        "admin",
        "support@example.com",
        "support-password",
        "#search",
    )
    .await;
    fill(&second, "#search input[name=email]", user.0).await;
    click(&second, "#search button").await;
    wait_for(&second, "#user-email").await;
    assert_eq!(rows(&second).await.len(), 1);
    assert!(text(&second, "#view-only")
        .await
        .contains("can view sessions but not end them"));
    assert!(!has(&second, "#sessions button").await);
    assert!(!has(&second, "#end-all").await);
    screenshot(&second, "admin-support-view.png").await;

    // The web cookie does not open the admin panel in the same profile.
    reload(&first, &format!("{base}/admin/")).await;
    wait_for(&first, "#login").await;
    assert!(!has(&first, "#search").await);

    // An admin in a third profile ends every session of the user.
    sign_in(
        &admin,
        &base,
        "admin",
        "admin@example.com",
        "admin-password",
        "#search",
    )
    .await;
    fill(&admin, "#search input[name=email]", user.0).await;
    click(&admin, "#search button").await;
    wait_for(&admin, "#user-email").await;
    assert_eq!(rows(&admin).await.len(), 1);
    screenshot(&admin, "admin-sessions.png").await;
    click(&admin, "#end-all button").await;
    wait_for(&admin, ".notice").await;
    assert_eq!(text(&admin, ".notice").await, "1 session was ended.");
    assert!(rows(&admin).await.is_empty());
    assert!(text(&admin, "#no-sessions")
        .await
        .contains("no active sessions"));
    assert!(!has(&admin, "#end-all").await, "nothing left to end");
    screenshot(&admin, "admin-ended-all.png").await;

    // The first profile is signed out too.
    reload(&first, &web).await;
    wait_for(&first, "#login").await;
    screenshot(&first, "web-sign-in.png").await;
    assert!(!has(&first, "#sessions").await);

    for client in [first, second, admin] {
        client.close().await.expect("close");
    }
}
