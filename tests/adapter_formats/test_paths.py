from __future__ import annotations

import os

import pytest

from adapter_formats.paths import UnsafePath, adapter_files, is_valid_name, resolve_inside


@pytest.mark.parametrize("name", ["a", "lora-1", "x.v2", "A_b"])
def test_valid_names(name):
    assert is_valid_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "a/b", "a\\b", "../x", "x\x00",
                                  "-x", "a" * 129, "é"])
def test_invalid_names(name):
    assert not is_valid_name(name)


def test_resolve_inside_refuses_escapes(tmp_path):
    root = tmp_path / "adapters"
    (root / "team" / "a").mkdir(parents=True)
    assert resolve_inside(root, "team/a") == (root / "team" / "a").resolve()
    for bad in ("../x", "team/../../x", "/etc", "", ".", "team/.."):
        with pytest.raises(UnsafePath):
            resolve_inside(root, bad)
    os.symlink(tmp_path, root / "link")
    with pytest.raises(UnsafePath):
        resolve_inside(root, "link")


def test_adapter_files_refuse_symlinked_files(tmp_path):
    root = tmp_path / "adapters"
    (root / "a").mkdir(parents=True)
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    os.symlink(secret, root / "a" / "adapter_config.json")
    with pytest.raises(UnsafePath):
        adapter_files(root / "a", root)
