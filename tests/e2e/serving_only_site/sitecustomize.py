"""Makes this interpreter behave as a serving-only install: the training-only packages are absent.

Put on PYTHONPATH (tests/e2e/test_serving_only.py), so that every interpreter started with that
environment runs it at start-up: the server, and vLLM's engine processes, which inherit it. Each
finder on sys.meta_path is wrapped so that it finds no module of a hidden package and no
distribution of one: `import datasets` raises ModuleNotFoundError, `importlib.util.find_spec`
returns None and `importlib.metadata.version` raises PackageNotFoundError, as they do where the
package was never installed. Attempts are appended to $ADAPTER_SERVE_HIDDEN_LOG, if set.
"""

from __future__ import annotations

import os
import re
import sys

HIDDEN_MODULES = frozenset(os.environ.get(
    "ADAPTER_SERVE_HIDDEN_MODULES",
    "training,trl,datasets,pyarrow,bitsandbytes,sklearn,matplotlib").split(","))
HIDDEN_DISTRIBUTIONS = frozenset(os.environ.get(
    "ADAPTER_SERVE_HIDDEN_DISTRIBUTIONS",
    "trl,datasets,pyarrow,bitsandbytes,scikit-learn,matplotlib").split(","))
_LOG = os.environ.get("ADAPTER_SERVE_HIDDEN_LOG")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _hidden_distribution(dist) -> bool:
    path = getattr(dist, "_path", None)  # .../datasets-5.2.0.dist-info: no need to read METADATA
    name = path.name.partition("-")[0] if path is not None and path.suffix in (".dist-info", ".egg-info") \
        else (dist.metadata["Name"] or "")
    return _normal(name) in HIDDEN_DISTRIBUTIONS


def _note(name: str) -> None:
    if _LOG:
        with open(_LOG, "a") as f:
            f.write(f"{os.getpid()} {name}\n")


class _Hiding:
    def __init__(self, finder) -> None:
        self._finder = finder

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in HIDDEN_MODULES:
            _note(fullname)
            return None
        return self._finder.find_spec(fullname, path, target)

    def find_distributions(self, *args, **kwargs):
        find = getattr(self._finder, "find_distributions", None)
        if find is None:
            return iter(())
        return (d for d in find(*args, **kwargs) if not _hidden_distribution(d))

    def invalidate_caches(self) -> None:
        invalidate = getattr(self._finder, "invalidate_caches", None)
        if invalidate is not None:
            invalidate()

    def __getattr__(self, name):
        return getattr(self._finder, name)

    def __repr__(self) -> str:
        return f"<hiding {sorted(HIDDEN_MODULES)} from {self._finder!r}>"


sys.meta_path[:] = [f if isinstance(f, _Hiding) or not hasattr(f, "find_spec") else _Hiding(f)
                    for f in sys.meta_path]
