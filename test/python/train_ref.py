"""Plain-PyTorch reference of dfdet's training step (LN-tuning), for test/train-step.test.ts.

usage: train_ref.py < JSON {base, trained, images, shape, labels, partner, weight, lrs,
                             trainable, decay, weightDecay, labelSmoothing, alignment,
                             uniformity, gradClip}
  -> JSON {steps: [{loss, ce, alignment, uniformity, gradNorm}],
           params: {name: {trainable, refVsDfdet, dfdetVsBase}}}

The base detector file is run with its own TorchScript methods (pooled, head); everything else
(slerp, the losses, AdamW, clipping) is PyTorch's own or written here from the papers'
definitions. `images` is a raw float32 file.
"""
import json
import math
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch._C._jit_set_profiling_executor(False)
torch._C._jit_set_profiling_mode(False)

cfg = json.load(sys.stdin)
model = torch.jit.load(cfg["base"])
model.train()
base = {n: p.detach().clone() for n, p in model.named_parameters()}

train_re = re.compile(cfg["trainable"])
decay_re = re.compile(cfg["decay"])
decayed, plain = [], []
for n, p in model.named_parameters():
    on = bool(train_re.search(n))
    p.requires_grad_(on)
    if on:
        (decayed if decay_re.search(n) else plain).append(p)
opt = torch.optim.AdamW(
    [{"params": decayed, "weight_decay": cfg["weightDecay"]}, {"params": plain, "weight_decay": 0.0}],
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
)

x = torch.from_numpy(np.fromfile(cfg["images"], dtype=np.float32).reshape(cfg["shape"]))
y = torch.tensor(cfg["labels"], dtype=torch.long)
partner = torch.tensor(cfg["partner"], dtype=torch.long) if cfg.get("partner") is not None else None
weight = torch.tensor(cfg["weight"], dtype=torch.float32).unsqueeze(1) if cfg.get("weight") is not None else None


def slerp(a, b, t):
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    theta = torch.acos((a * b).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    return torch.sin(theta - t * theta) / torch.sin(theta) * a + torch.sin(t * theta) / torch.sin(theta) * b


def alignment(e, labels):
    i, j = torch.triu_indices(len(labels), len(labels), 1)
    same = labels[i] == labels[j]
    if not same.any():
        return e.sum() * 0
    return (e[i[same]] - e[j[same]]).norm(dim=1).pow(2).mean()


def uniformity(e):
    return torch.pdist(e).pow(2).mul(-2).exp().mean().clamp(min=1e-6).log()


steps = []
for lr in cfg["lrs"]:
    f = model.pooled(x)
    if partner is not None:
        has = partner >= 0
        other = f[torch.where(has, partner, torch.arange(len(partner)))]
        f = torch.where(has.unsqueeze(1), slerp(f, other, weight), f)
    logits = model.head(f)
    ce = F.cross_entropy(logits, y, label_smoothing=cfg["labelSmoothing"])
    emb = F.normalize(f, dim=1)
    al = alignment(emb, y)
    un = uniformity(emb)
    loss = ce + cfg["alignment"] * al + cfg["uniformity"] * un
    opt.zero_grad()
    loss.backward()
    params = decayed + plain
    clip = cfg["gradClip"] if cfg["gradClip"] > 0 else math.inf
    norm = torch.nn.utils.clip_grad_norm_(params, clip)
    for g in opt.param_groups:
        g["lr"] = lr
    opt.step()
    steps.append({"loss": loss.item(), "ce": ce.item(), "alignment": al.item(), "uniformity": un.item(), "gradNorm": float(norm)})

trained = dict(torch.jit.load(cfg["trained"]).named_parameters())
out = {}
for n, p in model.named_parameters():
    t = trained[n].detach()
    out[n] = {
        "trainable": bool(train_re.search(n)),
        "refVsDfdet": (p.detach() - t).abs().max().item(),
        "refVsBase": (p.detach() - base[n]).abs().max().item(),
        "dfdetVsBase": (t - base[n]).abs().max().item(),
    }
print(json.dumps({"steps": steps, "params": out}))
