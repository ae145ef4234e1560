"""What a mixture's brief training minimises, as a module the one training loop can train.

`MixtureObjective(model, teachers, language_loss)` wraps the assembled mixture. Each batch row
carries the index of the expert whose language it is written in (`expert`). The loss is

- with `teachers` (distillation): Σ over target positions of KL(teacher ‖ mixture), the teacher
  being that row's own dense expert, divided by the step's target count as the loop asks;
- without: the mixture's language-model loss on the text;

plus `language_loss` × the cross-entropy of every layer's router logits against the row's
expert (mean over tokens and layers), which teaches the routers to send each language's tokens
to its expert. The teachers are frozen and kept out of the module's parameters and state.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F


class MixtureObjective(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, teachers: list[torch.nn.Module] | None, language_loss: float):
        super().__init__()
        self.model = model
        self._teachers = teachers or []  # a plain list: not parameters, not in the state dict
        self.language_loss = language_loss

    def _distill(self, logits: torch.Tensor, input_ids: torch.Tensor, labels: torch.Tensor, expert: torch.Tensor,
                 count: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher = torch.empty_like(logits)
            for e in expert.unique().tolist():
                rows = expert == e
                teacher[rows] = self._teachers[e](input_ids=input_ids[rows], use_cache=False).logits.to(logits.dtype)
        log_p = F.log_softmax(logits[:, :-1].float(), dim=-1)
        log_q = F.log_softmax(teacher[:, :-1].float(), dim=-1)
        kl = (log_q.exp() * (log_q - log_p)).sum(dim=-1)
        return (kl * (labels[:, 1:] != -100)).sum() / count

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, expert: torch.Tensor,
                num_items_in_batch: torch.Tensor | None = None, **unused: Any) -> Any:
        count = num_items_in_batch if num_items_in_batch is not None else (labels[:, 1:] != -100).sum().clamp(min=1)
        if self._teachers:
            out = self.model(input_ids=input_ids, output_router_logits=True, use_cache=False)
            loss = self._distill(out.logits, input_ids, labels, expert, count)
        else:
            out = self.model(input_ids=input_ids, labels=labels, output_router_logits=True, use_cache=False,
                             num_items_in_batch=count)
            aux = getattr(self.model, "router_aux_loss_coef", 0.0)  # HF adds the load-balancing loss: not wanted here
            loss = out.loss - (aux * out.aux_loss if out.aux_loss is not None else 0)
        if self.language_loss > 0:
            target = expert[:, None].expand_as(input_ids).reshape(-1)
            routing = torch.stack([F.cross_entropy(layer.float(), target) for layer in out.router_logits]).mean()
            loss = loss + self.language_loss * routing
        return SimpleNamespace(loss=loss, logits=out.logits)

    def to_teachers(self, device: Any) -> None:
        for t in self._teachers:
            t.to(device).eval().requires_grad_(False)
