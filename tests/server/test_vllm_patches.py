"""The inventory of vLLM, torch and xgrammar internals (server/vllm_patches.py) is complete, every
entry is still true, and docs/vllm-patches.md is rendered from it.

Completeness is a static scan (tests/server/vllm_surface.py: what it sees and its blind spots)
of the project's packages. Every finding must be one of an entry's `scan` names in one of the
entry's files; every `scan` name of an entry must still be found there (or the entry is stale).
"""

from __future__ import annotations

import importlib
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from server import vllm_patches
from server.vllm_patches import PATCHES
from tests.server.vllm_surface import Finding, scan

ROOT = Path(__file__).parents[2]

NOT_PACKAGES = {"loadtests": "benchmarks: they drive stock vLLM as a contender and patch nothing of it"}
NOT_SCANNED = {"server/vllm_patches.py": "the inventory itself: its strings name the symbols"}
NOT_VLLM = {
    ("server/in_engine/lora_ops/bench.py", "setattr(?)"):
        "the micro-benchmark forces knobs of its own modules (lora_ops.grouped, lora_ops.native)",
}
"""Findings that are not vLLM, torch or xgrammar internals, with the reason."""


def project_packages() -> list[str]:
    """The top-level packages pyproject.toml installs, less NOT_PACKAGES."""
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted(path.name for path in ROOT.iterdir()
                  if (path / "__init__.py").is_file() and path.name not in NOT_PACKAGES
                  and any(fnmatch(path.name, pattern) for pattern in include))


def resolve(dotted: str):
    """The object a dotted name denotes (the longest importable module, then attributes)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(dotted)


@pytest.fixture(scope="module")
def findings() -> list[Finding]:
    found = []
    for finding in scan(ROOT, project_packages()):
        if finding.file in NOT_SCANNED or (finding.file, finding.name) in NOT_VLLM:
            continue
        if finding.kind == "class-private":
            # A private name a vLLM subclass defines: an override of theirs only if they have it.
            owner, _, name = finding.name.rpartition(".")
            if not hasattr(resolve(owner), name):
                continue
        found.append(finding)
    return found


def test_the_scan_covers_server_and_training():
    assert {"server", "training"} <= set(project_packages())


def test_every_touch_of_a_vllm_torch_or_xgrammar_internal_is_in_the_inventory(findings):
    listed = {(file, name) for p in PATCHES for file in p.files for name in p.scan}
    missing = [f for f in findings if (f.file, f.name) not in listed]
    assert not missing, (
        "vLLM/torch/xgrammar internals touched but not in server/vllm_patches.py (add an entry, "
        "or the name to an entry's `scan` and the file to its `files`; then "
        "`python -m server.vllm_patches --write`):\n"
        + "\n".join(f"  {f.file}: {f.name} ({f.kind})" for f in missing))


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.id)
def test_every_entry_is_still_found_where_it_says(findings, patch):
    found = {(f.file, f.name) for f in findings}
    stale = [name for name in patch.scan if not any((file, name) in found for file in patch.files)]
    assert not stale, (f"inventory entry {patch.id}: {stale} no longer found in {patch.files}; "
                       "update or remove the entry in server/vllm_patches.py")
    for file in patch.files:
        assert (ROOT / file).is_file(), f"inventory entry {patch.id}: no file {file}"


def test_entries_are_complete():
    ids = [p.id for p in PATCHES]
    assert len(ids) == len(set(ids))
    for p in PATCHES:
        assert all(kind in vllm_patches.KINDS for kind in p.kind.split(", ")), p.id
        assert p.symbol and p.files and p.process and p.what and p.upstream and p.remove_when \
            and p.contract, p.id


def test_the_docs_page_is_rendered_from_the_inventory():
    page = ROOT / vllm_patches.DOC_PAGE
    assert page.is_file() and page.read_text() == vllm_patches.render(), (
        f"{vllm_patches.DOC_PAGE} differs from server/vllm_patches.py: "
        "run `python -m server.vllm_patches --write`")


def test_every_entry_has_a_contract_test():
    from tests.server import test_vllm_contracts

    assert set(test_vllm_contracts.CONTRACTS) == {p.id for p in PATCHES}


def test_the_tested_versions_are_releases():
    assert vllm_patches.TESTED_VLLM_VERSIONS
    for version in vllm_patches.TESTED_VLLM_VERSIONS:
        assert "+" not in version and all(part.isdigit() for part in version.split("."))


SAMPLE = '''
import os
import torch
from vllm.lora.layers import utils
from vllm.x.base import Base
from torch._private_mod import Thing
import xgrammar

ENV = "VLLM_SOMETHING"


def patch(config: "VllmConfig", layer: torch.Tensor, anything):
    original = utils._get_lora_device
    utils.get_thing = original
    cls = xgrammar.Compiler
    cls.compile = None
    sched = config.scheduler
    sched.limit = 3
    layer._version
    anything._secret
    setattr(anything, "x", 1)
    os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = "1"
    return "vllm.v1.engine.core", "not.a.module"


class Ours(Base):
    _override = 1

    def __init__(self):
        self._mine = 1

    def run(self):
        return self._mine, self._theirs, self._helper()

    def _helper(self):
        return None
'''


def test_the_scan_sees_what_it_claims(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("from vllm.config import VllmConfig\n")
    (tmp_path / "pkg" / "mod.py").write_text("from vllm.config import VllmConfig\n" + SAMPLE)
    found = {(f.name, f.kind) for f in scan(tmp_path, ["pkg"]) if f.file == "pkg/mod.py"}
    assert found == {
        ("vllm.lora.layers.utils._get_lora_device", "private"),
        ("vllm.lora.layers.utils.get_thing", "assigned"),
        ("torch._private_mod.Thing", "private"),
        ("xgrammar.Compiler.compile", "assigned"),
        ("vllm.config.VllmConfig.scheduler.limit", "assigned"),
        ("torch.Tensor._version", "private"),
        ("?._secret", "private"),
        ("setattr(?)", "setattr"),
        ("env:VLLM_SOMETHING", "env"),
        ("env:ONEDNN_PRIMITIVE_CACHE_CAPACITY", "env"),
        ("module:vllm.v1.engine.core", "module"),
        ("subclass:vllm.x.base.Base", "subclass"),
        ("vllm.x.base.Base._override", "class-private"),
        ("vllm.x.base.Base._helper", "class-private"),
        ("vllm.x.base.Base._theirs", "inherited-private"),
    }
