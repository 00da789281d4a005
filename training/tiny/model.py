"""Small Llama models with seeded random weights, saved as a complete local checkpoint.

The checkpoint (safetensors weights, config.json, generation_config.json, tokenizer with chat
template) loads with `AutoModelForCausalLM.from_pretrained(dir)` and with vLLM, so tests and the
demo need no model hub. Random weights are drawn with a larger std than usual (`init_std`) so
that greedy decoding is not degenerate: different prompts (and adapters) give different,
non-repeating continuations, and the median top-1/top-2 logit gap is ~0.2 (the smallest seen in
128 greedy steps ~0.005), ample for float32 vLLM-vs-PEFT comparisons. In bfloat16 exact ties
do occur, so compare outputs in float32. Random models emit only printable text and never eos
(`printable_output`), so they always run to max_tokens.

Usage:
    from training.tiny.model import SPECS, build_base_model
    path = build_base_model("/tmp/tiny-llama", spec="test")                # ~0.4M params, float32
    path = build_base_model("/tmp/bench-llama", spec="bench", dtype="bfloat16")
    path = build_base_model("/tmp/qwen-shaped", spec="qwen2.5-0.5b", dtype="bfloat16")  # ~1 GB, ~1 min
    # or: python -m training.tiny base --out /tmp/tiny-llama --spec test
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from training.tiny.tokenizer import build_tokenizer

# vLLM's CPU attention kernel supports only some head sizes; 24 crashed the engine at the first
# request ("Unsupported CPU attention configuration"), 32 and 64 work.
SUPPORTED_HEAD_DIMS = (32, 64)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class TinyLlamaSpec:
    """Shape and initialisation of a small Llama model."""

    vocab_size: int = 512
    """Rows of the embedding and lm_head; also the tokenizer's size unless tokenizer_vocab_size
    is set. Byte-level BPE needs at least 262 (256 bytes + 6 specials)."""
    tokenizer_vocab_size: int | None = None
    """Size of our BPE tokenizer when smaller than vocab_size (None: vocab_size). A model as wide
    as a real vocabulary (151,936) pays the real embedding and lm_head costs, while its
    tokenizer stays the small offline one (a BPE trained on our small corpus would not reach
    such a size anyway); ids past the tokenizer are never input, and printable_output keeps
    them out of the output."""
    hidden_size: int = 128
    """Width of the residual stream; must equal num_attention_heads * head_dim."""
    intermediate_size: int = 256
    """Width of the SwiGLU MLP."""
    num_hidden_layers: int = 2
    """Number of decoder blocks."""
    num_attention_heads: int = 4
    """Query heads per layer."""
    num_key_value_heads: int = 2
    """Key/value heads per layer (grouped-query attention); must divide num_attention_heads."""
    head_dim: int = 32
    """Size of one attention head: 32 or 64 only, the sizes vLLM's CPU attention supports."""
    max_position_embeddings: int = 2048
    """Longest sequence (also the tokenizer's model_max_length and vLLM's default max_model_len)."""
    tie_word_embeddings: bool = False
    """Share embed_tokens and lm_head. Off by default (separate matrices were assumed when vLLM LoRA
    and prompt embeddings were first tried); on, vLLM ties lm_head to embed_tokens itself, LoRAs
    on linear layers are unaffected, and printable_output's zero rows are then also those
    tokens' input embeddings (<s> and the role markers enter as zero vectors, a position every
    layer keeps at zero: harmless for a random model)."""
    init_std: float = 0.1
    """Std of the normal init of every matrix; larger than Llama's 0.02 so random models are not degenerate."""
    printable_output: bool = True
    """Zero the lm_head rows of special tokens and of tokens that are not whole printable UTF-8
    text, so a random model emits clean text (no partial characters, markers or eos) and runs to
    max_tokens; pretraining can turn it off (it would learn those rows anyway)."""
    seed: int = 0
    """Seed of the weights and the tokenizer: the same spec gives byte-identical files."""

    def __post_init__(self) -> None:
        if self.head_dim not in SUPPORTED_HEAD_DIMS:
            raise ValueError(f"head_dim must be one of {SUPPORTED_HEAD_DIMS} (vLLM CPU attention), got {self.head_dim}")
        if self.hidden_size != self.num_attention_heads * self.head_dim:
            # transformers 5's LlamaConfig rejects hidden_size % num_attention_heads != 0 even with an
            # explicit head_dim; requiring equality keeps the shapes obvious.
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must equal num_attention_heads * head_dim "
                f"({self.num_attention_heads} * {self.head_dim})"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_key_value_heads must divide num_attention_heads")
        if self.tokenizer_vocab_size is not None and self.tokenizer_vocab_size > self.vocab_size:
            raise ValueError(f"tokenizer_vocab_size ({self.tokenizer_vocab_size}) must not exceed "
                             f"vocab_size ({self.vocab_size})")

    def tokenizer(self) -> PreTrainedTokenizerFast:
        """The spec's own tokenizer: `tokenizer_vocab_size` (or `vocab_size`) tokens, its seed and max length."""
        return build_tokenizer(self.tokenizer_vocab_size or self.vocab_size, self.seed,
                               model_max_length=self.max_position_embeddings)

    def to_config(self, dtype: str = "float32", tokenizer: PreTrainedTokenizerFast | None = None) -> LlamaConfig:
        """The transformers config; special token ids come from `tokenizer` (default: ours, 0/1/2)."""
        ids = (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) if tokenizer else (0, 1, 2)
        if tokenizer is not None and len(tokenizer) > self.vocab_size:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens but vocab_size is {self.vocab_size}")
        return LlamaConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            head_dim=self.head_dim,
            max_position_embeddings=self.max_position_embeddings,
            tie_word_embeddings=self.tie_word_embeddings,
            initializer_range=self.init_std,
            bos_token_id=ids[0],
            eos_token_id=ids[1],
            pad_token_id=ids[2],
            dtype=dtype,
        )


