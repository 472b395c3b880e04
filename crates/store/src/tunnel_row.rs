//! A stored tunnel row read column by column, the same way for every backend: a column
//! that does not read is noted as damage and holds its default, so that one damaged row
//! neither hides every other tunnel nor comes back looking sound (see
//! [`TunnelRecord::damage`]).

use chrono::{DateTime, TimeZone, Utc};

use crate::{TunnelCounters, TunnelOptions, TunnelRecord, TunnelStatus};

/// One row as a backend reads its cells: `Ok(None)` for NULL, `Err(why)` for a value
/// that does not read as that type.
pub(crate) trait Cells {
    fn text(&self, column: &str) -> Result<Option<String>, String>;
    fn integer(&self, column: &str) -> Result<Option<i64>, String>;
    fn flag(&self, column: &str) -> Result<Option<bool>, String>;
}

/// Times are kept as milliseconds since the epoch.
pub(crate) fn from_millis(value: Option<i64>) -> Option<DateTime<Utc>> {
    value.and_then(|ms| Utc.timestamp_millis_opt(ms).single())
}

struct Columns<'c, C> {
    cells: &'c C,
    damage: Vec<String>,
}

impl<C: Cells> Columns<'_, C> {
    fn noted<T>(&mut self, column: &str, read: Result<Option<T>, String>) -> Option<T> {
        read.unwrap_or_else(|why| {
            self.damage.push(format!("{column}: {why}"));
            None
        })
    }

    /// A NOT NULL column: NULL is damage too.
    fn required<T: Default>(&mut self, column: &str, read: Result<Option<T>, String>) -> T {
        match read {
            Ok(Some(value)) => value,
            Ok(None) => {
                self.damage.push(format!("{column}: missing"));
                T::default()
            }
            Err(why) => {
                self.damage.push(format!("{column}: {why}"));
                T::default()
            }
        }
    }

    fn text(&mut self, column: &str) -> String {
        self.required(column, self.cells.text(column))
    }

    fn optional_text(&mut self, column: &str) -> Option<String> {
        self.noted(column, self.cells.text(column))
    }

    fn flag(&mut self, column: &str) -> bool {
        self.required(column, self.cells.flag(column))
    }

    fn port(&mut self, column: &str) -> u16 {
        let value: i64 = self.required(column, self.cells.integer(column));
        u16::try_from(value).unwrap_or_else(|_| {
            self.damage.push(format!("{column}: {value} is not a port"));
            0
        })
    }

    fn time(&mut self, column: &str) -> Option<DateTime<Utc>> {
        let ms = self.noted(column, self.cells.integer(column));
        let time = from_millis(ms);
        if let (Some(ms), None) = (ms, time) {
            self.damage.push(format!("{column}: {ms} is not a time"));
        }
        time
    }

    /// An unknown status is damage; the record reads as terminated, so nothing reopens it.
    fn status(&mut self) -> TunnelStatus {
        let text = self.text("status");
        TunnelStatus::parse(&text).unwrap_or_else(|| {
            if !self.damage.iter().any(|d| d.starts_with("status")) {
                self.damage
                    .push(format!("status: {text:?} is not a tunnel status"));
            }
            TunnelStatus::Terminated
        })
    }

    /// Counters are u64s kept in signed 64-bit columns as their two's complement.
    fn counter(&mut self, column: &str) -> u64 {
        self.required::<i64>(column, self.cells.integer(column)) as u64
    }
}

/// The tunnel `id` from its row's other cells.
pub(crate) fn read(cells: &impl Cells, id: String) -> TunnelRecord {
    let mut c = Columns {
        cells,
        damage: Vec::new(),
    };
    let created_at = c.time("created_at");
    if created_at.is_none() && !c.damage.iter().any(|d| d.starts_with("created_at")) {
        c.damage.push("created_at: missing".to_owned());
    }
    let mut record = TunnelRecord {
        agent_id: c.text("client_id"),
        name: c.text("name"),
        protocol: c.text("protocol"),
        lhost: c.text("lhost"),
        lport: c.port("lport"),
        lport_random: c.flag("lport_random"),
        rhost: c.text("rhost"),
        rport: c.port("rport"),
        scheme: c.optional_text("scheme"),
        status: c.status(),
        created_by: c.text("created_by"),
        created_at: created_at.unwrap_or_default(),
        closed_at: c.time("closed_at"),
        close_reason: c.optional_text("close_reason"),
        options: TunnelOptions::default(),
        counters: TunnelCounters {
            connections: c.counter("connections"),
            refused: c.counter("connections_refused"),
            bytes_in: c.counter("bytes_in"),
            bytes_out: c.counter("bytes_out"),
        },
        last_active_at: c.time("last_active_at"),
        project: c.text("project"),
        owner_node: c.optional_text("owner_node"),
        id,
        damage: None,
    };
    // Options are JSON, so that adding one needs no migration; what does not parse is
    // damage, and the record keeps the default options (none that open anything wider
    // is trusted: see the server's check of restored records).
    let options = c.text("options");
    match serde_json::from_str(&options) {
        Ok(options) => record.options = options,
        Err(err) => c.damage.push(format!("options: {err}")),
    }
    if !c.damage.is_empty() {
        record.damage = Some(c.damage.join("; "));
    }
    record
}
