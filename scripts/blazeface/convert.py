#!/usr/bin/python3
"""Translate MediaPipe BlazeFace ("back", 256x256) from ONNX to TorchScript.

Usage: /usr/bin/python3 convert.py MODEL.onnx OUT.pt [--sha256 HEX] [--source TEXT]

The ONNX graph (opset 12, exported from TFLite via tf2onnx and made Barracuda-compatible by
Keijiro Takahashi) uses only Transpose, Conv, Relu, Add, MaxPool, ConstantOfShape, Concat and
Reshape. Rather than hand-writing the architecture, this script reads the graph with the `onnx`
package and generates the Python source of an equivalent `torch.nn.Module` (one statement per
ONNX node, every Conv becomes a named `nn.Conv2d` loaded with the ONNX weights), then compiles
it with `torch.jit.script`. Shapes baked into the graph for batch 1 (Reshape targets,
ConstantOfShape channel padding) are rewritten to use the run-time batch and spatial sizes, so the
saved module accepts any batch, and `dense` any input size (multiples of 32).

Saved module (TorchScript, loads in libtorch >= 1.13):
  forward(x: float32 [B,3,256,256] NCHW, RGB in [-1,1]) -> (scores [B,896], boxes [B,896,16])
    scores: sigmoid probabilities, anchors ordered 16x16 cells x 2 anchors then 8x8 x 6 (row-major,
            y then x then anchor), as in MediaPipe.
    boxes:  per anchor [cx, cy, w, h, kp0x, kp0y, ..., kp5x, kp5y] in normalised [0,1] coordinates
            of the 256x256 input (x right, y down). Keypoints in MediaPipe's order: right eye,
            left eye, nose tip, mouth centre, right ear tragion, left ear tragion (subject's right,
            i.e. image left for a frontal face).
  raw(x) -> (scores16 [B,512,1], scores8 [B,384,1], regress16 [B,512,16], regress8 [B,384,16])
    the four ONNX outputs (logits and pixel offsets) unchanged, for parity checks.
  dense(x: [B,3,H,W], H and W positive multiples of 32) -> (scores [B,N], boxes [B,N,16])
    the network run fully convolutionally over a whole image of any such size: anchors on the
    (H/16)x(W/16) grid x 2 then (H/32)x(W/32) x 6, computed in the graph, N in all; boxes in input
    pixels, always float32. On a 256x256 input: forward's scores, and its boxes x 256, exactly.
    (The stride-2 convolutions' TF "SAME" padding is the same for every even size, so a 256x256
    window of a larger input sees what forward sees, up to the context beyond its edges.)
Attributes: input_size=256, num_anchors=896, and an extra file 'dfdet.json' with metadata.
"""
import argparse
import hashlib
import json
import sys
import types

import numpy as np
import onnx
import torch
from onnx import numpy_helper

