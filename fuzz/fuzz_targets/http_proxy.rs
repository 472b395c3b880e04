//! Whatever a public client sends to an HTTP proxy tunnel, parsed by hyper as rportd
//! parses it, then routed and rewritten for the device as `http_proxy` does. Nothing
//! panics, and what reaches the device keeps the proxy's promises: no hop-by-hop header
//! (but an upgrade's own), the real peer address and no claimed one, no tunnel password,
//! the tunnel's `Host`, and an origin-form target.
#![no_main]

mod harness;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use http::header::{self, HeaderValue};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use rport_server::proxy_request::{self, DeviceRequestRules};

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn check(request: http::Request<Incoming>, flags: u8) -> http::Response<String> {
    let (mut parts, _body) = request.into_parts();
    let _ = proxy_request::request_host(&parts.headers, &parts.uri);
    let _ = rport_server::credentials(&parts.headers);
    let peer = if flags & 1 == 1 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7))
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))
    };
    let host = HeaderValue::from_static("router.local");
    let rules = DeviceRequestRules {
        host_header: (flags & 2 == 2).then_some(&host),
        drop_authorization: flags & 4 == 4,
        peer,
    };
    // Headers the connection names as hop-by-hop must go too.
    let named: Vec<String> = parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    let Ok(upgrade) = proxy_request::for_device(&mut parts, rules) else {
        return http::Response::new(String::new());
    };
    let headers = &parts.headers;
    for name in HOP_BY_HOP.iter().map(|n| n.to_string()).chain(named) {
        if upgrade && (name == "connection" || name == "upgrade") {
            continue;
        }
        assert!(
            !headers.contains_key(name.as_str()),
            "{name} reached the device"
        );
    }
    let peer_text = peer.to_string();
    for name in ["x-forwarded-for", "x-real-ip"] {
        let values: Vec<_> = headers.get_all(name).iter().collect();
        assert_eq!(values, vec![peer_text.as_str()], "{name}");
    }
    assert!(!headers.contains_key(header::FORWARDED));
    if rules.drop_authorization {
        assert!(!headers.contains_key(header::AUTHORIZATION));
    }
    if rules.host_header.is_some() {
        assert_eq!(headers.get_all(header::HOST).iter().count(), 1);
        assert_eq!(headers[header::HOST], "router.local");
    }
    assert!(parts.uri.scheme().is_none() && parts.uri.authority().is_none());
    assert_eq!(parts.version, http::Version::HTTP_11);

    // The device's answer, taken to be whatever the client sent, cleaned for the client.
    let mut answer = parts.headers.clone();
    proxy_request::for_client(&mut answer);
    for name in HOP_BY_HOP {
        assert!(!answer.contains_key(name), "{name} reached the client");
    }
    http::Response::new(String::new())
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    harness::runtime().block_on(async move {
        let (near, mut far) = tokio::io::duplex(1 << 16);
        let service = hyper::service::service_fn(move |request| async move {
            Ok::<_, Infallible>(check(request, flags))
        });
        let server = tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(near), service)
                .with_upgrades(),
        );
        harness::send_and_hang_up(&mut far, input).await;
        drop(far);
        let ended = tokio::time::timeout(Duration::from_secs(5), server).await;
        match ended {
            Ok(Ok(_)) => {}
            // A panic in `check` is the finding: let libFuzzer see it.
            Ok(Err(join)) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Ok(Err(_)) => {}
            Err(_) => panic!("the connection did not end after the client hung up"),
        }
    });
});
