//! When a tunnel ends by itself: auto-close, its agent staying away past the grace
//! period, or idleness. Pure time arithmetic over explicit instants, so each rule is
//! tested exactly; the tunnel's watcher task only sleeps until the instant named here.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The longest idle timeout a tunnel may have, in minutes (a week).
pub const MAX_IDLE_TIMEOUT_MINUTES: u32 = 10080;
/// The latest a tunnel may be set to close after its creation (31 days).
pub const MAX_AUTO_CLOSE: Duration = Duration::from_secs(744 * 3600);

/// Why a tunnel ended, as the API and the store name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// An operator deleted it.
    Deleted,
    IdleTimeout,
    AutoClose,
    /// Its agent stayed disconnected past the grace period, or stopped asking for it.
    AgentGone,
    ServerShutdown,
    /// After a restart its port could not be bound again.
    PortUnavailable,
    /// An operator deleted its client, or the client was unknown after a restart.
    AgentDeleted,
    /// Its client was forgotten after `keep_disconnected_clients`.
    AgentPurged,
    /// After a restart its stored record did not parse (an ACL, its protocol, its
    /// password hash, ...): it stays closed rather than open with looser rules.
    CorruptState,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::IdleTimeout => "idle_timeout",
            Self::AutoClose => "auto_close",
            Self::AgentGone => "client_gone",
            Self::ServerShutdown => "server_shutdown",
            Self::PortUnavailable => "port_unavailable",
            Self::AgentDeleted => "client_deleted",
            Self::AgentPurged => "client_purged",
            Self::CorruptState => "corrupt_state",
        }
    }

    /// `closed` when a person ended it, `terminated` when anything else did.
    pub fn status(self) -> rport_store::TunnelStatus {
        match self {
            Self::Deleted => rport_store::TunnelStatus::Closed,
            _ => rport_store::TunnelStatus::Terminated,
        }
    }
}

/// The limits set on a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `None`: never idle-closed.
    pub idle_timeout: Option<Duration>,
    pub auto_close_at: Option<DateTime<Utc>>,
    pub grace_period: Duration,
}

/// What the tunnel is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    pub open_connections: u32,
    /// When the last connection ended or the last datagram passed (creation time if
    /// nothing has happened yet).
    pub last_active: DateTime<Utc>,
    /// Set while the agent is disconnected.
    pub agent_gone_since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    End(CloseReason),
    /// Nothing is due before this instant (`None`: nothing is due until activity changes).
    WakeAt(Option<DateTime<Utc>>),
}

/// Whether the tunnel must end at `now`, and if not, when to look again.
pub fn verdict(limits: &Limits, activity: &Activity, now: DateTime<Utc>) -> Verdict {
    let mut next: Option<DateTime<Utc>> = None;
    let mut consider = |due: DateTime<Utc>, reason| {
        if due <= now {
            return Some(reason);
        }
        next = Some(next.map_or(due, |n| n.min(due)));
        None
    };
    if let Some(at) = limits.auto_close_at
        && let Some(reason) = consider(at, CloseReason::AutoClose)
    {
        return Verdict::End(reason);
    }
    if let Some(since) = activity.agent_gone_since
        && let Some(reason) = consider(after(since, limits.grace_period), CloseReason::AgentGone)
    {
        return Verdict::End(reason);
    }
    // A connection in progress is use, however long it lasts.
    if let Some(timeout) = limits.idle_timeout
        && activity.open_connections == 0
        && let Some(reason) = consider(
            after(activity.last_active, timeout),
            CloseReason::IdleTimeout,
        )
    {
        return Verdict::End(reason);
    }
    // Connections ending do not wake the watcher, so while some are open it looks again
    // when the soonest of them to end could have made the tunnel idle: a whole timeout
    // from now. Sleeping until woken would keep a tunnel whose long connection ended
    // open for good.
    if let Some(timeout) = limits.idle_timeout
        && activity.open_connections > 0
    {
        let due = after(now, timeout.max(Duration::from_secs(1)));
        next = Some(next.map_or(due, |n| n.min(due)));
    }
    Verdict::WakeAt(next)
}

