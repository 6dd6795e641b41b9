"""Writes TorchScript files the way users export them (torch.jit.trace and torch.jit.script) plus
the outputs PyTorch itself computes on fixed inputs, for test/native.test.ts.

usage: native_ref.py OUT_DIR  -> prints JSON {files, inputs, outputs}
"""
import json
import sys

import torch

torch.manual_seed(0)
out = sys.argv[1]


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)
        self.ln = torch.nn.LayerNorm(4)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        y = self.conv(x).mean(dim=(2, 3))
        return torch.softmax(self.fc(self.ln(y)), dim=-1)


class Multi(torch.nn.Module):
    def forward(self, x, y):
        return {"sum": x + y, "prod": x * y}

    @torch.jit.export
    def pair(self, x):
        return x.max(), [x.argmax(), x.abs()]


m = Tiny().eval()
x = torch.randn(2, 3, 9, 9)
traced = torch.jit.trace(m, x)
traced.save(f"{out}/traced.pt")
scripted = torch.jit.script(Multi())
scripted.save(f"{out}/scripted.pt")
a = torch.tensor([1.5, -2.0, 3.0])
b = torch.tensor([2.0, 4.0, -1.0])
with torch.no_grad():
    y = m(x)
    d = scripted(a, b)
    mx, (am, ab) = scripted.pair(a)
print(json.dumps({
    "x": x.flatten().tolist(), "xShape": list(x.shape),
    "y": y.flatten().tolist(), "yShape": list(y.shape),
    "a": a.tolist(), "b": b.tolist(),
    "sum": d["sum"].tolist(), "prod": d["prod"].tolist(),
    "max": mx.item(), "argmax": am.item(), "abs": ab.tolist(),
}))
