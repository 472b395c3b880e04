//! Brute-force protection: failed logins are counted per key (a source address, a user,
//! a credential) within a window; past the limit a key is refused until its ban expires.
//! Bounded in memory, so that an attacker with many addresses cannot grow it without end.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How a source address counts: an IPv6 host usually has a whole /64 to itself, so every
/// address of a /64 counts as one; IPv4 (and IPv4-mapped IPv6) addresses count alone.
pub fn address_key(ip: IpAddr) -> String {
    match rport_protocol::ip_rules::canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// Keys tracked at most; past this, expired entries go first, then the oldest.
const CAPACITY: usize = 100_000;

pub struct BanList {
    /// Failures within `ban_time` that lead to a ban; 0 turns bans off.
    max_failures: u32,
    ban_time: Duration,
    entries: Mutex<HashMap<String, Entry>>,
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
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long `key` is still refused, if it is.
    pub fn banned_for(&self, key: &str) -> Option<Duration> {
        if self.max_failures == 0 {
            return None;
        }
        let now = Instant::now();
        let mut entries = self.lock();
        let until = entries.get(key)?.banned_until?;
        if until > now {
            Some(until - now)
        } else {
            entries.remove(key);
            None
        }
    }

    /// Counts a failure; returns the ban when this one crossed the limit.
    pub fn record_failure(&self, key: &str) -> Option<Duration> {
        self.record_failures(key, 1)
    }

    /// Counts `count` failures at once (a ban at the first failure uses the limit).
    pub fn record_failures(&self, key: &str, count: u32) -> Option<Duration> {
        if self.max_failures == 0 {
            return None;
        }
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= CAPACITY && !entries.contains_key(key) {
            make_room(&mut entries, now, self.ban_time);
            if entries.len() >= CAPACITY {
                // Every tracked key is banned: this one goes uncounted rather than
                // growing the map.
                return None;
            }
        }
        let entry = entries.entry(key.to_owned()).or_insert(Entry {
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
            .get(key)
            .filter(|e| now.duration_since(e.first_failure) <= self.ban_time)
            .map_or(0, |e| e.failures)
    }

    pub fn limit(&self) -> u32 {
        self.max_failures
    }

    /// A success forgets the key's failures (not a ban in force).
    pub fn record_success(&self, key: &str) {
        let mut entries = self.lock();
        if entries.get(key).is_some_and(|e| e.banned_until.is_none()) {
            entries.remove(key);
        }
    }
}

/// Drops expired entries; if that is not enough, a tenth of the unbanned ones (in the
/// map's arbitrary order), so that the cost of a full pass is paid once per many inserts.
fn make_room(entries: &mut HashMap<String, Entry>, now: Instant, ban_time: Duration) {
    entries.retain(|_, e| match e.banned_until {
        Some(until) => until > now,
        None => now.duration_since(e.first_failure) <= ban_time,
    });
    if entries.len() >= CAPACITY {
        let mut budget = CAPACITY / 10;
        entries.retain(|_, e| {
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

    #[test]
    fn an_ipv6_64_counts_as_one_address() {
        let key = |text: &str| address_key(text.parse().expect("address"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::7"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
    }

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
        assert!(bans.lock().len() <= CAPACITY);
    }
}
