//! Tunnel ACLs and agents' allow-lists: parsed or refused, never a panic; an ACL prints as
//! text that parses back to the same rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rport_protocol::ip_rules::{Acl, AllowList};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(acl) = Acl::parse(text) {
        let again = Acl::parse(&acl.to_string()).expect("printed ACL parses");
        assert_eq!(again, acl);
    }
    let entries: Vec<&str> = text.split('\n').collect();
    let _ = AllowList::parse(&entries);
});
