/**
 * Lightning-style `torch.save` checkpoints written without Python: the pickle opcodes torch.save
 * emits (protocol 2, `_rebuild_tensor_v2` over persistent storage ids) in a stored ZIP, so tests
 * that fuzz the converter run where PyTorch is not installed.
 */
import { writeZip, type ZipItem } from './zip';

/** A tiny pickle writer: just what a dict of float32 tensors and strings needs. */
class PickleWriter {
  private parts: Buffer[] = [Buffer.from([0x80, 0x02])];
  op(...bytes: number[]): this {
    this.parts.push(Buffer.from(bytes));
    return this;
  }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    this.parts.push(Buffer.from([0x58]), len, b);
    return this;
  }
  int(n: number): this {
    const b = Buffer.alloc(5);
    b[0] = 0x4a;
    b.writeInt32LE(n, 1);
    this.parts.push(b);
    return this;
  }
  global(module: string, name: string): this {
    this.parts.push(Buffer.from(`c${module}\n${name}\n`, 'latin1'));
    return this;
  }
  intTuple(xs: readonly number[]): this {
    this.op(0x28);
    for (const x of xs) this.int(x);
    return this.op(0x74);
  }
  done(): Buffer {
    return Buffer.concat([...this.parts, Buffer.from([0x2e])]);
  }
}

/** A tensor to store: float32 values and their shape (C-contiguous). */
export interface CkptTensor {
  shape: readonly number[];
  data: Float32Array;
}

function strides(shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    out[i] = s;
    s *= shape[i]!;
  }
  return out;
}

/**
 * `{'state_dict': {key: tensor, ...}, 'hyper_parameters': {'head': head}}` as torch.save writes it,
 * archive folder `archive/`, one storage entry per tensor.
 */
export function lightningCheckpoint(stateDict: ReadonlyMap<string, CkptTensor>, head: string): Buffer {
  const w = new PickleWriter();
  const storages: ZipItem[] = [];
  w.op(0x7d).op(0x28).str('state_dict').op(0x7d).op(0x28);
  let key = 0;
  for (const [name, t] of stateDict) {
    const storageKey = String(key++);
    w.str(name);
    w.global('torch._utils', '_rebuild_tensor_v2').op(0x28);
    w.op(0x28).str('storage').global('torch', 'FloatStorage').str(storageKey).str('cpu').int(t.data.length).op(0x74).op(0x51);
    w.int(0).intTuple(t.shape).intTuple(strides(t.shape)).op(0x89);
    w.global('collections', 'OrderedDict').op(0x29).op(0x52);
    w.op(0x74).op(0x52);
    storages.push({ name: `archive/data/${storageKey}`, data: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) });
  }
  w.op(0x75).str('hyper_parameters').op(0x7d).str('head').str(head).op(0x73).op(0x75);
  return writeZip([
    { name: 'archive/data.pkl', data: w.done() },
    { name: 'archive/byteorder', data: Buffer.from('little') },
    ...storages,
    { name: 'archive/version', data: Buffer.from('3\n') },
  ]);
}
