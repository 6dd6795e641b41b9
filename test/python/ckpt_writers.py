"""Write random CLIP-vision detector weights in the layouts dfdet converts, plus reference outputs.

usage: ckpt_writers.py OUTDIR '{"width":64,"layers":2,"heads":4,"patch":32,"image":224,"seed":1,
                               "variants":["hf","hf-f16","hf-bf16","gend","lightning"]}'

Files (only the requested variants):
  input.f32               float32 images [2,3,image,image], little-endian
  hf.safetensors          HF CLIPModel layout (vision_model.* plus text/projection keys to ignore)
  head.safetensors        linear.weight [2,W], linear.bias [2]
  hf-f16.safetensors / hf-bf16.safetensors   the same weights stored as float16 / bfloat16
  gend/model.safetensors + gend/config.json  GenD HF layout (feature_extractor.vision_model.*, model.linear.*), head "linear"
  lightning.ckpt          torch.save of a Lightning-style checkpoint with PEFT LN-tuning keys
  ref.json                {variant: {logits: [[..]], features: [[..]]}} from vit_ref.detector_forward (float64),
                          also printed to stdout
"""

import collections
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from vit_ref import detector_forward, write_safetensors  # noqa: E402


class HyperParams:
    """A custom class in the checkpoint: dfdet must keep it as an inert placeholder."""

    def __init__(self):
        self.lr = 3e-4
        self.tags = ["a", "b"]


class AttributeDict(dict):
    """Like Lightning's AttributeDict: a dict subclass pickled with NEWOBJ + SETITEMS."""


