//! How long Redis stalls during a burst of concurrent session-data patches: `WRITERS`
//! (default 300) requests on one session each add a key of 16,000 bytes through the layer on
//! a `RedisStore`, all loaded before any saves (each handler waits at a barrier after its
//! insert), while another client, on its own connection and thread, sends `PING` after
//! `PING` and times each answer. A patch script that grows with the record it rewrites
//! blocks every other client of the server while it runs; one bounded by the data's limit
//! does not.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6390 cargo bench --features redis --bench redis_data_burst
//! ```
//!
//! Use a Redis of its own (the burst writes one `session:web:<random id>` key and deletes
//! it; other clients of a shared server would add their own latency to the figures). It
//! prints the writers' answers, the `PING` latencies during the burst (count, median, p99,
//! max), the server's own time in the patch scripts (`INFO commandstats` before and after:
//! calls and mean; `SLOWLOG`: the slowest over its 10 ms threshold) and the data stored at
//! the end. It changes no setting of the server. The burst lasts until the server has run
//! every script the writers sent, those of writers that gave up waiting included.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use tokio::sync::Barrier;
use tower::{service_fn, ServiceExt};
use tower_app_sessions::record::now_ms;
use tower_app_sessions::store::redis::{keys, RedisConfig, RedisStore};
use tower_app_sessions::{
    AppContext, MemoryUsers, Role, Session, SessionId, SessionLayer, SessionMetadata,
    SessionRecord, SessionStore, User,
};

type Body = String;

/// The longest a writer waits for the others at the barrier.
const BARRIER_WAIT: Duration = Duration::from_secs(120);

fn main() {
    // `cargo bench` passes `--bench`; this program takes no arguments.
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let writers: usize = std::env::var("WRITERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(burst(&url, writers));
}

async fn burst(url: &str, writers: usize) {
    let store = RedisStore::connect(RedisConfig::new(url))
        .await
        .expect("REDIS_URL answers");
    let users = MemoryUsers::new();
    let user = users
        .insert(User::new("burst@example.com", Role::User))
        .expect("fresh directory");
    let id = SessionId::generate().expect("OS randomness");
    // The layer's idle timeout (24 h) from now: no request of the burst slides it, so the
    // patch scripts are the only scripts the burst runs.
    let record = SessionRecord::new(
        user.id,
        SessionMetadata::new(),
        now_ms(),
        Duration::from_secs(24 * 3600),
    );
    store
        .save(&AppContext::Web, &id, &record, now_ms())
        .await
        .expect("session saved");

    let barrier = Arc::new(Barrier::new(writers));
    let value = Arc::new("x".repeat(16_000));
    let handler = service_fn(move |req: Request<Body>| {
        let (barrier, value) = (Arc::clone(&barrier), Arc::clone(&value));
        async move {
            let key = req.uri().path().trim_start_matches('/').to_owned();
            let status = match req.extensions().get::<Session>() {
                Some(session) => match session.insert(&key, value.as_str()) {
                    Ok(()) => match tokio::time::timeout(BARRIER_WAIT, barrier.wait()).await {
                        Ok(_) => StatusCode::NO_CONTENT,
                        Err(_) => StatusCode::GATEWAY_TIMEOUT,
                    },
                    Err(_) => StatusCode::PAYLOAD_TOO_LARGE,
                },
                None => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let mut response = Response::new(Body::new());
            *response.status_mut() = status;
            Ok::<_, Infallible>(response)
        }
    });
    let service = tower::ServiceBuilder::new()
        .layer(
            SessionLayer::for_context(AppContext::Web)
                .store(store.clone())
                .users(users),
        )
        .service(handler);

    // The other client: its own connection, on its own thread, so the writers' tasks never
    // delay its measurements.
    let (measuring, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let probe = {
        let (url, measuring, done) = (url.to_owned(), Arc::clone(&measuring), Arc::clone(&done));
        std::thread::spawn(move || ping_until(&url, &measuring, &done))
    };
    // PINGs before the burst starts, so the probe is connected and warm.
    std::thread::sleep(Duration::from_millis(200));

    let client = redis::Client::open(url).expect("REDIS_URL");
    let mut conn = client.get_connection().expect("connection");
    let scripts_before = script_time(&mut conn);
    let slow_before = slowlog(&mut conn).iter().map(|(id, _)| *id).max();

    measuring.store(true, Ordering::Release);
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|i| {
            let service = service.clone();
            let req = Request::patch(format!("/k{i}"))
                .header("cookie", format!("sessionId={}", id.as_str()))
                .body(Body::new())
                .expect("static request");
            tokio::spawn(async move { service.oneshot(req).await })
        })
        .collect();
    let mut answers = std::collections::BTreeMap::<u16, usize>::new();
    for task in tasks {
        let response = task.await.expect("writer task").expect("infallible");
        *answers.entry(response.status().as_u16()).or_default() += 1;
    }
    let burst = started.elapsed();
    // Writers that gave up (a 503 after the client's timeout) left their scripts queued in
    // the server: the burst lasts until it has run them all (until no new script call in
    // 500 ms; INFO waits behind them too), and the probe goes on measuring until then.
    let mut last = script_time(&mut conn).0;
    let mut busy = started.elapsed();
    while busy < burst + Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(500));
        let now = script_time(&mut conn).0;
        if now == last {
            break;
        }
        (last, busy) = (now, started.elapsed());
    }
    done.store(true, Ordering::Release);
    // The PINGs sent while the server was busy with the burst.
    let mut pings: Vec<Duration> = probe
        .join()
        .expect("probe thread")
        .into_iter()
        .filter(|(sent, _)| sent.duration_since(started) <= busy)
        .map(|(_, latency)| latency)
        .collect();

    let (calls, usec) = {
        let after = script_time(&mut conn);
        (after.0 - scripts_before.0, after.1 - scripts_before.1)
    };
    let slowest = slowlog(&mut conn)
        .into_iter()
        .filter(|(id, _)| slow_before.is_none_or(|before| *id > before))
        .map(|(_, micros)| micros)
        .max();
    let key = keys::session(&AppContext::Web, &id);
    let stored: Option<String> = redis::cmd("GET").arg(&key).query(&mut conn).expect("GET");
    let _: i64 = redis::cmd("DEL").arg(&key).query(&mut conn).expect("DEL");
    let (record_bytes, data_bytes) = stored.map_or((0, 0), |json| {
        let value: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        let data = value.get("data").map_or(2, |d| d.to_string().len());
        (json.len(), data)
    });

    pings.sort_unstable();
    let at = |q: f64| pings[((pings.len() - 1) as f64 * q).round() as usize];
    println!("redis data burst: {writers} writers of 16,000 bytes on one session, {url}");
    println!(
        "  burst: all answered in {:.0} ms, the server busy with it for {:.0} ms; answers: {answers:?}",
        burst.as_secs_f64() * 1e3,
        busy.as_secs_f64() * 1e3
    );
    if pings.is_empty() {
        println!("  no PING answered during the burst");
    } else {
        println!(
            "  PING from another client during it: {} answered, median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            pings.len(),
            ms(at(0.5)),
            ms(at(0.99)),
            ms(at(1.0)),
        );
    }
    println!(
        "  server time in scripts: {calls} calls, mean {:.2} ms, slowest {}",
        usec as f64 / calls.max(1) as f64 / 1e3,
        slowest.map_or(
            "under the 10 ms slowlog threshold".to_owned(),
            |us| format!("{:.1} ms", us as f64 / 1e3)
        )
    );
    println!("  stored after: record {record_bytes} bytes, data {data_bytes} bytes");
}

