//! Which server the agent tries next, and when: the main server, then each fallback, in
//! rounds; and when to look whether the main server answers again. No I/O here.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::config::ServerAddress;

/// The servers in the order the agent tries them, and where it is in the current round.
///
/// A round is one attempt at each server, one after the other with no wait between them,
/// so that when a node dies the agent is on another one at once. Only between rounds does
/// the agent wait (its backoff): after every server of a round failed, or after a session
/// ended. A round normally starts at the main server; after a server said it is going away
/// it starts at the server after that one and tries the one going away last.
#[derive(Debug, Clone)]
pub struct ServerList {
    /// The main server first, then the fallbacks in the order configured.
    servers: Vec<ServerAddress>,
    current: usize,
    /// Attempts made in this round before the current one.
    tried_in_round: usize,
    /// The longest wait a server of this round asked for (a refusal's retry-after).
    round_floor: Duration,
}

/// What the agent does after an attempt or a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try [`ServerList::current`] at once: this round has servers left.
    Now,
    /// The round is over: wait the backoff, and at least this long, then try
    /// [`ServerList::current`].
    AfterBackoff { at_least: Duration },
}

/// A server named for a log line: `server HOST:PORT` when there are no fallbacks, else
/// `main server HOST:PORT` or `fallback server N HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described<'a> {
    address: &'a ServerAddress,
    index: usize,
    alone: bool,
}

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.alone, self.index) {
            (true, _) => write!(f, "server {}", self.address),
            (false, 0) => write!(f, "main server {}", self.address),
            (false, n) => write!(f, "fallback server {n} {}", self.address),
        }
    }
}

impl ServerList {
    pub fn new(main: ServerAddress, fallbacks: Vec<ServerAddress>) -> Self {
        let mut servers = Vec::with_capacity(1 + fallbacks.len());
        servers.push(main);
        servers.extend(fallbacks);
        Self {
            servers,
            current: 0,
            tried_in_round: 0,
            round_floor: Duration::ZERO,
        }
    }

    /// The server to try now.
    pub fn current(&self) -> &ServerAddress {
        &self.servers[self.current]
    }

    /// The server to try now, named for a log line.
    pub fn describe_current(&self) -> Described<'_> {
        Described {
            address: self.current(),
            index: self.current,
            alone: self.servers.len() == 1,
        }
    }

    /// The main server, while the current one is a fallback: the one to go back to.
    pub fn main_to_return_to(&self) -> Option<&ServerAddress> {
        (self.current != 0).then(|| &self.servers[0])
    }

    /// The current server could not be reached, or refused the session; `retry_after` is
    /// how long it asked the agent to wait.
    pub fn attempt_failed(&mut self, retry_after: Option<Duration>) -> Next {
        self.round_floor = self.round_floor.max(retry_after.unwrap_or_default());
        self.tried_in_round += 1;
        if self.tried_in_round < self.servers.len() {
            self.current = (self.current + 1) % self.servers.len();
            return Next::Now;
        }
        let at_least = self.round_floor;
        self.start_round_at(0);
        Next::AfterBackoff { at_least }
    }

    /// A session that was up has ended (the connection closed or broke): after the
    /// backoff, a new round from the main server.
    pub fn session_ended(&mut self) -> Next {
        self.start_round_at(0);
        Next::AfterBackoff {
            at_least: Duration::ZERO,
        }
    }

    /// The current server said it is shutting down and asked for `wait`: after it, a new
    /// round from the next server, with the one going away last.
    pub fn going_away(&mut self, wait: Duration) -> Next {
        self.start_round_at((self.current + 1) % self.servers.len());
        Next::AfterBackoff { at_least: wait }
    }

    /// The main server answers again and the session on a fallback was closed for it:
    /// a new round from the main server, at once.
    pub fn main_is_back(&mut self) -> Next {
        self.start_round_at(0);
        Next::Now
    }

    fn start_round_at(&mut self, index: usize) {
        self.current = index;
        self.tried_in_round = 0;
        self.round_floor = Duration::ZERO;
    }
}

