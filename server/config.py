"""Server configuration: one typed dataclass, the single source of `python -m server --help`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass
class ServerConfig:
    """OpenAI-compatible server for one base model and many LoRA / soft-prompt adapters."""

    model: str
    """Base model directory in Hugging Face format (config, tokenizer, safetensors weights)."""

    adapters: str = "adapters"
    """Directory whose subdirectories are PEFT adapters, each served under its folder name.
    Adapters added, replaced or deleted while the server runs are picked up on the next request."""

    lora_roots: list[str] = field(default_factory=list)
    """More directories that adapters may be loaded from by path (`POST /v1/load_lora_adapter`
    or `/v1/adapters` with an absolute `path`), such as an RL trainer's output folder. They
    are never scanned: only adapters loaded by name are served from them."""

    host: str = "127.0.0.1"
    """Address to listen on."""

    port: int = 8000
    """Port to listen on."""

    api_key: list[str] = field(default_factory=list)
    """Accepted API keys (`Authorization: Bearer KEY`). None given: no authentication.
    The SERVER_API_KEY environment variable adds one more."""

    api_keys_file: str | None = None
    """YAML file of API keys, each scoped to adapter names or glob patterns, the base model or
    not, and adapter management or not (see server/auth.py); re-read when it changes. A key
    sees only its models; others answer 404, as unknown ones do."""

    served_model_name: str | None = None
    """Name clients use for the base model in `model`. Default: the model directory's name."""

    runner: Literal["generate", "pooling"] = "generate"
    """What the engine runs: `generate` (completions, chat, responses) or `pooling` (vLLM's
    pooling runner: /v1/embeddings or /classify, per --convert). A server runs one; the other
    runner's endpoints answer 400, and adapters whose manifest names the other runner are
    refused."""

    convert: Literal["auto", "embed", "classify"] = "auto"
    """With --runner pooling, how a causal-LM base becomes a pooling model (vLLM's `convert`):
    `embed` (last token's hidden state, L2-normalised) or `classify` (a `score` head over the
    last token, softmax; the checkpoint must hold `score.weight`). `auto`: `classify` for a
    *ForSequenceClassification checkpoint, `embed` otherwise."""

    max_loras: int | None = None
    """How many different LoRA adapters can be in one running batch (the engine's adapter
    slots; requests for more adapters than slots wait, and the batch shrinks). Default: on CPU,
    as many as --lora-slots-gib holds (at most 256, and at most --max-cpu-loras); elsewhere 8.
    The log names the number and why."""

    lora_slots_gib: float = 1.0
    """Memory for the engine's LoRA slots when --max-loras is not given (CPU): a slot of rank
    --max-lora-rank on every projection and the output layer (the log gives its size)."""

    max_lora_rank: int = 16
    """Largest LoRA rank accepted; adapters above it are refused when loaded.
    vLLM allows 1, 8, 16, 32, 64, 128, 256, 320, 512."""

    pin_adapters: list[str] = field(default_factory=list)
    """LoRA adapters kept in an engine slot from start-up on, never evicted (`--pin-adapters a,b`
    or `--pin-adapters a b`): hot adapters whose first token must never wait for a load. An
    adapter whose manifest.json says `"pinned": true` is pinned too. At most --max-loras - 1 are
    pinned at a time; a name that cannot be served stops the start-up."""

    max_cpu_loras: int | None = None
    """How many LoRA adapters the engine keeps loaded in host memory (LRU), the slots' among
    them. Default: the number of slots."""

    max_model_len: int | None = None
    """Context window in tokens (prompt, virtual tokens and completion). Default: the model's."""

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights and activations dtype. `auto` takes the model config's dtype."""

    tensor_parallel_size: int = 1
    """Number of GPUs to shard the model across."""

    pipeline_parallel_size: int = 1
    """Number of pipeline stages: the model's layers split in this many consecutive parts, each on
    its own GPUs (or node, with --distributed-executor-backend ray). GPUs used per engine:
    tensor x pipeline parallel size."""

    data_parallel_size: int = 1
    """Number of engine replicas inside this server, each with the whole model, its own KV cache
    and its own loaded LoRAs, requests spread over them (adapters are loaded into all). For more
    replicas than one machine holds, run several servers behind a gateway (README: Scaling out)."""

    distributed_executor_backend: Literal["mp", "ray", "uni", "external_launcher"] | None = None
    """How the engine runs its workers: `mp` processes on this machine, `ray` a Ray cluster
    (several nodes; GPUs only: vLLM's CPU platform cannot run on Ray), `uni` one worker inside
    the engine process, `external_launcher` torchrun.
    Default: `mp` for several workers, `uni` for one. On CPU, where vLLM would use `mp` to pin
    the worker's threads, `uni` only on a small machine, where vLLM's pinning would differ from
    using every CPU by a reservation of half the cores or more (one process fewer to start and
    to share the cores with); elsewhere vLLM's pinned `mp` worker."""

    kv_cache_gib: float | None = None
    """KV cache size in GiB; takes precedence over --gpu-memory-utilization.
    Default: 2 on CPU, unset on GPU."""

    gpu_memory_utilization: float = 0.9
    """Fraction of accelerator memory for weights and KV cache (GPU only unless --kv-cache-gib
    is unset on CPU, where vLLM reads it as the share of the NUMA node's memory)."""

    block_size: int | None = None
    """KV cache block size in tokens; only whole blocks are prefix-cached. Default: vLLM's
    (128 on CPU, where it must be a multiple of 32; 16 on GPU)."""

    max_num_seqs: int | None = None
    """Most sequences in one engine step. Default: vLLM's."""

    max_num_batched_tokens: int | None = None
    """Most tokens (prefill chunks and decodes together) in one engine step: bounds a step's
    latency and activation memory; longer prompts are prefilled in chunks. Default: vLLM's (by
    platform and usage)."""

    enable_prefix_caching: bool | None = None
    """Reuse the KV cache of a prompt's leading whole blocks computed for an earlier request on the
    same weights (base, or the same adapter version). Default: vLLM's (on for most models)."""

    max_logprobs: int = 20
    """Largest `logprobs` / `top_logprobs` a request may ask for."""

    enable_soft_prompts: bool = True
    """Serve PEFT prompt-tuning adapters (needs vLLM prompt embeddings)."""

    soft_prompt_kv_cache_mib: float = 64.0
    """Memory for the keys and values of soft prompts' virtual tokens, computed by a soft
    prompt's first request and reused by the next ones (per soft prompt and LoRA, least recently
    used dropped first). Each entry takes the KV blocks its virtual tokens span. 0: off, every
    request computes them."""

    tool_call_parser: str | None = None
    """vLLM tool-call parser that reads the model's own tool-call format (hermes, llama3_json,
    mistral, qwen3_xml, pythonic, ...), which `tool_choice: auto` needs. Without one, `required`
    and named functions still work (enforced by structured outputs) and `auto` is refused."""

    tool_strict_level: Literal["auto", "function", "parameter"] = "parameter"
    """How strictly a parser's tool calls are held to the tools (vLLM's structural tags): `auto`:
    `required` and named calls keep the call format, and arguments follow their schema only for
    tools marked `strict`; `function`: also `auto` calls keep the format; `parameter`: arguments
    always follow their schema. Without --tool-call-parser, forced calls always follow it."""

    structured_outputs_backend: Literal["auto", "xgrammar", "guidance", "outlines"] = "auto"
    """Grammar engine of `response_format` and tool-call constraints. `auto`: xgrammar, and
    llguidance for the schemas, regexes or grammars xgrammar does not support."""

    json_max_whitespace: int = 1
    """Whitespace allowed between the tokens of a JSON output (response_format json_object /
    json_schema, forced tool calls; xgrammar backend), per gap. 1 (default): at most one
    character, so compact JSON and `json.dumps`-style JSON (`{"a": 1, "b": 2}`) both pass and no
    adapter can pad its answer into max_tokens; 0: compact only, as OpenAI's structured outputs
    (`{"a":1}`; an adapter trained on spaced JSON loses accuracy when forced to it: the demo's
    extraction adapter fell from 0.52 to 0.00 exact match); N: at most N characters per gap (room
    for indentation); -1: no bound (vLLM's behaviour). A request may choose with its
    `json_max_whitespace` field."""

    onednn_primitive_cache: int = 32
    """Entries of each of the two caches of compiled matmul kernels in the engine's processes
    (CPU: oneDNN's own and torch's ideep layer): one per matmul shape, and vLLM meets a new shape
    at almost every batch size and prefill length. Their defaults, 1024 each, let the engine grow
    under sustained load for hours (server/engine_env.py). -1: their defaults, or
    ONEDNN_PRIMITIVE_CACHE_CAPACITY and LRU_CACHE_CAPACITY as set."""

    fast_lora_ops: bool = True
    """On CPU, compute LoRA with this project's ops (server/in_engine/lora_ops: a C++ kernel built
    on first use for adapters with few tokens in a step, grouped matmuls for the others; no
    per-token weight copies; same results as vLLM's) and keep the model compiled with LoRA enabled
    (vLLM runs it eagerly). Off: vLLM's own ops, eager. No effect on GPU, which keeps vLLM's
    kernels."""

    prestart_engine: bool = True
    """On CPU, start the engine core's interpreter as the server starts, so that its imports
    (torch, vLLM) run beside the server's own instead of after them (vLLM spawns it only once
    the server is ready to start the engine). Off: vLLM spawns it then, as stock vLLM does."""

    allow_untested_vllm: bool = False
    """Start even if the installed vLLM is not a version this server was tested with (see
    docs/vllm-patches.md: the server patches vLLM internals that change between releases), with
    a warning in the log. Off: such a start is refused, with the installed and tested versions."""

    trust_remote_code: bool = False
    """Run Python code shipped inside the model directory. Off: only built-in architectures load."""

    seed: int = 0
    """Engine seed; requests with their own `seed` are reproducible regardless."""

    engine_arg: list[str] = field(default_factory=list)
    """Any other vLLM engine argument, as KEY=VALUE, repeatable: KEY is a field of vLLM's
    AsyncEngineArgs, i.e. a `vllm serve` flag without its leading dashes (`quantization=awq`,
    `enforce-eager=true`, `compilation-config={"mode": 0}`); VALUE is read as `vllm serve` reads
    that flag (JSON for dicts and configs, true/false for switches, a JSON list or a,b,c for
    lists). Checked at start-up; an argument one of these flags sets must be set with the flag."""

    max_queued_requests: int | None = None
    """Most requests that may wait for a batch slot beyond the --max-num-seqs running; past it a
    new request is answered 429 with Retry-After (`rate_limit_error`), streaming or not.
    Default: no limit (every request waits)."""

    max_queued_tokens: int | None = None
    """Most prompt tokens that may wait for prefill (a time-to-first-token budget); past it a
    new request is answered 429 with Retry-After. Default: no limit."""

    request_timeout: float | None = None
    """Seconds a request may take; past them it is aborted in the engine and answered 504 (an
    error event, then [DONE], once a stream has started). A request's `request_timeout` field may
    set a shorter deadline. Default: none."""

    shutdown_timeout: float = 30.0
    """On SIGTERM: seconds in-flight requests get to finish while new ones are refused (503);
    those still running are then aborted (finish_reason "abort") and the server exits 0."""

    keep_alive_timeout: float = 65.0
    """Seconds an idle HTTP keep-alive connection stays open (uvicorn's default is 5). Longer
    than clients' own idle expiry (httpx and the openai SDK: 5 s, load balancers: 60 s), so that
    the client closes an idle connection, not the server: a connection the server closes just as
    a client reuses it loses that request without an answer (httpx: "Server disconnected without
    sending a response"; Locust: HTTP 0)."""

    exit_on_engine_death: bool = True
    """Exit with status 3 when the engine process dies (in-flight requests get a 503 first), so a
    supervisor restarts the server. Off: keep answering 503, for debugging."""

    ui: bool = True
    """Serve the human-feedback page at /ui: the served models, answers of 2-4 of them side by
    side, judgements (appended to --preferences-file) and an Elo leaderboard. The page loads
    without a key; its data calls use the key typed into it, scoped as API calls are. Not
    mounted with --runner pooling, which generates no answers to compare."""

    preferences_file: str = "feedback/preferences.jsonl"
    """JSONL file the page's judgements are appended to, as preference rows that `python -m
    training reward` and `dpo` read (the models, sampling, comparison id and time beside them);
    the leaderboard is computed from it."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Log level of the server (uvicorn and this package)."""

    @property
    def model_name(self) -> str:
        return self.served_model_name or Path(self.model).resolve().name

    @property
    def serves_soft_prompts(self) -> bool:
        """Soft prompts need prompt embeddings and their KV cache: the generate runner only."""
        return self.enable_soft_prompts and self.runner == "generate"

    @property
    def pinned_adapters(self) -> list[str]:
        """--pin-adapters, commas and repeats alike."""
        return sorted({name for item in self.pin_adapters for name in item.split(",") if name})
