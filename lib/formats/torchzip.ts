/**
 * Reader of PyTorch's `torch.save` zip format (PyTorch ≥ 1.6, also Lightning `.ckpt` files), without Python.
 *
 * Layout: a ZIP (usually stored, possibly zip64) holding `<archive>/data.pkl` (the pickled object),
 * `<archive>/data/<key>` (one entry per storage, raw little-endian elements), `<archive>/byteorder`
 * and `<archive>/version`. Tensors in the pickle are `torch._utils._rebuild_tensor_v2` calls whose
 * storages are persistent ids `('storage', <torch.FloatStorage…>, key, location, numel)`.
 * Storages are read lazily, one tensor at a time, by range from the file.
 */

import * as fs from 'node:fs';
import { DfdetError } from '../errors';
import { isTuple, PickleGlobal, PickleObject, type PickleValue, unpickle } from './pickle';
import { DTYPE_SIZE, numel, type RawDType, type RawTensor, type TensorMeta, type TensorSource, validShape } from './tensor';
import { type ZipEntry, ZipReader } from './zip';

export { type ZipEntry, ZipReader };

function bad(file: string, msg: string): never {
  throw new DfdetError('BAD_FORMAT', `Invalid torch zip file ${file}: ${msg}`, { details: { file } });
}

/**
 * Largest tensor, in bytes, read from a view holding more elements than its storage (stride 0 or
 * overlapping strides, e.g. an `expand`ed buffer). Such a view costs no bytes in the file, so without
 * a cap a tiny checkpoint could make the reader allocate any amount of memory. Real broadcast buffers
 * (position ids) are tiny; a ViT-L's largest weight is ~150 MB.
 */
const MAX_EXPANDED_BYTES = 1024 * 1024 * 1024;

/** torch storage class name → dtype. */
const STORAGE_DTYPES: Readonly<Record<string, RawDType>> = {
  FloatStorage: 'float32',
  DoubleStorage: 'float64',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
};

/** A storage referenced by a checkpoint (persistent id). */
export interface TorchStorageRef {
  readonly kind: 'storage';
  key: string;
  /** Element dtype, or undefined for storage types dfdet cannot read (complex, quantised). */
  dtype: RawDType | undefined;
  /** The storage class name, e.g. 'FloatStorage'. */
  typeName: string;
  location: string;
  numel: number;
}

/** A tensor inside a checkpoint, not yet read: storage view parameters. */
export class TorchTensorRef {
  constructor(
    readonly storage: TorchStorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
  /** Element dtype (undefined for unsupported storage types). */
  get dtype(): RawDType | undefined {
    return this.storage.dtype;
  }
}

/** A torch storage persistent id `('storage', <type>, key, location, numel)`, checked. */
export function storageFromPid(pid: PickleValue, file: string): TorchStorageRef {
  if (!Array.isArray(pid) || pid.length < 5 || pid[0] !== 'storage') bad(file, 'unexpected persistent id (expected a storage tuple)');
  const [, type, key, location, n] = pid as unknown[];
  const typeName = typeof type === 'object' && type !== null && 'name' in type ? String((type as { name: unknown }).name) : String(type);
  if (typeof key !== 'string' || !/^[\w.-]+$/.test(key)) bad(file, `bad storage key ${JSON.stringify(key)}`);
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) bad(file, `bad storage size for key ${String(key)}`);
  return { kind: 'storage', key: key as string, dtype: STORAGE_DTYPES[typeName], typeName, location: String(location), numel: n as number };
}

function intList(v: unknown, what: string, file: string): number[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) {
    bad(file, `${what} is not a list of non-negative integers`);
  }
  return [...(v as number[])];
}

function rebuildTensor(args: PickleValue[], file: string): TorchTensorRef {
  const [storage, offset, size, stride] = args;
  if (!(typeof storage === 'object' && storage !== null && (storage as unknown as TorchStorageRef).kind === 'storage')) {
    bad(file, '_rebuild_tensor_v2 without a storage');
  }
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) bad(file, 'bad tensor storage offset');
  const shape = intList(size, 'tensor size', file);
  const strides = intList(stride, 'tensor stride', file);
  if (!validShape(shape) || strides.length !== shape.length) bad(file, 'tensor size and stride disagree');
  const ref = new TorchTensorRef(storage as unknown as TorchStorageRef, offset as number, shape, strides);
  // The highest element the view touches must lie inside its storage.
  if (numel(shape) > 0) {
    let last = ref.offset;
    for (let i = 0; i < shape.length; i++) last += (shape[i]! - 1) * strides[i]!;
    if (last >= ref.storage.numel) bad(file, `tensor view reaches element ${last} of a ${ref.storage.numel}-element storage`);
  }
  return ref;
}

