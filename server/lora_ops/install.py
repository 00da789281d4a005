"""Switch vLLM's CPU platform to the grouped LoRA ops (called from `server.vllm_plugin`).

Acts only when the current platform is CPU: CUDA and other accelerators keep their own punica
kernels. vLLM picks the wrapper by qualified name from the platform, so pointing the CPU
platform at our subclass is the whole change.
"""

from __future__ import annotations

import os

ENABLE_ENV = "ADAPTER_SERVE_FAST_LORA_OPS"
"""Set to 1 by server.engine when ServerConfig.fast_lora_ops is on."""

WRAPPER = "server.lora_ops.punica.GroupedPunicaWrapperCPU"


def enabled() -> bool:
    return os.environ.get(ENABLE_ENV) == "1"


def install() -> bool:
    """Patch the CPU platform's punica wrapper; returns whether it did."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    cls = type(current_platform)
    cls.get_punica_wrapper = classmethod(lambda _cls: WRAPPER)
    return True
