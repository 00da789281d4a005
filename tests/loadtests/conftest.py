"""Run the Locust smoke test last: it is the heaviest user of the session's one server, and if it
ever kills the engine again (see test_locust_smoke.py) the other tests still get a live one."""

from __future__ import annotations


def pytest_collection_modifyitems(session, config, items):
    smoke = [item for item in items if item.nodeid.startswith("tests/loadtests/test_locust_smoke.py")]
    if smoke:
        items[:] = [item for item in items if item not in smoke] + smoke
