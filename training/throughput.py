"""LoRA training throughput on a ~1B-parameter Llama built from its config (random weights, nothing downloaded).

    python -m training.throughput                        # CUDA: spec "1b" (1.1B), bf16, LoRA r16 on all linear layers
    python -m training.throughput --peak-tflops 989 --batch-size 8 --seq-len 2048 --gradient-checkpointing
    python -m training.throughput --device cpu --spec test --steps 2 --warmup 1   # a smoke test anywhere

Measures what a training step of `python -m training lora` costs on this device: the base in
bf16 (`model.dtype` auto on a GPU), a PEFT LoRA on every linear layer, AdamW on the adapter,
bf16 autocast, random token ids. Prints a table:

    tokens/s      batch_size x seq_len x timed steps / their wall time (after `warmup` steps)
    peak memory   torch.cuda.max_memory_allocated over the timed steps
    MFU           6 x N x tokens/s / the GPU's peak dense bf16 FLOP/s (--peak-tflops, or a table of
                  known GPUs); N = parameters of the base. 6N per token is the usual yardstick (forward
                  2N + backward 4N); a LoRA step skips the frozen weights' gradients (~2N of the 4N),
                  so LoRA reaches at most ~2/3 by this definition. Attention's own FLOPs are not counted.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch

# Dense bf16 tensor-core peak, TFLOP/s (vendor datasheets), by a substring of torch.cuda.get_device_name();
# more specific names first. Anything else: pass --peak-tflops.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("H800", 989.0), ("GH200", 989.0),
    ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0),
    ("RTX 4090", 165.0),
)


@dataclass
class Result:
    device: str
    parameters: int
    trainable: int
    batch_size: int
    seq_len: int
    steps: int
    seconds: float
    peak_memory: int | None
    peak_tflops: float | None
    gradient_checkpointing: bool

    @property
    def tokens_per_second(self) -> float:
        return self.batch_size * self.seq_len * self.steps / self.seconds

    @property
    def mfu(self) -> float | None:
        if not self.peak_tflops:
            return None
        return 6 * self.parameters * self.tokens_per_second / (self.peak_tflops * 1e12)

    def table(self) -> str:
        rows = [
            ("device", self.device),
            ("model", f"Llama {millions(self.parameters)} params, bf16; LoRA on all linear layers "
                      f"({millions(self.trainable)} trainable)"),
            ("batch", f"{self.batch_size} x {self.seq_len} tokens, gradient checkpointing "
                      f"{'on' if self.gradient_checkpointing else 'off'}"),
            ("step time", f"{self.seconds / self.steps:.3f} s (mean of {self.steps})"),
            ("tokens/s", f"{self.tokens_per_second:,.0f}"),
            ("peak memory", f"{self.peak_memory / 2**30:.1f} GiB" if self.peak_memory is not None else "n/a (CPU)"),
            ("MFU", f"{100 * self.mfu:.1f}% (6N x tokens/s over {self.peak_tflops:g} TFLOP/s bf16 peak)"
             if self.mfu is not None else "n/a: pass --peak-tflops (the GPU's dense bf16 peak)"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join([f"| {'measure':{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
                         + [f"| {k:{width}} | {v} |" for k, v in rows])


def millions(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops for key, tflops in PEAK_BF16_TFLOPS if key in name), None)


def measure(spec: str = "1b", device: str | None = None, batch_size: int = 8, seq_len: int = 1024, steps: int = 10,
            warmup: int = 3, rank: int = 16, gradient_checkpointing: bool = False,
            peak: float | None = None) -> Result:
    from peft import get_peft_model
    from transformers import LlamaForCausalLM

    from training.devices import enable_gradient_checkpointing
    from training.methods.lora import LoraOptions, lora_config
    from training.tiny.model import resolve_spec

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    config = resolve_spec(spec).to_config()
    torch.manual_seed(0)
    with dev:
        # Random init straight on the device; its values do not matter for the speed.
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    parameters = sum(p.numel() for p in model.parameters())
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)
    model = get_peft_model(model, lora_config(LoraOptions(rank=rank, alpha=2 * rank, dropout=0.0)))
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    ids = torch.randint(3, config.vocab_size, (batch_size, seq_len), device=dev)  # [B, T]

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for _ in range(warmup):
        step()
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - started
    return Result(
        device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        parameters=parameters, trainable=sum(p.numel() for p in trainable), batch_size=batch_size, seq_len=seq_len,
        steps=steps, seconds=seconds,
        peak_memory=torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None,
        peak_tflops=peak if peak is not None else peak_tflops(dev), gradient_checkpointing=gradient_checkpointing)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="1b", help="training.tiny SPECS preset (default: 1b, 1.1B parameters)")
    parser.add_argument("--device", default=None, help="cuda (default when available), cuda:N or cpu")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per step (default: 8)")
    parser.add_argument("--seq-len", type=int, default=1024, help="tokens per sequence (default: 1024)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default: 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first: kernels, allocator (default: 3)")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank (default: 16)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in backward")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the GPU's dense bf16 peak in TFLOP/s, for MFU (default: from a table of known GPUs)")
    args = parser.parse_args(argv)
    result = measure(args.spec, args.device, args.batch_size, args.seq_len, args.steps, args.warmup, args.rank,
                     args.gradient_checkpointing, args.peak_tflops)
    print(result.table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
