"""Adam (METHOD.md, "Training"), written out.

The same update as ``torch.optim.Adam(params, lr, weight_decay=wd)`` (the L2 term added to the
gradient, not decoupled), in the same order of operations as torch's single-tensor path, so the
parameters come out the same bit for bit (``tests/test_model.py``). Two reasons not to call torch's:
its first use imports ``torch._dynamo``, 1.4 s of every run on this project's CPU, and it
allocates new parameter-sized tensors each step (5,000 x 256 for the first layer and the
decoder's last) where this one reuses buffers.
"""
from __future__ import annotations

import torch


class Adam:
    def __init__(self, params, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.weight_decay, self.betas, self.eps = float(lr), float(weight_decay), betas, eps
        # per parameter, as torch: its step count, and its two moments (and a buffer), made at its first gradient
        self.steps = [0] * len(self.params)
        self.state: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] = [None] * len(self.params)

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        beta1, beta2 = self.betas
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            if self.state[i] is None:
                self.state[i] = (torch.zeros_like(p), torch.zeros_like(p), torch.empty_like(p))
            avg, avg_sq, denom = self.state[i]
            self.steps[i] += 1
            t = float(self.steps[i])
            grad = p.grad
            if self.weight_decay:
                grad.add_(p, alpha=self.weight_decay)  # in place: the gradient is not read again
            avg.lerp_(grad, 1 - beta1)
            avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            torch.sqrt(avg_sq, out=denom)
            denom.div_((1 - beta2**t) ** 0.5).add_(self.eps)
            p.addcdiv_(avg, denom, value=-(self.lr / (1 - beta1**t)))
