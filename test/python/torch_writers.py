"""Write torch.save / pickle test files for dfdet's torch-zip and pickle readers; print expectations as JSON.

usage: torch_writers.py OUTDIR
Writes:
  tensors.pt        torch.save of a dict of tensors (dtypes, strided views, offsets, empty, scalar)
  deflated.pt       the same archive re-zipped with deflate compression
  scripted.pt       a TorchScript archive (must be rejected: load it as a model)
  legacy.pt         the pre-1.6 (non-zip) format (must be rejected)
  pickle_p{2..5}.bin  pickle.dumps of plain data at protocols 2-5
stdout: {"tensors": {name: {"dtype", "shape", "values"}}, "plain": <JSON of the plain data>}
"""

import collections
import json
import os
import pickle
import sys
import zipfile

import torch


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(5)
    base = torch.randn(4, 6, generator=g)
    t = collections.OrderedDict()
    t["f32"] = torch.randn(3, 5, generator=g)
    t["f16"] = torch.randn(7, generator=g).half()
    t["bf16"] = torch.randn(2, 3, generator=g).bfloat16()
    t["f64"] = torch.randn(2, 2, generator=g).double()
    t["i64"] = torch.tensor([1, -2, 2**40], dtype=torch.int64)
    t["i32"] = torch.tensor([[7, -8]], dtype=torch.int32)
    t["i16"] = torch.tensor([300, -300], dtype=torch.int16)
    t["i8"] = torch.tensor([-1, 5], dtype=torch.int8)
    t["u8"] = torch.tensor([0, 255], dtype=torch.uint8)
    t["bool"] = torch.tensor([True, False, True])
    t["transposed"] = base.t()  # strides (1, 6)
    t["slice"] = base[1:3, 2:5]  # offset 8, strides (6, 1)
    t["stepped"] = base[:, ::2]  # strides (6, 2)
    t["expanded"] = torch.randn(3, 1, generator=g).expand(3, 4)  # stride 0
    t["empty"] = torch.zeros(0, 3)
    t["scalar"] = torch.tensor(2.5)
    t["param"] = torch.nn.Parameter(torch.randn(2, generator=g))
    obj = {"weights": t, "meta": {"name": "x", "n": 3, "ok": True, "ratio": 0.5, "nested": [1, (2, 3)]}}
    torch.save(obj, os.path.join(out, "tensors.pt"))
    with zipfile.ZipFile(os.path.join(out, "tensors.pt")) as src, zipfile.ZipFile(
        os.path.join(out, "deflated.pt"), "w", compression=zipfile.ZIP_DEFLATED
    ) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), os.path.join(out, "scripted.pt"))
    torch.save({"a": torch.ones(2)}, os.path.join(out, "legacy.pt"), _use_new_zipfile_serialization=False)

    plain = {
        "str": "héllo",
        "int": 7,
        "neg": -70000,
        "big": 2**62,
        "float": -1.25,
        "none": None,
        "t": True,
        "f": False,
        "list": [1, 2, [3, 4]],
        "tuple": (1, "a"),
        "bytes": b"\x00\xff",
        "dict": {"k": {"z": 1}},
        "empty": [],
    }
    for p in (2, 3, 4, 5):
        with open(os.path.join(out, f"pickle_p{p}.bin"), "wb") as f:
            f.write(pickle.dumps(plain, protocol=p))

    def values(x):
        x = x.detach()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        if x.dtype == torch.bool:
            x = x.int()
        return x.reshape(-1).tolist()

    exp = {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape), "values": values(v)} for k, v in t.items()}
    plain_json = dict(plain, tuple=[1, "a"], bytes=[0, 255], big=str(2**62))
    print(json.dumps({"tensors": exp, "plain": plain_json}))


if __name__ == "__main__":
    main()
