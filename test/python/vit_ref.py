"""Independent reference forward of a CLIP vision tower + deepfake head, in plain PyTorch.

Written from the architecture of HF `CLIPVisionModel` (pre-LN ViT, quick-GELU, post-LN CLS pooling)
using HF key names; it does not read dfdet's TorchScript. Computed in float64 so it is the
"true" value the float32 model is compared against.

Also holds a minimal safetensors reader/writer (Debian has no python3-safetensors).
"""

import json
import struct

import torch
import torch.nn.functional as F

ST_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.uint8: "U8",
}
ST_DTYPES_INV = {v: k for k, v in ST_DTYPES.items()}


def write_safetensors(path, tensors, metadata=None):
    """Write `tensors` (name -> tensor) in the safetensors layout, by hand."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    blobs = []
    offset = 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    js = json.dumps(header).encode()
    js += b" " * ((8 - len(js) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    base = 8 + n
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        dt = ST_DTYPES_INV[e["dtype"]]
        buf = bytearray(data[base + b : base + end])
        t = torch.frombuffer(buf, dtype=torch.uint8).view(dt) if buf else torch.empty(0, dtype=dt)
        out[name] = t.reshape(e["shape"])
    return out


def vision_forward(sd, cfg, x, prefix="vision_model."):
    """Pooled (post-LayerNorm CLS) features of images `x` [B,3,H,W] with HF CLIP vision weights `sd`."""
    g = lambda k: sd[prefix + k].to(torch.float64)  # noqa: E731
    width, heads, patch = cfg["width"], cfg["heads"], cfg["patch"]
    eps = 1e-5
    x = x.to(torch.float64)
    b = x.shape[0]
    p = F.conv2d(x, g("embeddings.patch_embedding.weight"), stride=patch)  # [B, W, gh, gw]
    p = p.flatten(2).transpose(1, 2)
    cls = g("embeddings.class_embedding").expand(b, 1, -1)
    h = torch.cat([cls, p], dim=1) + g("embeddings.position_embedding.weight")[None]
    h = F.layer_norm(h, (width,), g("pre_layrnorm.weight"), g("pre_layrnorm.bias"), eps)
    hd = width // heads
    for i in range(cfg["layers"]):
        L = f"encoder.layers.{i}."
        r = h
        y = F.layer_norm(h, (width,), g(L + "layer_norm1.weight"), g(L + "layer_norm1.bias"), eps)
        q = F.linear(y, g(L + "self_attn.q_proj.weight"), g(L + "self_attn.q_proj.bias")) * hd**-0.5
        k = F.linear(y, g(L + "self_attn.k_proj.weight"), g(L + "self_attn.k_proj.bias"))
        v = F.linear(y, g(L + "self_attn.v_proj.weight"), g(L + "self_attn.v_proj.bias"))
        n = y.shape[1]
        q, k, v = (t.reshape(b, n, heads, hd).transpose(1, 2) for t in (q, k, v))
        a = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
        a = a.transpose(1, 2).reshape(b, n, width)
        h = r + F.linear(a, g(L + "self_attn.out_proj.weight"), g(L + "self_attn.out_proj.bias"))
        r = h
        y = F.layer_norm(h, (width,), g(L + "layer_norm2.weight"), g(L + "layer_norm2.bias"), eps)
        y = F.linear(y, g(L + "mlp.fc1.weight"), g(L + "mlp.fc1.bias"))
        y = y * torch.sigmoid(1.702 * y)
        y = F.linear(y, g(L + "mlp.fc2.weight"), g(L + "mlp.fc2.bias"))
        h = r + y
    return F.layer_norm(h[:, 0], (width,), g("post_layernorm.weight"), g("post_layernorm.bias"), eps)


def detector_forward(sd, cfg, x, head_w, head_b, normalize=True, prefix="vision_model."):
    """(logits, L2-normalised features) as GenD's LinearProbe computes them."""
    pooled = vision_forward(sd, cfg, x, prefix)
    feats = F.normalize(pooled, p=2, dim=1)
    inp = feats if normalize else pooled
    logits = F.linear(inp, head_w.to(torch.float64), head_b.to(torch.float64))
    return logits, feats


# dfdet parameter names (flat, per block) -> HF names, restated here so the check does not use dfdet's mapping.
_BLOCK = {
    "ln1_weight": "layer_norm1.weight", "ln1_bias": "layer_norm1.bias",
    "q_weight": "self_attn.q_proj.weight", "q_bias": "self_attn.q_proj.bias",
    "k_weight": "self_attn.k_proj.weight", "k_bias": "self_attn.k_proj.bias",
    "v_weight": "self_attn.v_proj.weight", "v_bias": "self_attn.v_proj.bias",
    "out_weight": "self_attn.out_proj.weight", "out_bias": "self_attn.out_proj.bias",
    "ln2_weight": "layer_norm2.weight", "ln2_bias": "layer_norm2.bias",
    "fc1_weight": "mlp.fc1.weight", "fc1_bias": "mlp.fc1.bias",
    "fc2_weight": "mlp.fc2.weight", "fc2_bias": "mlp.fc2.bias",
}
_ROOT = {
    "class_embedding": "embeddings.class_embedding", "patch_weight": "embeddings.patch_embedding.weight",
    "position_embedding": "embeddings.position_embedding.weight", "pre_ln_weight": "pre_layrnorm.weight",
    "pre_ln_bias": "pre_layrnorm.bias", "post_ln_weight": "post_layernorm.weight", "post_ln_bias": "post_layernorm.bias",
}


def main():
    """usage: vit_ref.py MODEL.pt INPUT.f32 BATCH → JSON {logits, features, stats} of the reference forward on the
    TorchScript file's parameter values (only the tensors are read, never its code)."""
    import sys

    model, inp, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    params = dict(torch.jit.load(model).named_parameters())
    sd = {}
    for k, t in params.items():
        if k.startswith("layer"):
            i, leaf = k[len("layer"):].split(".", 1)
            sd[f"vision_model.encoder.layers.{i}.{_BLOCK[leaf]}"] = t.detach()
        elif k in _ROOT:
            sd["vision_model." + _ROOT[k]] = t.detach()
    w = sd["vision_model.embeddings.class_embedding"].shape[0]
    patch = sd["vision_model.embeddings.patch_embedding.weight"].shape[-1]
    n = sd["vision_model.embeddings.position_embedding.weight"].shape[0]
    image = int(round((n - 1) ** 0.5)) * patch
    layers = len([k for k in sd if k.endswith("layer_norm1.weight")])
    heads = int(sys.argv[4])
    cfg = dict(width=w, patch=patch, image=image, layers=layers, heads=heads)
    import numpy as np

    x = torch.from_numpy(np.fromfile(inp, dtype="<f4").reshape(batch, 3, image, image))
    logits, feats = detector_forward(sd, cfg, x, params["head_weight"].detach(), params["head_bias"].detach(), True)
    mats = torch.cat([t.flatten() for k, t in params.items() if t.dim() >= 2 and "position" not in k])
    print(json.dumps({"logits": logits.tolist(), "features": feats.tolist(), "cfg": cfg, "matrix_std": mats.std().item()}))


if __name__ == "__main__":
    main()
