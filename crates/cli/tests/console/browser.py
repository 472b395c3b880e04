"""The web console in a real browser: headless Chromium (Debian's /usr/bin/chromium)
driven by Playwright, against a real rportd the Rust test (crates/cli/tests/e2e/console.rs)
started. One function per page; each takes the shared Run.

Environment (set by the Rust test):
  CONSOLE_URL          the API's base URL, e.g. http://127.0.0.1:PORT
  CONSOLE_ADMIN        user:password of an administrator
  CONSOLE_VIEWER       user:password of a user with role viewer in project default
  CONSOLE_AGENT_ID     the id the agent connects with
  CONSOLE_ECHO         HOST:PORT of a TCP echo server the agent can reach
  CONSOLE_SCREENSHOTS  optional: a folder to write page screenshots to
  CHROMIUM             optional: the browser binary (default /usr/bin/chromium)
The test asks the Rust side to start the agent by printing `START_AGENT` and reading a
line back on stdin.
"""

import os
import re
import socket
import sys
import time

from playwright.sync_api import sync_playwright, expect

ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 15_000


class Run:
    def __init__(self, browser):
        self.browser = browser
        self.url = os.environ["CONSOLE_URL"].rstrip("/")
        self.admin = os.environ["CONSOLE_ADMIN"].split(":", 1)
        self.viewer = os.environ["CONSOLE_VIEWER"].split(":", 1)
        self.agent_id = os.environ["CONSOLE_AGENT_ID"]
        self.echo = os.environ["CONSOLE_ECHO"]
        self.shots = os.environ.get("CONSOLE_SCREENSHOTS")
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        # The "Copy command" button writes to the clipboard, which the test reads back.
        self.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=self.url)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        # Answers of 4xx (a wrong password, a 401 before login) are logged by the browser
        # as "Failed to load resource"; they are expected, exceptions are not.
        self.page.on("console", lambda msg: msg.type == "error"
                     and not msg.text.startswith("Failed to load resource")
                     and self.errors.append(msg.text))
        self.tunnel_id = None

    def shot(self, name, page=None):
        if self.shots:
            os.makedirs(self.shots, exist_ok=True)
            (page or self.page).screenshot(path=os.path.join(self.shots, f"{name}.png"), full_page=True)


def step(name):
    print(f"== {name}", flush=True)


def log_in(page, url, user, password):
    page.goto(f"{url}/#/login")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login-form button[type=submit]")


def check_login(run):
    step("login page: a wrong password is refused with a clear message")
    page = run.page
    page.goto(f"{run.url}/")
    expect(page).to_have_url(f"{run.url}/#/login")
    run.shot("login")
    log_in(page, run.url, run.admin[0], "wrong-password")
    expect(page.locator("#login-error")).to_contain_text("Wrong user name")
    step("login page: the right password opens the devices page")
    log_in(page, run.url, *run.admin)
    expect(page).to_have_url(f"{run.url}/#/devices")
    cookies = run.context.cookies()
    session = [c for c in cookies if c["name"] == "rportd_session"]
    assert session and session[0]["httpOnly"] and session[0]["sameSite"] == "Strict", cookies
    assert page.evaluate("document.cookie") == "", "the session cookie is HttpOnly"


