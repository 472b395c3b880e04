//! Whether a live tunnel's stored record can be trusted to open its port again after a
//! restart. Every field that limits who gets in or where traffic goes must read back as
//! exactly what was set: a default in its place (no ACL, no password, another protocol)
//! would quietly open the tunnel wider than its operator asked.

use std::net::IpAddr;

use rport_protocol::ip_rules::Acl;
use rport_protocol::tunnel_spec::TunnelProtocol;
use rport_store::TunnelRecord;

use super::lifecycle::{MAX_AUTO_CLOSE, MAX_IDLE_TIMEOUT_MINUTES};
use crate::domain::secrets::is_password_hash;

/// What the restored tunnel is built from, each read from the record exactly once.
#[derive(Debug)]
pub(super) struct Restorable {
    pub protocol: TunnelProtocol,
    pub acl: Option<Acl>,
}

/// The record's parts, or what in it did not parse (for the log: it names fields and
/// values, never a password hash).
pub(super) fn check(record: &TunnelRecord) -> Result<Restorable, String> {
    if let Some(damage) = &record.damage {
        return Err(format!("the row does not read ({damage})"));
    }
    let protocol: TunnelProtocol = record
        .protocol
        .parse()
        .map_err(|err| format!("protocol: {err}"))?;
    if record.lhost.parse::<IpAddr>().is_err() {
        return Err(format!("lhost {:?} is not an IP address", record.lhost));
    }
    if record.rhost.is_empty() || record.rport == 0 {
        return Err(format!(
            "the target {:?} port {} is incomplete",
            record.rhost, record.rport
        ));
    }
    let options = &record.options;
    let acl = match &options.acl {
        None => None,
        Some(text) => Some(Acl::parse(text).map_err(|err| format!("acl {text:?}: {err}"))?),
    };
    if options.idle_timeout_minutes > MAX_IDLE_TIMEOUT_MINUTES {
        return Err(format!(
            "idle_timeout_minutes {} is past the most the API sets ({MAX_IDLE_TIMEOUT_MINUTES})",
            options.idle_timeout_minutes
        ));
    }
    if options.auto_close_secs > MAX_AUTO_CLOSE.as_secs() {
        return Err(format!(
            "auto_close_secs {} is past the most the API sets ({})",
            options.auto_close_secs,
            MAX_AUTO_CLOSE.as_secs()
        ));
    }
    check_proxy(record)?;
    Ok(Restorable { protocol, acl })
}

