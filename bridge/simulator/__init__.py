"""A local stand-in for the Spotler Message API v3 (``bridge simulator``), an aiohttp adapter.

Owns the simulated platform: the ``/v3`` send-message, conversation and webhook endpoints with
the reference's auth and error format, webhook emission with retries, fault injection, and the
unauthenticated ``/_sim`` admin endpoints for tests. Modules by role: ``settings``, ``state``,
``responses``, ``faults``, ``events`` (webhook bodies), ``emitter`` (outbound HTTP), ``api``,
``webhooks_api``, ``admin``, ``middleware``, and ``app`` (composition root).
"""

from bridge.simulator.app import make_simulator_app, run_simulator
from bridge.simulator.settings import SimulatorSettings

__all__ = ["SimulatorSettings", "make_simulator_app", "run_simulator"]