SPECS: dict[str, TinyLlamaSpec] = {
    # ~0.43M params: the server's tests build it in ~0.5 s.
    "test": TinyLlamaSpec(),
    # ~5.1M params: trainable on CPU in minutes (~5k tokens/s) for the demo; to pretrain it, use
    # dataclasses.replace(SPECS["demo"], init_std=0.02, printable_output=False).
    "demo": TinyLlamaSpec(
        hidden_size=256, intermediate_size=704, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=4, head_dim=64,
    ),
    # ~26M params: the benchmark model (bf16; 8 LoRA adapters of rank 16 on all linear layers).
    "bench": TinyLlamaSpec(
        hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
        num_attention_heads=8, num_key_value_heads=8, head_dim=64,
    ),
    # ~1.1B params (TinyLlama-1.1B's shape): GPU training throughput (training.throughput builds it
    # on the GPU from its config, random weights, no tokenizer); too large for the CPU builders here.
    "1b": TinyLlamaSpec(
        vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
        num_attention_heads=32, num_key_value_heads=4, head_dim=64, max_position_embeddings=4096,
    ),
    # 494M params (Qwen2.5-0.5B's shapes: 24 layers, 14 query / 2 KV heads of 64, tied embeddings,
    # 151,936 vocabulary rows): the benchmark at a real model's size (`python -m loadtests.bench
    # --model-shape qwen2.5-0.5b`), ~1 GB in bf16. A Llama, not a Qwen2: of Qwen2's differences
    # only the bias of q/k/v_proj costs anything (27,648 parameters, 0.006% of the model, a vector
    # add per projection), negligibly (rope theta, norm eps and the 32k context change no step's
    # cost at the bench's lengths). The tokenizer is our 512-token one; the other 151,424 lm_head
    # rows are zero (printable_output) but still multiplied at every step.
    "qwen2.5-0.5b": TinyLlamaSpec(
        vocab_size=151_936, tokenizer_vocab_size=512, hidden_size=896, intermediate_size=4864,
        num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, head_dim=64,
        tie_word_embeddings=True,
    ),
}


