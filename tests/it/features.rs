//! The backend tests (Redis, Redis Cluster, PostgreSQL, the cache, the CLI, the examples) are
//! compiled only with the cargo features they test, so a plain `cargo test` would build none
//! of them and pass. This test fails such a run instead, and says which command runs them.

#[test]
fn every_backend_test_is_compiled_in() {
    let features = [
        ("memory", cfg!(feature = "memory")),
        ("axum", cfg!(feature = "axum")),
        ("cache", cfg!(feature = "cache")),
        ("redis", cfg!(feature = "redis")),
        ("postgres", cfg!(feature = "postgres")),
        ("throttle", cfg!(feature = "throttle")),
        ("metrics", cfg!(feature = "metrics")),
        // The store contract (tests/it/contract.rs) runs through `testing::check_store`.
        ("testing", cfg!(feature = "testing")),
        // The operator CLI's tests (tests/it/cli.rs) run its binary.
        ("cli", cfg!(feature = "cli")),
    ];
    let missing: Vec<&str> = features
        .iter()
        .filter(|(_, on)| !on)
        .map(|(name, _)| *name)
        .collect();
    assert!(
        missing.is_empty(),
        "this test run lacks the features {missing:?}, so the tests of those backends were not \
         compiled and did not run. Run the test suite with `scripts/test` (it makes sure Redis \
         and PostgreSQL answer, then runs `cargo test --all-features`)."
    );
}