def check_devices_live(run):
    step("devices page: an agent that connects appears without a reload")
    page = run.page
    page.goto(f"{run.url}/#/devices")
    expect(page.locator("#live-state")).to_contain_text("on")
    page.evaluate("window.__sameDocument = true")
    print("START_AGENT", flush=True)
    answer = sys.stdin.readline().strip()
    assert answer == "AGENT_STARTED", answer
    row = page.locator(f"tr[data-id='{run.agent_id}']")
    # Within a few seconds of the agent connecting (the Rust side waited for nothing).
    expect(row).to_have_attribute("data-status", "connected", timeout=10_000)
    expect(row).to_contain_text("connected")
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    step("devices page: search, filters and sorting")
    page.fill("#device-search", "no-such-device")
    expect(row).to_have_count(0)
    page.fill("#device-search", run.agent_id[:4])
    expect(row).to_have_count(1)
    page.select_option("#device-status", "disconnected")
    expect(row).to_have_count(0)
    page.select_option("#device-status", "connected")
    expect(row).to_have_count(1)
    page.select_option("#device-tag", "Linux")
    expect(row).to_have_count(1)
    header = page.locator("th", has_text="Name")
    header.locator("button").click()
    expect(header).to_have_attribute("aria-sort", "descending")
    run.shot("devices")
    narrow = run.context.new_page()
    narrow.set_viewport_size({"width": 320, "height": 640})
    narrow.goto(f"{run.url}/#/devices")
    expect(narrow.locator(f"tr[data-id='{run.agent_id}']")).to_have_count(1)
    run.shot("devices-320px", narrow)
    overflow = narrow.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 1, f"the page is {overflow}px wider than a 320px screen"
    narrow.close()


def push_through(port, payload):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        received = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


def check_device_and_tunnel(run):
    step("device page: facts, then an ssh tunnel opened from the form carries bytes")
    page = run.page
    page.click(f"tr[data-id='{run.agent_id}'] a")
    expect(page).to_have_url(f"{run.url}/#/devices/{run.agent_id}")
    expect(page.locator("h1")).to_contain_text("connected")
    expect(page.locator("#tunnel-acl")).to_have_value("127.0.0.1")
    # The scheme fills in its well-known port; the echo server stands in for sshd.
    page.select_option("#tunnel-scheme", "ssh")
    expect(page.locator("#tunnel-remote")).to_have_value("22")
    page.fill("#tunnel-remote", run.echo)
    page.click("#tunnel-open")
    command = page.locator("#tunnel-command")
    expect(command).to_be_visible()
    text = command.inner_text().strip()
    match = re.fullmatch(r"ssh -p (\d+) USER@(127\.0\.0\.1|localhost)", text)
    assert match, f"not a ready ssh command: {text!r}"
    port = int(match.group(1))
    payload = os.urandom(256 * 1024)
    assert push_through(port, payload) == payload, "the echo came back different"
    run.tunnel_id = page.locator("#tunnel-result p").inner_text().split()[1]
    live = page.locator(f"#device-tunnels tr[data-tunnel='{run.tunnel_id}']")
    expect(live).to_have_count(1)
    step("device page: the tunnel's counters after the push")
    # The counters of a connection are the server's once it has closed; Refresh fetches them.
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        page.click("#device-tunnels-refresh")
        row = live.inner_text()
        if "256.0 KiB / 256.0 KiB" in row and "1 (0 active)" in row:
            break
        assert time.monotonic() < deadline, f"the tunnel's row after 256 KiB each way: {row!r}"
        time.sleep(0.3)
    run.shot("device")
    step("device page: copy the command")
    # Located by class: its accessible name changes to "Copied".
    copy = page.locator("#tunnel-result button.copy")
    expect(copy).to_have_text("Copy command")
    copy.click()
    expect(copy).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == text, f"the clipboard holds {copied!r}, not {text!r}"
    step("device page: close the tunnel")
    page.click("#tunnel-close")
    expect(page.locator(f"#device-tunnels tr[data-tunnel='{run.tunnel_id}'] .status")).to_have_text("closed")


