//! Brute-force protection: failed logins are counted per key (a source address, a user,
//! a credential) within a window; past the limit a key is refused until its ban expires.
//! Bounded in memory, so that an attacker with many addresses or long names cannot grow
//! it without end: keys are cut to [`crate::domain::bounded::MAX_ID_LEN`] bytes, and the table holds
//! at most [`CAPACITY`] keys and [`KEY_BYTES`] bytes of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

/// Keys tracked at most; past this, expired entries go first, then some unbanned ones.
pub const CAPACITY: usize = 100_000;
/// Bytes of keys tracked at most, with the same eviction. With keys cut to 256 bytes and
/// about 100 bytes of map and entry each, the table stays under 20 MiB whatever comes.
pub const KEY_BYTES: usize = 8 * 1024 * 1024;

pub struct BanList {
    /// Failures within `ban_time` that lead to a ban; 0 turns bans off.
    max_failures: u32,
    ban_time: Duration,
    entries: Mutex<Table>,
    /// Where failures counted here are told to the other nodes of a cluster, under this
    /// list's name.
    sink: OnceLock<(&'static str, Arc<dyn FailureSink>)>,
}

/// Hears of every failure a [`BanList`] counts, so that the other nodes of a cluster
/// count it too: an attacker spreading guesses over the nodes is banned as soon as on one.
pub trait FailureSink: Send + Sync {
    fn failed(&self, list: &'static str, key: &str, count: u32);
}

#[derive(Default)]
struct Table {
    map: HashMap<String, Entry>,
    /// Sum of the keys' lengths.
    key_bytes: usize,
}

impl Table {
    fn full(&self, adding: usize) -> bool {
        self.map.len() >= CAPACITY || self.key_bytes + adding > KEY_BYTES
    }

    fn remove(&mut self, key: &str) {
        if self.map.remove(key).is_some() {
            self.key_bytes -= key.len();
        }
    }

    /// Keeps the entries `keep` says yes to.
    fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) {
        let mut dropped = 0;
        self.map.retain(|key, entry| {
            let kept = keep(entry);
            if !kept {
                dropped += key.len();
            }
            kept
        });
        self.key_bytes -= dropped;
    }
}

/// What a key is tracked as: whole when it is as long as a valid one can be, else cut (the
/// cut form of a name nobody has is as good a key for it as the name).
fn tracked(key: &str) -> std::borrow::Cow<'_, str> {
    crate::domain::bounded::bounded(key)
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    first_failure: Instant,
    banned_until: Option<Instant>,
}

impl BanList {
    pub fn new(max_failures: u32, ban_time: Duration) -> Self {
        Self {
            max_failures,
            ban_time,
            entries: Mutex::new(Table::default()),
            sink: OnceLock::new(),
        }
    }

    /// Tells `sink` of every failure counted here from now on, as list `name`.
    pub fn share(&self, name: &'static str, sink: Arc<dyn FailureSink>) {
        let _ = self.sink.set((name, sink));
    }