def make_weights(cfg, gen):
    w, layers, p, s = cfg["width"], cfg["layers"], cfg["patch"], cfg["image"]
    n = (s // p) ** 2 + 1
    r = lambda *shape, std=0.02: torch.randn(*shape, generator=gen) * std  # noqa: E731
    ln = lambda: (1 + r(w, std=0.1), r(w, std=0.1))  # noqa: E731
    sd = collections.OrderedDict()
    v = "vision_model."
    sd[v + "embeddings.class_embedding"] = r(w, std=0.5)
    sd[v + "embeddings.patch_embedding.weight"] = r(w, 3, p, p, std=0.05)
    sd[v + "embeddings.position_embedding.weight"] = r(n, w, std=0.2)
    sd[v + "pre_layrnorm.weight"], sd[v + "pre_layrnorm.bias"] = ln()
    for i in range(layers):
        L = f"{v}encoder.layers.{i}."
        for proj in ("q", "k", "v", "out"):
            sd[L + f"self_attn.{proj}_proj.weight"] = r(w, w, std=0.08)
            sd[L + f"self_attn.{proj}_proj.bias"] = r(w, std=0.05)
        sd[L + "layer_norm1.weight"], sd[L + "layer_norm1.bias"] = ln()
        sd[L + "mlp.fc1.weight"] = r(4 * w, w, std=0.08)
        sd[L + "mlp.fc1.bias"] = r(4 * w, std=0.05)
        sd[L + "mlp.fc2.weight"] = r(w, 4 * w, std=0.04)
        sd[L + "mlp.fc2.bias"] = r(w, std=0.05)
        sd[L + "layer_norm2.weight"], sd[L + "layer_norm2.bias"] = ln()
    sd[v + "post_layernorm.weight"], sd[v + "post_layernorm.bias"] = ln()
    head_w = r(2, w, std=1.0)
    head_b = r(2, std=0.1)
    return sd, head_w, head_b


def as_list(t):
    return t.tolist()


def main():
    out = sys.argv[1]
    cfg = json.loads(sys.argv[2])
    variants = cfg.get("variants", ["hf"])
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(cfg.get("seed", 0))
    sd, head_w, head_b = make_weights(cfg, gen)
    s = cfg["image"]
    x = torch.randn(2, 3, s, s, generator=gen)
    x.numpy().astype("<f4").tofile(os.path.join(out, "input.f32"))
    refs = {}

    def ref(name, weights, normalize=True, hw=head_w, hb=head_b):
        logits, feats = detector_forward(weights, cfg, x, hw, hb, normalize)
        refs[name] = {"logits": as_list(logits), "features": as_list(feats)}

    extra = {
        "text_model.embeddings.token_embedding.weight": torch.randn(10, 8, generator=gen),
        "visual_projection.weight": torch.randn(8, cfg["width"], generator=gen),
        "logit_scale": torch.tensor(4.6052),
        "vision_model.embeddings.position_ids": torch.arange((s // cfg["patch"]) ** 2 + 1)[None],
    }
    if "hf" in variants:
        write_safetensors(os.path.join(out, "hf.safetensors"), {**sd, **extra}, {"format": "pt"})
        write_safetensors(os.path.join(out, "head.safetensors"), {"linear.weight": head_w, "linear.bias": head_b})
        ref("hf", sd)
    for name, dt in (("hf-f16", torch.float16), ("hf-bf16", torch.bfloat16)):
        if name in variants:
            cast = collections.OrderedDict((k, t.to(dt)) for k, t in sd.items())
            write_safetensors(os.path.join(out, f"{name}.safetensors"), cast)
            ref(name, cast)
    if "gend" in variants:
        os.makedirs(os.path.join(out, "gend"), exist_ok=True)
        g = collections.OrderedDict(("feature_extractor." + k, t) for k, t in sd.items())
        g["feature_extractor.visual_projection.weight"] = extra["visual_projection.weight"]
        g["model.linear.weight"] = head_w
        g["model.linear.bias"] = head_b
        write_safetensors(os.path.join(out, "gend", "model.safetensors"), g, {"format": "pt"})
        with open(os.path.join(out, "gend", "config.json"), "w") as f:
            json.dump({"architectures": ["GenD"], "backbone": "openai/clip-vit-large-patch14", "head": "linear", "model_type": "GenD"}, f)
        ref("gend", sd, normalize=False)
    if "lightning" in variants:
        # PEFT LN-tuning: each LayerNorm becomes base_layer (frozen CLIP values) + ln_tuning_layers.default (trained).
        prefix = "feature_extractor.base_model.model."
        state = collections.OrderedDict()
        for k, t in sd.items():
            is_ln = any(f"{n}." in k for n in ("layer_norm1", "layer_norm2", "pre_layrnorm", "post_layernorm"))
            if is_ln:
                mod, leaf = k.rsplit(".", 1)
                state[f"{prefix}{mod}.base_layer.{leaf}"] = t + 0.5  # must be ignored
                state[f"{prefix}{mod}.ln_tuning_layers.default.{leaf}"] = t.clone()
            elif t.dim() == 2 and t.shape[0] == t.shape[1]:
                state[prefix + k] = t.t().contiguous().t()  # non-contiguous strides on disk
            else:
                state[prefix + k] = t.clone()
        state[prefix + "visual_projection.weight"] = extra["visual_projection.weight"]
        both = torch.cat([head_w.flatten(), head_b])  # head weight and bias share one storage
        state["model.linear.weight"] = both[: head_w.numel()].view(head_w.shape)
        state["model.linear.bias"] = both[head_w.numel() :]
        hp = AttributeDict(head="LinearNorm", backbone="openai/clip-vit-large-patch14", lr=3e-4, extra=HyperParams())
        ckpt = {
            "epoch": 3,
            "global_step": 1234,
            "pytorch-lightning_version": "2.4.0",
            "state_dict": state,
            "hyper_parameters": hp,
            "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.97), "dirpath": "/runs/x"}},
            "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999)}]}],
            "lr_schedulers": [],
            "misc": {"big": 2**70, "neg": -5, "f": 1.5, "none": None, "set": {1, 2}, "bytes": b"\x00\x01", "t": (1, "a", None)},
        }
        torch.save(ckpt, os.path.join(out, "lightning.ckpt"))
        ref("lightning", sd, normalize=True)
    with open(os.path.join(out, "ref.json"), "w") as f:
        json.dump(refs, f)
    print(json.dumps(refs))


if __name__ == "__main__":
    main()
