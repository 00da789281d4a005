"""API keys and what each may use: the base model, which adapters, and adapter management.

Keys come from --api-key / SERVER_API_KEY (full access) and from --api-keys-file, a YAML file
that scopes each key (vLLM declines per-key adapter scoping, RFC #12174):

    keys:
      - key: sk-team-a-...            # or `sha256: <hex digest of the key>`, to keep no secret
        adapters: ["team-a-*", "shared-sql"]     # names or glob patterns
        base_model: false             # may it call the base model itself (default true)
        manage: false                 # may it POST / DELETE /v1/adapters (default false)

The file is re-read when it changes (checked at most once a second); a change that does not
parse is logged and the previous keys stay in force. Keys are compared in constant time, as
SHA-256 digests, against every key, so timing reveals neither a key nor which one matched.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

log = logging.getLogger("server")

_RECHECK_SECONDS = 1.0


class KeysFileError(ValueError):
    """The keys file cannot be used as it is (the message says where and why)."""


@dataclass(frozen=True)
class Grant:
    """What one key may do."""

    adapters: tuple[str, ...] = ("*",)
    """Adapter names or glob patterns."""
    base_model: bool = True
    manage: bool = True

    def may_use(self, name: str, base_name: str) -> bool:
        if name == base_name:
            return self.base_model
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.adapters)


FULL_ACCESS = Grant()


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_keys_file(text: str, source: str = "keys file") -> list[tuple[bytes, Grant]]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise KeysFileError(f"{source} is not valid YAML: {exc}") from exc
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise KeysFileError(f"{source} needs a top-level `keys:` list")
    keys = []
    for i, entry in enumerate(entries):
        where = f"{source}, keys[{i}]"
        if not isinstance(entry, dict):
            raise KeysFileError(f"{where}: expected a mapping")
        unknown = set(entry) - {"key", "sha256", "adapters", "base_model", "manage"}
        if unknown:
            raise KeysFileError(f"{where}: unknown fields {sorted(unknown)}")
        if ("key" in entry) == ("sha256" in entry):
            raise KeysFileError(f"{where}: give exactly one of `key` and `sha256`")
        try:
            digest = _digest(str(entry["key"])) if "key" in entry else bytes.fromhex(entry["sha256"])
        except (TypeError, ValueError) as exc:
            raise KeysFileError(f"{where}: `sha256` is not a hex digest") from exc
        if len(digest) != 32:
            raise KeysFileError(f"{where}: `sha256` must be 64 hex digits")
        adapters = entry.get("adapters", [])
        if not isinstance(adapters, list) or not all(isinstance(a, str) for a in adapters):
            raise KeysFileError(f"{where}: `adapters` must be a list of names or patterns")
        flags = {name: entry.get(name, default) for name, default in (("base_model", True),
                                                                      ("manage", False))}
        if not all(isinstance(v, bool) for v in flags.values()):
            raise KeysFileError(f"{where}: `base_model` and `manage` are true or false")
        keys.append((digest, Grant(tuple(adapters), **flags)))
    return keys


@dataclass
class KeyRing:
    """Every accepted key and its grant; no keys at all means no authentication."""

    plain: list[str] = field(default_factory=list)
    """Full-access keys (--api-key, SERVER_API_KEY)."""
    file: Path | None = None
    _scoped: list[tuple[bytes, Grant]] = field(default_factory=list)
    _stamp: tuple[int, int] | None = None  # (mtime_ns, size) of the file as last read
    _checked_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._full = [_digest(k) for k in self.plain]
        if self.file is not None:
            self._reload(strict=True)

    @property
    def enabled(self) -> bool:
        return bool(self._full) or self.file is not None

    def grant(self, key: str) -> Grant | None:
        """The grant of `key`; None when it is no key of ours."""
        self._maybe_reload()
        given = _digest(key)
        found: Grant | None = None
        for digest in self._full:
            if hmac.compare_digest(given, digest):
                found = found or FULL_ACCESS
        for digest, grant in self._scoped:
            if hmac.compare_digest(given, digest):
                found = found or grant
        return found

    def _maybe_reload(self) -> None:
        if self.file is None or time.monotonic() - self._checked_at < _RECHECK_SECONDS:
            return
        with self._lock:
            self._reload(strict=False)

    def _reload(self, strict: bool) -> None:
        self._checked_at = time.monotonic()
        try:
            st = self.file.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return
            self._stamp = stamp  # a broken version is reported once, not every second
            self._scoped = parse_keys_file(self.file.read_text(), str(self.file))
            log.info("API keys: %d from %s", len(self._scoped), self.file)
        except (OSError, KeysFileError) as exc:
            if strict:
                raise KeysFileError(str(exc)) from exc
            log.error("API keys file not reloaded, the previous keys stay in force: %s", exc)