SUPPORTED = {'Transpose', 'Conv', 'Relu', 'Add', 'MaxPool', 'ConstantOfShape', 'Concat', 'Reshape'}
EXPECTED_OUTPUTS = ['Identity:0', 'Identity_1:0', 'Identity_2:0', 'Identity_3:0']


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def generate(model):
    """Return (python_source, conv_specs) for the ONNX graph."""
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    if [i.name for i in g.input if i.name not in inits] != ['input:0']:
        raise SystemExit('unexpected graph inputs')
    if [o.name for o in g.output] != EXPECTED_OUTPUTS:
        raise SystemExit('unexpected graph outputs: %s' % [o.name for o in g.output])

    names = {'input:0': 'x_nhwc'}
    lines = []
    convs = []  # (module_name, weight, bias, stride, groups)
    pending = {}  # ConstantOfShape outputs not yet emitted: name -> (channels, value)

    def var(name):
        return names[name]

    def new(name):
        v = 't%d' % len(names)
        names[name] = v
        return v

    for node in g.node:
        op, a = node.op_type, attrs(node)
        if op not in SUPPORTED:
            raise SystemExit('unsupported ONNX op: %s' % op)
        if op == 'Transpose':
            perm = list(a['perm'])
            lines.append('%s = %s.permute(%s)' % (new(node.output[0]), var(node.input[0]), perm))
        elif op == 'Conv':
            w = inits[node.input[1]]
            b = inits[node.input[2]] if len(node.input) > 2 else np.zeros(w.shape[0], np.float32)
            if list(a.get('dilations', [1, 1])) != [1, 1] or a.get('auto_pad', b'NOTSET') not in (b'NOTSET', 'NOTSET'):
                raise SystemExit('unsupported Conv attributes: %s' % a)
            groups = int(a.get('group', 1))
            stride = list(a.get('strides', [1, 1]))
            pads = list(a.get('pads', [0, 0, 0, 0]))  # [top, left, bottom, right]
            mod = 'conv%d' % len(convs)
            convs.append((mod, w, b, stride, groups))
            src = var(node.input[0])
            if any(pads):
                top, left, bottom, right = pads
                if top == bottom and left == right:
                    # symmetric: let the conv pad (same numerics, no copy)
                    convs[-1] = (mod, w, b, stride, groups, [top, left])
                else:
                    # TF "SAME" padding on stride 2 is asymmetric: pad explicitly
                    lines.append('%s = F.pad(%s, [%d, %d, %d, %d])' % (new(node.name + ':pad'), src, left, right, top, bottom))
                    src = var(node.name + ':pad')
            lines.append('%s = self.%s(%s)' % (new(node.output[0]), mod, src))
        elif op == 'Relu':
            lines.append('%s = torch.relu(%s)' % (new(node.output[0]), var(node.input[0])))
        elif op == 'Add':
            lines.append('%s = %s + %s' % (new(node.output[0]), var(node.input[0]), var(node.input[1])))
        elif op == 'MaxPool':
            if list(a.get('pads', [0, 0, 0, 0])) != [0, 0, 0, 0]:
                raise SystemExit('unsupported MaxPool padding')
            k, s = list(a['kernel_shape']), list(a['strides'])
            lines.append('%s = F.max_pool2d(%s, %s, %s)' % (new(node.output[0]), var(node.input[0]), k, s))
        elif op == 'ConstantOfShape':
            shape = [int(v) for v in inits[node.input[0]]]
            value = float(numpy_helper.to_array(a['value']).reshape(-1)[0]) if 'value' in a else 0.0
            if shape[0] != 1 or len(shape) != 4:
                raise SystemExit('unexpected ConstantOfShape %s' % shape)
            # emitted at its Concat (the channel padding of a max-pooled shortcut), shaped like the
            # tensor it is concatenated with: batch and spatial size at run time (any batch, any
            # input size for `dense`); the channel count stays the graph's
            pending[node.output[0]] = (shape[1], value)
        elif op == 'Concat':
            axis = int(a['axis'])
            for i, other in ((0, 1), (1, 0)):
                if node.input[i] in pending:
                    if axis != 1 or len(node.input) != 2 or node.input[other] in pending:
                        raise SystemExit('unexpected use of ConstantOfShape in %s' % node.name)
                    c, value = pending.pop(node.input[i])
                    ref = var(node.input[other])
                    lines.append('%s = torch.full([%s.shape[0], %d, %s.shape[2], %s.shape[3]], %r, dtype=%s.dtype, device=%s.device)'
                                 % (new(node.input[i]), ref, c, ref, ref, value, ref, ref))
            ins = ', '.join(var(i) for i in node.input)
            lines.append('%s = torch.cat([%s], %d)' % (new(node.output[0]), ins, axis))
        elif op == 'Reshape':
            shape = [int(v) for v in inits[node.input[1]]]
            if shape[0] != 1 or len(shape) != 3:
                raise SystemExit('unexpected Reshape %s' % shape)
            # [1, anchors, k] baked in for 256x256: anchors from the run-time grid instead
            lines.append('%s = %s.reshape([%s.shape[0], -1, %d])' % (new(node.output[0]), var(node.input[0]), var(node.input[0]), shape[2]))

    if pending:
        raise SystemExit('ConstantOfShape without a Concat: %s' % list(pending))
    ret = ', '.join(var(o) for o in EXPECTED_OUTPUTS)
    body = '\n'.join('        ' + l for l in lines)
    src = '''
import torch
import torch.nn.functional as F
from typing import Tuple


class BlazeFaceBack(torch.nn.Module):
    """MediaPipe BlazeFace, back-camera (256x256) model. See scripts/blazeface/convert.py."""

    input_size: int
    num_anchors: int

    def __init__(self, convs, anchors):
        super().__init__()
        self.input_size = 256
        self.num_anchors = 896
        for name, conv in convs:
            setattr(self, name, conv)
        self.register_buffer('anchors', anchors)

    def _graph(self, x_nhwc: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
%s
        return %s

    @torch.jit.export
    def raw(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The four ONNX outputs for an NCHW input in [-1,1]."""
        x = x.contiguous(memory_format=torch.channels_last)
        return self._graph(x.permute(0, 2, 3, 1))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """x: [B,3,256,256] RGB in [-1,1] -> scores [B,896] (sigmoid), boxes [B,896,16] in [0,1]."""
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != 256 or x.shape[3] != 256:
            raise ValueError('BlazeFace expects input of shape [B,3,256,256]')
        # channels_last: libtorch 1.13's NCHW max_pool2d is ~10x slower on CPU
        x = x.contiguous(memory_format=torch.channels_last)
        s16, s8, r16, r8 = self._graph(x.permute(0, 2, 3, 1))
        scores = torch.sigmoid(torch.cat([s16, s8], 1).squeeze(2))
        reg = torch.cat([r16, r8], 1) / 256.0
        b = reg.shape[0]
        # offsets are relative to the anchor centre for box centre and keypoints; w, h absolute
        centre = self.anchors.unsqueeze(0).expand(b, 896, 2)
        cxy = reg[:, :, 0:2] + centre
        wh = reg[:, :, 2:4]
        kps = (reg[:, :, 4:16].reshape(b, 896, 6, 2) + centre.unsqueeze(2)).reshape(b, 896, 12)
        return scores, torch.cat([cxy, wh, kps], 2)

    def _centres(self, h: int, w: int, stride: int, per: int, device: torch.device) -> torch.Tensor:
        """Anchor centres in input pixels of an h x w cell grid, `per` anchors a cell, (y, x, anchor) order."""
        ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) * stride
        xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) * stride
        gx = xs.view(1, w, 1).expand(h, w, per)
        gy = ys.view(h, 1, 1).expand(h, w, per)
        return torch.stack([gx, gy], 3).reshape(h * w * per, 2)

    @torch.jit.export
    def dense(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """x: [B,3,H,W] RGB in [-1,1], H and W positive multiples of 32 -> scores [B,N] (sigmoid),
        boxes [B,N,16] in input pixels (float32 whatever the model's dtype), N = (H/16)(W/16)x2 +
        (H/32)(W/32)x6 anchors in forward's order. On 256x256: forward's boxes x 256."""
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] < 32 or x.shape[3] < 32 or x.shape[2] %% 32 != 0 or x.shape[3] %% 32 != 0:
            raise ValueError('BlazeFace dense expects input of shape [B,3,H,W] with H and W positive multiples of 32')
        h = x.shape[2]
        w = x.shape[3]
        x = x.contiguous(memory_format=torch.channels_last)
        s16, s8, r16, r8 = self._graph(x.permute(0, 2, 3, 1))
        scores = torch.sigmoid(torch.cat([s16, s8], 1).squeeze(2).float())
        reg = torch.cat([r16, r8], 1).float()
        b = reg.shape[0]
        n = reg.shape[1]
        centre = torch.cat([self._centres(h // 16, w // 16, 16, 2, x.device), self._centres(h // 32, w // 32, 32, 6, x.device)], 0)
        centre = centre.unsqueeze(0).expand(b, n, 2)
        cxy = reg[:, :, 0:2] + centre
        wh = reg[:, :, 2:4]
        kps = (reg[:, :, 4:16].reshape(b, n, 6, 2) + centre.unsqueeze(2)).reshape(b, n, 12)
        return scores, torch.cat([cxy, wh, kps], 2)
''' % (body, ret)
    return src, convs