/// Calls and microseconds the server spent in `EVALSHA` and `EVAL` so far.
fn script_time(conn: &mut redis::Connection) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(conn)
        .expect("INFO");
    let mut total = (0, 0);
    for line in info.lines() {
        let Some(stats) = line
            .strip_prefix("cmdstat_evalsha:")
            .or_else(|| line.strip_prefix("cmdstat_eval:"))
        else {
            continue;
        };
        for field in stats.split(',') {
            match field.split_once('=') {
                Some(("calls", n)) => total.0 += n.parse::<u64>().unwrap_or(0),
                Some(("usec", n)) => total.1 += n.parse::<u64>().unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

/// The server's slow log: (entry id, microseconds) of its last 128 entries.
fn slowlog(conn: &mut redis::Connection) -> Vec<(u64, u64)> {
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(128)
        .query(conn)
        .expect("SLOWLOG");
    entries
        .into_iter()
        .filter_map(|entry| match entry {
            redis::Value::Array(fields) => match (fields.first(), fields.get(2)) {
                (Some(redis::Value::Int(id)), Some(redis::Value::Int(us))) => {
                    Some((*id as u64, *us as u64))
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// `PING`s back to back until `done`: when each sent while `measuring` (the burst) was sent,
/// and its latency; those before only warm the connection.
fn ping_until(url: &str, measuring: &AtomicBool, done: &AtomicBool) -> Vec<(Instant, Duration)> {
    let client = redis::Client::open(url).expect("REDIS_URL");
    let mut conn = client.get_connection().expect("probe connection");
    let mut latencies = Vec::new();
    while !done.load(Ordering::Acquire) {
        let counted = measuring.load(Ordering::Acquire);
        let sent = Instant::now();
        let _: String = redis::cmd("PING").query(&mut conn).expect("PING");
        if counted {
            latencies.push((sent, sent.elapsed()));
        }
    }
    latencies
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
