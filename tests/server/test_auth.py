"""API keys: the keys file, grants, constant-time lookup and reloading."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from server import auth
from server.auth import FULL_ACCESS, KeyRing, KeysFileError, parse_keys_file

FILE = """
keys:
  - key: team-a
    adapters: ["team-a-*", "shared"]
    base_model: false
  - sha256: {digest}
    adapters: ["*"]
    manage: true
"""


def keys_file(tmp_path, text=None):
    path = tmp_path / "keys.yaml"
    path.write_text(text or FILE.format(digest=hashlib.sha256(b"admin").hexdigest()))
    return path


def test_grants_follow_the_file(tmp_path):
    ring = KeyRing(plain=["root"], file=keys_file(tmp_path))
    team = ring.grant("team-a")
    assert team.may_use("team-a-sql", "base") and team.may_use("shared", "base")
    assert not team.may_use("team-b-sql", "base") and not team.may_use("base", "base")
    assert not team.manage
    admin = ring.grant("admin")  # stored as a digest only
    assert admin.manage and admin.may_use("anything", "base") and admin.may_use("base", "base")
    assert ring.grant("root") is FULL_ACCESS
    assert ring.grant("nope") is None and ring.grant("") is None


def test_no_keys_means_no_authentication():
    assert not KeyRing().enabled
    assert KeyRing(plain=["k"]).enabled


@pytest.mark.parametrize("text, message", [
    ("keys: [", "not valid YAML"),
    ("other: 1", "top-level `keys:`"),
    ("keys: [{key: a, sha256: 00}]", "exactly one of"),
    ("keys: [{sha256: zz}]", "hex digest"),
    ("keys: [{sha256: abcd}]", "64 hex digits"),
    ("keys: [{key: a, adapters: x}]", "list of names"),
    ("keys: [{key: a, manage: yes please}]", "true or false"),
    ("keys: [{key: a, admin: true}]", "unknown fields"),
])
def test_bad_files_say_where_and_why(text, message):
    with pytest.raises(KeysFileError, match=message):
        parse_keys_file(text)


def test_changes_are_picked_up_and_a_broken_change_keeps_the_old_keys(tmp_path, monkeypatch):
    monkeypatch.setattr(auth, "_RECHECK_SECONDS", 0.0)
    path = keys_file(tmp_path, "keys: [{key: one}]")
    ring = KeyRing(file=path)
    assert ring.grant("one") is not None and ring.grant("two") is None
    path.write_text("keys: [{key: two}]")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime, whatever the clock
    assert ring.grant("two") is not None and ring.grant("one") is None
    path.write_text("keys: [")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert ring.grant("two") is not None


def test_a_broken_file_at_start_is_an_error(tmp_path):
    with pytest.raises(KeysFileError):
        KeyRing(file=keys_file(tmp_path, "keys: ["))
    with pytest.raises(KeysFileError):
        KeyRing(file=tmp_path / "missing.yaml")
