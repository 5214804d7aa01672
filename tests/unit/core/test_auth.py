"""The bearer-token check (the design's ingress step 1), with headers a hostile sender sends."""

from __future__ import annotations

import pytest

from bridge.core.auth import authorized, bearer_token
from bridge.core.parsers import Secret

TOKENS = (Secret("new-token-0123456789"), Secret("old-token-0123456789"))


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("Bearer new-token-0123456789", True),
        ("Bearer old-token-0123456789", True),  # every configured token works: rotation
        ("bearer new-token-0123456789", True),  # the scheme is case-insensitive (RFC 7235)
        ("Bearer  new-token-0123456789 ", True),
        ("Bearer new-token-012345678", False),  # a prefix is not the token
        ("Bearer new-token-01234567890", False),
        ("Basic new-token-0123456789", False),
        ("new-token-0123456789", False),
        ("Bearer ", False),
        ("", False),
        ("Bearer n\u00e9w-token", False),  # non-ASCII: no match, no exception
        ("Bearer \udcff\udcfe", False),  # undecodable bytes as surrogates: no exception
        ("Bearer new-token-0123456789\x0b", True),  # strip() removes the vertical tab
    ],
)
def test_authorized(header: str, accepted: bool) -> None:
    assert authorized(header, TOKENS) is accepted


def test_no_tokens_accept_nothing() -> None:
    assert not authorized("Bearer anything", ())


def test_bearer_token_extracts_the_token() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("Token abc") is None
