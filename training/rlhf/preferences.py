"""Human preference data: JSONL files -> (prompt, chosen, rejected) pairs, rendered as the server sees them.

The row forms (a labelled pair, a ranking, a judged tie) and their checks are
adapter_formats/preferences.py, shared with the server's feedback page, which writes them. Bad rows
raise BadRow naming file:line (or are skipped and counted with bad_rows: skip).

Rendering: the prompt becomes the exact text a served completion would continue. Plain prompts
go through the recipe's template (alpaca, raw, custom, or chat = the tokenizer's chat template
with one user turn); chat-form prompts always use the chat template. The chat template writes the
bos token itself; it is removed from the text because the tokenizer adds it back when encoding,
which is how every trainer here (and vLLM's /v1/completions) tokenizes a prompt string.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from adapter_formats.preferences import PreferencePair, pairs_from_row
from adapter_formats.rows import BadRow
from training.data.records import read_json_rows
from training.templates import PromptTemplate, resolve_template


@dataclass
class PreferenceDataConfig:
    """Preference data: files, prompt template and the held-out split."""

    train: str = ""
    """Preference JSONL: rows {prompt, chosen, rejected} or {prompt, responses: [best, ..., worst]}."""
    test: str | None = None
    """Held-out preference file; if unset, `test_fraction` of the prompts (all their pairs) are held out."""
    test_fraction: float = 0.1
    """Fraction of prompts held out when no test file is given."""
    template: str = "chat"
    """Prompt template for plain-text prompts: chat (tokenizer's chat template), alpaca, raw, or a string with {prompt}."""
    template_name: str | None = None
    """Name recorded in the manifest for a custom template."""
    bad_rows: Literal["error", "skip"] = "error"
    """Malformed rows: stop with file:line, or skip and count them."""
    max_pairs: int | None = None
    """Use at most this many training pairs (quick experiments)."""

    def validate(self) -> None:
        if not 0 <= self.test_fraction < 1:
            raise ValueError("data.test_fraction must be in [0, 1)")
        resolve_template(self.template, self.template_name)


def read_preferences(path: str | Path, bad_rows: str = "error") -> tuple[list[PreferencePair], int]:
    """All pairs in a preference JSONL file, and the number of skipped rows."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"preference file {path} does not exist")
    pairs, skipped = [], 0
    for where, row in read_json_rows(path):
        try:
            if isinstance(row, BadRow):
                raise row
            pairs.extend(pairs_from_row(row, where))
        except BadRow:
            if bad_rows == "error":
                raise
            skipped += 1
    if not pairs:
        raise BadRow(str(path), "no preference pairs")
    return pairs, skipped


def render_prompt(prompt: str | tuple[dict, ...], template: PromptTemplate, tokenizer) -> str:
    """The text a served completion continues (without the bos the tokenizer adds)."""
    if isinstance(prompt, str) and not template.uses_chat_template:
        return template.render(prompt)
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    bos = tokenizer.bos_token
    return text[len(bos):] if bos and text.startswith(bos) else text


@dataclass
class PreferenceSplits:
    train: list[dict[str, str]]
    """Rows {prompt (rendered), chosen, rejected}: TRL's standard (non-chat) preference format."""
    test: list[dict[str, str]]
    template: PromptTemplate
    report: dict[str, Any]

    @staticmethod
    def prompts(rows: list[dict[str, str]]) -> list[str]:
        """Distinct rendered prompts, in first-seen order."""
        return list(dict.fromkeys(r["prompt"] for r in rows))


def load_preferences(cfg: PreferenceDataConfig, tokenizer, seed: int = 0) -> PreferenceSplits:
    """Read, render and split (by prompt: no held-out prompt has a pair in training)."""
    if not cfg.train:
        raise ValueError("no preference data: set data.train (or --train)")
    template = resolve_template(cfg.template, cfg.template_name)
    pairs, skipped = read_preferences(cfg.train, cfg.bad_rows)
    rows = [{"prompt": render_prompt(p.prompt, template, tokenizer), "chosen": p.chosen, "rejected": p.rejected}
            for p in pairs]
    if cfg.test:
        test_pairs, test_skipped = read_preferences(cfg.test, cfg.bad_rows)
        skipped += test_skipped
        test = [{"prompt": render_prompt(p.prompt, template, tokenizer), "chosen": p.chosen,
                 "rejected": p.rejected} for p in test_pairs]
        held = {r["prompt"] for r in test}
        train = [r for r in rows if r["prompt"] not in held]
    else:
        prompts = PreferenceSplits.prompts(rows)
        random.Random(seed).shuffle(prompts)
        held = set(prompts[: round(len(prompts) * cfg.test_fraction)])
        train = [r for r in rows if r["prompt"] not in held]
        test = [r for r in rows if r["prompt"] in held]
    if cfg.max_pairs:
        train = train[: cfg.max_pairs]
    if not train:
        raise ValueError(f"{cfg.train}: no training pairs left after holding out the test prompts")
    report = {"file": cfg.train, "train_pairs": len(train), "test_pairs": len(test),
              "train_prompts": len(PreferenceSplits.prompts(train)), "test_prompts": len(PreferenceSplits.prompts(test)),
              "skipped_rows": skipped}
    return PreferenceSplits(train, test, template, report)