def anchors():
    """Anchor centres (x, y) in [0,1]: 16x16 cells x 2, then 8x8 cells x 6 (MediaPipe order)."""
    out = []
    for cells, per in ((16, 2), (8, 6)):
        for y in range(cells):
            for x in range(cells):
                for _ in range(per):
                    out.append(((x + 0.5) / cells, (y + 0.5) / cells))
    return torch.tensor(out, dtype=torch.float32)


def build(onnx_path):
    model = onnx.load(onnx_path)
    onnx.checker.check_model(model)
    src, specs = generate(model)
    mod = types.ModuleType('blazeface_generated')
    mod.__file__ = '<blazeface_generated>'
    # torch.jit.script needs the source: register it with linecache
    import linecache
    linecache.cache[mod.__file__] = (len(src), None, src.splitlines(True), mod.__file__)
    sys.modules[mod.__name__] = mod
    exec(compile(src, mod.__file__, 'exec'), mod.__dict__)
    convs = []
    for spec in specs:
        name, w, b, stride, groups = spec[:5]
        padding = spec[5] if len(spec) > 5 else [0, 0]
        out_c, in_per_group, kh, kw = w.shape
        conv = torch.nn.Conv2d(in_per_group * groups, out_c, (kh, kw), stride=tuple(stride),
                               padding=tuple(padding), groups=groups, bias=True)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(np.array(w, dtype=np.float32)))
            conv.bias.copy_(torch.from_numpy(np.array(b, dtype=np.float32)))
        convs.append((name, conv))
    net = mod.BlazeFaceBack(convs, anchors()).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return torch.jit.script(net), src


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('onnx')
    ap.add_argument('out')
    ap.add_argument('--sha256', default=None, help='sha256 of the ONNX file (recorded in metadata)')
    ap.add_argument('--source', default='', help='provenance text recorded in metadata')
    args = ap.parse_args()
    torch.manual_seed(0)
    data = open(args.onnx, 'rb').read()
    digest = hashlib.sha256(data).hexdigest()
    if args.sha256 and digest != args.sha256:
        raise SystemExit('ONNX sha256 mismatch: %s != %s' % (digest, args.sha256))
    scripted, _ = build(args.onnx)
    # sanity: batch independence (dynamic batch)
    x = torch.rand(3, 3, 256, 256) * 2 - 1
    s, b = scripted(x)
    s1, b1 = scripted(x[1:2])
    assert s.shape == (3, 896) and b.shape == (3, 896, 16)
    assert torch.allclose(s[1:2], s1, atol=1e-5) and torch.allclose(b[1:2], b1, atol=1e-5)
    # dense on 256x256 is forward in input pixels; on a larger input, N anchors in the same order
    ds, db = scripted.dense(x)
    assert torch.equal(ds, s) and torch.equal(db, b * 256)
    ds, db = scripted.dense(torch.rand(2, 3, 96, 160) * 2 - 1)
    assert ds.shape == (2, 6 * 10 * 2 + 3 * 5 * 6) and db.shape == (2, 6 * 10 * 2 + 3 * 5 * 6, 16)
    meta = {
        'name': 'blazeface_back',
        'task': 'face-detection',
        'architecture': 'MediaPipe BlazeFace (back camera / full-range 256x256, 896 anchors)',
        'input': {'shape': ['B', 3, 256, 256], 'dtype': 'float32', 'layout': 'NCHW', 'color': 'RGB', 'range': [-1, 1]},
        'outputs': {
            'scores': '[B,896] sigmoid',
            'boxes': '[B,896,16] cx,cy,w,h,6x(x,y) normalised to the 256x256 input',
        },
        'dense': {
            'input': '[B,3,H,W], H and W positive multiples of 32, otherwise as forward',
            'scores': '[B,N] sigmoid, N = (H/16)(W/16)x2 + (H/32)(W/32)x6 in forward\'s anchor order',
            'boxes': '[B,N,16] cx,cy,w,h,6x(x,y) in input pixels (float32); on 256x256 forward x 256',
        },
        'keypoints': ['rightEye', 'leftEye', 'nose', 'mouth', 'rightEar', 'leftEar'],
        'anchors': '16x16x2 then 8x8x6, centre ((x+0.5)/n, (y+0.5)/n)',
        'license': 'Apache-2.0',
        'copyright': 'The MediaPipe Authors (model); Keijiro Takahashi (ONNX packaging); PINTO0309 (TFLite->ONNX)',
        'source': args.source,
        'onnxSha256': digest,
        'converter': 'scripts/blazeface/convert.py',
        'torch': torch.__version__,
    }
    torch.jit.save(scripted, args.out, _extra_files={'dfdet.json': json.dumps(meta, indent=2)})
    print(json.dumps(meta, indent=2))


if __name__ == '__main__':
    main()
