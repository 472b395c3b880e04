//! Who is calling, and whether to believe them: API users and their logins, sessions,
//! tokens and TOTP second factors, agent credentials, the caller's address behind trusted
//! proxies, and bans for those who keep guessing.

pub mod agent_credentials;
pub mod api_callers;
pub mod bans;
pub mod client_ip;
pub mod credentials;
pub mod qr_png;
pub mod totp;
pub mod user_groups;
pub mod users;
