"""Browser checks of the console's audit log and administration pages, run by
crates/cli/tests/e2e/console_admin.rs against a real rportd whose agent credentials are
kept in its database (so that they can be made in the console).

Environment (set by the Rust test):
  CONSOLE_URL          the API's base URL, e.g. http://127.0.0.1:PORT
  CONSOLE_ADMIN        user:password of a server administrator
  CONSOLE_SCREENSHOTS  optional: a folder to write page screenshots to
  CHROMIUM             optional: the browser binary (default /usr/bin/chromium)

`run(page, base_url, shots, ...)` drives a page logged in as that administrator: it creates a user,
a project, an agent credential and an API token through the pages, sees the secrets once,
uses the token with the API, sees its own sessions and ends another one, finds all of it in
the audit log, and sees this node on the cluster page. `shots` is a folder for screenshots
or None. Every wait is bounded (Playwright's timeouts).
"""

import base64
import json
import os
import re
import urllib.error
import urllib.request

from playwright.sync_api import expect, sync_playwright

TIMEOUT_MS = 10_000


def api(base_url, method, path, authorization, body=None):
    """Calls rportd's API outside the browser; returns (status, parsed body or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base_url + path, data=data, method=method)
    if authorization:
        request.add_header("Authorization", authorization)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
            return response.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as error:
        text = error.read().decode()
        return error.code, (json.loads(text) if text else None)


def open_section(page, base_url, hash_route, heading):
    page.goto(f"{base_url}/{hash_route}")
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=TIMEOUT_MS)


def shot(page, shots, name):
    if shots:
        # The messages of earlier steps would cover the page.
        page.evaluate("() => document.getElementById('messages')?.replaceChildren()")
        page.screenshot(path=f"{shots}/{name}.png", full_page=True)


def confirm(page, button_name):
    """Confirms the page's delete dialog."""
    dialog = page.locator("dialog.confirm[open]")
    expect(dialog).to_be_visible(timeout=TIMEOUT_MS)
    dialog.get_by_role("button", name=button_name).click()


