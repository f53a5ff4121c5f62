//! [`Admission`]: which misses are worth an insert, decided before the insert is paid.
//!
//! A full cache that takes every miss pays an insert per request for entries that are
//! evicted before anyone asks for them again: with 100,000 sessions cycled uniformly through
//! a 10,000-entry cache nothing is ever hit, and every request paid moka's insert, its
//! eviction (or TinyLFU's rejection, which moka decides only after the entry was built and
//! inserted) and the record's shared copy, for nothing. moka has no admission hook that runs
//! before the insert ([`EvictionPolicy`](moka::policy::EvictionPolicy) offers TinyLFU or LRU,
//! both applied afterwards, in its housekeeping), so the check is written here:
//!
//! - while the cache is less than three quarters full, every miss is admitted: an insert then
//!   evicts nothing, and a small working set is served from its second request on, as before;
//! - beyond that, a key is admitted on its second miss within a window: a *doorkeeper* (a
//!   fixed array of bits, two per key from one hash) remembers first sightings and is cleared
//!   after about one cache's worth of them. A key seen once costs one hash and two atomic bit
//!   operations; nothing is allocated.
//!
//! The doorkeeper is sized once, from the cache's capacity (16 bits per entry, a power of two
//! between 4 Ki and 16 Mi bits: 2 MiB at most), and never grows. Its answers are only a
//! heuristic: a false "seen" admits a key early, a cleared bit delays it; neither bears on
//! correctness, which stays with the epoch checks and the bus.
//!
//! What a user sees is the cache's behaviour under churn, through the public API:
//!
//! ```
//! use std::time::Duration;
//! use tower_app_sessions::{cache::InvalidationBus, AppContext, Sessions};
//!
//! // 10,000 entries: up to 7,500 sessions are cached on their first miss; past that, a
//! // session is cached on its second miss, so a stream of sessions seen once (a crawler
//! // replaying old cookies, a uniform sweep over many users) costs the cache nothing.
//! let bus = InvalidationBus::local();
//! let sessions = Sessions::memory().cache(&bus, 10_000, Duration::from_secs(5));
//! # let _ = sessions.layer(AppContext::Web);
//! ```

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

/// Fewest and most bits of a doorkeeper (512 bytes, 2 MiB).
const MIN_BITS: u64 = 1 << 12;
const MAX_BITS: u64 = 1 << 24;
/// Bits per cache entry: with two bits per key and a window of `bits / 16` first sightings,
/// a key never seen is taken for seen with a probability of at most 1.4 % (at the end of a
/// window; 0.4 % on average over it).
const BITS_PER_ENTRY: u64 = 16;

/// The admission check of one cache (session or user cache): fixed size, no allocation after
/// construction.
pub(crate) struct Admission {
    /// Below this many entries everything is admitted.
    free_below: u64,
    doorkeeper: Doorkeeper,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("free_below", &self.free_below)
            .field("doorkeeper_bits", &self.doorkeeper.bits())
            .finish_non_exhaustive()
    }
}

impl Admission {
    /// For a cache of at most `max_entries` entries.
    pub(crate) fn new(max_entries: u64) -> Self {
        Self {
            free_below: max_entries - max_entries / 4,
            doorkeeper: Doorkeeper::new(max_entries),
        }
    }

    /// Whether a miss of `key` is worth an insert, with the cache holding `entries` now
    /// (moka's estimate: exact enough, it is a threshold). Records the sighting.
    pub(crate) fn admits<K: Hash + ?Sized>(&self, key: &K, entries: u64) -> bool {
        entries < self.free_below || self.doorkeeper.seen_before(key)
    }
}

/// A Bloom filter of first sightings, cleared after `window` of them.
struct Doorkeeper {
    words: Box<[AtomicU64]>,
    /// `bits - 1`: bit positions are hashes masked to the array (a power of two).
    mask: u64,
    /// First sightings recorded since the last clear.
    recorded: AtomicU64,
    /// How many first sightings a clear comes after.
    window: u64,
    /// Keyed per process, so that nobody can choose keys that share bits on purpose.
    hasher: RandomState,
}

impl Doorkeeper {
    fn new(max_entries: u64) -> Self {
        let bits = max_entries
            .saturating_mul(BITS_PER_ENTRY)
            .clamp(MIN_BITS, MAX_BITS)
            .next_power_of_two();
        // `bits` is at most 2^24: the word count fits any usize.
        let words = (0..bits / 64).map(|_| AtomicU64::new(0)).collect();
        Self {
            words,
            mask: bits - 1,
            recorded: AtomicU64::new(0),
            window: bits / BITS_PER_ENTRY,
            hasher: RandomState::new(),
        }
    }