/** Globals a checkpoint may call; everything else becomes an inert placeholder. */
export function torchGlobals(file: string): Record<string, (args: PickleValue[]) => PickleValue> {
  const g: Record<string, (args: PickleValue[]) => PickleValue> = {
    'torch._utils._rebuild_tensor_v2': (a) => rebuildTensor(a, file) as unknown as PickleValue,
    'torch._utils._rebuild_tensor': (a) => rebuildTensor(a, file) as unknown as PickleValue,
    // Parameter(data, requires_grad, hooks): the data tensor is all dfdet needs.
    'torch._utils._rebuild_parameter': (a) => a[0] as PickleValue,
    'torch._utils._rebuild_parameter_with_state': (a) => a[0] as PickleValue,
    // Tensor subclasses: _rebuild_from_type_v2(func, type, args, state) → func(*args).
    'torch._tensor._rebuild_from_type_v2': (a) => {
      const fn = a[0] as unknown;
      const inner = a[2];
      if (typeof fn === 'object' && fn !== null && '__callable' in fn && Array.isArray(inner)) {
        return (fn as { __callable: (x: PickleValue[]) => PickleValue }).__callable([...inner]);
      }
      return new PickleObject(a[1] instanceof PickleGlobal ? a[1] : new PickleGlobal('torch', 'Tensor'));
    },
  };
  return g;
}

/** What a checkpoint holds after unpickling: the object graph, tensors as {@link TorchTensorRef}s. */
export class TorchCheckpoint {
  private constructor(
    private readonly zip: ZipReader,
    /** The archive folder name inside the zip (e.g. 'archive' or 'model'). */
    readonly archive: string,
    /** The unpickled root object. */
    readonly root: PickleValue,
    private readonly bigEndian: boolean,
  ) {}

  /** Path the checkpoint was opened from. */
  get path(): string {
    return this.zip.path;
  }

  /**
   * Open a `torch.save` zip file and unpickle its `data.pkl`. Throws BAD_FORMAT for corrupt files,
   * for the legacy (pre-1.6, non-zip) format and for TorchScript archives (load those as models).
   */
  static async open(path: string): Promise<TorchCheckpoint> {
    const zip = await ZipReader.open(path, { kind: 'torch zip file' }).catch(async (e: unknown) => {
      if (e instanceof DfdetError && e.code === 'BAD_FORMAT') {
        const head = Buffer.alloc(2);
        const fh = await fs.promises.open(path, 'r').catch(() => undefined);
        if (fh) {
          await fh.read(head, 0, 2, 0).finally(() => fh.close());
          if (head[0] === 0x80) bad(path, 'legacy (pre-1.6) torch.save format; re-save it with a newer PyTorch');
        }
      }
      throw e;
    });
    try {
      // A flipped bit anywhere must not become a silently different weight.
      await zip.verifyAll();
      const pkl = [...zip.entries.keys()].find((n) => /^[^/]+\/data\.pkl$/.test(n));
      if (!pkl) {
        bad(path, 'no <archive>/data.pkl entry (not a torch.save file)');
      }
      const archive = pkl!.slice(0, pkl!.indexOf('/'));
      if (zip.entries.has(`${archive}/constants.pkl`) || [...zip.entries.keys()].some((n) => n.startsWith(`${archive}/code/`))) {
        throw new DfdetError('BAD_FORMAT', `${path} is a TorchScript archive, not a torch.save checkpoint: load it as a model directly`, {
          details: { file: path, torchscript: true },
        });
      }
      let bigEndian = false;
      if (zip.entries.has(`${archive}/byteorder`)) {
        const order = Buffer.from(await zip.read(`${archive}/byteorder`)).toString('latin1').trim();
        if (order !== 'little' && order !== 'big') bad(path, `unknown byteorder ${JSON.stringify(order)}`);
        bigEndian = order === 'big';
      }
      const data = await zip.read(pkl!);
      const root = unpickle(data, {
        source: `${path}:${pkl}`,
        globals: torchGlobals(path),
        persistentLoad: (pid) => storageFromPid(pid, path) as unknown as PickleValue,
      });
      return new TorchCheckpoint(zip, archive, root, bigEndian);
    } catch (e) {
      await zip.close().catch(() => undefined);
      throw e;
    }
  }

