"""Shared fixtures: small communities and the repository's paths."""

import os
import random
from decimal import Decimal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def community_dict(households=4, slots=8, seed=1, cycle_id=7):
    """A community in `pbill simulate`'s JSON shape, values with at most 3
    decimals (exact in Wh), some ids integers as in the Python original."""
    rng = random.Random(seed)

    def kwh():
        return round(rng.uniform(-3, 3), 3)

    return {
        "cycle_id": cycle_id,
        "prices": {
            "trading": [round(rng.uniform(0.15, 0.30), 4) for _ in range(slots)],
            "retail": [round(rng.uniform(0.30, 0.45), 4) for _ in range(slots)],
            "feed_in": [round(rng.uniform(0.02, 0.08), 4) for _ in range(slots)],
        },
        "households": [
            {
                "id": (f"house-{i:03}" if i % 2 else i),
                "promises_kwh": [kwh() for _ in range(slots)],
                "actual_kwh": [kwh() for _ in range(slots)],
            }
            for i in range(households)
        ],
    }


@pytest.fixture
def community():
    return community_dict()


def exact(x):
    """The value as a Decimal with 8 decimals (how bills come back)."""
    return Decimal(x).quantize(Decimal("0.00000001"))


def pytest_sessionfinish(session, exitstatus):
    """Under PB_NO_SKIPS=1 (CI), a skipped test fails the run: a skip is
    not a pass."""
    if os.environ.get("PB_NO_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped or session.testscollected == 0:
        print(f"\nerror: {len(skipped)} test(s) skipped or none collected (PB_NO_SKIPS=1)")
        session.exitstatus = 1
