"""Python reference for dfdet's model-load benchmark: time and peak resident memory of
torch.jit.load in a fresh process.

usage: load.py '{"model": MODEL_PATH}'
prints one JSON line: {"torch", "load_s", "baseline_rss", "rss", "hwm"} (bytes; the baseline is
measured after `import torch`, before the load).
"""
import json
import sys
import time

import torch


def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def main():
    path = json.loads(sys.argv[1])["model"]
    before = status()
    t0 = time.perf_counter()
    model = torch.jit.load(path, map_location="cpu")
    load_s = time.perf_counter() - t0
    after = status()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    print(json.dumps({"torch": torch.__version__, "load_s": load_s, "baseline_rss": before["VmRSS"],
                      "rss": after["VmRSS"], "hwm": after["VmHWM"], "parameter_bytes": params}))


if __name__ == "__main__":
    main()
