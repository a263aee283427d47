"""Schemathesis hooks for the e2e fuzzing run under `cargo lambda watch`.

Two things the emulator does that AWS does not, both answered by the emulator itself with a
text/plain 500 and never reaching the function:

* a request body that is not valid UTF-8 (real Function URLs and API Gateway deliver such bodies
  base64-encoded; crates/items-api/tests/properties.rs proves the handler refuses them with 400):
  such cases are not generated;
* now and then, a response it loses: measured against `make run` with identical repeated requests,
  0 of 100 for a 0.1 KB response, 1 of 150 at 34 KB, 4-7% from 68 KB up (pure ASCII too), while the
  function logged every one of them as answered 200. Its trigger_router then answers 500 because the
  invocation's response channel closed. Such failures are not counted against the API, but every
  one is written to $EMULATOR_FAULTS_FILE: the Rust test reports them and fails the run above 1%.

A body alone cannot tell the emulator's 500 from the function's (a handler that panics gets the same
generic 500), so the Rust test does not take this hook's word for it: from schemathesis's HAR report
it lines every call up with the function's one-line-per-request log and fails unless each 500
excused here is a request the function itself logged as answered below 500.

The Rust test checks the function's own log independently: it must never have answered a 5xx.
"""

import os

import schemathesis

EMULATOR_500 = '{"type":"https://httpstatuses.com/500","status":500,"title":"Internal Server Error"}'


def _is_utf8(body) -> bool:
    if isinstance(body, (bytes, bytearray)):
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return False
    elif isinstance(body, str):
        try:
            body.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


@schemathesis.hook
def filter_case(context, case) -> bool:
    return _is_utf8(case.body)


def _text(response) -> str:
    content = getattr(response, "content", b"")
    if isinstance(content, (bytes, bytearray)):
        return bytes(content).decode("utf-8", "replace")
    return str(content)


def _header(response, name: str) -> str:
    for key, value in dict(getattr(response, "headers", {}) or {}).items():
        if key.lower() == name:
            return value[0] if isinstance(value, list) else str(value)
    return ""


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    emulator = (
        getattr(response, "status_code", 0) == 500
        and _header(response, "content-type").startswith("text/plain")
        and _text(response).strip() == EMULATOR_500
    )
    if emulator:
        path = os.environ.get("EMULATOR_FAULTS_FILE")
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(f"{case.method} {case.formatted_path}\n")
        return False
    return True
