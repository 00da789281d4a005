"""The correctness oracle: transformers + PEFT on the same float32 model (greedy decoding,
embeddings and class probabilities as vLLM's pooling runner computes them)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from peft import PeftConfig, PeftModel
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer


@functools.lru_cache(maxsize=None)
def tokenizer(base: Path):
    return AutoTokenizer.from_pretrained(base)


def chat_ids(base: Path, messages: list[dict]) -> list[int]:
    """The prompt ids of a chat request, rendered by the tokenizer's own chat template."""
    return list(tokenizer(base).apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])


def _model(base: Path, *adapters: Path):
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, **_quantized(base))
    for i, adapter in enumerate(adapters):
        if i == 0:
            model = PeftModel.from_pretrained(model, adapter, adapter_name=f"a{i}")
        else:
            model.load_adapter(adapter, adapter_name=f"a{i}")
    return model.eval()


def _quantized(base: Path) -> dict:
    """A quantized (compressed-tensors) base loads with its weights decompressed to float32, so
    PEFT can wrap its layers; compressed-tensors' forward still quantizes activations as the
    scheme says (W8A8: int8 per token), i.e. the quantized model's arithmetic in float32."""
    from transformers import AutoConfig, CompressedTensorsConfig

    config = AutoConfig.from_pretrained(base)
    if getattr(config, "quantization_config", None) is None:
        return {}
    return {"quantization_config": CompressedTensorsConfig(dequantize=True)}


@torch.no_grad()
def chosen_logprobs(base: Path, prompt_ids: list[int], continuation: list[int],
                    *adapters: Path) -> list[tuple[float, float]]:
    """For each token of `continuation` after `prompt_ids` (teacher-forced): its log-probability
    and that of the most likely token at that step."""
    model = _model(base, *adapters)
    ids = torch.tensor([prompt_ids + continuation])
    rows = torch.log_softmax(model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1].float(), -1)
    best = rows.max(dim=-1).values
    return [(rows[i, t].item(), best[i].item()) for i, t in enumerate(continuation)]


@torch.no_grad()
def greedy(base: Path, prompt_ids: list[int], max_new_tokens: int, *adapters: Path) -> list[int]:
    """Token ids PEFT generates greedily after `prompt_ids` with the given adapter applied."""
    model = _model(base, *adapters)
    tok = tokenizer(base)
    ids = torch.tensor([prompt_ids])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id)
    # generate returns prompt + continuation (a soft prompt's virtual tokens are not in it).
    return out[0, len(prompt_ids):].tolist()


@torch.no_grad()
def greedy_stacked(base: Path, prompt_ids: list[int], max_new_tokens: int,
                   lora: Path | None, soft_prompt: Path) -> list[int]:
    """PEFT's semantics for a LoRA and a soft prompt together, which one PeftModel cannot hold:
    the LoRA model, fed the soft prompt's embeddings in front of the input's embeddings."""
    from safetensors.torch import load_file

    model = _model(base, lora) if lora else _model(base)
    tok = tokenizer(base)
    soft = load_file(soft_prompt / "adapter_model.safetensors")["prompt_embeddings"]
    ids = torch.tensor([prompt_ids])
    embeds = torch.cat([soft.to(torch.float32)[None], model.get_input_embeddings()(ids)], dim=1)
    out = model.generate(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2]),
                         do_sample=False, max_new_tokens=max_new_tokens,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    return out[0].tolist()  # with inputs_embeds only, generate returns just the new tokens


@torch.no_grad()
def embedding(base: Path, prompt_ids: list[int], *adapters: Path) -> list[float]:
    """vLLM's `--convert embed` of a causal LM: the last token's final hidden state (after the
    model's last norm: LAST pooling), L2-normalised."""
    model = _model(base, *adapters)
    backbone = (model.get_base_model() if adapters else model).model
    hidden = backbone(input_ids=torch.tensor([prompt_ids])).last_hidden_state[0, -1]
    return torch.nn.functional.normalize(hidden, dim=-1).tolist()


@torch.no_grad()
def class_probs(classifier: Path, prompt_ids: list[int], lora: Path | None = None) -> list[float]:
    """Softmax of a sequence classifier's logits. transformers scores the last non-pad token,
    vLLM the last token (LAST pooling): the same for prompts without the pad token."""
    model = AutoModelForSequenceClassification.from_pretrained(classifier, dtype=torch.float32)
    if lora is not None:
        # A LoRA of the backbone saved for CAUSAL_LM would get PEFT's generation wrapper, which
        # a classifier cannot take; without a task type PEFT only injects the LoRA layers.
        config = PeftConfig.from_pretrained(lora)
        config.task_type = None
        model = PeftModel.from_pretrained(model, lora, config=config)
    return model.eval()(input_ids=torch.tensor([prompt_ids])).logits[0].softmax(-1).tolist()
