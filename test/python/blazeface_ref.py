#!/usr/bin/python3
"""References for the BlazeFace port (test/faces-*.test.ts).

  blazeface_ref.py onnx  MODEL.onnx IN.f32 B OUT_PREFIX
      Run the original ONNX model with OpenCV's DNN module (independent of our converter and of
      torch) on B images given as float32 NCHW [B,3,256,256] in [-1,1] (the ONNX graph is
      NHWC, batch 1: transposed and run one by one). Writes
        OUT_PREFIX.raw.f32  [B,896,17]  logit, then the 16 regressors in input pixels
        OUT_PREFIX.dec.f32  [B,896,17]  sigmoid score, then cx,cy,w,h,kp.. normalised to [0,1],
                                        decoded here with numpy from MediaPipe's anchor scheme.
  blazeface_ref.py torch MODEL.pt IN.f32 B OUT_PREFIX
      Same files from our TorchScript file via torch.jit.load (`raw` and `forward` methods).
  blazeface_ref.py serve MODEL.pt
      Run `forward` for a test-side runner until stdin closes. Request: a JSON line
      {"method": "forward", "shape": [...]} then the float32 bytes; reply: a JSON line
      {"shapes": [[...], ...]} then the float32 bytes of each output, or {"error": "..."}.
  blazeface_ref.py warp IN.rgb W H M0,M1,M2,M3,M4,M5 SIZE OUT.rgb
      cv2.warpAffine(INTER_LINEAR, BORDER_CONSTANT 0) of raw RGB bytes, output SIZE x SIZE.
  blazeface_ref.py umeyama '{"src": [[x,y],...], "dst": [[x,y],...]}'
      Umeyama (1991) similarity with scaling (SVD form, as skimage's SimilarityTransform), as JSON
      [a, b, c, d, e, f] of the 2x3 matrix.
  blazeface_ref.py bench MODEL.pt THREADS
      ms per forward of one 256x256 image and of a batch of 8, plain and frozen, as JSON.
"""
import json
import sys
import time

import numpy as np


def anchors():
    out = []
    for cells, per in ((16, 2), (8, 6)):
        for y in range(cells):
            for x in range(cells):
                out += [((x + 0.5) / cells, (y + 0.5) / cells)] * per
    return np.array(out, np.float32)


def decode(raw):
    """raw [B,896,17] -> [B,896,17] sigmoid score + normalised geometry (MediaPipe's scheme)."""
    a = anchors()[None]
    out = np.empty_like(raw)
    out[..., 0] = 1 / (1 + np.exp(-raw[..., 0].astype(np.float64)))
    reg = raw[..., 1:] / 256.0
    out[..., 1:3] = reg[..., 0:2] + a
    out[..., 3:5] = reg[..., 2:4]
    for k in range(6):
        out[..., 5 + 2 * k:7 + 2 * k] = reg[..., 4 + 2 * k:6 + 2 * k] + a
    return out


def read_input(path, b):
    x = np.fromfile(path, np.float32)
    return x.reshape(b, 3, 256, 256)


def run_onnx(model, x):
    import cv2
    net = cv2.dnn.readNetFromONNX(model)
    rows = []
    for img in x:
        net.setInput(np.ascontiguousarray(img.transpose(1, 2, 0)[None]))
        s16, s8, r16, r8 = net.forward(['Identity:0', 'Identity_1:0', 'Identity_2:0', 'Identity_3:0'])
        s = np.concatenate([s16.reshape(512, 1), s8.reshape(384, 1)], 0)
        r = np.concatenate([r16.reshape(512, 16), r8.reshape(384, 16)], 0)
        rows.append(np.concatenate([s, r], 1))
    return np.stack(rows).astype(np.float32)


def run_torch(model, x):
    import torch
    m = torch.jit.load(model)
    with torch.no_grad():
        t = torch.from_numpy(x)
        s16, s8, r16, r8 = m.raw(t)
        raw = torch.cat([torch.cat([s16, s8], 1), torch.cat([r16, r8], 1)], 2).numpy()
        scores, boxes = m(t)
        dec = torch.cat([scores.unsqueeze(2), boxes], 2).numpy()
    return raw, dec


def serve(model):
    import torch
    torch.set_num_threads(1)
    m = torch.jit.load(model)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        line = inp.readline()
        if not line:
            return
        req = json.loads(line)
        n = int(np.prod(req['shape']))
        buf = inp.read(4 * n)
        try:
            x = torch.frombuffer(bytearray(buf), dtype=torch.float32).reshape(req['shape'])
            with torch.no_grad():
                res = getattr(m, req['method'])(x)
            res = list(res) if isinstance(res, (tuple, list)) else [res]
            out.write((json.dumps({'shapes': [list(r.shape) for r in res]}) + '\n').encode())
            for r in res:
                out.write(r.contiguous().numpy().astype(np.float32).tobytes())
        except Exception as e:  # reported to the test, which fails with the message
            out.write((json.dumps({'error': str(e)}) + '\n').encode())
        out.flush()


def bench(model, threads):
    import torch
    torch.set_num_threads(threads)
    m = torch.jit.load(model)
    res = {'threads': threads, 'torch': torch.__version__}
    frozen = torch.jit.optimize_for_inference(torch.jit.freeze(m.eval()))
    for name, f in (('plain', m), ('frozen', frozen)):
        for b in (1, 8):
            x = torch.rand(b, 3, 256, 256) * 2 - 1
            with torch.no_grad():
                for _ in range(3):
                    f(x)
                n = 20 if b == 1 else 4
                best = float('inf')
                for _ in range(3):
                    t = time.perf_counter()
                    for _ in range(n):
                        f(x)
                    best = min(best, (time.perf_counter() - t) / n / b * 1000)
            res['%s_b%d_ms_per_image' % (name, b)] = round(best, 2)
    print(json.dumps(res))


def warp(inp, w, h, m, size, out):
    import cv2
    img = np.fromfile(inp, np.uint8).reshape(h, w, 3)
    M = np.array([float(v) for v in m.split(',')], np.float64).reshape(2, 3)
    res = cv2.warpAffine(img, M, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    res.tofile(out)


def umeyama(src, dst):
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    n, d = src.shape
    ms, md = src.mean(0), dst.mean(0)
    sd, dd = src - ms, dst - md
    A = dd.T @ sd / n
    D = np.ones(d)
    if np.linalg.det(A) < 0:
        D[-1] = -1
    U, S, V = np.linalg.svd(A)
    R = U @ np.diag(D) @ V
    scale = (S @ D) / sd.var(0).sum()
    t = md - scale * R @ ms
    M = np.hstack([scale * R, t[:, None]])
    return M.reshape(-1).tolist()


def main():
    mode = sys.argv[1]
    if mode == 'warp':
        return warp(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), sys.argv[7])
    if mode == 'umeyama':
        req = json.loads(sys.argv[2])
        return print(json.dumps(umeyama(req['src'], req['dst'])))
    if mode == 'serve':
        return serve(sys.argv[2])
    if mode == 'bench':
        return bench(sys.argv[2], int(sys.argv[3]))
    model, inp, b, prefix = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    x = read_input(inp, b)
    if mode == 'onnx':
        raw = run_onnx(model, x)
        dec = decode(raw)
    elif mode == 'torch':
        raw, dec = run_torch(model, x)
    else:
        raise SystemExit('unknown mode ' + mode)
    raw.astype(np.float32).tofile(prefix + '.raw.f32')
    dec.astype(np.float32).tofile(prefix + '.dec.f32')
    print(json.dumps({'ok': True, 'batch': b}))


if __name__ == '__main__':
    main()
