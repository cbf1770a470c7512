"""The demo: synthetic support-bot intents and the 90-day replay through the real engine.

Imported by the ``demo`` command, the tests and the benchmarks; never by the serving or
deploy path (``engine/`` knows nothing of these phrases).

- :mod:`demo.intents`: :class:`~demo.intents.IntentGenerator`, seeded queries of an online shop.
- :mod:`demo.replay`: :func:`~demo.replay.build_demo`, the replay into a data directory.
"""

from demo.intents import INTENTS, IntentGenerator
from demo.replay import DemoSummary, build_demo

__all__ = ["INTENTS", "DemoSummary", "IntentGenerator", "build_demo"]
