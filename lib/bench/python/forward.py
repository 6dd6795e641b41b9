"""Python reference for dfdet's forward benchmarks: the same TorchScript file, same input, same
thread count, run by PyTorch itself (torch.jit.load + torch.inference_mode).

A small server, so the benchmark can interleave PyTorch runs with the addon's:
usage: forward.py '{"model": PATH, "input": RAW_FLOAT32_FILE, "item_shape": [3, 224, 224], "threads": 2, "optimize": false, "jit_profiling": false}'
  prints {"torch", "threads", "load_s"} once loaded; then for each stdin line
  {"batch": B, "warmup": W, "iters": N} prints {"batch", "times": [s, ...], "output": [...]}
  ("output": the first output tensor of the last timed run, flattened, first 64 values, for a
  parity check). Inputs are the first B items of the raw float32 file. Exits at end of stdin.
"""
import json
import sys
import time

import numpy as np
import torch


def first_tensor(v):
    if isinstance(v, torch.Tensor):
        return v
    if isinstance(v, (list, tuple)):
        return first_tensor(v[0])
    if isinstance(v, dict):
        return first_tensor(next(iter(v.values())))
    raise TypeError(f"no tensor in {type(v)}")


def main():
    a = json.loads(sys.argv[1])
    torch.set_num_threads(int(a["threads"]))
    # Same TorchScript executor as the addon (dfdet turns the profiling executor off by default),
    # so both sides run the same graphs and neither pays the other's warm-up.
    if not a.get("jit_profiling", True):
        torch._C._jit_set_profiling_executor(False)
        torch._C._jit_set_profiling_mode(False)
    item = [int(d) for d in a["item_shape"]]
    per = int(np.prod(item))
    data = np.fromfile(a["input"], dtype=np.float32)
    t0 = time.perf_counter()
    model = torch.jit.load(a["model"], map_location="cpu")
    model.eval()
    if a.get("optimize", False):
        model = torch.jit.optimize_for_inference(torch.jit.freeze(model))
    load_s = time.perf_counter() - t0
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "load_s": load_s}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        b = int(req["batch"])
        x = torch.from_numpy(data[: b * per].copy()).reshape([b] + item)
        times = []
        out = None
        with torch.inference_mode():
            for _ in range(int(req.get("warmup", 0))):
                model(x)
            for _ in range(int(req["iters"])):
                t = time.perf_counter()
                out = model(x)
                times.append(time.perf_counter() - t)
        output = first_tensor(out).flatten()[:64].tolist() if out is not None else []
        print(json.dumps({"batch": b, "times": times, "output": output}), flush=True)


if __name__ == "__main__":
    main()