/// Resolves once `main_answers` says yes, asking it one `interval` after the previous
/// answer (the first time one interval from now): a slow answer, such as a connect that
/// hangs until its timeout, delays the next question rather than piling questions up.
pub async fn wait_for_main<F, Fut>(interval: Duration, mut main_answers: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    loop {
        tokio::time::sleep(interval).await;
        if main_answers().await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(port: u16) -> ServerAddress {
        ServerAddress {
            host: "127.0.0.1".into(),
            port,
        }
    }

    /// Main on port 1, fallbacks on ports 2 and 3.
    fn three() -> ServerList {
        ServerList::new(address(1), vec![address(2), address(3)])
    }

    const BACKOFF: Next = Next::AfterBackoff {
        at_least: Duration::ZERO,
    };

    #[test]
    fn a_round_tries_main_then_each_fallback_without_waiting_then_backs_off() {
        let mut servers = three();
        let mut tried = vec![servers.current().port];
        let mut nexts = Vec::new();
        for _ in 0..6 {
            nexts.push(servers.attempt_failed(None));
            tried.push(servers.current().port);
        }
        assert_eq!(tried, [1, 2, 3, 1, 2, 3, 1]);
        use Next::Now;
        assert_eq!(nexts, [Now, Now, BACKOFF, Now, Now, BACKOFF]);
    }

    #[test]
    fn a_dead_main_leads_to_the_first_fallback_at_once() {
        let mut servers = three();
        assert_eq!(servers.main_to_return_to(), None);
        // Connected to main, then the node dies: the session ends, main is tried again
        // after the backoff and refuses; the first fallback is next, with no wait.
        assert_eq!(servers.session_ended(), BACKOFF);
        assert_eq!(servers.current().port, 1);
        assert_eq!(servers.attempt_failed(None), Next::Now);
        assert_eq!(servers.current().port, 2);
        assert_eq!(servers.main_to_return_to(), Some(&address(1)));
    }

    #[test]
    fn a_session_ending_anywhere_starts_over_from_main() {
        let mut servers = three();
        servers.attempt_failed(None);
        servers.attempt_failed(None);
        assert_eq!(servers.current().port, 3);
        assert_eq!(servers.session_ended(), BACKOFF);
        assert_eq!(servers.current().port, 1);
        // And the new round is whole again: three attempts before the next wait.
        assert_eq!(servers.attempt_failed(None), Next::Now);
        assert_eq!(servers.attempt_failed(None), Next::Now);
        assert_eq!(servers.attempt_failed(None), BACKOFF);
    }

    #[test]
    fn going_away_moves_on_after_the_wait_and_tries_that_server_last() {
        let mut servers = three();
        let wait = Duration::from_secs(2);
        assert_eq!(
            servers.going_away(wait),
            Next::AfterBackoff { at_least: wait }
        );
        let mut tried = vec![servers.current().port];
        let mut nexts = Vec::new();
        for _ in 0..3 {
            nexts.push(servers.attempt_failed(None));
            tried.push(servers.current().port);
        }
        assert_eq!(tried, [2, 3, 1, 1]);
        assert_eq!(nexts, [Next::Now, Next::Now, BACKOFF]);

        // From the last fallback, the next is the main server.
        servers.attempt_failed(None);
        servers.attempt_failed(None);
        assert_eq!(servers.current().port, 3);
        servers.going_away(wait);
        assert_eq!(servers.current().port, 1);
    }

    #[test]
    fn the_longest_wait_asked_for_in_a_round_holds_at_its_end() {
        let mut servers = three();
        assert_eq!(
            servers.attempt_failed(Some(Duration::from_secs(30))),
            Next::Now
        );
        assert_eq!(
            servers.attempt_failed(Some(Duration::from_secs(5))),
            Next::Now
        );
        assert_eq!(
            servers.attempt_failed(None),
            Next::AfterBackoff {
                at_least: Duration::from_secs(30)
            }
        );
        // Forgotten in the next round.
        servers.attempt_failed(None);
        servers.attempt_failed(None);
        assert_eq!(servers.attempt_failed(None), BACKOFF);
    }

    #[test]
    fn the_main_server_back_is_tried_at_once() {
        let mut servers = three();
        servers.attempt_failed(None);
        assert_eq!(servers.current().port, 2);
        assert_eq!(servers.main_is_back(), Next::Now);
        assert_eq!(servers.current().port, 1);
        assert_eq!(servers.main_to_return_to(), None);
        // Should main refuse after all, the fallbacks follow in the same round.
        assert_eq!(servers.attempt_failed(None), Next::Now);
        assert_eq!(servers.current().port, 2);
    }

    #[test]
    fn without_fallbacks_every_failure_waits_as_before() {
        let mut servers = ServerList::new(address(1), Vec::new());
        for _ in 0..3 {
            assert_eq!(servers.attempt_failed(None), BACKOFF);
            assert_eq!(servers.current().port, 1);
        }
        let wait = Duration::from_secs(2);
        assert_eq!(
            servers.going_away(wait),
            Next::AfterBackoff { at_least: wait }
        );
        assert_eq!(servers.current().port, 1);
        assert_eq!(servers.main_to_return_to(), None);
        assert_eq!(servers.describe_current().to_string(), "server 127.0.0.1:1");
    }

    #[test]
    fn servers_are_named_by_their_place() {
        let mut servers = three();
        assert_eq!(
            servers.describe_current().to_string(),
            "main server 127.0.0.1:1"
        );
        servers.attempt_failed(None);
        servers.attempt_failed(None);
        assert_eq!(
            servers.describe_current().to_string(),
            "fallback server 2 127.0.0.1:3"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn main_is_asked_every_interval_until_it_answers() {
        let interval = Duration::from_secs(120);
        let started = tokio::time::Instant::now();
        let mut asked_at = Vec::new();
        wait_for_main(interval, || {
            asked_at.push(started.elapsed());
            let answers = asked_at.len() == 3;
            async move { answers }
        })
        .await;
        assert_eq!(asked_at, [interval, interval * 2, interval * 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_answer_does_not_pile_up_questions() {
        let interval = Duration::from_secs(10);
        let started = tokio::time::Instant::now();
        let mut asked_at = Vec::new();
        wait_for_main(interval, || {
            asked_at.push(started.elapsed());
            let answers = asked_at.len() == 2;
            async move {
                // A connect that hangs until its timeout, longer than the interval.
                tokio::time::sleep(Duration::from_secs(25)).await;
                answers
            }
        })
        .await;
        assert_eq!(
            asked_at,
            [interval, interval + Duration::from_secs(25) + interval]
        );
    }
}