def resolve_spec(spec: str | TinyLlamaSpec) -> TinyLlamaSpec:
    """A preset name or a spec -> a spec."""
    if isinstance(spec, TinyLlamaSpec):
        return spec
    if spec not in SPECS:
        raise ValueError(f"unknown spec {spec!r}; presets: {sorted(SPECS)}")
    return SPECS[spec]


@torch.no_grad()
def init_weights(model: torch.nn.Module, std: float, seed: int) -> None:
    """Seeded init that does not depend on transformers' own init order: N(0, std) matrices, unit norms."""
    generator = torch.Generator().manual_seed(seed)
    # named_parameters() follows module definition order, which is fixed for a given spec.
    for name, param in model.named_parameters():
        if name.endswith("norm.weight"):
            param.fill_(1.0)  # RMSNorm gains; random gains would only rescale the matrices after them.
        else:
            param.copy_(torch.randn(param.shape, generator=generator, dtype=torch.float32) * std)


def unprintable_token_ids(tokenizer: PreTrainedTokenizerFast, vocab_size: int | None = None) -> list[int]:
    """Ids of added/special tokens and of tokens whose text is not whole, printable UTF-8; with
    `vocab_size` (the model's rows) also the ids past the tokenizer's end, which no text maps to
    and the tokenizer cannot decode."""
    special = set(tokenizer.added_tokens_decoder)
    bad = []
    for token_id in range(len(tokenizer)):
        # A byte-level token holding part of a multi-byte character decodes to U+FFFD.
        text = tokenizer.decode([token_id])
        printable = text and "\ufffd" not in text and all(c.isprintable() or c in "\n\t" for c in text)
        if token_id in special or not printable:
            bad.append(token_id)
    return bad + list(range(len(tokenizer), vocab_size or 0))


def build_model(spec: str | TinyLlamaSpec = "test", dtype: str = "float32",
                tokenizer: PreTrainedTokenizerFast | None = None) -> LlamaForCausalLM:
    """The in-memory model with seeded random weights, in `dtype` (init is always in float32).

    `tokenizer` (default: `spec.tokenizer()`) gives the special token ids and, with
    `spec.printable_output`, the tokens to silence.
    """
    spec = resolve_spec(spec)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if tokenizer is None:
        tokenizer = spec.tokenizer()
    model = LlamaForCausalLM(spec.to_config("float32", tokenizer))
    init_weights(model, spec.init_std, spec.seed)
    if spec.printable_output:
        # A zero row gives logit 0 while the other ~400 logits are N(0, (init_std * sqrt(hidden))²),
        # so greedy decoding never picks these tokens (their max is ~3 std above 0). The rows past
        # the tokenizer are zeroed too: they are still multiplied (full lm_head cost), never chosen.
        with torch.no_grad():
            silent = unprintable_token_ids(tokenizer, spec.vocab_size)
            model.get_output_embeddings().weight[silent] = 0.0
    # Init in float32 then cast: bf16 weights are the rounded float32 ones, same seed -> same model.
    model = model.to(DTYPES[dtype])
    model.config.dtype = dtype
    return model.eval()


def build_base_model(out_dir: str | Path, spec: str | TinyLlamaSpec = "test", dtype: str = "float32",
                     tokenizer: PreTrainedTokenizerFast | None = None) -> Path:
    """Build and save a complete checkpoint (weights, configs, tokenizer) into `out_dir`; return it.

    `tokenizer` defaults to `spec.tokenizer()`; a given one must not have more tokens than
    `spec.vocab_size`.
    """
    spec = resolve_spec(spec)
    if tokenizer is None:
        tokenizer = spec.tokenizer()
    model = build_model(spec, dtype, tokenizer)
    out = Path(out_dir)
    # transformers 5 always writes safetensors (its save_pretrained ignores safe_serialization),
    # and the generation_config.json (bos/eos/pad ids) that model construction derived from the config.
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def count_parameters(spec: str | TinyLlamaSpec) -> int:
    """Number of parameters of a spec, computed on the meta device (no memory, no init)."""
    with torch.device("meta"):
        model = LlamaForCausalLM(resolve_spec(spec).to_config())
    return sum(p.numel() for p in model.parameters())