def check_rdp_file(run):
    step("device page: an rdp tunnel offers a ready .rdp file for its port")
    page = run.page
    page.select_option("#tunnel-scheme", "rdp")
    expect(page.locator("#tunnel-remote")).to_have_value("3389")
    # The echo server stands in for the RDP service; the file only names the server's side.
    page.fill("#tunnel-remote", run.echo)
    page.click("#tunnel-open")
    # The ssh tunnel's result stays until the new one replaces it.
    command = page.locator("#tunnel-command")
    expect(command).to_contain_text("mstsc")
    text = command.inner_text().strip()
    match = re.fullmatch(r"mstsc /v:(127\.0\.0\.1|localhost):(\d+)", text)
    assert match, f"not a ready mstsc command: {text!r}"
    host, port = match.group(1), int(match.group(2))
    tunnel_id = page.locator("#tunnel-result p").inner_text().split()[1]
    with page.expect_download() as info:
        page.click("#tunnel-result a[download]")
    download = info.value
    assert download.suggested_filename == f"{run.agent_id}-{tunnel_id}.rdp", download.suggested_filename
    with open(download.path(), "rb") as file:
        content = file.read().decode()
    assert f"full address:s:{host}:{port}\r\n" in content, f"the .rdp file: {content!r}"
    assert "prompt for credentials:i:1" in content, f"the .rdp file: {content!r}"
    # The file's port is the tunnel's: bytes sent there come back through the agent.
    payload = os.urandom(4096)
    assert push_through(port, payload) == payload, "the rdp tunnel's echo came back different"
    step("device page: a tunnel closed elsewhere shows as closed without a reload")
    expect(page.locator("#device-live")).to_have_text("live updates: on")
    status = page.evaluate(
        "async (path) => (await fetch(path, { method: 'DELETE' })).status",
        f"/api/v1/clients/{run.agent_id}/tunnels/{tunnel_id}",
    )
    assert status == 204, f"closing the tunnel through the API: {status}"
    expect(page.locator(f"#device-tunnels tr[data-tunnel='{tunnel_id}'] .status")).to_have_text("closed")


def check_tunnels(run):
    step("tunnels page: the closed tunnel is in the history with its bytes")
    page = run.page
    page.click("nav a[href='#/tunnels']")
    page.select_option("#tunnels-status", "closed")
    row = page.locator(f"#tunnels-table tr[data-tunnel='{run.tunnel_id}']")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("256.0 KiB")
    run.shot("tunnels")


def check_audit(run):
    step("audit log: the tunnel's opening and closing, by the admin, for the device")
    page = run.page
    page.click("nav a[href='#/audit']")
    form = page.get_by_role("search", name="Filter the audit log")
    form.get_by_label("Client").fill(run.agent_id)
    form.get_by_role("button", name="Filter").click()
    entries = page.get_by_role("region", name="Audit log entries")
    for action in ["tunnel.create", "tunnel.close"]:
        row = entries.locator("tbody tr", has_text=action).filter(has_text=run.tunnel_id)
        expect(row).to_have_count(1)
        expect(row).to_contain_text(run.admin[0])


def check_viewer(run):
    step("viewer: no open-tunnel form, and the API refuses with 403")
    context = run.browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    log_in(page, run.url, *run.viewer)
    expect(page).to_have_url(f"{run.url}/#/devices")
    page.goto(f"{run.url}/#/devices/{run.agent_id}")
    expect(page.locator("h1")).to_contain_text("connected")
    expect(page.locator("#tunnel-form")).to_have_count(0)
    status = page.evaluate(
        """async (id) => (await fetch(`/api/v1/clients/${id}/tunnels?remote=22`,
             {method: 'PUT', credentials: 'same-origin'})).status""",
        run.agent_id,
    )
    assert status == 403, status
    step("logout ends the session")
    page.click("header button:has-text('Log out')")
    expect(page).to_have_url(f"{run.url}/#/login")
    status = page.evaluate("async () => (await fetch('/api/v1/me')).status")
    assert status == 401, status
    context.close()


def check_ban(run):
    step("login page: repeated failures get a 429 that says when to retry")
    context = run.browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    for _ in range(10):
        log_in(page, run.url, "somebody", "wrong-password")
        error = page.locator("#login-error")
        expect(error).not_to_have_text("")
        if "Too many failed logins" in error.inner_text():
            break
    expect(page.locator("#login-error")).to_contain_text("Try again in")
    context.close()


CHECKS = [
    check_login, check_devices_live, check_device_and_tunnel, check_rdp_file, check_tunnels,
    check_audit, check_viewer, check_ban,
]


def main():
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
        try:
            run = Run(browser)
            for check in CHECKS:
                check(run)
            assert not run.errors, f"errors in the page: {run.errors}"
        finally:
            browser.close()
    print("CONSOLE_OK", flush=True)


if __name__ == "__main__":
    main()
