"""Sampling responses from a policy and scoring its own tokens: what PPO, evaluation (and tests) share.

A batch is laid out as [left-padded prompts | right-padded responses]:

    pad pad p0 p1 p2 | r0 r1 r2 eos pad       ids, mask     [B, P + T]
                  ^ the logits at prompt position P-1 predict r0, so response logits are
                    logits[:, P-1 : P-1+T] and the values V(s_t) come from the same hidden states.

Position ids count real tokens only (cumsum of the mask), as `generate` does, so a left-padded
row sees the same positions as an unpadded one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    ids: torch.Tensor            # [B, P+T]
    attention: torch.Tensor      # [B, P+T]
    prompt_len: int              # P
    response: torch.Tensor       # [B, T]  response ids (pad after eos)
    response_mask: torch.Tensor  # [B, T]  1.0 on response tokens incl. eos

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.ids.to(device), self.attention.to(device), self.prompt_len, self.response.to(device),
                     self.response_mask.to(device))


def pack(prompts: list[list[int]], responses: list[list[int]], pad_id: int) -> Batch:
    P = max(len(p) for p in prompts)
    T = max(1, max(len(r) for r in responses))
    B = len(prompts)
    ids = torch.full((B, P + T), pad_id, dtype=torch.long)
    attention = torch.zeros((B, P + T), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ids[i, P - len(p):P] = torch.tensor(p)
        attention[i, P - len(p):P] = 1
        if r:
            ids[i, P:P + len(r)] = torch.tensor(r)
            attention[i, P:P + len(r)] = 1
    return Batch(ids, attention, P, ids[:, P:], attention[:, P:].float())


def cut_at_eos(tokens: list[int], eos_id: int) -> list[int]:
    """The response up to and including the first eos."""
    return tokens[: tokens.index(eos_id) + 1] if eos_id in tokens else tokens


@torch.no_grad()
def generate(model, prompts: list[list[int]], pad_id: int, eos_id: int, max_new_tokens: int,
             sample: bool = True, temperature: float = 1.0, top_k: int = 0, batch_size: int = 64) -> list[list[int]]:
    """Response token ids (cut after eos) for each prompt; sampling from the full distribution by default."""
    out: list[list[int]] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        batch = pack(chunk, [[] for _ in chunk], pad_id).to(model.device)
        ids, attention = batch.ids[:, :batch.prompt_len], batch.attention[:, :batch.prompt_len]
        kwargs = dict(do_sample=True, temperature=temperature, top_k=top_k or None, top_p=1.0) if sample else \
            dict(do_sample=False)
        generated = model.generate(input_ids=ids, attention_mask=attention, max_new_tokens=max_new_tokens,
                                   pad_token_id=pad_id, eos_token_id=eos_id, **kwargs)
        for row in generated[:, ids.shape[1]:].tolist():
            out.append(cut_at_eos(row, eos_id))
    return out


def forward(model, batch: Batch, value_head: torch.nn.Module | None = None, temperature: float = 1.0):
    """Log-probs [B, T] of the response tokens (at `temperature`), and values [B, T] if a value head is given.

    Also returns the logits [B, T, V] (for entropy)."""
    positions = (batch.attention.cumsum(-1) - 1).clamp(min=0)
    outputs = model(input_ids=batch.ids, attention_mask=batch.attention, position_ids=positions,
                    output_hidden_states=value_head is not None, use_cache=False)
    P, T = batch.prompt_len, batch.response.shape[1]
    logits = outputs.logits[:, P - 1:P - 1 + T].float() / temperature
    logp = torch.log_softmax(logits, dim=-1).gather(-1, batch.response.unsqueeze(-1)).squeeze(-1)
    values = None
    if value_head is not None:
        hidden = outputs.hidden_states[-1][:, P - 1:P - 1 + T].float()
        values = value_head(hidden).squeeze(-1)
    return logp, values, logits
