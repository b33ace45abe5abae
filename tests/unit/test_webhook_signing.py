"""common.webhook_signing: the Standard Webhooks signature and the receiver's checks."""

from __future__ import annotations

import base64

from common.payloads import Rejection
from common.webhook_signing import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    signature,
    verify,
)

SECRET = b"0123456789abcdef0123456789abcdef"
BODY = b'{"rule":"bin_full","state":"firing"}'
T = 1_700_000_000


def _code(result: str | Rejection) -> str:
    assert isinstance(result, Rejection), result
    return result.code


def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    # The example of the Standard Webhooks spec / Svix libraries (secret whsec_MfKQ9r8...).
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    got = signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_signed_delivery_verifies_whatever_the_header_case() -> None:
    headers = {name.upper(): value for name, value in sign(SECRET, "d1", T, BODY).items()}
    assert verify(SECRET, headers, BODY, now=T + 299) == "d1"


def test_missing_or_malformed_headers_are_refused() -> None:
    headers = sign(SECRET, "d1", T, BODY)
    for name in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER):
        partial = {k: v for k, v in headers.items() if k != name}
        assert _code(verify(SECRET, partial, BODY, now=T)) == "missing_header"
    assert _code(verify(SECRET, {**headers, TIMESTAMP_HEADER: "-5"}, BODY, T)) == "bad_timestamp"


def test_timestamps_outside_the_tolerance_are_refused_both_ways() -> None:
    headers = sign(SECRET, "d1", T, BODY)
    assert _code(verify(SECRET, headers, BODY, now=T + 301)) == "too_old"
    assert _code(verify(SECRET, headers, BODY, now=T - 301)) == "too_new"
    assert verify(SECRET, headers, BODY, now=T + 50, tolerance_s=60) == "d1"
    assert _code(verify(SECRET, headers, BODY, now=T + 61, tolerance_s=60)) == "too_old"


def test_a_changed_id_timestamp_body_or_secret_breaks_the_signature() -> None:
    headers = sign(SECRET, "d1", T, BODY)
    assert _code(verify(SECRET, {**headers, ID_HEADER: "d2"}, BODY, T)) == "bad_signature"
    moved = {**headers, TIMESTAMP_HEADER: str(T + 1)}
    assert _code(verify(SECRET, moved, BODY, T)) == "bad_signature"
    assert _code(verify(SECRET, headers, BODY + b" ", T)) == "bad_signature"
    assert _code(verify(b"other", headers, BODY, T)) == "bad_signature"


def test_any_of_several_signatures_may_match_while_a_secret_rotates() -> None:
    headers = sign(SECRET, "d1", T, BODY)
    old = signature(b"old-secret", "d1", T, BODY)
    both = {**headers, SIGNATURE_HEADER: f"{old} {headers[SIGNATURE_HEADER]}"}
    assert verify(SECRET, both, BODY, T) == "d1"
    assert verify(b"old-secret", both, BODY, T) == "d1"


def test_a_repeated_id_is_refused_until_its_latest_signed_copy_is_too_old() -> None:
    seen: dict[str, int] = {}
    assert verify(SECRET, sign(SECRET, "d1", T, BODY), BODY, T, seen_ids=seen) == "d1"
    replay = sign(SECRET, "d1", T, BODY)
    assert _code(verify(SECRET, replay, BODY, T + 10, seen_ids=seen)) == "replayed"
    # A retry of the same delivery, signed later, extends how long the id is remembered.
    retry = sign(SECRET, "d1", T + 200, BODY)
    assert _code(verify(SECRET, retry, BODY, T + 200, seen_ids=seen)) == "replayed"
    assert seen == {"d1": T + 200}
    # A bad signature neither is remembered nor refreshes anything.
    assert _code(verify(SECRET, sign(b"x", "d9", T, BODY), BODY, T, seen_ids=seen)) != "replayed"
    assert "d9" not in seen
    # Past the tolerance the id is forgotten: its copies are refused as too old instead.
    assert _code(verify(SECRET, retry, BODY, T + 501, seen_ids=seen)) == "too_old"
    fresh = sign(SECRET, "d2", T + 501, BODY)
    assert verify(SECRET, fresh, BODY, T + 501, seen_ids=seen) == "d2"
    assert seen == {"d2": T + 501}
