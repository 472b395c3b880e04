"""Checks schemathesis runs against rportd's API besides its own: every error is in the
JSON envelope {"errors": [{"code", "title", "detail"}]}."""

import schemathesis


@schemathesis.check
def error_envelope(ctx, response, case):
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except Exception as err:  # noqa: BLE001 - any parse failure is the finding
        raise AssertionError(f"error {response.status_code} is not JSON: {err}") from err
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors:
        raise AssertionError(f"error {response.status_code} without an errors list: {body!r}")
    for error in errors:
        for field in ("code", "title", "detail"):
            if not isinstance(error.get(field), str) or not error[field]:
                raise AssertionError(f"error {response.status_code} lacks {field}: {body!r}")
    return None
