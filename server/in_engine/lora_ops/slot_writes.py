"""Which adapter slots vLLM wrote into its stacked LoRA weights, so that what the grouped ops
derive from those weights (grouped.py: stacked copies, the native kernel's packed copies) is
patched for those slots instead of rebuilt for all of them.

vLLM writes an adapter into slot `index` of every LoRA layer when it activates it
(`LoRAModelManager.activate_adapter`: `set_lora` / `reset_lora` per module), which bumps each
stacked tensor's version counter. The derived copies are keyed on those counters; alone, a new
counter says only that *something* changed, and rebuilding every slot's copies costs time and
memory in proportion to the slots (with 256 slots on the bench model: ~0.2 s and tens of MiB of
allocator churn per adapter swap, where vLLM's own load takes 6 ms). The wrapper below logs, per
tensor, each activation's version before and after and the slot it wrote. A copy at version v is
brought to the current version by re-deriving the logged slots only when the log accounts for
every change since v; any write it did not see (vLLM's start-up, a resize) breaks the chain and
the copy is rebuilt whole, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from server.vllm_patches import PATCH_MARK, mark

_LOG_ATTR = "_adapter_serve_slot_writes"
MAX_LOG = 1024
"""Entries kept per tensor: copies further behind are rebuilt whole."""


def stacked_tensors(manager) -> list[torch.Tensor]:
    """Every stacked LoRA weight of the manager's modules (A and B of each slice)."""
    found = []
    for module in manager.modules.values():
        for name in ("lora_a_stacked", "lora_b_stacked"):
            value = getattr(module, name, None)
            found += [value] if isinstance(value, torch.Tensor) else [t for t in value or ()
                                                                       if isinstance(t, torch.Tensor)]
    return found


def _log(tensor: torch.Tensor) -> list[tuple[int, int, int]]:
    """The tensor's own log of (version before, version after, slot), kept on the tensor."""
    log = getattr(tensor, _LOG_ATTR, None)
    if log is None:
        log = []
        setattr(tensor, _LOG_ATTR, log)
    return log


def record(tensors: Sequence[torch.Tensor], before: Sequence[int], slot: int) -> None:
    for tensor, version in zip(tensors, before):
        after = tensor._version
        if after == version:
            continue
        log = _log(tensor)
        log.append((version, after, slot))
        if len(log) > MAX_LOG:
            del log[:len(log) - MAX_LOG]


def since(tensors: Sequence[torch.Tensor], versions: Sequence[int]) -> set[int] | None:
    """The slots written in `tensors` since they were at `versions`, or None when some change
    since then is not in the log."""
    slots: set[int] = set()
    for tensor, version in zip(tensors, versions):
        for before, after, slot in getattr(tensor, _LOG_ATTR, ()):
            if after <= version:
                continue  # accounted for already
            if before != version:
                return None  # a write between `version` and this one that was not logged
            slots.add(slot)
            version = after
        if version != tensor._version:
            return None
    return slots


def logging_activations(original):
    """vLLM's `LoRAModelManager.activate_adapter`, logging the slot it writes."""
    if getattr(original, PATCH_MARK, None):
        return original

    def activate_adapter(self, lora_id: int) -> bool:
        if lora_id in self.lora_index_to_id:  # already in a slot: vLLM writes nothing (every step)
            return original(self, lora_id)
        tensors = stacked_tensors(self)
        before = [t._version for t in tensors]
        result = original(self, lora_id)
        if lora_id in self.lora_index_to_id:
            record(tensors, before, self.lora_index_to_id.index(lora_id))
        return result

    return mark("lora-slot-writes", activate_adapter, original)
