"""The set of servable adapters, discovered from the adapters directory on demand.

Hot-loading without a watcher: every lookup stats the adapter's two files (cheap) and compares
that fingerprint with the version it has. A new fingerprint means a new version: the files are
copied into a private snapshot, validated there, and served under a fresh engine LoRA id. The
engine only ever reads snapshots, so a half-written or later-modified adapter directory can never
reach it after validation. A superseded or deleted version is unloaded from the engine once its
last in-flight request has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from vllm.lora.request import LoRARequest

from adapter_formats import paths
from adapter_formats.manifest import mismatch as manifest_mismatch
from adapter_formats.servable import LORA, AdapterInvalid, LoraSpec, validate_lora
from server.adapters.base_model import BaseModelInfo
from server.errors import APIError, model_not_found

log = logging.getLogger(__name__)

Fingerprint = tuple[Any, ...]


def engine_lora_name(name: str, version: int) -> str:
    """What the engine calls a version of adapter `name` (each version is its own engine LoRA)."""
    return f"{name}.v{version}"


def adapter_name(lora_name: str) -> str:
    """The adapter name clients send in `model`, from an engine LoRA name (others unchanged)."""
    name, dot_v, version = lora_name.rpartition(".v")
    return name if dot_v and name and version.isdigit() else lora_name


class LoraEngine(Protocol):
    async def add_lora(self, lora_request: LoRARequest) -> bool: ...
    async def remove_lora(self, lora_id: int) -> bool: ...
    async def pin_lora(self, lora_id: int) -> bool: ...


@dataclass
class Adapter:
    """One validated version of one adapter."""

    name: str
    kind: Literal["lora", "soft_prompt"]
    source: Path
    snapshot: Path
    fingerprint: Fingerprint
    version: int
    loaded_at: int
    lora: LoraSpec | None = None
    lora_request: LoRARequest | None = None
    soft_prompt: Any = None  # SoftPrompt, set for kind == "soft_prompt"
    manifest: dict | None = None
    in_flight: int = 0
    retired: bool = False
    in_engine: bool = False
    pinned: bool = False
    """Held in an engine slot for good (never evicted) since it was loaded into the engine."""


@dataclass
class _Failure:
    fingerprint: Fingerprint
    error: APIError


@dataclass
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    current: Adapter | None = None
    failure: _Failure | None = None
    hidden_at: Fingerprint | None = None  # DELETEd while its files had this fingerprint


class AdapterRegistry:
    def __init__(
        self,
        root: Path,
        base: BaseModelInfo,
        engine: LoraEngine,
        *,
        max_lora_rank: int,
        soft_prompt_loader: Any = None,
        metrics: Any = None,
        runner: str = "generate",
        pooling_task: str | None = None,
        extra_roots: tuple[Path, ...] = (),
        pinned: Iterable[str] = (),
        max_pinned: int = 0,
        residency: Any = None,
    ) -> None:
        """`runner`, `pooling_task`: what the engine runs, which adapter manifests must match.
        `extra_roots`: directories besides `root` that `register` may serve adapters from (an RL
        trainer's output folder); they are never scanned, only registered names come from them.
        `pinned`: LoRA names kept in an engine slot once loaded (--pin-adapters), besides those
        whose manifest says `"pinned": true`; at most `max_pinned` at a time (the slots less one,
        so that every other adapter still has one). `residency`: server.metrics.LoraResidency,
        told how long each load into the engine took."""
        self.root = root.resolve()
        self.roots = (self.root, *(r.resolve() for r in extra_roots))
        self.base = base
        self.engine = engine
        self.max_lora_rank = max_lora_rank
        self.soft_prompt_loader = soft_prompt_loader
        self.metrics = metrics
        self.runner = runner
        self.pooling_task = pooling_task
        self._snapshots = Path(tempfile.mkdtemp(prefix="adapter-snapshots-"))
        self._ids = itertools.count(1)
        self._slots: dict[str, _Slot] = {}
        # name -> (one of `roots`, path relative to it), for POST /v1/adapters and vLLM's
        # /v1/load_lora_adapter; other names are folders of `root`.
        self._registered: dict[str, tuple[Path, str]] = {}
        self._unloading: set[asyncio.Task] = set()  # asyncio keeps only weak references
        self.pinned = frozenset(pinned)
        self.max_pinned = max_pinned
        self.residency = residency

    # ---- lookup -------------------------------------------------------------------------

    def _place(self, name: str) -> tuple[Path, str]:
        return self._registered.get(name, (self.root, name))

    def _source(self, name: str) -> Path:
        return paths.resolve_inside(*self._place(name))

    def _fingerprint(self, directory: Path, root: Path) -> Fingerprint | None:
        """Identity of the files now on disk; None when there is no adapter there."""
        try:
            config, weights = paths.adapter_files(directory, root)
        except paths.UnsafePath as exc:
            return ("unsafe", str(exc))
        stats = []
        for f in (config, weights, directory / paths.MANIFEST_FILE):
            try:
                st = f.stat()
                stats.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except FileNotFoundError:
                stats.append(None)
            except OSError as exc:
                return ("unreadable", str(exc))
        if stats[0] is None:
            return None
        return tuple(stats)

    def _locate(self, name: str) -> tuple[Path, Fingerprint, _Slot]:
        """Where adapter `name`'s files are and their fingerprint; 404 when there are none
        (or they are hidden by a DELETE), retiring any version that was served."""
        if not paths.is_valid_name(name):
            raise model_not_found(name)
        try:
            directory = self._source(name)
        except paths.UnsafePath as exc:
            raise APIError(400, f"adapter `{name}`: {exc}", param="model") from exc
        fingerprint = self._fingerprint(directory, self._place(name)[0])
        slot = self._slots.get(name)
        if fingerprint is None or (slot is not None and slot.hidden_at == fingerprint):
            if slot is not None:
                self._retire(slot)
            raise model_not_found(name)
        # Only names with files on disk get a slot: requests for made-up names cost no memory.
        slot = self._slots.setdefault(name, _Slot())
        slot.hidden_at = None
        return directory, fingerprint, slot

    async def get(self, name: str, *, for_request: bool = True) -> Adapter:
        """The current version of adapter `name`, loading or reloading it if its files changed.

        Raises 404 when there is no such adapter and 400 when it exists but cannot be served.
        """
        directory, fingerprint, slot = self._locate(name)
        if slot.current is None or slot.current.fingerprint != fingerprint:
            async with slot.lock:
                if slot.current is None or slot.current.fingerprint != fingerprint:
                    await self._load(name, directory, fingerprint, slot)
        adapter = slot.current
        assert adapter is not None
        if for_request and adapter.lora_request is not None and not adapter.in_engine:
            async with slot.lock:
                if not adapter.in_engine:
                    await self._load_into_engine(adapter)
        return adapter

    async def _load(self, name: str, directory: Path, fingerprint: Fingerprint, slot: _Slot) -> None:
        if slot.failure is not None and slot.failure.fingerprint == fingerprint:
            raise slot.failure.error
        started = time.perf_counter()
        try:
            adapter = await asyncio.to_thread(self._snapshot_and_validate, name, directory, fingerprint)
        except APIError as exc:
            slot.failure = _Failure(fingerprint, exc)
            if self.metrics:
                self.metrics.adapter_load_failures.labels(adapter=name).inc()
            log.warning("adapter %s refused: %s", name, exc.message)
            raise
        slot.failure = None
        self._retire(slot, successor=adapter)
        if self.metrics:
            self.metrics.adapter_load_seconds.labels(kind=adapter.kind).observe(
                time.perf_counter() - started)
            self.metrics.adapters_loaded.set(self._count_current())
        log.info("adapter %s v%d (%s) ready from %s", name, adapter.version, adapter.kind, directory)

    def _snapshot_and_validate(self, name: str, directory: Path, fingerprint: Fingerprint) -> Adapter:
        def invalid(reason: str) -> APIError:
            return APIError(400, f"adapter `{name}` cannot be served: {reason}", param="model",
                            code="invalid_adapter")

        if fingerprint[0] in ("unsafe", "unreadable"):
            raise invalid(fingerprint[1])
        root = self._place(name)[0]
        config_file, weights_file = paths.adapter_files(directory, root)
        if not weights_file.is_file():
            unsafe = [f for f in paths.UNSAFE_WEIGHTS if (directory / f).exists()]
            if unsafe:
                raise invalid(f"only safetensors weights are read; found {unsafe[0]}, "
                              f"expected {paths.WEIGHTS_FILE}")
            raise invalid(f"{paths.WEIGHTS_FILE} is missing")

        version = next(self._ids)
        snapshot = self._snapshots / f"{name}.v{version}"
        snapshot.mkdir()
        try:
            shutil.copyfile(config_file, snapshot / paths.CONFIG_FILE)
            shutil.copyfile(weights_file, snapshot / paths.WEIGHTS_FILE)
            manifest_file = directory / paths.MANIFEST_FILE
            manifest = None
            if manifest_file.is_file() and manifest_file.resolve().is_relative_to(root):
                shutil.copyfile(manifest_file, snapshot / paths.MANIFEST_FILE)
                manifest = _read_json(snapshot / paths.MANIFEST_FILE, "manifest.json", invalid)
                reason = manifest_mismatch(manifest, self.base.accepted_identities, self.runner,
                                           self.pooling_task)
                if reason:
                    raise invalid(reason)
            config = _read_json(snapshot / paths.CONFIG_FILE, paths.CONFIG_FILE, invalid)
            adapter = Adapter(
                name=name, kind="lora", source=directory, snapshot=snapshot,
                fingerprint=fingerprint, version=version, loaded_at=int(time.time()),
                manifest=manifest,
            )
            peft_type = str(config.get("peft_type", "")).upper()
            weights = snapshot / paths.WEIGHTS_FILE
            if peft_type == LORA:
                adapter.lora = validate_lora(config, weights, self.base.linear_shapes, self.max_lora_rank)
                adapter.lora_request = LoRARequest(
                    lora_name=engine_lora_name(name, version), lora_int_id=version,
                    lora_path=str(snapshot))
            elif self.soft_prompt_loader is not None and self.soft_prompt_loader.handles(peft_type):
                adapter.kind = "soft_prompt"
                adapter.soft_prompt = self.soft_prompt_loader.load(config, weights, self.base)
            else:
                served = "LORA, PROMPT_TUNING and P_TUNING" if self.soft_prompt_loader else (
                    "LORA (soft prompts need --runner generate)" if self.runner != "generate"
                    else "LORA")
                raise AdapterInvalid(f"peft_type {peft_type or '(missing)'} is not servable; "
                                     f"this server serves {served}")
            return adapter
        except AdapterInvalid as exc:
            shutil.rmtree(snapshot, ignore_errors=True)
            raise invalid(str(exc)) from exc
        except APIError:
            shutil.rmtree(snapshot, ignore_errors=True)
            raise
        except OSError as exc:
            shutil.rmtree(snapshot, ignore_errors=True)
            raise invalid(f"files could not be read ({exc.strerror or exc})") from exc

    async def _load_into_engine(self, adapter: Adapter) -> None:
        # vLLM would load lazily at the first request anyway; loading here turns a file the
        # engine rejects into a 400 for this request instead of a failure inside a batch.
        started = time.perf_counter()
        try:
            await self.engine.add_lora(adapter.lora_request)
        except Exception as exc:  # the engine reports bad adapters with assorted types
            raise APIError(400, f"adapter `{adapter.name}` was refused by the engine: {exc}",
                           param="model", code="invalid_adapter") from exc
        if self.residency is not None:
            self.residency.observe_load(time.perf_counter() - started)
        adapter.in_engine = True
        if self._wants_pin(adapter):
            # vLLM pins in its host cache and in a slot (loading it into one now); an unpinned
            # version is then never evicted for it, and unloading it unpins it.
            await self.engine.pin_lora(adapter.lora_request.lora_int_id)
            adapter.pinned = True

    def _wants_pin(self, adapter: Adapter) -> bool:
        if adapter.name not in self.pinned and (adapter.manifest or {}).get("pinned") is not True:
            return False
        held = sum(1 for a in self.engine_loras().values() if a.pinned and a.name != adapter.name)
        if held >= self.max_pinned:
            log.warning("adapter %s is not pinned: %d adapters already hold the %d slots that "
                        "may be pinned (one slot stays free for the others)",
                        adapter.name, held, self.max_pinned)
            return False
        return True

    async def load_pinned(self) -> None:
        """Load into the engine and pin, at start-up, every adapter --pin-adapters names (a
        ValueError if there are too many or one cannot be served) and every adapter of the
        adapters directory whose manifest says `"pinned": true` (one that cannot be served is
        logged and left)."""
        if len(self.pinned) > self.max_pinned:
            raise ValueError(f"--pin-adapters names {len(self.pinned)} adapters; at most "
                             f"{self.max_pinned} can be pinned (the LoRA slots less one: raise "
                             "--max-loras)")
        for name in sorted(self.pinned):
            try:
                adapter = await self.get(name)
            except APIError as exc:
                raise ValueError(f"--pin-adapters: {exc.message}") from exc
            if adapter.lora_request is None:
                raise ValueError(f"--pin-adapters: `{name}` is a {adapter.kind}, not a LoRA "
                                 "(soft prompts stay in the server's memory anyway)")
        for name in self.names():
            if name in self.pinned or not _manifest_pins(self.root / name):
                continue
            try:
                await self.get(name)
            except APIError as exc:
                log.warning("adapter %s (pinned by its manifest) not loaded: %s", name, exc.message)

    def engine_loras(self) -> dict[int, Adapter]:
        """The current version of every LoRA served, by its engine LoRA id (whether or not the
        engine holds it now)."""
        return {s.current.lora_request.lora_int_id: s.current for s in self._slots.values()
                if s.current is not None and s.current.lora_request is not None}

    # ---- in-flight accounting and retirement --------------------------------------------

    def acquire(self, *adapters: Adapter | None) -> None:
        """Keep these versions loaded until `release`, even if superseded meanwhile."""
        for a in adapters:
            if a is not None:
                a.in_flight += 1

    def release(self, *adapters: Adapter | None) -> None:
        for a in adapters:
            if a is not None:
                a.in_flight -= 1
                if a.retired and a.in_flight == 0:
                    self._release(a)

    def _retire(self, slot: _Slot, successor: Adapter | None = None) -> None:
        """Replace the slot's version by `successor` (None: the name is no longer served)."""
        old, slot.current = slot.current, successor
        if old is None:
            return
        old.retired = True
        if old.in_flight == 0:
            self._release(old)
        if self.metrics:
            self.metrics.adapters_loaded.set(self._count_current())

    def _release(self, adapter: Adapter) -> None:
        shutil.rmtree(adapter.snapshot, ignore_errors=True)
        if adapter.in_engine:
            adapter.in_engine = False
            task = asyncio.ensure_future(self.engine.remove_lora(adapter.lora_request.lora_int_id))
            self._unloading.add(task)
            task.add_done_callback(self._unloaded)
        slot = self._slots.get(adapter.name)
        if self.metrics and (slot is None or slot.current is None):
            self.metrics.forget(adapter.name)  # the name is no longer served

    def _unloaded(self, task: asyncio.Task) -> None:
        self._unloading.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("unloading an old adapter version failed: %s", task.exception())

    def _count_current(self) -> int:
        return sum(1 for s in self._slots.values() if s.current is not None)

    # ---- listing and management ---------------------------------------------------------

    def names(self) -> list[str]:
        found = set(self._registered)
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.root):
                if paths.is_valid_name(entry.name) and entry.is_dir():
                    found.add(entry.name)
        return sorted(found)

    async def list(self) -> list[tuple[str, Adapter | APIError]]:
        """Every adapter name with its current version or the reason it cannot be served."""
        out: list[tuple[str, Adapter | APIError]] = []
        for name in self.names():
            try:
                out.append((name, await self.get(name, for_request=False)))
            except APIError as exc:
                if exc.status != 404:
                    out.append((name, exc))
        return out

    def serves(self, name: str) -> bool:
        """Whether `name` is registered or is a folder of the adapters directory with an adapter
        in it (served or not: one that cannot be served still takes the name)."""
        if name in self._registered:
            return True
        return paths.is_valid_name(name) and (self.root / name / paths.CONFIG_FILE).is_file()

    def _placed(self, path: str) -> tuple[Path, str]:
        """(root, relative path) of an adapter directory given relative to the adapters
        directory, or absolute inside it or inside one of the extra roots."""
        if not os.path.isabs(path) or "\x00" in path:
            return self.root, path  # resolve_inside refuses it with the reason
        resolved = Path(path).resolve()
        for root in self.roots:
            if resolved != root and resolved.is_relative_to(root):
                return root, str(resolved.relative_to(root))
        raise paths.UnsafePath(f"adapter path {path!r} is outside the adapters directory"
                               + (" and the --lora-roots directories" if len(self.roots) > 1 else
                                  " (start the server with --lora-roots DIR to allow another)"))

    async def register(self, name: str, path: str | None) -> Adapter:
        """Serve the adapter at `path` (default: the folder `name`) under `name`."""
        if not paths.is_valid_name(name):
            raise APIError(400, f"invalid adapter name {name!r}: use letters, digits, '.', '_' "
                           "and '-', starting with a letter or digit", param="name")
        path = path or name
        try:
            root, relative = self._placed(path)
            directory = paths.resolve_inside(root, relative)
        except paths.UnsafePath as exc:
            raise APIError(400, str(exc), param="path") from exc
        if not (directory / paths.CONFIG_FILE).is_file():
            raise APIError(404, f"no adapter at {path!r} (no {paths.CONFIG_FILE})",
                           param="path")
        owner = self.root / name
        if name not in self._registered and owner.is_dir() and owner.resolve() != directory:
            raise APIError(409, f"adapter name `{name}` is taken by the directory {name}/",
                           param="name")
        previous = self._registered.get(name)
        self._registered[name] = (root, str(directory.relative_to(root)))
        slot = self._slots.setdefault(name, _Slot())
        slot.hidden_at = None
        try:
            return await self.get(name)
        except APIError:
            if previous is None:
                self._registered.pop(name, None)
            else:
                self._registered[name] = previous
            raise

    async def unregister(self, name: str) -> None:
        """Stop serving `name`. A registered name is forgotten; a discovered directory stays
        hidden until its files change (a newly published version is served again)."""
        _, fingerprint, slot = self._locate(name)
        registered = self._registered.pop(name, None) is not None
        if not registered:
            slot.hidden_at = fingerprint
        slot.failure = None
        self._retire(slot)
        if registered:  # nothing left to remember about the name (a folder's stays hidden)
            self._slots.pop(name, None)

    def close(self) -> None:
        shutil.rmtree(self._snapshots, ignore_errors=True)


def _manifest_pins(directory: Path) -> bool:
    """Whether the manifest in `directory` (if any) says `"pinned": true`; unreadable is no."""
    file = directory / paths.MANIFEST_FILE
    try:
        if not file.resolve().is_relative_to(directory.resolve().parent):  # as the snapshot reads it
            return False
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(manifest, dict) and manifest.get("pinned") is True


def _read_json(path: Path, label: str, invalid) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid(f"{label} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise invalid(f"{label} must hold a JSON object")
    return data