    /// Counts failures another node counted; they are not told on again.
    pub fn count_elsewhere(&self, key: &str, count: u32) {
        self.count(key, count);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long `key` is still refused, if it is.
    pub fn banned_for(&self, key: &str) -> Option<Duration> {
        if self.max_failures == 0 {
            return None;
        }
        let key = tracked(key);
        let now = Instant::now();
        let mut entries = self.lock();
        let until = entries.map.get(key.as_ref())?.banned_until?;
        if until > now {
            Some(until - now)
        } else {
            entries.remove(&key);
            None
        }
    }

    /// Keys banned now, for the metrics.
    pub fn active(&self) -> usize {
        let now = Instant::now();
        self.lock()
            .map
            .values()
            .filter(|entry| entry.banned_until.is_some_and(|until| until > now))
            .count()
    }

    /// Counts a failure; returns the ban when this one crossed the limit.
    pub fn record_failure(&self, key: &str) -> Option<Duration> {
        self.record_failures(key, 1)
    }

    /// Counts `count` failures at once (a ban at the first failure uses the limit).
    pub fn record_failures(&self, key: &str, count: u32) -> Option<Duration> {
        if self.max_failures != 0
            && let Some((name, sink)) = self.sink.get()
        {
            sink.failed(name, key, count);
        }
        self.count(key, count)
    }

    fn count(&self, key: &str, count: u32) -> Option<Duration> {
        if self.max_failures == 0 {
            return None;
        }
        let key = tracked(key);
        let now = Instant::now();
        let mut entries = self.lock();
        if !entries.map.contains_key(key.as_ref()) {
            if entries.full(key.len()) {
                make_room(&mut entries, now, self.ban_time);
                if entries.full(key.len()) {
                    // Every tracked key is banned: this one goes uncounted rather than
                    // growing the map.
                    return None;
                }
            }
            entries.key_bytes += key.len();
        }
        let entry = entries.map.entry(key.into_owned()).or_insert(Entry {
            failures: 0,
            first_failure: now,
            banned_until: None,
        });
        if now.duration_since(entry.first_failure) > self.ban_time {
            *entry = Entry {
                failures: 0,
                first_failure: now,
                banned_until: None,
            };
        }
        entry.failures = entry.failures.saturating_add(count);
        if entry.failures >= self.max_failures {
            entry.banned_until = Some(now + self.ban_time);
            return Some(self.ban_time);
        }
        None
    }

    /// Failures so far for `key` within the window.
    pub fn failures(&self, key: &str) -> u32 {
        let now = Instant::now();
        self.lock()
            .map
            .get(tracked(key).as_ref())
            .filter(|e| now.duration_since(e.first_failure) <= self.ban_time)
            .map_or(0, |e| e.failures)
    }

    pub fn limit(&self) -> u32 {
        self.max_failures
    }

    /// A success forgets the key's failures (not a ban in force).
    pub fn record_success(&self, key: &str) {
        let key = tracked(key);
        let mut entries = self.lock();
        if entries
            .map
            .get(key.as_ref())
            .is_some_and(|e| e.banned_until.is_none())
        {
            entries.remove(&key);
        }
    }
}

/// Drops expired entries; if that is not enough, a tenth of the unbanned ones (in the
/// map's arbitrary order), so that the cost of a full pass is paid once per many inserts.
fn make_room(entries: &mut Table, now: Instant, ban_time: Duration) {
    entries.retain(|e| match e.banned_until {
        Some(until) => until > now,
        None => now.duration_since(e.first_failure) <= ban_time,
    });
    if entries.full(crate::domain::bounded::MAX_ID_LEN) {
        let mut budget = (entries.map.len() / 10).max(1);
        entries.retain(|e| {
            if budget > 0 && e.banned_until.is_none() {
                budget -= 1;
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_is_banned_past_the_limit_and_the_ban_expires() {
        let bans = BanList::new(3, Duration::from_secs(60));
        assert_eq!(bans.record_failure("ip:203.0.113.9"), None);
        assert_eq!(bans.record_failure("ip:203.0.113.9"), None);
        assert_eq!(bans.banned_for("ip:203.0.113.9"), None);
        assert_eq!(
            bans.record_failure("ip:203.0.113.9"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            bans.banned_for("ip:203.0.113.9"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            bans.banned_for("ip:198.51.100.1"),
            None,
            "others are not affected"
        );
        // A success during the ban does not lift it.
        bans.record_success("ip:203.0.113.9");
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(
            bans.banned_for("ip:203.0.113.9"),
            Some(Duration::from_secs(1))
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(bans.banned_for("ip:203.0.113.9"), None);
        assert_eq!(bans.failures("ip:203.0.113.9"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_outside_the_window_do_not_add_up() {
        let bans = BanList::new(2, Duration::from_secs(60));
        bans.record_failure("k");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(bans.record_failure("k"), None);
        assert_eq!(bans.failures("k"), 1);
        bans.record_success("k");
        assert_eq!(bans.failures("k"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_turns_bans_off() {
        let bans = BanList::new(0, Duration::from_secs(60));
        for _ in 0..100 {
            assert_eq!(bans.record_failure("k"), None);
        }
        assert_eq!(bans.banned_for("k"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn memory_stays_bounded() {
        let bans = BanList::new(5, Duration::from_secs(60));
        for i in 0..CAPACITY + 10 {
            bans.record_failure(&format!("ip:{i}"));
        }
        assert!(bans.lock().map.len() <= CAPACITY);
    }

    #[tokio::test(start_paused = true)]
    async fn long_keys_are_cut_and_their_bytes_bounded() {
        let bans = BanList::new(2, Duration::from_secs(60));
        let long = |i: usize| format!("user:{i}-{}", "x".repeat(300_000));
        // A cut key still counts, bans and is found again by the same long name.
        assert_eq!(bans.record_failure(&long(1)), None);
        assert_eq!(bans.record_failure(&long(1)), Some(Duration::from_secs(60)));
        assert!(bans.banned_for(&long(1)).is_some());
        assert!(bans.banned_for(&long(2)).is_none());
        assert!(
            bans.lock().map.keys().all(|k| k.len() <= 96),
            "keys are cut"
        );
        // Keys just short enough to be kept whole fill the byte budget before the count.
        let whole = |i: usize| {
            format!(
                "{i:08}{}",
                "x".repeat(crate::domain::bounded::MAX_ID_LEN - 8)
            )
        };
        for i in 0..KEY_BYTES / 200 {
            bans.record_failure(&whole(i));
        }
        let table = bans.lock();
        assert!(table.key_bytes <= KEY_BYTES, "{}", table.key_bytes);
        assert!(table.map.len() < CAPACITY);
        assert_eq!(
            table.key_bytes,
            table.map.keys().map(String::len).sum::<usize>()
        );
    }
}
