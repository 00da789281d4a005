"""The BGMV kernel of `bgmv.cpp`: built on first use with the system C++ compiler, loaded via ctypes.

Built for the machine it runs on (-march=native) into a cache folder keyed by the source, the
flags and the CPU, once per machine (tens of milliseconds; no torch headers involved). Without a
compiler, or if the build fails, `library()` returns None and the torch forms of
`server.in_engine.lora_ops.grouped` are used instead, with one warning.

The source has three code paths, chosen by what the compiler targets: AVX512_BF16 (bf16 pairs),
AVX-512 (float FMAs) and portable loops (what AVX2-only CPUs run). `ADAPTER_SERVE_LORA_ISA` caps
the instruction set below the CPU's, so that one machine can run (and test) the paths of lesser
ones; the engine's processes inherit it from the server's environment.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("bgmv.cpp")
FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-shared", "-fPIC", "-std=c++17"]
CACHE_ENV = "ADAPTER_SERVE_KERNEL_CACHE"
"""Where built kernels go (default: $XDG_CACHE_HOME/adapter-serve/kernels, else ~/.cache/...)."""
ISA_ENV = "ADAPTER_SERVE_LORA_ISA"
"""Cap on the kernel's instruction set: `native` (default: all the CPU has), `avx512` (no
AVX512_BF16 instructions), `portable` (no AVX-512: the path of AVX2-only CPUs). x86 only."""
ISA_FLAGS = {"native": [], "avx512": ["-mno-avx512bf16"], "portable": ["-mno-avx512f"]}
PATHS = {2: "avx512-bf16", 1: "avx512", 0: "portable"}
"""What `lora_kernel_path()` of a build returns, by name."""

_SYMBOLS = {torch.bfloat16: "lora_linear_bf16", torch.float32: "lora_linear_f32"}
_ARGTYPES = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
             ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
             ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float]


def _cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "adapter-serve" / "kernels"


def _cpu_id() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = ""
    return f"{platform.machine()} {flags}"


def isa() -> str:
    """The instruction-set cap asked for in the environment (ISA_ENV), checked."""
    name = os.environ.get(ISA_ENV, "") or "native"
    if name not in ISA_FLAGS:
        raise ValueError(f"{ISA_ENV}={name!r}: expected one of {', '.join(ISA_FLAGS)}")
    if name != "native" and platform.machine().lower() not in ("x86_64", "amd64"):
        raise ValueError(f"{ISA_ENV}={name!r} caps x86 instruction sets; this is {platform.machine()}")
    return name


def _build(compiler: str, flags: list[str]) -> Path:
    key = hashlib.sha256(b"\0".join(s.encode() for s in
                                    [SOURCE.read_text(), compiler, *flags, _cpu_id()])).hexdigest()[:16]
    target = _cache_dir() / f"bgmv-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: concurrent builders (one per worker) never see half a file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *flags, "-o", tmp, str(SOURCE)], check=True, capture_output=True, text=True)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def library() -> ctypes.CDLL | None:
    """The kernel built for this CPU under the ISA_ENV cap, or None (no compiler, failed build)."""
    return _library(isa())


@functools.cache
def _library(cap: str) -> ctypes.CDLL | None:
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        log.warning("no C++ compiler found: multi-LoRA decode steps use the torch forms (slower)")
        return None
    try:
        lib = ctypes.CDLL(str(_build(compiler, FLAGS + ISA_FLAGS[cap])))
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or e
        log.warning("building the LoRA kernel failed, using the torch forms instead: %s", detail)
        return None
    for symbol in _SYMBOLS.values():
        fn = getattr(lib, symbol)
        fn.argtypes = _ARGTYPES
        fn.restype = None
    lib.lora_bf16_paired_layout.restype = ctypes.c_int
    lib.lora_kernel_path.restype = ctypes.c_int
    log.info("LoRA kernel: %s path (%s=%s)", PATHS[lib.lora_kernel_path()], ISA_ENV, cap)
    return lib


def path() -> str | None:
    """The code path the kernel in use runs (a PATHS value), or None without a kernel."""
    lib = library()
    return None if lib is None else PATHS[lib.lora_kernel_path()]


def supports(dtype: torch.dtype) -> bool:
    return dtype in _SYMBOLS and library() is not None


def _padded(t: torch.Tensor, *sizes: int) -> torch.Tensor:
    out = t.new_zeros(*sizes)
    out[tuple(slice(0, n) for n in t.shape)] = t
    return out


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


class Kernel:
    """The kernel bound to one LoRA'd module's stacked weights, packed as `bgmv.cpp` reads them.

    a[i] [slots, r, H] and b[i] [slots, O_i, r] (vLLM's stacks without the 1 dim), all of one
    dtype in `_SYMBOLS`. The packed copies are kept here: rebuild when the weights change, or
    `update` the slots that did."""

    def __init__(self, a: list[torch.Tensor], b: list[torch.Tensor], output_slices: tuple[int, ...]):
        slots, rank, hidden = a[0].shape
        # bf16 on CPUs with AVX512_BF16: columns 32 at a time and ranks in pairs (see bgmv.cpp).
        self._paired = a[0].dtype == torch.bfloat16 and library().lora_bf16_paired_layout() == 1
        self._rank_p = _round_up(rank, 8)
        self._tensors = (*(self._pack_a(t) for t in a), *(self._pack_b(t) for t in b))
        self._sizes = torch.tensor(output_slices, dtype=torch.int64)
        self._weights = (ctypes.c_void_p * (2 * len(a)))(*[t.data_ptr() for t in self._tensors])
        self._b = ctypes.byref(self._weights, len(a) * ctypes.sizeof(ctypes.c_void_p))
        self._fn = getattr(library(), _SYMBOLS[a[0].dtype])
        self._fixed = (hidden, self._rank_p, len(a))

    def _pack_a(self, t: torch.Tensor) -> torch.Tensor:
        """[k, r, H] (k slots) -> the kernel's layout of A, slot-major."""
        slots, _, hidden = t.shape
        cols = 32 if self._paired else 16
        hidden_p = _round_up(hidden, cols)
        return (_padded(t, slots, self._rank_p, hidden_p).view(slots, self._rank_p // 8, 8, hidden_p // cols, cols)
                .permute(0, 1, 3, 2, 4).contiguous())

    def _pack_b(self, t: torch.Tensor) -> torch.Tensor:
        """[k, O, r] (k slots) -> the kernel's layout of B, slot-major."""
        slots, out, rank_p = t.shape[0], _round_up(t.shape[1], 64), self._rank_p
        bt = _padded(t.transpose(1, 2), slots, rank_p, out)  # [slots, r, O]
        if self._paired:  # [slots, O/64, r/2, 64, 2]
            bt = bt.view(slots, rank_p // 2, 2, out // 64, 64).permute(0, 3, 1, 4, 2)
        else:  # [slots, O/64, r, 64]
            bt = bt.view(slots, rank_p, out // 64, 64).permute(0, 2, 1, 3)
        return bt.contiguous()

    def update(self, a: list[torch.Tensor], b: list[torch.Tensor], slots: list[int]) -> None:
        """Re-pack the given slots of the weights, in place (the kernel keeps their addresses)."""
        index = torch.tensor(slots)
        for packed, t in zip(self._tensors, a):
            packed[index] = self._pack_a(t[index])
        for packed, t in zip(self._tensors[len(a):], b):
            packed[index] = self._pack_b(t[index])

    def __call__(self, y: torch.Tensor, x: torch.Tensor, indices: torch.Tensor, tokens: torch.Tensor,
                 scale: float) -> None:
        """y[t, slice i] += round(scale * x[t] @ A_i[s]^T) @ B_i[s]^T for t in `tokens`, s = indices[t].

        y [T, >= sum O_i] and x [T, H] in the weights' dtype with unit column stride; indices [T]
        int64 (tokens with s < 0 are skipped) and tokens [n] int64, contiguous."""
        hidden, rank, n = self._fixed
        self._fn(x.data_ptr(), x.stride(0), y.data_ptr(), y.stride(0), indices.data_ptr(),
                 tokens.data_ptr(), tokens.numel(), hidden, rank, n, self._weights, self._b,
                 self._sizes.data_ptr(), scale)