fn after(start: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|d| start.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("valid")
    }

    const MIN: Duration = Duration::from_secs(60);

    fn limits() -> Limits {
        Limits {
            idle_timeout: Some(5 * MIN),
            auto_close_at: None,
            grace_period: 2 * MIN,
        }
    }

    fn quiet_since(secs: i64) -> Activity {
        Activity {
            open_connections: 0,
            last_active: t(secs),
            agent_gone_since: None,
        }
    }

    #[test]
    fn unused_tunnel_closes_after_the_idle_timeout() {
        assert_eq!(
            verdict(&limits(), &quiet_since(0), t(10)),
            Verdict::WakeAt(Some(t(300)))
        );
        assert_eq!(
            verdict(&limits(), &quiet_since(0), t(300)),
            Verdict::End(CloseReason::IdleTimeout)
        );
    }

    #[test]
    fn an_open_connection_is_never_idle() {
        let busy = Activity {
            open_connections: 1,
            ..quiet_since(0)
        };
        // Looked at again a whole timeout later: the connection may have ended by then.
        assert_eq!(
            verdict(&limits(), &busy, t(100_000)),
            Verdict::WakeAt(Some(t(100_300)))
        );
    }

    #[test]
    fn a_long_connection_ending_starts_the_idle_time() {
        let busy = Activity {
            open_connections: 1,
            ..quiet_since(0)
        };
        // Busy when the first timeout passed; the connection ends at 350.
        let Verdict::WakeAt(Some(wake)) = verdict(&limits(), &busy, t(300)) else {
            panic!("a busy tunnel with an idle timeout must be looked at again");
        };
        assert_eq!(wake, t(600));
        assert_eq!(
            verdict(&limits(), &quiet_since(350), wake),
            Verdict::WakeAt(Some(t(650)))
        );
        assert_eq!(
            verdict(&limits(), &quiet_since(350), t(650)),
            Verdict::End(CloseReason::IdleTimeout)
        );
    }

    #[test]
    fn idle_time_counts_from_the_last_activity() {
        assert_eq!(
            verdict(&limits(), &quiet_since(200), t(300)),
            Verdict::WakeAt(Some(t(500)))
        );
    }

    #[test]
    fn no_idle_timeout_means_never() {
        let never = Limits {
            idle_timeout: None,
            ..limits()
        };
        assert_eq!(
            verdict(&never, &quiet_since(0), t(10_000_000)),
            Verdict::WakeAt(None)
        );
    }

    #[test]
    fn auto_close_ends_a_busy_tunnel() {
        let limited = Limits {
            auto_close_at: Some(t(90)),
            ..limits()
        };
        let busy = Activity {
            open_connections: 3,
            ..quiet_since(0)
        };
        assert_eq!(
            verdict(&limited, &busy, t(89)),
            Verdict::WakeAt(Some(t(90)))
        );
        assert_eq!(
            verdict(&limited, &busy, t(90)),
            Verdict::End(CloseReason::AutoClose)
        );
    }

    #[test]
    fn an_agent_away_past_the_grace_period_ends_the_tunnel() {
        let away = Activity {
            agent_gone_since: Some(t(10)),
            ..quiet_since(0)
        };
        assert_eq!(
            verdict(&limits(), &away, t(20)),
            Verdict::WakeAt(Some(t(130)))
        );
        assert_eq!(
            verdict(&limits(), &away, t(130)),
            Verdict::End(CloseReason::AgentGone)
        );
    }

    #[test]
    fn the_earliest_rule_wins() {
        let all = Limits {
            auto_close_at: Some(t(1000)),
            ..limits()
        };
        let away = Activity {
            agent_gone_since: Some(t(0)),
            ..quiet_since(0)
        };
        // Grace ends at 120, idle at 300, auto-close at 1000.
        assert_eq!(verdict(&all, &away, t(1)), Verdict::WakeAt(Some(t(120))));
        assert_eq!(
            verdict(&all, &away, t(5000)),
            Verdict::End(CloseReason::AutoClose)
        );
    }

    /// The watcher looks only when `verdict` says (connections never wake it), yet the
    /// tunnel ends exactly a timeout after its last connection ended, however the
    /// connections overlap the timeouts.
    #[test]
    fn the_watcher_never_misses_the_idle_moment() {
        // (opened, closed) in seconds; the timeout is 300.
        let timelines: &[&[(i64, i64)]] = &[
            &[],
            &[(10, 20)],
            &[(0, 400)],
            &[(0, 299), (290, 900)],
            &[(100, 700), (650, 1300), (1310, 1311)],
            &[(0, 1), (301, 302)],
        ];
        for connections in timelines {
            let activity_at = |now: i64| Activity {
                open_connections: connections
                    .iter()
                    .filter(|(open, close)| *open <= now && now < *close)
                    .count() as u32,
                last_active: t(connections
                    .iter()
                    .map(|(_, close)| *close)
                    .filter(|close| *close <= now)
                    .max()
                    .unwrap_or(0)),
                agent_gone_since: None,
            };
            let idle_at = connections
                .iter()
                .map(|(_, close)| *close)
                .max()
                .unwrap_or(0)
                + 300;
            let mut now = 0;
            let ended = loop {
                match verdict(&limits(), &activity_at(now), t(now)) {
                    Verdict::End(reason) => break (now, reason),
                    Verdict::WakeAt(Some(at)) => now = (at - t(0)).num_seconds(),
                    Verdict::WakeAt(None) => panic!("{connections:?}: never looked at again"),
                }
            };
            assert_eq!(
                ended,
                (idle_at, CloseReason::IdleTimeout),
                "{connections:?}"
            );
        }
    }

    #[test]
    fn huge_durations_do_not_overflow() {
        let huge = Limits {
            idle_timeout: Some(Duration::from_secs(u64::MAX)),
            auto_close_at: None,
            grace_period: Duration::from_secs(u64::MAX),
        };
        assert!(matches!(
            verdict(&huge, &quiet_since(0), t(1)),
            Verdict::WakeAt(Some(_))
        ));
    }
}
