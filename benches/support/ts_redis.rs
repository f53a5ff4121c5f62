//! tower-sessions' Redis store plugged into tower-sessions 0.15, for the peer comparisons of
//! `benches/layer.rs` and `benches/bench_server.rs` (included by both with `#[path]`).
//!
//! `tower-sessions-redis-store` (latest 0.16) implements the trait of `tower-sessions-core`
//! 0.14, identical in shape to 0.15's, so loaded records are moved field by field (no copy of
//! the data map, no re-encoding).

use async_trait::async_trait;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{Error, Result as StoreResult};
use tower_sessions_core_0_14 as core14;
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};
use tower_sessions_redis_store::RedisStore as TsRedisStore;

/// tower-sessions' Redis store, usable as a tower-sessions 0.15 store.
#[derive(Debug, Clone)]
pub(crate) struct Adapted(TsRedisStore<Pool>);

fn to14(record: &Record) -> core14::session::Record {
    core14::session::Record {
        id: core14::session::Id(record.id.0),
        data: record.data.clone(),
        expiry_date: record.expiry_date,
    }
}

fn from14(record: core14::session::Record) -> Record {
    Record {
        id: Id(record.id.0),
        data: record.data,
        expiry_date: record.expiry_date,
    }
}

fn error(e: core14::session_store::Error) -> Error {
    use core14::session_store::Error as E;
    match e {
        E::Encode(m) => Error::Encode(m),
        E::Decode(m) => Error::Decode(m),
        E::Backend(m) => Error::Backend(m),
    }
}

#[async_trait]
impl tower_sessions::SessionStore for Adapted {
    async fn create(&self, record: &mut Record) -> StoreResult<()> {
        use core14::SessionStore as _;
        let mut old = to14(record);
        self.0.create(&mut old).await.map_err(error)?;
        record.id = Id(old.id.0);
        Ok(())
    }
    async fn save(&self, record: &Record) -> StoreResult<()> {
        use core14::SessionStore as _;
        self.0.save(&to14(record)).await.map_err(error)
    }
    async fn load(&self, id: &Id) -> StoreResult<Option<Record>> {
        use core14::SessionStore as _;
        let id = core14::session::Id(id.0);
        Ok(self.0.load(&id).await.map_err(error)?.map(from14))
    }
    async fn delete(&self, id: &Id) -> StoreResult<()> {
        use core14::SessionStore as _;
        self.0
            .delete(&core14::session::Id(id.0))
            .await
            .map_err(error)
    }
}

/// tower-sessions' Redis store on a fred pool of `size` clients at `url`.
pub(crate) async fn connect(
    url: &str,
    size: usize,
) -> Result<Adapted, Box<dyn std::error::Error + Send + Sync>> {
    let pool = Pool::new(Config::from_url(url)?, None, None, None, size)?;
    pool.init().await?;
    Ok(Adapted(TsRedisStore::new(pool)))
}