    fn bits(&self) -> u64 {
        self.mask + 1
    }

    /// Whether `key` was seen since the last clear; records it if not.
    fn seen_before<K: Hash + ?Sized>(&self, key: &K) -> bool {
        let hash = self.hasher.hash_one(key);
        // Two positions from one 64-bit hash: its halves.
        let (a, b) = (hash & self.mask, (hash >> 32) & self.mask);
        if self.test(a) && self.test(b) {
            return true;
        }
        self.set(a);
        self.set(b);
        if self.recorded.fetch_add(1, Ordering::Relaxed) + 1 >= self.window {
            self.clear();
        }
        false
    }

    fn word(&self, bit: u64) -> (&AtomicU64, u64) {
        // `bit >> 6` is below `words.len()`: `bit` is masked to the array.
        let index = usize::try_from(bit >> 6).unwrap_or(0);
        (&self.words[index], 1 << (bit & 63))
    }

    fn test(&self, bit: u64) -> bool {
        let (word, flag) = self.word(bit);
        word.load(Ordering::Relaxed) & flag != 0
    }

    fn set(&self, bit: u64) {
        let (word, flag) = self.word(bit);
        // A load first: a bit already set costs no write to a shared cache line.
        if word.load(Ordering::Relaxed) & flag == 0 {
            word.fetch_or(flag, Ordering::Relaxed);
        }
    }

    /// Forgets every sighting. Two requests crossing the window together may both clear:
    /// harmless, the second clears what the first left empty (or a few fresh sightings).
    fn clear(&self) {
        self.recorded.store(0, Ordering::Relaxed);
        for word in self.words.iter() {
            word.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_three_quarters_everything_is_admitted_and_past_it_a_second_sighting() {
        let admission = Admission::new(100);
        // 74 entries: room, even for a key never seen.
        assert!(admission.admits("a", 74));
        assert!(admission.admits("a", 74));
        // 75: first sightings wait, second ones come in.
        assert!(!admission.admits("b", 75));
        assert!(admission.admits("b", 75));
        assert!(!admission.admits("c", 100));
        assert!(admission.admits("c", 100));
    }

    #[test]
    fn the_doorkeeper_forgets_after_its_window_and_stays_its_size() {
        let keeper = Doorkeeper::new(100);
        assert_eq!(
            keeper.bits(),
            MIN_BITS,
            "100 entries: 1,600 bits, raised to the least"
        );
        assert!(!keeper.seen_before(&0_u64));
        assert!(keeper.seen_before(&0_u64));
        // Key 0 was the window's first sighting: the window's last one (another key)
        // clears everything, key 0 included.
        let window = keeper.window;
        let mut fresh = 1;
        let mut key = 1_u64;
        while fresh < window {
            if !keeper.seen_before(&key) {
                fresh += 1;
            }
            key += 1;
        }
        assert_eq!(keeper.recorded.load(Ordering::Relaxed), 0, "just cleared");
        assert!(!keeper.seen_before(&0_u64), "forgotten by the clear");
        assert_eq!(keeper.words.len() as u64 * 64, keeper.bits());
    }

    #[test]
    fn sizes_are_bounded_for_any_capacity() {
        for (max_entries, bits) in [
            (0, MIN_BITS),
            (1, MIN_BITS),
            (10_000, 1 << 18),
            (1 << 20, MAX_BITS),
            (u64::MAX, MAX_BITS),
        ] {
            let admission = Admission::new(max_entries);
            assert_eq!(admission.doorkeeper.bits(), bits, "{max_entries}");
            assert!(admission.doorkeeper.window >= 1);
        }
        // A cache of no entries admits nothing for free.
        assert!(!Admission::new(0).admits("a", 0));
    }

    #[test]
    fn unseen_keys_are_rarely_taken_for_seen() {
        // A full window of 10,000-entry keys, then as many keys never seen: at most 1.4 %
        // expected to pass; 3 % is far outside any plausible run.
        let keeper = Doorkeeper::new(10_000);
        let window = keeper.window;
        for key in 0..window - 1 {
            keeper.seen_before(&key);
        }
        let passed = (window..2 * window - 1)
            .filter(|key| {
                let (a, b) = {
                    let hash = keeper.hasher.hash_one(key);
                    (hash & keeper.mask, (hash >> 32) & keeper.mask)
                };
                keeper.test(a) && keeper.test(b)
            })
            .count();
        assert!(passed * 100 < window as usize * 3, "{passed} of {window}");
    }
}