def every_control_is_labelled(page):
    """Each input, select and button in the page's main area has an accessible name."""
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('main input, main select, main textarea, main button')]
            .filter((c) => c.type !== 'hidden')
            .filter((c) => !(c.labels && c.labels.length) && !c.getAttribute('aria-label')
                && !(c.tagName === 'BUTTON' && c.textContent.trim()))
            .map((c) => c.outerHTML.slice(0, 120))"""
    )
    assert not unlabelled, f"controls without a label: {unlabelled}"


def fits_320_px(page):
    """At 320 px the page itself does not scroll sideways: wide tables scroll in their box."""
    size = page.viewport_size
    page.set_viewport_size({"width": 320, "height": 640})
    try:
        page.wait_for_timeout(100)
        wide = page.evaluate("() => document.documentElement.scrollWidth")
        assert wide <= 322, f"the page is {wide} px wide at 320 px"
    finally:
        page.set_viewport_size(size)


def check_users(page, base_url, shots):
    open_section(page, base_url, "#/admin/users", "Users and roles")
    form = page.get_by_role("form", name="Create a user")
    form.get_by_label("User name").fill("carol")
    form.get_by_label("Password", exact=True).fill("carol-password-1")
    form.get_by_label("Role in default").select_option("tunnels")
    form.get_by_role("button", name="Create user").click()
    row = page.locator('tr[data-user="carol"]')
    expect(row).to_contain_text("default: tunnels", timeout=TIMEOUT_MS)
    # Changing a role in place.
    row.get_by_role("button", name="Edit carol").click()
    edit = page.get_by_role("form", name="Edit user carol")
    edit.get_by_label("Role in default").select_option("viewer")
    edit.get_by_role("button", name="Save").click()
    expect(page.locator('tr[data-user="carol"]')).to_contain_text("default: viewer", timeout=TIMEOUT_MS)
    # An error of the API is said in the live message region.
    form.get_by_label("User name").fill("carol")
    form.get_by_label("Password", exact=True).fill("carol-password-2")
    form.get_by_role("button", name="Create user").click()
    expect(page.locator("#messages [role=alert]")).to_contain_text("exists already", timeout=TIMEOUT_MS)
    form.get_by_label("Password", exact=True).fill("")
    every_control_is_labelled(page)
    shot(page, shots, "admin-users")
    fits_320_px(page)


def check_projects(page, base_url, shots):
    open_section(page, base_url, "#/admin/projects", "Projects")
    form = page.get_by_role("form", name="Create a project")
    form.get_by_label("Key").fill("lab")
    form.get_by_label("Name").fill("The lab")
    form.get_by_role("button", name="Create project").click()
    expect(page.locator('tr[data-project="lab"]')).to_contain_text("The lab", timeout=TIMEOUT_MS)
    every_control_is_labelled(page)
    shot(page, shots, "admin-projects")


def check_credentials(page, base_url, shots, authorization):
    open_section(page, base_url, "#/admin/credentials", "Agent credentials")
    form = page.get_by_role("form", name="Create an agent credential")
    form.get_by_label("Credential id").fill("edge-1")
    form.get_by_role("button", name="Create credential").click()
    once = page.get_by_role("region", name="Password of credential edge-1")
    expect(once).to_contain_text("won't be shown again", timeout=TIMEOUT_MS)
    password = once.locator("code.secret").inner_text().strip()
    assert len(password) >= 24, password
    expect(once.get_by_role("button", name="Copy")).to_be_visible()
    expect(page.locator('tr[data-credential="edge-1"]')).to_be_visible()
    every_control_is_labelled(page)
    shot(page, shots, "admin-credentials")
    once.get_by_role("button", name="I have copied it").click()
    expect(once).to_have_count(0)
    # Never again: not on the page after a reload, not from the API.
    page.reload()
    expect(page.locator('tr[data-credential="edge-1"]')).to_be_visible(timeout=TIMEOUT_MS)
    assert password not in page.content()
    status, body = api(base_url, "GET", "/api/v1/clients-auth/edge-1", authorization)
    assert status == 200 and "password" not in body["data"], body
    # Deleting asks first.
    page.locator('tr[data-credential="edge-1"]').get_by_role("button", name="Delete credential edge-1").click()
    confirm(page, "Delete")
    expect(page.locator('tr[data-credential="edge-1"]')).to_have_count(0, timeout=TIMEOUT_MS)


def check_tokens(page, base_url, shots):
    open_section(page, base_url, "#/admin/tokens", "My API tokens")
    form = page.get_by_role("form", name="Create an API token")
    form.get_by_label("Name").fill("ci-script")
    form.get_by_label("Scope").select_option("read")
    form.get_by_role("button", name="Create token").click()
    once = page.get_by_role("region", name="API token ci-script")
    expect(once).to_contain_text("won't be shown again", timeout=TIMEOUT_MS)
    token = once.locator("code.secret").inner_text().strip()
    status, body = api(base_url, "GET", "/api/v1/me", f"Bearer {token}")
    assert status == 200 and body["data"]["api_token"] is True, (status, body)
    assert body["data"]["scope"] == "read", body
    every_control_is_labelled(page)
    shot(page, shots, "admin-tokens")
    page.reload()
    row = page.locator("tr[data-token]")
    expect(row).to_contain_text("ci-script", timeout=TIMEOUT_MS)
    assert token not in page.content()
    # Changed: renamed and given write scope; the same token then writes.
    row.get_by_role("button", name="Change token ci-script").click()
    edit = page.get_by_role("form", name="Change token ci-script")
    edit.get_by_label("Name").fill("ci-deploy")
    edit.get_by_label("Scope").select_option("read+write")
    edit.get_by_role("button", name="Save").click()
    expect(row).to_contain_text("ci-deploy", timeout=TIMEOUT_MS)
    expect(row).to_contain_text("read+write")
    status, body = api(base_url, "GET", "/api/v1/me", f"Bearer {token}")
    assert status == 200 and body["data"]["scope"] == "read+write", (status, body)
    # Deleted: refused from then on.
    row.get_by_role("button", name="Delete token ci-deploy").click()
    confirm(page, "Delete")
    expect(page.locator("tr[data-token]")).to_have_count(0, timeout=TIMEOUT_MS)
    status, _ = api(base_url, "GET", "/api/v1/me", f"Bearer {token}")
    assert status == 401, status
    return token


def check_sessions(page, base_url, shots, username, password):
    # Another login of the same user, as a script would make.
    status, body = api(base_url, "POST", "/api/v1/login", None, {"username": username, "password": password})
    assert status == 200, (status, body)
    other = f"Bearer {body['data']['token']}"
    open_section(page, base_url, "#/admin/sessions", "My sessions")
    current = page.locator("tr.current")
    expect(current).to_have_count(1, timeout=TIMEOUT_MS)
    expect(current).to_contain_text("this session")
    expect(page.locator("tbody tr[data-session]")).to_have_count(2, timeout=TIMEOUT_MS)
    every_control_is_labelled(page)
    shot(page, shots, "admin-sessions")
    page.get_by_role("button", name="End all other sessions").click()
    confirm(page, "End other sessions")
    expect(page.locator("tbody tr[data-session]")).to_have_count(1, timeout=TIMEOUT_MS)
    status, _ = api(base_url, "GET", "/api/v1/me", other)
    assert status == 401, status


def check_cluster(page, base_url, shots):
    open_section(page, base_url, "#/admin/cluster", "Cluster nodes")
    row = page.locator("tr.current[data-node]")
    expect(row).to_have_count(1, timeout=TIMEOUT_MS)
    expect(row).to_contain_text("this node")
    shot(page, shots, "admin-cluster")


def check_audit(page, base_url, shots, username, authorization):
    open_section(page, base_url, "#/audit", "Audit log")
    form = page.get_by_role("search", name="Filter the audit log")
    form.get_by_label("Action").fill("user.create")
    form.get_by_label("User").fill(username)
    form.get_by_role("button", name="Filter").click()
    entries = page.get_by_role("region", name="Audit log entries")
    # The unfiltered list, shown until the filtered one replaces it, names carol too.
    expect(entries.locator("tbody tr").filter(has_not_text="user.create")).to_have_count(0, timeout=TIMEOUT_MS)
    expect(entries).to_contain_text("carol", timeout=TIMEOUT_MS)
    actions = entries.locator("tbody tr td:nth-child(4)").all_inner_texts()
    users = entries.locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert set(actions) == {"user.create"} and set(users) == {username}, (actions, users)
    # Everything done above is there, newest first.
    form.get_by_role("button", name="Clear").click()
    for action in ["user.sessions.delete", "token.delete", "token.update", "token.create", "clientauth.delete", "clientauth.create", "project.create", "user.update"]:
        expect(entries).to_contain_text(action, timeout=TIMEOUT_MS)
    pages = page.get_by_role("navigation", name="Audit log pages")
    expect(pages).to_contain_text(re.compile(r"of \d+"))
    every_control_is_labelled(page)
    shot(page, shots, "audit")
    fits_320_px(page)

    # Oldest first, by the time column's sort button.
    entries.get_by_role("button", name="Time").click()
    expect(entries.locator("th[aria-sort=ascending]")).to_have_count(1, timeout=TIMEOUT_MS)
    # A client nobody has: nothing matches.
    form.get_by_label("Client").fill("no-such-client")
    form.get_by_role("button", name="Filter").click()
    expect(entries).to_contain_text("No entries match.", timeout=TIMEOUT_MS)
    # Paging: enough entries for two pages of 10.
    for n in range(11):
        status, body = api(base_url, "POST", "/api/v1/projects", authorization, {"key": f"paging-{n}"})
        assert status == 201, (status, body)
    form.get_by_role("button", name="Clear").click()
    form.get_by_label("Action").fill("project.create")
    form.get_by_label("Rows per page").select_option("10")
    form.get_by_role("button", name="Filter").click()
    expect(pages).to_contain_text(re.compile(r"1–10 of \d+"), timeout=TIMEOUT_MS)
    total = int(re.search(r"of (\d+)", pages.inner_text()).group(1))
    assert total >= 12, total
    expect(entries.locator("tbody tr")).to_have_count(10)
    pages.get_by_role("button", name="Next").click()
    expect(pages).to_contain_text(f"11–{min(20, total)} of {total}", timeout=TIMEOUT_MS)
    expect(entries.locator("tbody tr")).to_have_count(min(20, total) - 10)
    if total <= 20:
        expect(pages.get_by_role("button", name="Next")).to_be_disabled()
    pages.get_by_role("button", name="Previous").click()
    expect(pages).to_contain_text(f"1–10 of {total}", timeout=TIMEOUT_MS)


def log_in(page, base_url, username, password):
    """Logs in through the console's login page."""
    page.goto(f"{base_url}/#/login")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**#/devices", timeout=TIMEOUT_MS)


