/**
 * The values a restricted pickle stream builds (see ./pickle): inert stand-ins for Python globals
 * and instances, tagged tuples, dict keys, and the few builtins the VM may call, all of which
 * rebuild plain data.
 */

/** Reference to an unknown Python global (module + name), e.g. a Lightning AttributeDict class. */
export class PickleGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  /** `module.name`. */
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** Inert stand-in for an instance of an unknown class (or the result of calling an unknown global). */
export class PickleObject {
  /** Arguments of the REDUCE/NEWOBJ that made it. */
  args: PickleValue[] = [];
  /** State from BUILD (usually the instance `__dict__`). */
  state: PickleValue = null;
  /** Items from SETITEM(S) when the class is a dict subclass. */
  readonly dictItems = new Map<PickleKey, PickleValue>();
  /** Items from APPEND(S) when the class is a list subclass. */
  readonly listItems: PickleValue[] = [];
  constructor(readonly cls: PickleGlobal) {}
}

/** A persistent id resolved by the caller (e.g. a torch storage). */
export interface PersistentRef {
  readonly kind: 'persistent';
  readonly value: unknown;
}

/** Dict keys: pickled strings and ints become JS strings/numbers; other keys are stringified. */
export type PickleKey = string | number | bigint | boolean | null;

/** Values the VM produces. */
export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | PickleTuple
  | Map<PickleKey, PickleValue>
  | Set<PickleValue>
  | PickleGlobal
  | PickleObject
  | { readonly [k: string]: unknown };

/** Tuples are frozen arrays tagged so they can be told apart from lists. */
export interface PickleTuple extends ReadonlyArray<PickleValue> {
  readonly __tuple: true;
}

export function tuple(items: PickleValue[]): PickleTuple {
  Object.defineProperty(items, '__tuple', { value: true });
  return Object.freeze(items) as unknown as PickleTuple;
}

/** True when `v` is a pickled tuple. */
export function isTuple(v: unknown): v is PickleTuple {
  return Array.isArray(v) && (v as unknown as { __tuple?: boolean }).__tuple === true;
}

/** A callable the VM may invoke for an allowlisted global. */
export type PickleCallable = (args: PickleValue[]) => PickleValue;


/** Globals every stream may call: they rebuild plain containers and bytes, nothing else. */
export const BUILTINS: Record<string, PickleCallable> = {
  'collections.OrderedDict': (args) => {
    const m = new Map<PickleKey, PickleValue>();
    const init = args[0];
    if (Array.isArray(init)) {
      for (const pair of init) if (Array.isArray(pair) && pair.length === 2) m.set(toKey(pair[0]), pair[1] as PickleValue);
    }
    return m;
  },
  'builtins.set': (args) => new Set(Array.isArray(args[0]) ? (args[0] as PickleValue[]) : []),
  'builtins.frozenset': (args) => new Set(Array.isArray(args[0]) ? (args[0] as PickleValue[]) : []),
  'builtins.list': (args) => (Array.isArray(args[0]) ? [...(args[0] as PickleValue[])] : []),
  'builtins.dict': () => new Map(),
  'builtins.bytearray': (args) => (args[0] instanceof Uint8Array ? args[0] : new Uint8Array(0)),
  // Protocol 2 writes bytes as _codecs.encode(<latin-1 str>, 'latin1').
  '_codecs.encode': (args) => Uint8Array.from(String(args[0] ?? ''), (c) => c.charCodeAt(0) & 0xff),
  'builtins.bytes': () => new Uint8Array(0),
  '__builtin__.bytes': () => new Uint8Array(0),
  '__builtin__.set': (args) => new Set(Array.isArray(args[0]) ? (args[0] as PickleValue[]) : []),
  // copyreg's protocol-2 object reconstruction: behave like NEWOBJ on the class.
  'copyreg._reconstructor': (args) => construct(args[0] as PickleValue, []),
};

export function toKey(v: unknown): PickleKey {
  if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return v;
  if (isTuple(v)) return `(${(v as readonly unknown[]).map((x) => String(toKey(x))).join(', ')})`;
  return String(v);
}

export function construct(cls: PickleValue, args: PickleValue[]): PickleValue {
  if (cls instanceof PickleGlobal) {
    const o = new PickleObject(cls);
    o.args = args;
    return o;
  }
  return new PickleObject(new PickleGlobal('?', 'unknown'));
}
