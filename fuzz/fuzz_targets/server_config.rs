//! rportd's TOML configuration: any text is a configuration or an error naming the key,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rport_server::ServerConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err) = ServerConfig::from_toml_str(text, "fuzz.conf") {
        assert_eq!(err.file, "fuzz.conf");
    }
});