def check_viewer(page, base_url):
    """A user with only a viewer role (carol, made by check_users) is offered no write
    controls and no admin-only sections; the API refuses them anyway."""
    open_section(page, base_url, "#/admin", "Administration")
    sections = page.get_by_role("navigation", name="Administration sections")
    expect(sections).to_contain_text("My sessions", timeout=TIMEOUT_MS)
    for hidden in ["Users and roles", "Cluster nodes"]:
        expect(sections.get_by_role("link", name=hidden)).to_have_count(0)
    page.goto(f"{base_url}/#/admin/users")
    expect(page.locator('tr[data-user]')).to_have_count(0)
    for section, heading in [("projects", "Projects"), ("credentials", "Agent credentials")]:
        open_section(page, base_url, f"#/admin/{section}", heading)
        expect(page.locator("main form")).to_have_count(0)
        expect(page.get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)
    # Her own tokens and sessions are hers to manage.
    open_section(page, base_url, "#/admin/tokens", "My API tokens")
    expect(page.get_by_role("form", name="Create an API token")).to_be_visible()
    # The audit log shows her own entries only, without a user filter.
    open_section(page, base_url, "#/audit", "Audit log")
    form = page.get_by_role("search", name="Filter the audit log")
    expect(form.get_by_label("User")).to_have_count(0)
    entries = page.get_by_role("region", name="Audit log entries")
    expect(entries.locator("tbody tr").first).to_be_visible(timeout=TIMEOUT_MS)
    users = entries.locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert users and all(u == "carol" for u in users), users