/// The HTTP proxy options only mean something together, and only with `http_proxy`: a
/// password without its user (or the reverse) would otherwise be read as "no password".
fn check_proxy(record: &TunnelRecord) -> Result<(), String> {
    let options = &record.options;
    if !options.http_proxy {
        let stray = [
            ("host_header", options.host_header.is_some()),
            ("auth_user", options.auth_user.is_some()),
            ("auth_password_hash", options.auth_password_hash.is_some()),
            ("subdomain", options.subdomain.is_some()),
        ];
        return match stray.iter().find(|(_, set)| *set) {
            Some((name, _)) => Err(format!("{name} is set but http_proxy is not")),
            None => Ok(()),
        };
    }
    if !matches!(record.scheme.as_deref(), Some("http" | "https")) {
        return Err(format!(
            "http_proxy with scheme {:?} (http or https expected)",
            record.scheme
        ));
    }
    match (&options.auth_user, &options.auth_password_hash) {
        (None, None) => {}
        (Some(_), Some(hash)) if is_password_hash(hash) => {}
        (Some(_), Some(_)) => return Err("auth_password_hash is not a password hash".into()),
        (Some(_), None) => return Err("auth_user is set without auth_password_hash".into()),
        (None, Some(_)) => return Err("auth_password_hash is set without auth_user".into()),
    }
    if let Some(host) = &options.host_header
        && http::HeaderValue::from_str(host).is_err()
    {
        return Err(format!("host_header {host:?} is not a header value"));
    }
    if record.lport == 0 && options.subdomain.is_none() {
        return Err("lport 0 without a subdomain on the shared proxy port".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use rport_store::{TunnelCounters, TunnelOptions};

    fn record() -> TunnelRecord {
        TunnelRecord {
            id: "t1".into(),
            agent_id: "c1".into(),
            name: String::new(),
            protocol: "udp".into(),
            lhost: "0.0.0.0".into(),
            lport: 20001,
            lport_random: true,
            rhost: "127.0.0.1".into(),
            rport: 53,
            scheme: None,
            status: rport_store::TunnelStatus::Pending,
            created_by: "admin".into(),
            created_at: Utc::now(),
            closed_at: None,
            close_reason: None,
            options: TunnelOptions {
                acl: Some("192.0.2.0/24".into()),
                idle_timeout_minutes: 5,
                ..Default::default()
            },
            counters: TunnelCounters::default(),
            last_active_at: None,
            project: "default".into(),
            owner_node: None,
            damage: None,
        }
    }

    fn proxy() -> TunnelRecord {
        let mut record = record();
        record.protocol = "tcp".into();
        record.scheme = Some("https".into());
        record.options.http_proxy = true;
        record.options.auth_user = Some("web".into());
        record.options.auth_password_hash = Some(crate::domain::secrets::hash_password("pw"));
        record.options.host_header = Some("router.lan".into());
        record
    }

    /// One way of damaging a record.
    type Damage = fn(&mut TunnelRecord);

    fn refused(record: &TunnelRecord, needle: &str) {
        match check(record) {
            Ok(parts) => panic!("accepted {parts:?}, expected a refusal naming {needle:?}"),
            Err(why) => assert!(why.contains(needle), "{why:?} does not name {needle:?}"),
        }
    }

    #[test]
    fn a_sound_record_comes_back_as_stored() {
        let parts = check(&record()).expect("sound");
        assert_eq!(parts.protocol, TunnelProtocol::Udp);
        assert_eq!(
            parts.acl.map(|a| a.to_string()).as_deref(),
            Some("192.0.2.0/24")
        );
        let mut open = record();
        open.options.acl = None;
        assert!(check(&open).expect("no ACL was set").acl.is_none());
        assert!(check(&proxy()).is_ok());
    }

    /// Each of these, read leniently, would open the tunnel wider than it was.
    #[test]
    fn what_does_not_parse_is_refused_not_loosened() {
        let cases: Vec<(&str, Damage)> = vec![
            ("acl", |r| {
                r.options.acl = Some("192.0.2.0/24,10.0.0.".into())
            }),
            ("acl", |r| r.options.acl = Some(String::new())),
            ("acl", |r| {
                r.options.acl = Some("0.0.0.0/1,128.0.0.0/1".into())
            }),
            ("protocol", |r| r.protocol = "udp ".into()),
            ("lhost", |r| r.lhost = "localhost".into()),
            ("target", |r| r.rport = 0),
            ("target", |r| r.rhost = String::new()),
            ("idle_timeout_minutes", |r| {
                r.options.idle_timeout_minutes = u32::MAX
            }),
            ("auto_close_secs", |r| r.options.auto_close_secs = u64::MAX),
            ("row does not read (options", |r| {
                r.damage = Some("options: EOF while parsing".into())
            }),
            ("auth_user is set but http_proxy", |r| {
                r.options.auth_user = Some("web".into())
            }),
        ];
        for (needle, damage) in cases {
            let mut r = record();
            damage(&mut r);
            refused(&r, needle);
        }
        let proxy_cases: Vec<(&str, Damage)> = vec![
            ("without auth_password_hash", |r| {
                r.options.auth_password_hash = None
            }),
            ("without auth_user", |r| r.options.auth_user = None),
            ("not a password hash", |r| {
                r.options.auth_password_hash = Some("$argon2id$v=19$trunc".into())
            }),
            ("scheme", |r| r.scheme = Some("htps".into())),
            ("host_header", |r| {
                r.options.host_header = Some("a\nb".into())
            }),
            ("subdomain", |r| r.lport = 0),
        ];
        for (needle, damage) in proxy_cases {
            let mut r = proxy();
            damage(&mut r);
            refused(&r, needle);
        }
    }

    #[test]
    fn the_reason_never_shows_a_password_hash() {
        let mut r = proxy();
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$!!broken!!".to_owned();
        r.options.auth_password_hash = Some(hash.clone());
        let why = check(&r).expect_err("refused");
        assert!(!why.contains("broken"), "{why}");
    }
}
