"""A local stand-in for the Spotler Message API v3 (``bridge simulator``), an aiohttp adapter.

Owns the simulated platform: every ``/v3`` endpoint of the Spotler API v3 reference (send
messages, conversations, webhooks, keys, channels, templates; 501 for the rest) with scoped API
keys and the reference's error format, webhook emission with retries, fault injection, and the
unauthenticated ``/_sim`` admin endpoints for tests. It is an independent witness: its rules are
the reference's, transcribed in ``rules`` (with every assumption in ``rules.ASSUMPTIONS``), and
it imports nothing of the bridge's core, contract or directions (an import-linter
contract). Modules by role: ``rules`` (data), ``checks`` (applying them),
``keys``, ``settings``, ``state``, ``responses``, ``faults``, ``events`` (webhook bodies),
``emitter`` (outbound HTTP), ``api``, ``webhooks_api``, ``catalog`` (routes and the read-only
endpoints), ``admin``, ``middleware``, and ``app`` (composition root).
"""

from bridge.simulator.app import make_simulator_app, run_simulator
from bridge.simulator.settings import SimulatorConfigError, SimulatorSettings

__all__ = ["SimulatorConfigError", "SimulatorSettings", "make_simulator_app", "run_simulator"]
