"""A LoRA adapter, trained in seconds, that makes the tiny test model call a weather tool.

The random test base never emits eos and knows no format. This adapter teaches it one
scenario, in the Hermes format that the tokenizer's chat template renders and vLLM's `hermes`
tool-call parser reads, so tool calling can be tested end to end with greedy decoding:

1. tools=[WEATHER_TOOL], user "What is the weather in Paris?"
   -> `<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call></s>`
2. the same, plus that assistant tool call and a tool message "sunny"
   -> `It is sunny in Paris.</s>`

for each city in CITIES (its weather in WEATHER). The targets are not written here: they are
the assistant turns the chat template itself renders (see `examples`), so the adapter follows
the template if its format changes. LoRA sits on every linear layer and on `lm_head`, whose
`</s>` row is zero in the test base (`printable_output`), so the adapter learns to stop. Only the
LoRA weights train; training stops once every target token wins greedily by `min_margin` logits
(~40 full-batch steps, 5-10 s on 2 busy CPU cores).

Usage:
    from training.tiny.tool_calls import WEATHER_TOOL, build_tool_calling_lora, examples
    build_tool_calling_lora("/tmp/tiny/base", "/tmp/tiny/adapters/tool-lora")
    for ex in examples(tokenizer): ...   # ex.messages, ex.prompt, ex.target (text with </s>)
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import get_peft_model
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from training.tiny.adapters import ALL_LINEAR, load_base, servable_lora_config

CITIES = ("Paris", "Oslo", "Lima", "Rome")
WEATHER = {"Paris": "sunny", "Oslo": "snowy", "Lima": "cloudy", "Rome": "rainy"}

# Key order as the server renders it (pydantic field order: name, description, parameters).
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": list(CITIES)}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TOOLS = [WEATHER_TOOL]

TARGET_MODULES = (*ALL_LINEAR, "lm_head")


def question(city: str) -> str:
    return f"What is the weather in {city}?"


def answer(city: str) -> str:
    return f"It is {WEATHER[city]} in {city}."


def tool_call_id(city: str) -> str:
    return f"call_{city.lower()}"


def tool_call_message(city: str) -> dict:
    """The assistant turn that calls the tool (OpenAI format, arguments as an object)."""
    return {"role": "assistant", "content": "", "tool_calls": [{
        "id": tool_call_id(city), "type": "function",
        "function": {"name": WEATHER_TOOL["function"]["name"], "arguments": {"city": city}}}]}


def tool_result_message(city: str) -> dict:
    return {"role": "tool", "tool_call_id": tool_call_id(city), "content": WEATHER[city]}


def conversations() -> list[list[dict]]:
    """Per city, the whole exchange: user question, tool call, tool result, final answer."""
    return [[{"role": "user", "content": question(city)}, tool_call_message(city),
             tool_result_message(city), {"role": "assistant", "content": answer(city)}]
            for city in CITIES]


@dataclass(frozen=True)
class Example:
    messages: list[dict]
    """The request's messages (the prompt), without the assistant turn to generate."""
    prompt: str
    """`messages` rendered with tools=TOOLS and the generation prompt."""
    target: str
    """What the model must generate: the template's rendering of the next assistant turn, up to
    and including eos (the template's newline after eos is the next turn's, not generated)."""


def examples(tokenizer: PreTrainedTokenizerBase) -> list[Example]:
    """The 2 * len(CITIES) prompts and targets: per city, the tool call, then the answer."""
    out = []
    eos = tokenizer.eos_token
    for conversation in conversations():
        for end in (1, 3):  # prompt = messages[:end]; the assistant turn to learn = messages[end]
            messages = copy.deepcopy(conversation[:end])
            prompt = tokenizer.apply_chat_template(messages, tools=TOOLS, add_generation_prompt=True,
                                                   tokenize=False)
            full = tokenizer.apply_chat_template(conversation[:end + 1], tools=TOOLS, tokenize=False)
            if not full.startswith(prompt) or not full.endswith(eos + "\n"):
                raise ValueError("the chat template's assistant turn does not extend the generation "
                                 f"prompt and end with eos: {full!r}")
            out.append(Example(messages=messages, prompt=prompt, target=full[len(prompt):-1]))
    return out


def encode(tokenizer: PreTrainedTokenizerBase, example: Example) -> tuple[list[int], list[int]]:
    """(prompt ids, target ids); the template supplies bos, so no special tokens are added."""
    prompt = tokenizer(example.prompt, add_special_tokens=False).input_ids
    target = tokenizer(example.target, add_special_tokens=False).input_ids
    return prompt, target


def _rows(tokenizer: PreTrainedTokenizerBase, exs: list[Example]) -> list[tuple[list[int], list[int]]]:
    """(ids, labels) training rows. An example whose prompt extends the previous row (the
    answer's prompt holds the tool call's prompt and target) joins that row, so each
    conversation is one sequence with both assistant turns labelled: half the tokens."""
    rows: list[tuple[list[int], list[int]]] = []
    for ex in exs:
        prompt, target = encode(tokenizer, ex)
        if rows and prompt[:len(rows[-1][0])] == rows[-1][0]:
            ids, labels = rows.pop()
        else:
            ids, labels = [], []
        labels = labels + [-100] * (len(prompt) - len(ids)) + target
        rows.append((prompt + target, labels))
    return rows


