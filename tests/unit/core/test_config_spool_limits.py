"""Cross-field checks between the body limit, the spool's frame limit and the spool's size
(issues 26.2 and 26.11): every record that can be acknowledged can be spooled and read back."""

from __future__ import annotations

import pytest

from bridge.core.config import Settings
from bridge.core.errors import ConfigError
from bridge.core.limits import SPOOL_FRAME_LIMIT, largest_record

MiB = 1024 * 1024


def problems(**env: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    return list(info.value.problems)


def test_defaults_pass() -> None:
    settings = Settings.from_env({})
    assert largest_record(settings.ingress.max_body_bytes) <= SPOOL_FRAME_LIMIT
    assert largest_record(settings.ingress.max_body_bytes) <= settings.spool.max_bytes


def test_a_body_limit_whose_records_pass_the_frame_limit_is_refused() -> None:
    """The review's case: a 40 MiB body limit makes records the spool's scan cannot read."""
    found = problems(BRIDGE_MAX_BODY_BYTES=str(40 * MiB))
    assert len(found) == 1
    assert found[0].startswith("BRIDGE_MAX_BODY_BYTES:")
    assert "frame" in found[0]


def test_the_largest_accepted_body_limit_fits_and_one_more_byte_does_not() -> None:
    limit = next(
        b for b in range(SPOOL_FRAME_LIMIT // 6, 0, -1) if largest_record(b) <= SPOOL_FRAME_LIMIT
    )
    Settings.from_env({"BRIDGE_MAX_BODY_BYTES": str(limit), "BRIDGE_SPOOL_MAX_BYTES": str(1024**3)})
    assert problems(BRIDGE_MAX_BODY_BYTES=str(limit + 1))


def test_a_spool_smaller_than_the_largest_record_is_refused() -> None:
    found = problems(BRIDGE_MAX_BODY_BYTES=str(4 * MiB), BRIDGE_SPOOL_MAX_BYTES=str(8 * MiB))
    assert [p.split(":")[0] for p in found] == ["BRIDGE_SPOOL_MAX_BYTES"]
    assert "BRIDGE_MAX_BODY_BYTES" in found[0]


def test_a_small_spool_with_a_small_body_limit_passes() -> None:
    Settings.from_env({"BRIDGE_MAX_BODY_BYTES": "131072", "BRIDGE_SPOOL_MAX_BYTES": str(MiB)})