def run(page, base_url, shots, username, password, authorization):
    """All checks in order; each later one finds the earlier ones' actions in the audit log.

    `authorization` is an `Authorization` value of the same administrator for calls made
    outside the browser."""
    page.set_default_timeout(TIMEOUT_MS)
    check_users(page, base_url, shots)
    check_projects(page, base_url, shots)
    check_credentials(page, base_url, shots, authorization)
    check_tokens(page, base_url, shots)
    check_sessions(page, base_url, shots, username, password)
    check_cluster(page, base_url, shots)
    check_audit(page, base_url, shots, username, authorization)


def run_as_viewer(page, base_url):
    """After `run`: logs in as carol, whom `run` made a viewer in project default."""
    log_in(page, base_url, "carol", "carol-password-1")
    check_viewer(page, base_url)


ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def main():
    base_url = os.environ["CONSOLE_URL"].rstrip("/")
    username, password = os.environ["CONSOLE_ADMIN"].split(":", 1)
    shots = os.environ.get("CONSOLE_SCREENSHOTS")
    if shots:
        os.makedirs(shots, exist_ok=True)
    authorization = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    errors = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=ARGS, headless=True)
        try:
            for who in ["admin", "viewer"]:
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                page = context.new_page()
                page.on("pageerror", lambda error: errors.append(str(error)))
                # 4xx answers are logged as "Failed to load resource"; they are expected.
                page.on("console", lambda msg: msg.type == "error"
                        and not msg.text.startswith("Failed to load resource")
                        and errors.append(msg.text))
                page.set_default_timeout(TIMEOUT_MS)
                if who == "admin":
                    print("== administration and audit log as a server administrator", flush=True)
                    log_in(page, base_url, username, password)
                    run(page, base_url, shots, username, password, authorization)
                else:
                    print("== a viewer is offered no write controls", flush=True)
                    run_as_viewer(page, base_url)
                context.close()
            assert not errors, f"errors in the page: {errors}"
        finally:
            browser.close()
    print("CONSOLE_ADMIN_OK", flush=True)


if __name__ == "__main__":
    main()
