/**
 * A restricted Python pickle VM for the streams `torch.save` writes (protocols 2–5).
 *
 * Nothing is executed: GLOBAL/STACK_GLOBAL resolve through an allowlist of callables that rebuild
 * plain data (OrderedDict, tensors, storages); any other class becomes an inert
 * {@link PickleObject} that records its constructor arguments and state, so Lightning
 * checkpoints holding hyperparameters of arbitrary classes still load.
 */

import { DfdetError } from '../errors';
import { BUILTINS, construct, isTuple, type PickleCallable, PickleGlobal, type PickleKey, PickleObject, type PickleValue, toKey, tuple } from './pickle-values';

export { isTuple, PickleGlobal, PickleObject, type PersistentRef, type PickleCallable, type PickleKey, type PickleTuple, type PickleValue } from './pickle-values';

/** Options of {@link unpickle}. */
export interface UnpickleOptions {
  /**
   * Allowlisted globals, keyed `module.name`. They are called for REDUCE/NEWOBJ.
   * `collections.OrderedDict` and `builtins.set`/`frozenset`/`list`/`dict` are always available.
   */
  globals?: Record<string, PickleCallable>;
  /** Resolves BINPERSID/PERSID payloads (default: reject persistent ids). */
  persistentLoad?: (pid: PickleValue) => PickleValue;
  /** Name used in error messages (default 'pickle'). */
  source?: string;
  /**
   * Called for every GLOBAL/STACK_GLOBAL before it is resolved; throws to refuse a global
   * (e.g. TorchScript archives only ever name torch and `__torch__` classes).
   */
  checkGlobal?: (module: string, name: string) => void;
}

class Mark {}
const MARK = new Mark();

/** Largest number of opcodes run before giving up (guards against pathological inputs). */
const MAX_OPS = 50_000_000;
/**
 * Most values the stack (all MARK levels together) and the memo may hold. Each costs a few bytes
 * of input, so without a bound a small stream of DUPs or PUTs grows them without end. torch and
 * libtorch write far fewer (dicts and lists of a module's state; Python batches by 1,000).
 */
export const MAX_PICKLE_ITEMS = 1_000_000;
/** Longest integer (LONG4 bytes, INT/LONG digits) accepted: BigInt work is quadratic in it. */
const MAX_LONG_BYTES = 4096;

/**
 * Run the pickle program in `data` and return the object it builds.
 * Throws DfdetError BAD_FORMAT on malformed or unsupported input; never executes code.
 */
export function unpickle(data: Uint8Array, options: UnpickleOptions = {}): PickleValue {
  try {
    return run(data, options);
  } catch (e) {
    if (e instanceof DfdetError) throw e;
    // e.g. RangeError from a pathological stream: still a format error, never a crash.
    const why = e instanceof RangeError && /call stack/i.test(e.message) ? 'values nested too deeply' : (e as Error).message;
    throw new DfdetError('BAD_FORMAT', `Invalid ${options.source ?? 'pickle'}: ${why}`, { cause: e });
  }
}

