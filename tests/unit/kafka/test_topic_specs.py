"""The topic settings ``bridge topics ensure`` wants (issue 26, item 11): ``min.insync.replicas``.

With ``acks=all`` the broker acknowledges once every in-sync replica has the record; with the
broker default ``min.insync.replicas=1`` that can be the leader alone, so an acknowledged record
is lost with the leader's disk. Issue 26: with replication 3 it should be 2; generally
``min(2, rf)`` for rf > 1 (our inference, documented in README "Topics and records"), and the
broker's default for a single copy (2 could never be met).
"""

from __future__ import annotations

import pytest

from bridge.core.config import Settings
from bridge.kafka.topics import wanted


@pytest.mark.parametrize(("replication", "expected"), [(1, None), (2, 2), (3, 2), (5, 2)])
def test_every_topic_wants_min_insync_two_once_there_are_two_copies(
    replication: int, expected: int | None
) -> None:
    settings = Settings.from_env({"BRIDGE_TOPIC_REPLICATION": str(replication)})
    specs = wanted(settings)
    assert len(specs) == 19  # DESIGN.md's topic table (18) and the send log (docs/status.md)
    assert {s.min_insync for s in specs} == {expected}