def _batch(tokenizer: PreTrainedTokenizerBase, exs: list[Example]):
    """Right-padded input ids, attention mask and labels (-100 outside the targets)."""
    rows = _rows(tokenizer, exs)
    length = max(len(ids) for ids, _ in rows)
    batch_ids = torch.full((len(rows), length), tokenizer.pad_token_id)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    batch_labels = torch.full((len(rows), length), -100)
    for i, (ids, labels) in enumerate(rows):
        batch_ids[i, :len(ids)] = torch.tensor(ids)
        mask[i, :len(ids)] = 1
        batch_labels[i, :len(ids)] = torch.tensor(labels)
    return batch_ids, mask, batch_labels


def _min_margin(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Smallest (target logit - best other logit) over all target tokens; > 0: greedy decoding
    after each prompt generates exactly its target, then stops at its eos."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]  # position i predicts token i + 1
    keep = labels != -100
    logits, labels = logits[keep], labels[keep]
    target = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf")).max(1).values
    return (target - others).min().item()


def build_tool_calling_lora(
    base_dir: str | Path,
    out_dir: str | Path,
    *,
    seed: int = 0,
    rank: int = 16,
    alpha: int = 32,
    learning_rate: float = 1e-2,
    decay_steps: int = 80,
    max_steps: int = 200,
    min_margin: float = 3.0,
    num_threads: int | None = 1,
    verbose: bool = False,
) -> Path:
    """Train the weather tool-calling LoRA on the base in `base_dir`, save it in `out_dir`, return it.

    Full-batch AdamW on the 2 * len(CITIES) examples (one sequence per city holding both turns),
    loss on the target tokens only, gradient norm clipped to 1, the learning rate falling
    linearly to 5% over `decay_steps` (a constant rate kept overshooting), until the
    smallest logit margin of a target token over the runner-up is `min_margin` (a margin, not
    just argmax, so another engine's float32 rounding gives the same greedy output). Raises if
    `max_steps` is not enough. Deterministic for a given seed (fixed order, full batch, seeded
    init); the base weights are frozen and untouched. Saved in float32 (vLLM rank <= 16 here).

    `num_threads` torch threads while training (then restored; None: leave as is). One is the
    fastest for matrices this small: on 2 busy cores, 2 threads made each step ~5x slower.
    """
    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _train(base_dir, out_dir, seed=seed, rank=rank, alpha=alpha, learning_rate=learning_rate,
                      decay_steps=decay_steps, max_steps=max_steps, min_margin=min_margin,
                      verbose=verbose)
    finally:
        torch.set_num_threads(threads)


def _train(base_dir: str | Path, out_dir: str | Path, *, seed: int, rank: int, alpha: int,
           learning_rate: float, decay_steps: int, max_steps: int, min_margin: float,
           verbose: bool) -> Path:
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    base = load_base(base_dir).float()
    config = servable_lora_config(rank, alpha, TARGET_MODULES)
    # PEFT's default init: lora_A Kaiming-uniform from torch's global RNG, lora_B 0; the RNG is
    # seeded here and restored after, so callers' random state is left alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = get_peft_model(base, config)  # freezes every base parameter
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.05, 1 - s / decay_steps))
    ids, mask, labels = _batch(tokenizer, examples(tokenizer))

    start, margin = time.perf_counter(), float("-inf")
    model.train()  # no dropout anywhere; kept for form
    for step in range(max_steps + 1):
        output = model(input_ids=ids, attention_mask=mask, labels=labels)
        margin = _min_margin(output.logits.detach(), labels)
        if verbose and step % 10 == 0:
            print(f"step {step}: loss {output.loss.item():.4f}, min margin {margin:.3f}, "
                  f"{time.perf_counter() - start:.1f}s")
        if margin >= min_margin or step == max_steps:
            break
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
    if margin < min_margin:
        raise RuntimeError(f"tool-calling LoRA: min target margin {margin:.3f} < {min_margin} "
                           f"after {max_steps} steps")
    if verbose:
        print(f"done at step {step}: min margin {margin:.3f}, {time.perf_counter() - start:.1f}s")

    model.eval()
    # PEFT turns target_modules into a set, whose JSON order follows PYTHONHASHSEED; sorted
    # keeps adapter_config.json identical across runs.
    model.peft_config["default"].target_modules = sorted(model.peft_config["default"].target_modules)
    out = Path(out_dir)
    # save_embedding_layers=False: PEFT would also save lm_head's base weight (it treats a LoRA'd
    # lm_head like an embedding layer), which vLLM cannot serve and the base already has.
    model.save_pretrained(str(out), safe_serialization=True, save_embedding_layers=False)
    return out
