//! The integration tests, one binary (linking sqlx, redis and axum once), one module per area.
//!
//! Backend modules compile only with their cargo features; `features` fails a run that has
//! none, so a plain `cargo test` cannot pass without testing them. Servers: PostgreSQL and
//! Redis from `DATABASE_URL` / `REDIS_URL` (defaults: 127.0.0.1:5432, 127.0.0.1:6379), and
//! private `redis-server` processes on free loopback ports for the tests that kill, pause or
//! cluster them.

mod common;

mod cache;
mod cli;
mod cli_input;
mod cli_pg;
mod contract;
mod cross_origin;
mod data;
mod event_races;
mod events;
mod features;
mod feed;
mod instrumented;
mod joined;
mod layer;
mod login;
mod manage;
mod pg;
mod pg_faults;
mod pg_migrations;
mod pg_notify;
mod pg_round_trips;
mod pg_tiered;
mod redis;
mod redis_cluster;
mod redis_faults;
mod redis_migration;
mod redis_types;
mod stats;
mod telemetry;
mod throttle;
mod unsupported;
