"""Schemathesis against a live server: ``pserve production.ini`` on PostgreSQL.

Every operation of ``/api/openapi.json`` gets generated requests, valid and
invalid (examples, boundary values, random data, and sequences that follow the
ids one answer hands to the next), logged in as a user whose one tenant is
chosen at login. Schemathesis's own checks (``--checks all``) say that no
answer is a 5xx, each answer has a documented status, content type, headers
and body schema, invalid data is refused and valid data accepted; the check
below holds every answer to API.md's error contract, independently of the
document.

This file is also the hooks file of that run (``SCHEMATHESIS_HOOKS`` names it,
and the ``st`` process loads it): so at the top it imports only the standard
library, pytest and schemathesis.

Bounded: ``MAX_EXAMPLES`` cases per operation and phase, killed (and failed)
after ``TIME_CAP`` seconds. ``TENANTAPP_FUZZ_SEED`` changes the seed (the run
prints the one it used).
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import time
import urllib.request

import pytest
import schemathesis

pytestmark = pytest.mark.postgresql_only

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
MAX_EXAMPLES = 250
TIME_CAP = 300  # seconds, both runs together
SEED = os.environ.get("TENANTAPP_FUZZ_SEED", "20261121")
FUZZ_PASSWORD = "schemathesis-fuzz-password"

# API.md, "Errors": the codes each status may carry.
ERROR_CODES = {
    400: {"invalid_json", "bad_request"},
    401: {"unauthenticated"},
    403: {"forbidden", "csrf_failed", "tenant_required", "tenant_suspended"},
    404: {"not_found"},
    405: {"method_not_allowed"},
    409: {"conflict"},
    412: {"precondition_failed"},
    413: {"payload_too_large"},
    415: {"unsupported_media_type"},
    422: {"validation_failed"},
    429: {"too_many_requests"},
    500: {"internal_error"},
    503: {"service_unavailable"},
}
# What a schema cannot say of valid data, answered 422 all the same (API.md):
# the project must exist in the tenant, the name must not be taken.
REFERENTIAL_FIELDS = {
    "project_id": "no such project in this tenant",
    "name": "a project with this name already exists",
}
# JSON Schema counts 7.0 as an integer; the API does not (a wrong type, 422).
INTEGER_FIELDS = {"project_id"}
# RFC 9110 field values: what an HTTP server reads as a header value at all.
HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def _integral_float(value):
    return isinstance(value, float) and value.is_integer()


@schemathesis.check
def follows_the_api_contract(ctx, response, case):
    """An ``/api`` answer as API.md says: JSON (``application/json;
    charset=utf-8``, the docs page aside) that is never cached, 204 without a
    body, and every error ``{"error": {"code", "message", "fields"?}}`` with a
    code of its status, ``fields`` for ``validation_failed`` only; 405 with
    ``Allow``, 429 and 503 with ``Retry-After``."""
    status = response.status_code
    headers = {name: ", ".join(values) for name, values in response.headers.items()}
    assert headers.get("cache-control") == "no-store", (
        "an /api answer must be Cache-Control: no-store"
    )
    if status == 204:
        assert not response.content, "204 must have no body"
        return None
    if not (status == 200 and case.operation.path == "/api/docs"):
        assert headers.get("content-type") == "application/json; charset=utf-8", (
            f"Content-Type {headers.get('content-type')!r}, not application/json; charset=utf-8"
        )
        body = json.loads(response.content)
    if status < 400:
        return None
    assert status in ERROR_CODES, f"{status} is no status of the error contract"
    assert isinstance(body, dict) and set(body) == {"error"}, "an error body is {'error': {...}}"
    error = body["error"]
    assert error.get("code") in ERROR_CODES[status], f"code {error.get('code')!r} for {status}"
    assert isinstance(error.get("message"), str) and error["message"], "an error has a message"
    if error["code"] == "validation_failed":
        assert set(error) == {"code", "message", "fields"}, "validation_failed has fields"
        fields = error["fields"]
        assert isinstance(fields, dict) and fields, "fields is a non-empty object"
        assert all(isinstance(m, str) and m for m in fields.values()), "a message per field"
        if case.meta is not None and case.meta.generation.mode.is_positive:
            sent = case.body if isinstance(case.body, dict) else {}
            refused = {
                name: message
                for name, message in fields.items()
                if REFERENTIAL_FIELDS.get(name) != message
                and not (name in INTEGER_FIELDS and _integral_float(sent.get(name)))
            }
            assert not refused, f"schema-valid data refused: {refused}"
    else:
        assert set(error) == {"code", "message"}, "only validation_failed has fields"
    if status == 405:
        assert headers.get("allow"), "405 carries Allow"
    if status in (429, 503):
        assert headers.get("retry-after", "").isdigit(), f"{status} carries Retry-After"
    return None


@schemathesis.hook
def filter_case(ctx, case):
    """No header values that are not HTTP: waitress (like any HTTP server or
    proxy in front of the app) answers those with its own plain-text 400
    before the app sees the request, so they test neither the app nor its
    document."""
    return all(HEADER_VALUE.fullmatch(str(value)) for value in (case.headers or {}).values())


# --- the test -----------------------------------------------------------------


@pytest.fixture
def live_server(db_urls, tmp_path, admin):
    """``pserve production.ini`` on the test cluster: (base URL, log path)."""
    # Imported here: schemathesis also loads this file, alone, for its hooks.
    from live_server import running_pserve, server_config

    ini, env = server_config("postgresql", db_urls, str(tmp_path))
    with running_pserve(ini, env, str(tmp_path)) as (base, log_path):
        yield base, pathlib.Path(log_path)


def login(base):
    """A new login session: (cookie value, CSRF token)."""
    request = urllib.request.Request(
        base + "/api/login",
        data=json.dumps({"username": "fuzzer", "password": FUZZ_PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        me = json.load(response)
        cookie = response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    assert me["tenant"]["name"] == "acme", "the user's one tenant is chosen at login"
    return cookie, me["csrf_token"]


# Valid data may still be refused for what no schema can know: 412 for an
# If-Match naming another version, 422 for a project that does not exist or a
# name that is taken (the check above allows only those), 403 for a wrong
# current password, 404 for a user or session id that does not exist, 409 for
# demoting the tenant's last admin (the fuzzer). Invalid data may be refused
# with 412 before 422: API.md checks If-Match first; and with 403, 404 or 409
# before 422 (the current password, the user, the last admin).
CONFIG = """\
[auth.openapi.session]
api_key = "${TENANTAPP_FUZZ_SESSION}"
[auth.openapi.csrf]
api_key = "${TENANTAPP_FUZZ_CSRF}"
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "412", "422", "429"]
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "409", "412", "413", "415", "422", "429"]
"""


def schemathesis_run(base, tmp_path, deadline, *filters):
    """``st run`` with ``--checks all`` over the operations ``filters`` select,
    logged in afresh; (exit code, output)."""
    cookie, csrf = login(base)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        os.path.join(BIN, "st"),
        "--config-file",
        str(config),
        "run",
        base + "/api/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        SEED,
        # One worker: with several, Hypothesis parses source in threads at
        # once, which CPython 3.11's ast module does not survive
        # ("SystemError: AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--no-color",
        "--output-truncate",
        "true",
        *filters,
    ]
    env = dict(
        os.environ,
        SCHEMATHESIS_HOOKS=os.path.abspath(__file__),
        TENANTAPP_FUZZ_SESSION=cookie,
        TENANTAPP_FUZZ_CSRF=csrf,
    )
    try:
        result = subprocess.run(
            command,
            cwd=tmp_path,  # its caches and example database: nothing in the checkout
            env=env,
            capture_output=True,
            text=True,
            timeout=max(1, deadline - time.monotonic()),
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"schemathesis did not finish within {TIME_CAP} s:\n{exc.stdout or ''}")
    return result.returncode, result.stdout + result.stderr


def generated_cases(output):
    match = re.search(r"Test cases:\s*\n\s*(\d+) generated", output)
    assert match, f"no case count in the output:\n{output}"
    return int(match.group(1))


def summary(output):
    """The summary block of ``st run`` (the whole output if there is none)."""
    start = output.find("=== SUMMARY")
    return output[output.rfind("\n", 0, start) + 1 :] if start >= 0 else output


def test_schemathesis_finds_no_5xx_and_no_mismatch(live_server, make_user, tmp_path, capsys):
    base, server_log = live_server
    make_user("fuzzer", password=FUZZ_PASSWORD, acme="admin")
    deadline = time.monotonic() + TIME_CAP

    # The logout alone, with a session of its own (its first case ends it, the
    # rest must answer 401); then everything else with a new one, which the
    # logout would end. In that order: the second run tries to log in as the
    # user it sees in /api/me, which throttles the user's logins.
    # The sessions list and ending a session likewise, with a session of their
    # own: the stateful phase follows a listed id to DELETE, which may be this
    # session's own (a logout).
    runs = {
        "POST /api/logout": ("--include-path", "/api/logout"),
        "/api/me/sessions": ("--include-path-regex", "^/api/me/sessions"),
        "every operation but POST /api/logout and /api/me/sessions": (
            "--exclude-path",
            "/api/logout",
            "--exclude-path-regex",
            "^/api/me/sessions",
        ),
    }
    total = 0
    for name, filters in runs.items():
        code, output = schemathesis_run(base, tmp_path, deadline, *filters)
        if code != 0:
            pytest.fail(
                f"schemathesis ({name}) exited {code}:\n{output}\n"
                f"--- server log (tail) ---\n{server_log.read_text()[-5000:]}"
            )
        cases = generated_cases(output)
        total += cases
        with capsys.disabled():  # shown in every run, not only on failure
            print(f"\nschemathesis, {name}: {cases} generated cases")
            print(summary(output).rstrip())
    with capsys.disabled():
        print(f"schemathesis: {total} generated cases in all, no failure")
    assert total > 0
