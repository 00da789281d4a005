"""Which weights serve a request: the base model, a LoRA, a soft prompt, or a LoRA + soft prompt.

`model` names the base model or any adapter; the `soft_prompt` extension field stacks a soft
prompt on top of whatever `model` names (base or LoRA).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from server.adapters.registry import Adapter, AdapterRegistry
from server.errors import APIError, bad_request, model_not_found

if TYPE_CHECKING:
    from server.auth import Grant
    from server.protocol.common import SamplingRequest
    from server.state import ServerState


@dataclass
class Target:
    """The adapters serving one request, held loaded (`registry.acquire`) until `release`."""

    model: str
    registry: AdapterRegistry
    lora: Adapter | None = None
    soft_prompt: Adapter | None = None

    def release(self) -> None:
        self.registry.release(self.lora, self.soft_prompt)

    @property
    def adapter_label(self) -> str:
        return self.lora.name if self.lora else "base"

    @property
    def soft_prompt_label(self) -> str:
        return self.soft_prompt.name if self.soft_prompt else "none"

    def apply_template(self, text: str) -> str:
        """Wrap `text` in the prompt template the adapter was trained with (its manifest's)."""
        for adapter in (self.lora, self.soft_prompt):
            template = ((adapter.manifest or {}).get("prompt_template") or {}).get("template") \
                if adapter else None
            if template:
                return template.replace("{prompt}", text)
        raise bad_request(f"`{self.model}` has no prompt template in its manifest",
                          param="use_adapter_template")

    @property
    def num_virtual_tokens(self) -> int:
        return self.soft_prompt.soft_prompt.num_virtual_tokens if self.soft_prompt else 0


async def resolve_target(
    registry: AdapterRegistry, base_name: str, model: str, soft_prompt: str | None
) -> Target:
    target = Target(model=model, registry=registry)
    if model != base_name:
        adapter = await registry.get(model)
        if adapter.kind == "lora":
            target.lora = adapter
        else:
            target.soft_prompt = adapter
    if soft_prompt is not None:
        if target.soft_prompt is not None:
            raise bad_request(f"`model` {model} is already a soft prompt; `soft_prompt` stacks a "
                              "soft prompt on a LoRA adapter or the base model", param="soft_prompt")
        try:
            adapter = await registry.get(soft_prompt)
        except APIError as exc:
            exc.param = "soft_prompt"
            raise
        if adapter.kind != "soft_prompt":
            raise bad_request(f"`{soft_prompt}` is a {adapter.kind} adapter, not a soft prompt",
                              param="soft_prompt")
        target.soft_prompt = adapter
    registry.acquire(target.lora, target.soft_prompt)
    return target


async def target_for(state: ServerState, request: SamplingRequest, caller: Grant) -> Target:
    """The request's adapters; one its key may not use is as unknown as a missing one (404).
    Pooling requests (no `soft_prompt` field) name only `model`."""
    assert state.registry is not None
    base = state.config.model_name
    soft_prompt = getattr(request, "soft_prompt", None)
    for name, param in ((request.model, "model"), (soft_prompt, "soft_prompt")):
        if name is not None and not caller.may_use(name, base):
            error = model_not_found(name)
            error.param = param
            raise error
    return await resolve_target(state.registry, base, request.model, soft_prompt)
