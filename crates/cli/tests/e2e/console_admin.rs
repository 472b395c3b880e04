//! The console's audit log and administration pages in a real browser
//! (crates/cli/tests/console/admin_pages.py), against a real rportd that keeps agent
//! credentials in its database, so that the console can make them. Same browser and venv
//! as the console's own test (`console`), skipped the same way without them.

use crate::console::{browser_ready, run_browser_script};
use crate::support::*;

#[test]
fn the_audit_log_and_administration_pages_work_in_a_browser() {
    if !browser_ready() {
        return;
    }
    let dir = tempdir();
    // No `auth` for agents: credentials live in the database and the API manages them.
    let settings = ServerSettings {
        agent_auth: String::new(),
        ..Default::default()
    };
    let server = Rportd::start_with(dir.path(), &settings);
    run_browser_script(
        "admin_pages.py",
        &server,
        &[],
        "CONSOLE_ADMIN_OK",
        |_, _| {},
    );
}
