"""PyTorch reference of dfdet's training step for `npm run bench` (part "train").

usage: train_step.py JSON  with {model, input, batch, warmup, iters, threads, bf16}
  -> last stdout line: JSON {times: [seconds per step], loss: last loss}

The same step as dfdet's NativeTrainer: LayerNorm and head tensors trainable, the detector's
pooled/head methods, slerp of same-class features, cross-entropy, backward, gradient clipping
and an AdamW step. Profiling executor off, as dfdet runs TorchScript.
"""
import json
import re
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg["threads"])
torch._C._jit_set_profiling_executor(False)
torch._C._jit_set_profiling_mode(False)
model = torch.jit.load(cfg["model"])
model.train()
trainable = re.compile(cfg["trainable"])
params = []
for n, p in model.named_parameters():
    p.requires_grad_(bool(trainable.search(n)))
    if p.requires_grad:
        params.append(p)
opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
b = cfg["batch"]
size = cfg["size"]
x = torch.from_numpy(np.fromfile(cfg["input"], dtype=np.float32)[: b * 3 * size * size].reshape(b, 3, size, size))
y = torch.arange(b) % 2
g = torch.Generator().manual_seed(0)


def slerp(a, c, t):
    a = F.normalize(a, dim=-1)
    c = F.normalize(c, dim=-1)
    th = torch.acos((a * c).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    return torch.sin(th - t * th) / torch.sin(th) * a + torch.sin(t * th) / torch.sin(th) * c


def step():
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg["bf16"]):
        f = model.pooled(x)
        partner = (torch.arange(b) + 2) % b
        f = slerp(f.float(), f.float()[partner], torch.rand(b, 1, generator=g))
        logits = model.head(f)
    loss = F.cross_entropy(logits.float(), y)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    return loss.item()


for _ in range(cfg["warmup"]):
    step()
times = []
loss = 0.0
for _ in range(cfg["iters"]):
    t0 = time.perf_counter()
    loss = step()
    times.append(time.perf_counter() - t0)
print(json.dumps({"times": times, "loss": loss}))