function run(data: Uint8Array, options: UnpickleOptions): PickleValue {
  const src = options.source ?? 'pickle';
  const globals = { ...BUILTINS, ...options.globals };
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const utf8 = new TextDecoder('utf-8');
  const latin1 = new TextDecoder('latin1');
  let pos = 0;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();
  // Items on the stack below the current MARK level (the bound covers all levels).
  let below = 0;

  const fail = (msg: string): never => {
    throw new DfdetError('BAD_FORMAT', `Invalid ${src}: ${msg} (at byte ${pos})`, { details: { offset: pos } });
  };
  const need = (n: number): void => {
    if (n < 0 || pos + n > data.length) fail(`truncated: ${n} bytes needed, ${data.length - pos} left`);
  };
  const u8 = (): number => {
    need(1);
    return data[pos++]!;
  };
  const u16 = (): number => {
    need(2);
    const v = view.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = (): number => {
    need(4);
    const v = view.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const i32 = (): number => {
    need(4);
    const v = view.getInt32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = (): number => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(data.length)) fail(`declared length ${v} exceeds the stream (${data.length} bytes)`);
    return Number(v);
  };
  const bytes = (n: number): Uint8Array => {
    need(n);
    const b = data.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) fail('unterminated text line');
    const s = latin1.decode(data.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const pop = (): unknown => {
    if (stack.length === 0) fail('stack underflow');
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail('stack underflow');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = metastack.pop();
    if (!prev) fail('MARK expected');
    stack = prev!;
    below -= stack.length;
    if (items.some((x) => x === MARK)) fail('nested MARK');
    return items;
  };
  const resolveGlobal = (module: string, name: string): unknown => {
    options.checkGlobal?.(module, name);
    const key = `${module}.${name}`;
    const fn = globals[key];
    if (fn) return { __callable: fn, __name: key };
    return new PickleGlobal(module, name);
  };
  const call = (fnv: unknown, args: unknown[]): unknown => {
    if (typeof fnv === 'object' && fnv !== null && '__callable' in fnv) {
      try {
        return (fnv as { __callable: PickleCallable }).__callable(args as PickleValue[]);
      } catch (e) {
        if (e instanceof DfdetError) throw e;
        fail(`${(fnv as unknown as { __name: string }).__name} failed: ${(e as Error).message}`);
      }
    }
    if (fnv instanceof PickleGlobal) return construct(fnv, args as PickleValue[]);
    return fail(`REDUCE on a non-callable ${describe(fnv)}`);
  };
  const setItem = (target: unknown, k: unknown, v: unknown): void => {
    if (target instanceof Map) target.set(toKey(k), v as PickleValue);
    else if (target instanceof PickleObject) target.dictItems.set(toKey(k), v as PickleValue);
    else fail(`SETITEM on ${describe(target)}`);
  };
  const append = (target: unknown, items: unknown[]): void => {
    // One at a time: spreading a million items as arguments overflows the call stack.
    if (Array.isArray(target) && !Object.isFrozen(target)) for (const x of items) target.push(x);
    else if (target instanceof PickleObject) for (const x of items) target.listItems.push(x as PickleValue);
    else fail(`APPEND on ${describe(target)}`);
  };
  const bigFromBytes = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };

  for (let ops = 0; ; ops++) {
    if (ops > MAX_OPS) fail('too many opcodes');
    if (stack.length + below > MAX_PICKLE_ITEMS) fail(`the stack holds more than ${MAX_PICKLE_ITEMS} values`);
    if (memo.size > MAX_PICKLE_ITEMS) fail(`the memo holds more than ${MAX_PICKLE_ITEMS} values`);
    if (pos >= data.length) fail('missing STOP opcode');
    const op = data[pos++]!;
    switch (op) {
      case 0x80: {
        const proto = u8();
        if (proto > 5) fail(`unsupported pickle protocol ${proto}`);
        break;
      }
      case 0x95: // FRAME: framing is advisory; the payload follows inline.
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || metastack.length) fail(`STOP with ${stack.length} items on the stack`);
        return resolveValue(stack[0]);
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(tuple([]));
        break;
      case 0x8f: // EMPTY_SET
        stack.push(new Set());
        break;
      case 0x28: // MARK
        metastack.push(stack);
        below += stack.length;
        stack = [];
        break;
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItem(top(), k, v);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        if (items.length % 2) fail('SETITEMS with an odd number of items');
        const target = top();
        for (let i = 0; i < items.length; i += 2) setItem(target, items[i], items[i + 1]);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        append(top(), [v]);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        append(top(), items);
        break;
      }
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) fail('ADDITEMS on a non-set');
        for (const i of items) (s as Set<unknown>).add(i);
        break;
      }
      case 0x91: // FROZENSET
        {
        const items = popMark();
        stack.push(new Set(items));
      }
        break;
      case 0x64: {
        // DICT
        const items = popMark();
        if (items.length % 2) fail('DICT with an odd number of items');
        const m = new Map<PickleKey, PickleValue>();
        for (let i = 0; i < items.length; i += 2) m.set(toKey(items[i]), items[i + 1] as PickleValue);
        stack.push(m);
        break;
      }
      case 0x6c: // LIST
        {
        const items = popMark();
        stack.push(items);
      }
        break;
      case 0x74: // TUPLE
        {
        const items = popMark();
        stack.push(tuple(items as PickleValue[]));
      }
        break;
      case 0x85: // TUPLE1
        stack.push(tuple([pop() as PickleValue]));
        break;
      case 0x86: {
        const b = pop();
        const a = pop();
        stack.push(tuple([a, b] as PickleValue[]));
        break;
      }
      case 0x87: {
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push(tuple([a, b, c] as PickleValue[]));
        break;
      }
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88:
        stack.push(true);
        break;
      case 0x89:
        stack.push(false);
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x8a: // LONG1
        stack.push(bigFromBytes(bytes(u8())));
        break;
      case 0x8b: {
        // LONG4
        const n = i32();
        if (n < 0) fail('negative LONG4 length');
        if (n > MAX_LONG_BYTES) fail(`LONG4 of ${n} bytes (at most ${MAX_LONG_BYTES} accepted)`);
        stack.push(bigFromBytes(bytes(n)));
        break;
      }
      case 0x49: {
        // INT (text): also encodes True/False as 01/00 in protocol 0.
        const s = line().trim();
        if (s.length > MAX_LONG_BYTES) fail(`INT of ${s.length} digits (at most ${MAX_LONG_BYTES} accepted)`);
        if (s === '01') stack.push(true);
        else if (s === '00') stack.push(false);
        else {
          if (!/^[-+]?\d+$/.test(s)) fail(`bad INT ${JSON.stringify(s)}`);
          const v = BigInt(s);
          stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        }
        break;
      }
      case 0x4c: {
        // LONG (text)
        const s = line().trim().replace(/L$/, '');
        if (s.length > MAX_LONG_BYTES) fail(`LONG of ${s.length} digits (at most ${MAX_LONG_BYTES} accepted)`);
        if (!/^[-+]?\d+$/.test(s)) fail(`bad LONG ${JSON.stringify(s)}`);
        const v = BigInt(s);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: {
        // BINFLOAT (big-endian double)
        need(8);
        stack.push(view.getFloat64(pos, false));
        pos += 8;
        break;
      }
      case 0x46: {
        // FLOAT (text)
        const v = Number(line());
        stack.push(v);
        break;
      }
      case 0x58: // BINUNICODE
        stack.push(utf8.decode(bytes(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(utf8.decode(bytes(u8())));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(utf8.decode(bytes(u64())));
        break;
      case 0x54: {
        // BINSTRING
        const n = i32();
        if (n < 0) fail('negative BINSTRING length');
        stack.push(latin1.decode(bytes(n)));
        break;
      }
      case 0x55: // SHORT_BINSTRING
        stack.push(latin1.decode(bytes(u8())));
        break;
      case 0x42: // BINBYTES
        stack.push(bytes(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(bytes(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
        stack.push(bytes(u64()).slice());
        break;
      case 0x96: // BYTEARRAY8
        stack.push(bytes(u64()).slice());
        break;
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        const name = line();
        stack.push(resolveGlobal(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        stack.push(resolveGlobal(module as string, name as string));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fnv = pop();
        if (!Array.isArray(args)) fail(`REDUCE arguments are ${describe(args)}, not a tuple`);
        stack.push(call(fnv, args as unknown[]));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        const cls = pop();
        if (!Array.isArray(args)) fail('NEWOBJ arguments are not a tuple');
        stack.push(call(cls, args as unknown[]));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        pop(); // kwargs
        const args = pop();
        const cls = pop();
        if (!Array.isArray(args)) fail('NEWOBJ_EX arguments are not a tuple');
        stack.push(call(cls, args as unknown[]));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = top();
        if (obj instanceof PickleObject) obj.state = state as PickleValue;
        else if (obj instanceof Map && state instanceof Map) for (const [k, v] of state) obj.set(k, v);
        // BUILD on rebuilt tensors (e.g. Parameter state) or other values: state is not needed.
        break;
      }
      case 0x51: {
        // BINPERSID
        const pid = pop();
        if (!options.persistentLoad) fail('persistent ids are not allowed here');
        stack.push(options.persistentLoad!(pid as PickleValue));
        break;
      }
      case 0x50: {
        // PERSID (text)
        const pid = line();
        if (!options.persistentLoad) fail('persistent ids are not allowed here');
        stack.push(options.persistentLoad!(pid));
        break;
      }
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x70: {
        // PUT (text)
        const idx = Number(line());
        if (!Number.isSafeInteger(idx)) fail('bad PUT index');
        memo.set(idx, top());
        break;
      }
      case 0x68:
      case 0x6a:
      case 0x67: {
        // BINGET, LONG_BINGET, GET
        const idx = op === 0x68 ? u8() : op === 0x6a ? u32() : Number(line());
        if (!memo.has(idx)) fail(`memo key ${idx} is not defined`);
        stack.push(memo.get(idx));
        break;
      }
      case 0x30: // POP
        if (stack.length) stack.pop();
        else popMark();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      default:
        fail(`unsupported opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }
}

/** Replace internal callable markers left as values (a global never called) by PickleGlobal. */
function resolveValue(v: unknown): PickleValue {
  if (typeof v === 'object' && v !== null && '__callable' in v) {
    const name = (v as unknown as { __name: string }).__name;
    const dot = name.lastIndexOf('.');
    return new PickleGlobal(name.slice(0, dot), name.slice(dot + 1));
  }
  if (v === MARK) return null;
  return v as PickleValue;
}

function describe(v: unknown): string {
  if (v === null) return 'None';
  if (v instanceof PickleGlobal) return v.qualifiedName;
  if (v instanceof PickleObject) return `${v.cls.qualifiedName} object`;
  if (Array.isArray(v)) return isTuple(v) ? 'tuple' : 'list';
  if (v instanceof Map) return 'dict';
  return typeof v;
}
