//! API requests counted by route template, method and status, and their durations in a
//! histogram per route. The routes are the fixed set of the route table, so every cell
//! is made at start and a request only adds to atomics: no lock, no allocation.
//!
//! Bounded: (routes + 1) x [`METHODS`] x ([`STATUSES`] + 5 classes) counters and
//! (routes + 1) x ([`BUCKETS`] + 2) histogram cells, whatever the callers send.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::render::{Exposition, Kind};

/// The route label of a request that matched no route (the web UI, a typo).
pub const OTHER_ROUTE: &str = "other";

/// Methods counted by name; any other is `OTHER`.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER",
];

/// Statuses counted by their code; any other is counted by its class (`2xx`...).
const STATUSES: [u16; 31] = [
    200, 201, 202, 204, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 406, 408, 409, 410,
    411, 413, 414, 415, 422, 429, 431, 500, 501, 502, 503, 504,
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const STATUS_CELLS: usize = STATUSES.len() + CLASSES.len();

/// Upper bounds of the duration histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

struct RouteCells {
    requests: [[AtomicU64; STATUS_CELLS]; METHODS.len()],
    /// Requests whose duration fell in each bucket (not cumulative; the last cell is
    /// beyond the last bound).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    duration_micros: AtomicU64,
}

impl RouteCells {
    fn new() -> Self {
        Self {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            duration_micros: AtomicU64::new(0),
        }
    }
}

pub struct ApiRequests {
    routes: HashMap<&'static str, RouteCells>,
    other: RouteCells,
}

impl ApiRequests {
    /// Cells for each route template (`/api/v1/clients/{client_id}`) and for `other`.
    pub fn new(templates: impl IntoIterator<Item = &'static str>) -> Self {
        Self {
            routes: templates
                .into_iter()
                .map(|template| (template, RouteCells::new()))
                .collect(),
            other: RouteCells::new(),
        }
    }

    /// Counts one answered request; `route` is its template, `None` when none matched.
    pub fn record(&self, route: Option<&str>, method: &str, status: u16, took: Duration) {
        let cells = route
            .and_then(|route| self.routes.get(route))
            .unwrap_or(&self.other);
        let method = METHODS
            .iter()
            .position(|m| *m == method)
            .unwrap_or(METHODS.len() - 1);
        cells.requests[method][status_cell(status)].fetch_add(1, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        cells.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        cells.duration_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn write(&self, out: &mut Exposition) {
        let mut routes: Vec<(&str, &RouteCells)> = self
            .routes
            .iter()
            .map(|(route, cells)| (*route, cells))
            .collect();
        routes.sort_by_key(|(route, _)| *route);
        routes.push((OTHER_ROUTE, &self.other));

        out.family(
            "rportd_api_requests_total",
            Kind::Counter,
            "API requests answered since rportd started, by route template (\"other\": none matched), method and status.",
        );
        for (route, cells) in &routes {
            for (method, statuses) in METHODS.iter().zip(&cells.requests) {
                for (cell, count) in statuses.iter().enumerate() {
                    let count = count.load(Ordering::Relaxed);
                    if count > 0 {
                        let status = status_label(cell);
                        out.sample(
                            "rportd_api_requests_total",
                            &[("route", route), ("method", method), ("status", &status)],
                            count,
                        );
                    }
                }
            }
        }

        let name = "rportd_api_request_duration_seconds";
        out.family(
            name,
            Kind::Histogram,
            "Time from a request's arrival to its answer's headers, by route template, since rportd started.",
        );
        for (route, cells) in &routes {
            let counts: Vec<u64> = cells
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(&counts) {
                cumulative += count;
                let le = bound.to_string();
                out.sample(
                    &format!("{name}_bucket"),
                    &[("route", route), ("le", &le)],
                    cumulative,
                );
            }
            out.sample(
                &format!("{name}_bucket"),
                &[("route", route), ("le", "+Inf")],
                total,
            );
            let micros = cells.duration_micros.load(Ordering::Relaxed);
            out.sample(
                &format!("{name}_sum"),
                &[("route", route)],
                micros as f64 / 1e6,
            );
            out.sample(&format!("{name}_count"), &[("route", route)], total);
        }
    }
}

fn status_cell(status: u16) -> usize {
    match STATUSES.iter().position(|s| *s == status) {
        Some(cell) => cell,
        None => STATUSES.len() + usize::from(status / 100).clamp(1, 5) - 1,
    }
}

fn status_label(cell: usize) -> String {
    match STATUSES.get(cell) {
        Some(status) => status.to_string(),
        None => CLASSES[cell - STATUSES.len()].to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_template_and_keeps_unknown_routes_and_statuses_bounded() {
        let requests = ApiRequests::new(["/api/v1/clients/{client_id}"]);
        let fast = Duration::from_millis(2);
        requests.record(Some("/api/v1/clients/{client_id}"), "GET", 200, fast);
        requests.record(Some("/api/v1/clients/{client_id}"), "GET", 200, fast);
        requests.record(
            Some("/not/in/the/table"),
            "BREW",
            418,
            Duration::from_secs(20),
        );
        requests.record(None, "GET", 404, fast);
        let mut out = Exposition::default();
        requests.write(&mut out);
        let text = out.finish();
        assert!(text.contains("rportd_api_requests_total{route=\"/api/v1/clients/{client_id}\",method=\"GET\",status=\"200\"} 2\n"), "{text}");
        assert!(
            text.contains("{route=\"other\",method=\"OTHER\",status=\"4xx\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("{route=\"other\",method=\"GET\",status=\"404\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("rportd_api_request_duration_seconds_bucket{route=\"/api/v1/clients/{client_id}\",le=\"0.005\"} 2\n"), "{text}");
        assert!(
            text.contains(
                "rportd_api_request_duration_seconds_bucket{route=\"other\",le=\"10\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "rportd_api_request_duration_seconds_bucket{route=\"other\",le=\"+Inf\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("rportd_api_request_duration_seconds_count{route=\"other\"} 2\n"),
            "{text}"
        );
    }
}
