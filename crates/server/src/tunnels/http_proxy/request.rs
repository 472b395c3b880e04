//! What the HTTP proxy changes in a request before the device sees it and in a response
//! before the public client sees it. No I/O, so that it can be fuzzed with whatever a
//! client sends (`fuzz/fuzz_targets/http_proxy.rs`).

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;

/// Headers that describe one hop, not the message (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// How a tunnel rewrites requests for its device.
#[derive(Debug, Clone, Copy)]
pub struct DeviceRequestRules<'a> {
    /// The tunnel's `host_header`: the `Host` the device gets.
    pub host_header: Option<&'a HeaderValue>,
    /// The tunnel has basic auth: its password is for rportd and must not reach the device.
    pub drop_authorization: bool,
    /// The address the public connection really comes from.
    pub peer: IpAddr,
}

/// The request target cannot be sent to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bad request target")]
pub struct BadTarget;

/// Rewrites a public request for the device: hop-by-hop headers go (the upgrade ones stay
/// for an upgrade), `Host` is replaced when the tunnel says so, `X-Forwarded-For` and
/// `X-Real-IP` are the real peer (whatever the client claimed; its `Forwarded` goes), and
/// the target is in origin form. Returns
/// whether the request asks for a protocol upgrade.
pub fn for_device(parts: &mut Parts, rules: DeviceRequestRules<'_>) -> Result<bool, BadTarget> {
    let upgrade = wants_upgrade(&parts.headers);
    let original_host = parts.headers.get(header::HOST).cloned();
    let headers = &mut parts.headers;
    if rules.drop_authorization {
        headers.remove(header::AUTHORIZATION);
    }
    strip_hop_by_hop(headers, upgrade);
    if let Some(host) = rules.host_header {
        headers.insert(header::HOST, host.clone());
    }
    // Only the address this connection really comes from: what a client says about its
    // address (X-Forwarded-For, X-Real-IP, Forwarded) is a claim, not a fact.
    headers.remove(header::FORWARDED);
    match HeaderValue::from_str(&rules.peer.to_string()) {
        Ok(peer) => {
            headers.insert(HeaderName::from_static("x-forwarded-for"), peer.clone());
            headers.insert(HeaderName::from_static("x-real-ip"), peer);
        }
        Err(_) => {
            headers.remove(HeaderName::from_static("x-forwarded-for"));
            headers.remove(HeaderName::from_static("x-real-ip"));
        }
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("https"),
    );
    match original_host {
        Some(host) => {
            headers.insert(HeaderName::from_static("x-forwarded-host"), host);
        }
        None => {
            headers.remove(HeaderName::from_static("x-forwarded-host"));
        }
    }
    // Requests to the device use origin form: path and query only.
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = path.parse().map_err(|_| BadTarget)?;
    parts.version = http::Version::HTTP_11;
    Ok(upgrade)
}

/// Cleans a device's response for the public client (not used for `101`, whose
/// upgrade headers must stay).
pub fn for_client(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers, false);
}

/// The host a request names, lower case, without port.
pub fn request_host(headers: &HeaderMap, uri: &http::Uri) -> Option<String> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.host())?;
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    Some(host.trim_end_matches('.').to_ascii_lowercase())
}

/// Whether the message asks for a protocol upgrade (`Connection: upgrade` and `Upgrade`).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Removes hop-by-hop headers, and those `Connection` names, keeping the upgrade ones when
/// the message asks for an upgrade.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| !(keep_upgrade && name == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(&name);
    }
    for name in &HOP_BY_HOP {
        if keep_upgrade && (name == header::CONNECTION || name == header::UPGRADE) {
            continue;
        }
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(build: http::request::Builder) -> Parts {
        build.body(()).expect("request").into_parts().0
    }

    #[test]
    fn hop_by_hop_headers_go_except_for_an_upgrade() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        for_client(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");

        let mut upgrade = HeaderMap::new();
        upgrade.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        upgrade.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(wants_upgrade(&upgrade));
        strip_hop_by_hop(&mut upgrade, true);
        assert!(wants_upgrade(&upgrade), "{upgrade:?}");
    }

    #[test]
    fn hosts_compare_without_port_case_or_final_dot() {
        let request =
            parts(http::Request::builder().header(header::HOST, "AbC.Tunnels.Example.com.:8443"));
        assert_eq!(
            request_host(&request.headers, &request.uri).as_deref(),
            Some("abc.tunnels.example.com")
        );
    }

    #[test]
    fn the_device_sees_the_real_peer_and_not_the_tunnel_password() {
        let mut request = parts(
            http::Request::builder()
                .uri("https://router.example:8443/admin?x=1")
                .header(header::HOST, "abc.tunnels.example.com")
                .header(header::AUTHORIZATION, "Basic b3A6c2VjcmV0")
                .header("x-forwarded-for", "10.9.9.9")
                .header("x-forwarded-host", "forged.example")
                .header("x-real-ip", "10.9.9.9")
                .header(header::FORWARDED, "for=10.9.9.9")
                .header(header::CONNECTION, "close"),
        );
        let host = HeaderValue::from_static("router.local");
        let upgrade = for_device(
            &mut request,
            DeviceRequestRules {
                host_header: Some(&host),
                drop_authorization: true,
                peer: "192.0.2.7".parse().expect("ip"),
            },
        )
        .expect("rewritten");
        assert!(!upgrade);
        let h = &request.headers;
        assert_eq!(h[header::HOST], "router.local");
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-real-ip"], "192.0.2.7");
        assert!(!h.contains_key(header::FORWARDED));
        assert_eq!(h["x-forwarded-host"], "abc.tunnels.example.com");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert!(!h.contains_key(header::AUTHORIZATION));
        assert!(!h.contains_key(header::CONNECTION));
        assert_eq!(request.uri, "/admin?x=1");
    }
}