  /**
   * Read a tensor's data as a contiguous little-endian {@link RawTensor} (strided views are gathered).
   * @throws DfdetError BAD_FORMAT (naming the key) for a view that expands its storage (stride 0)
   *   to more than 1 GiB, BAD_WEIGHTS for unsupported storage types.
   */
  async readTensor(t: TorchTensorRef, name = 'tensor'): Promise<RawTensor> {
    const dtype = t.dtype;
    if (!dtype) {
      throw new DfdetError('BAD_WEIGHTS', `Tensor ${name} uses unsupported storage type ${t.storage.typeName}`, { details: { key: name } });
    }
    const item = DTYPE_SIZE[dtype];
    const n = numel(t.shape);
    const entry = this.zip.entries.get(`${this.archive}/data/${t.storage.key}`);
    if (!entry) bad(this.path, `missing storage ${t.storage.key} for tensor ${name}`);
    if (entry!.size < t.storage.numel * item) bad(this.path, `storage ${t.storage.key} holds ${entry!.size} bytes, ${t.storage.numel * item} expected`);
    if (n === 0) return { dtype, shape: [...t.shape], bytes: new Uint8Array(0) };
    if (n > t.storage.numel && n * item > MAX_EXPANDED_BYTES) {
      throw new DfdetError(
        'BAD_FORMAT',
        `Invalid torch zip file ${this.path}: tensor ${name} expands a ${t.storage.numel}-element storage to ${n} elements (${n * item} bytes; at most ${MAX_EXPANDED_BYTES} allowed)`,
        { details: { file: this.path, key: name } },
      );
    }
    let last = t.offset;
    for (let i = 0; i < t.shape.length; i++) last += (t.shape[i]! - 1) * t.stride[i]!;
    const span = await this.zip.readRange(entry!, t.offset * item, (last - t.offset + 1) * item);
    let bytes: Uint8Array;
    if (isContiguous(t.shape, t.stride)) {
      bytes = span.length === n * item ? span : span.slice(0, n * item);
    } else {
      bytes = gather(span, t.shape, t.stride, item);
    }
    if (this.bigEndian && item > 1) swapBytes(bytes, item);
    return { dtype, shape: [...t.shape], bytes };
  }

  /** Release the file. Idempotent. */
  close(): Promise<void> {
    return this.zip.close();
  }

  /**
   * A {@link TensorSource} over a dict of tensors inside the checkpoint (e.g. `root['state_dict']`).
   * Non-tensor values are skipped. The source shares this checkpoint's file handle; closing it closes the checkpoint.
   */
  tensorSource(dict: PickleValue): TensorSource {
    const map = new Map<string, TorchTensorRef>();
    const items = dict instanceof Map ? dict : dict instanceof PickleObject ? dict.dictItems : undefined;
    if (!items) bad(this.path, 'expected a dict of tensors');
    for (const [k, v] of items!) if (v instanceof TorchTensorRef) map.set(String(k), v);
    return {
      keys: () => [...map.keys()],
      meta: (key: string): TensorMeta | undefined => {
        const t = map.get(key);
        return t && t.dtype ? { dtype: t.dtype, shape: [...t.shape] } : undefined;
      },
      read: async (key: string) => {
        const t = map.get(key);
        if (!t) throw new DfdetError('BAD_WEIGHTS', `No tensor ${JSON.stringify(key)} in ${this.path}`, { details: { key } });
        return this.readTensor(t, key);
      },
      close: () => this.close(),
    };
  }
}

function isContiguous(shape: number[], stride: number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expected) return false;
    expected *= shape[i]!;
  }
  return true;
}

/** Copy a strided view (relative to `span`) into a contiguous buffer. */
function gather(span: Uint8Array, shape: number[], stride: number[], item: number): Uint8Array {
  const n = numel(shape);
  const out = new Uint8Array(n * item);
  const idx = new Array<number>(shape.length).fill(0);
  let src = 0;
  for (let i = 0; i < n; i++) {
    out.set(span.subarray(src * item, src * item + item), i * item);
    for (let d = shape.length - 1; d >= 0; d--) {
      idx[d]!++;
      src += stride[d]!;
      if (idx[d]! < shape[d]!) break;
      src -= stride[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

function swapBytes(b: Uint8Array, item: number): void {
  for (let i = 0; i < b.length; i += item) b.subarray(i, i + item).reverse();
}

/** True when a value from a checkpoint is an unread tensor. */
export function isTensorRef(v: unknown): v is TorchTensorRef {
  return v instanceof TorchTensorRef;
}

/** Look up `key` in a pickled dict (Map or dict-subclass placeholder). */
export function dictGet(d: PickleValue | undefined, key: string): PickleValue | undefined {
  if (d instanceof Map) return d.get(key);
  if (d instanceof PickleObject) return d.dictItems.get(key) ?? (d.state instanceof Map ? d.state.get(key) : undefined);
  return undefined;
}

export { isTuple };
