"""Schemathesis hooks for the e2e fuzzing run under `cargo lambda watch`.

cargo lambda watch's Function URL emulation answers a text/plain 500 by itself, without invoking
the function, when a request body is not valid UTF-8. Real Function URLs and API Gateway deliver
such bodies base64-encoded, and the handler's property tests (crates/items-api/tests/properties.rs)
prove those are refused with a 400. Those cases are dropped here so the fuzzer tests the function,
not the emulator. Nothing else is filtered.
"""

import schemathesis


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
