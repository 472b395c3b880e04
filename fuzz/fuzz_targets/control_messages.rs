//! Control messages, tunnel open requests and check answers as JSON from the peer: parsed
//! or refused, never a panic; what parses serialises and parses back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rport_protocol::{CheckAnswer, ControlMessage, OpenRequest};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = ControlMessage::from_json(data) {
        let again = ControlMessage::from_json(&message.to_json()).expect("re-parses");
        assert_eq!(again.to_json(), message.to_json());
    }
    if let Ok(open) = OpenRequest::from_json(data) {
        let again = OpenRequest::from_json(&open.to_json()).expect("re-parses");
        assert_eq!(again, open);
    }
    if let Ok(answer) = CheckAnswer::from_json(data) {
        let again = CheckAnswer::from_json(&answer.to_json()).expect("re-parses");
        assert_eq!(again, answer);
    }
});
