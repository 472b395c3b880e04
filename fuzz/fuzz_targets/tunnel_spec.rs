//! Tunnel specs (`[LHOST:]LPORT:[RHOST:]RPORT[/udp]`) and endpoints from agents' configs
//! and API parameters: parsed or refused, never a panic; a parsed endpoint prints as text
//! that parses back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rport_protocol::tunnel_spec::{parse_endpoint, parse_tunnel_spec};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_tunnel_spec(text);
    if let Ok(endpoint) = parse_endpoint(text, "127.0.0.1") {
        let again = parse_endpoint(&endpoint.to_string(), "127.0.0.1");
        assert_eq!(again, Ok(endpoint));
    }
});
