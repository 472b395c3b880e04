//! Which of the events read from the store are new to this node: a cursor that reads
//! each event once although event numbers may become visible out of order.
//!
//! PostgreSQL hands out numbers when a transaction inserts, and a transaction that took
//! number 10 may commit after one that took 11. A reader that moved past 11 would never
//! see 10. So the cursor reads from the highest number below which it has seen every
//! event, remembers the numbers above it that it has seen, and gives up on a missing
//! number (a rolled-back insert leaves one for ever) once it has been missing for
//! [`GAP_WAIT`]. Pure logic: the caller passes the time.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rport_store::ClusterEvent;

/// How long a missing event number holds the cursor back: far longer than an insert
/// takes to commit.
pub const GAP_WAIT: Duration = Duration::from_secs(5);
/// Seen numbers kept above the cursor at most; past it the oldest gap is given up on.
pub const MAX_AHEAD: usize = 100_000;

#[derive(Debug)]
pub struct Cursor {
    /// Every event numbered up to this one was delivered (or given up on).
    floor: i64,
    /// Delivered numbers above `floor`.
    ahead: BTreeSet<i64>,
    /// Since when `floor + 1` has been missing while a higher number was seen.
    gap_since: Option<Instant>,
}

impl Cursor {
    /// Starts after event `last`: a node joining does not replay what happened before.
    pub fn after(last: i64) -> Self {
        Self {
            floor: last,
            ahead: BTreeSet::new(),
            gap_since: None,
        }
    }

    /// Where the next read starts (exclusive).
    pub fn read_after(&self) -> i64 {
        self.floor
    }

    /// Takes a batch read after [`Cursor::read_after`]; returns the events not delivered
    /// before, oldest first.
    pub fn accept(&mut self, batch: Vec<ClusterEvent>, now: Instant) -> Vec<ClusterEvent> {
        let mut new = Vec::new();
        for event in batch {
            if event.seq > self.floor && self.ahead.insert(event.seq) {
                new.push(event);
            }
        }
        new.sort_by_key(|event| event.seq);
        self.advance(now);
        new
    }

    fn advance(&mut self, now: Instant) {
        loop {
            while self.ahead.remove(&(self.floor + 1)) {
                self.floor += 1;
                self.gap_since = None;
            }
            let Some(&next) = self.ahead.first() else {
                self.gap_since = None;
                return;
            };
            let since = *self.gap_since.get_or_insert(now);
            if now.duration_since(since) < GAP_WAIT && self.ahead.len() <= MAX_AHEAD {
                return;
            }
            // Given up: whatever took the missing numbers never committed.
            self.floor = next - 1;
            self.gap_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64) -> ClusterEvent {
        ClusterEvent {
            seq,
            at: chrono::Utc::now(),
            topic: "agent".into(),
            key: format!("a{seq}"),
            origin: "n1".into(),
        }
    }

    fn seqs(events: &[ClusterEvent]) -> Vec<i64> {
        events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn in_order_events_move_the_cursor() {
        let now = Instant::now();
        let mut cursor = Cursor::after(4);
        let new = cursor.accept(vec![event(5), event(6)], now);
        assert_eq!(seqs(&new), [5, 6]);
        assert_eq!(cursor.read_after(), 6);
        assert!(cursor.accept(vec![event(6)], now).is_empty(), "read once");
    }

    #[test]
    fn a_late_commit_below_a_seen_event_is_still_read() {
        let now = Instant::now();
        let mut cursor = Cursor::after(0);
        assert_eq!(seqs(&cursor.accept(vec![event(1), event(3)], now)), [1, 3]);
        assert_eq!(cursor.read_after(), 1, "held back at the gap");
        let later = now + Duration::from_secs(1);
        let new = cursor.accept(vec![event(2), event(3)], later);
        assert_eq!(seqs(&new), [2], "3 is not delivered twice");
        assert_eq!(cursor.read_after(), 3);
    }

    #[test]
    fn a_number_that_never_commits_is_given_up_after_the_wait() {
        let now = Instant::now();
        let mut cursor = Cursor::after(0);
        cursor.accept(vec![event(2)], now);
        assert_eq!(cursor.read_after(), 0);
        cursor.accept(vec![event(2)], now + GAP_WAIT / 2);
        assert_eq!(cursor.read_after(), 0);
        cursor.accept(vec![event(2)], now + GAP_WAIT);
        assert_eq!(cursor.read_after(), 2);
        assert!(cursor.accept(vec![event(1)], now + GAP_WAIT).is_empty());
    }

    #[test]
    fn events_from_before_the_join_are_not_replayed() {
        let mut cursor = Cursor::after(10);
        assert!(
            cursor
                .accept(vec![event(9), event(10)], Instant::now())
                .is_empty()
        );
    }
}
