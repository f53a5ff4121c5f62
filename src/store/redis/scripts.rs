//! The Lua scripts of [`RedisStore`](super::RedisStore), each in its own `.lua` file beside
//! this one and each touching a single key (so they run unchanged on a cluster), but for
//! the single-server migration. `index.lua` defines the per-user index update once; the
//! scripts that use it are compiled after it.
//!
//! | script | key | what |
//! |---|---|---|
//! | `extend.lua` | the session key | the sliding expiry: `expires_at` in the JSON and the TTL together, never recreating a deleted key |
//! | `index_add.lua` | the user's index | add or move one member, drop dead ones, expire with the last session (an index of another type is replaced) |
//! | `count_revocation.lua` | the user's revocation count | `INCR` and `PEXPIRE` together (a key that holds no count is replaced) |
//! | `data_patch.lua` | the session key | set and remove keys of the record's `data` (compared decoded), copying every other byte, keeping the TTL, within the data's limits |
//! | `migrate_legacy.lua` | a legacy key, its web key, the user's index (one server only) | copy (and, moving, delete) one legacy session atomically, with its TTL, into the index |
//! | `set_aside.lua` | a legacy key (and, on one server, its quarantine key) | rename a non-record to its quarantine key, or delete it, only if it still holds what was read |

use redis::Script;

/// The loaded scripts (their SHA-1 is computed once; `EVALSHA` falls back to `EVAL` when a
/// restarted server no longer has them).
#[derive(Clone)]
pub(super) struct Scripts {
    pub(super) extend: Script,
    pub(super) index_add: Script,
    pub(super) data_patch: Script,
    pub(super) migrate_legacy: Script,
    pub(super) count_revocation: Script,
    pub(super) set_aside: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            extend: Script::new(include_str!("scripts/extend.lua")),
            index_add: Script::new(concat!(
                include_str!("scripts/index.lua"),
                include_str!("scripts/index_add.lua")
            )),
            migrate_legacy: Script::new(concat!(
                include_str!("scripts/index.lua"),
                include_str!("scripts/migrate_legacy.lua")
            )),
            data_patch: Script::new(include_str!("scripts/data_patch.lua")),
            count_revocation: Script::new(include_str!("scripts/count_revocation.lua")),
            set_aside: Script::new(include_str!("scripts/set_aside.lua")),
        }
    }
}
