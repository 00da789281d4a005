"""A byte-level BPE tokenizer with a chat template, trained offline in about a second.

Byte-level BPE (as in GPT-2 / Llama 3) starts from the 256 byte values, so any unicode string
tokenizes without an unknown token. Like Llama, encoding prepends `<s>` (a TemplateProcessing
post-processor) and generation stops at `</s>`.

Usage:
    from training.tiny.tokenizer import build_tokenizer
    tok = build_tokenizer(vocab_size=512, seed=0)
    tok("héllo 👋").input_ids                 # [bos, ...] and no unknowns
    tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    # '<s><|user|>\nhi</s>\n<|assistant|>\n'
    tok.save_pretrained("some/dir")
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from training.tiny.corpus import tokenizer_corpus

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
# Role markers are special tokens trained into the vocab from the start (ids 3-5), so a chat
# turn costs one token per marker, the embedding matrix never grows after the fact (growing it
# makes TRL/PEFT add `modules_to_save`, which vLLM cannot serve), and decoding with
# skip_special_tokens drops them.
ROLES = ("system", "user", "assistant")
ROLE_TOKENS = tuple(f"<|{role}|>" for role in ROLES)
SPECIAL_TOKENS = (BOS, EOS, PAD, *ROLE_TOKENS)

# Every turn is `<|role|>\n{content}</s>\n`; the generation prompt is `<|assistant|>\n`, so the
# model answers and then emits `</s>` (the eos) exactly like the assistant turns it was shown.
# Content may be a string or a list of OpenAI-style parts (only the text parts are used).
# Tools follow the Hermes format that vLLM's `hermes` tool-call parser reads (as Qwen's templates
# do): the tool definitions open a system turn in `<tools>...</tools>`, an assistant's calls are
# `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, and a tool's result is a user turn
# in `<tool_response>...</tool_response>`. Without tools the text is unchanged.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if tools %}"
    "{{ '<|system|>\n<tools>' }}"
    "{% for tool in tools %}{{ (tool.function if tool.function is defined else tool) | tojson }}"
    "{% endfor %}"
    "{{ '</tools>' + eos_token + '\n' }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant', 'tool'] %}"
    "{{ raise_exception('Unsupported role: ' + message['role']) }}"
    "{% endif %}"
    "{% if message['role'] == 'tool' %}"
    "{{ '<|user|>\n<tool_response>' }}{{ message['content'] }}{{ '</tool_response>' }}"
    "{% else %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% elif message['content'] is not none %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% for call in message['tool_calls'] or [] %}"
    "{% set call = call.function if call.function is defined else call %}"
    "{{ '<tool_call>' }}{{ {'name': call.name, 'arguments': call.arguments} | tojson }}"
    "{{ '</tool_call>' }}"
    "{% endfor %}"
    "{% endif %}"
    "{{ eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def train_bpe(vocab_size: int = 512, seed: int = 0) -> Tokenizer:
    """Train the raw `tokenizers.Tokenizer` (byte-level BPE) on `tokenizer_corpus(seed)`."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be at least {len(alphabet) + len(SPECIAL_TOKENS)}, got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    # No normalizer: bytes in, bytes out, so decode(encode(text)) == text for any text.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        # All 256 bytes up front, even those absent from the corpus: this is what guarantees no unknowns.
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tokenizer.train_from_iterator(tokenizer_corpus(seed), trainer=trainer)
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1", special_tokens=[(BOS, bos_id)]
    )
    return tokenizer


def build_tokenizer(vocab_size: int = 512, seed: int = 0, *, model_max_length: int = 2048) -> PreTrainedTokenizerFast:
    """Train a tokenizer and wrap it for transformers (special tokens, chat template, max length).

    Deterministic: the same arguments give a byte-identical `tokenizer.json`.
    """
    return PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(vocab_size, seed),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        # No add_bos_token=...: the `<s> $A` post-processor set by train_bpe already adds bos, and it
        # is what survives a save/load (transformers 5 does not persist add_bos_token; it keeps
        # tokenizer.json's post-processor), so the built and the reloaded tokenizer behave alike.
        model_max_length=model_max_length,
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )
