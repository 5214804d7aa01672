"""The deployment's channel JIDs as ingress knows them: one value, replaced whole.

Owns nothing but the holder: ``BRIDGE_CHANNELS`` fills it once, or the composition root
(:mod:`bridge.runtime.channel_list`) refreshes it from the platform's ``GET /channels``.
Normalization reads :attr:`ChannelSet.jids` per delivery and is told the set, never fetches it.
Empty means unknown: the inference rules of :mod:`bridge.ingress.normalize` apply alone.
"""

from __future__ import annotations

from collections.abc import Iterable


class ChannelSet:
    """The channel JIDs; :meth:`replace` swaps the whole set at once (no partial state)."""

    __slots__ = ("jids",)

    def __init__(self, jids: Iterable[str] = ()) -> None:
        self.jids: frozenset[str] = frozenset(jids)

    def replace(self, jids: Iterable[str]) -> bool:
        """Set the channels; True when they changed."""
        new = frozenset(jids)
        changed = new != self.jids
        self.jids = new
        return changed
