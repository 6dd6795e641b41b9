/**
 * Checks a TorchScript archive before libtorch reads it. libtorch 1.13 trusts the archive: a
 * storage entry shorter than its tensor loads and is read out of bounds at the first run, a
 * malformed pickle (REDUCE on an empty stack) or deeply nested code crashes the parser, a declared
 * 4 GiB string is allocated before it is read, and no CRC is checked. Everything libtorch will
 * parse is checked here first with dfdet's own readers, whose every length is bounded by the bytes
 * that are there: the ZIP directory and each entry's CRC-32, `data.pkl` and `constants.pkl` (every
 * tensor view against the size of its storage entry), the `.debug_pkl` pickles, and the code files.
 */

import { DfdetError } from '../errors';
import { PickleObject, type PickleValue, unpickle } from './pickle';
import { DTYPE_SIZE } from './tensor';
import { storageFromPid, type TorchStorageRef, torchGlobals } from './torchzip';
import { ZipReader } from './zip';

/** Largest pickle or code entry accepted (real ones are kilobytes; libtorch reads them whole). */
export const MAX_ARCHIVE_TEXT_BYTES = 64 * 1024 * 1024;
/** Deepest bracket / indentation nesting, and longest run of unary operators, accepted in code. */
export const MAX_CODE_NESTING = 256;
/**
 * Most binary operators in one logical line of code: a chain parses into an equally deep tree that
 * libtorch walks recursively (10,000 `+` crashed it on a thread-pool thread; 4,000 did not).
 */
export const MAX_CODE_OPERATORS = 1000;
/** Deepest nesting of values in a pickle (libtorch frees nested lists recursively: 10^6 levels crash it). */
export const MAX_VALUE_DEPTH = 1000;

/** Bytes per element of the storage types a TorchScript archive may name. */
const STORAGE_ITEM: Readonly<Record<string, number>> = {
  FloatStorage: DTYPE_SIZE.float32,
  DoubleStorage: DTYPE_SIZE.float64,
  HalfStorage: DTYPE_SIZE.float16,
  BFloat16Storage: DTYPE_SIZE.bfloat16,
  LongStorage: DTYPE_SIZE.int64,
  IntStorage: DTYPE_SIZE.int32,
  ShortStorage: DTYPE_SIZE.int16,
  CharStorage: DTYPE_SIZE.int8,
  ByteStorage: DTYPE_SIZE.uint8,
  BoolStorage: DTYPE_SIZE.bool,
  ComplexHalfStorage: 4,
  ComplexFloatStorage: 8,
  ComplexDoubleStorage: 16,
  QInt8Storage: 1,
  QUInt8Storage: 1,
  QInt32Storage: 4,
  QUInt4x2Storage: 1,
  QUInt2x4Storage: 1,
};

/** Modules whose globals a TorchScript pickle may name: torch's own and the archive's classes. */
function allowedGlobal(module: string): boolean {
  return /^(__torch__|torch)(\.|$)/.test(module) || ['collections', 'builtins', '__builtin__'].includes(module);
}

/**
 * Validates the TorchScript archive at `source` (a path or its bytes) without running anything.
 * @throws DfdetError MODEL_LOAD_FAILED naming the entry and what is wrong (not a ZIP, CRC
 *   mismatch, malformed pickle, a tensor larger than its storage, code nested too deeply);
 *   NOT_FOUND for a missing path.
 */
export async function checkTorchScriptArchive(source: string | Uint8Array): Promise<void> {
  const where = typeof source === 'string' ? source : `<${source.byteLength} bytes>`;
  try {
    await check(source, where);
  } catch (e) {
    if (e instanceof DfdetError && e.code === 'BAD_FORMAT') {
      // The message already names the file (and the entry).
      throw new DfdetError('MODEL_LOAD_FAILED', e.message, { cause: e, details: { file: where, ...e.details } });
    }
    throw e;
  }
}

/** A pickle's global check that refuses everything but torch's own names. */
function refuseForeign(where: string, entry: string): (module: string, name: string) => void {
  return (module, name) => {
    if (allowedGlobal(module)) return;
    invalid(where, `${entry} names the Python global ${module}.${name}: a TorchScript archive only names torch classes (refusing a pickle that could run code)`, entry);
  };
}

function invalid(where: string, msg: string, entry?: string): never {
  throw new DfdetError('BAD_FORMAT', `Invalid TorchScript archive ${where}: ${msg}`, { details: entry ? { entry } : {} });
}

async function check(source: string | Uint8Array, where: string): Promise<void> {
  const options = { kind: 'TorchScript archive' };
  const zip = typeof source === 'string' ? await ZipReader.open(source, options) : await ZipReader.fromBytes(source, where, options);
  try {
    const first = zip.order[0]?.name ?? '';
    // libtorch takes the archive folder from the first entry and reads every record under it.
    if (!first.includes('/')) invalid(where, 'the first entry is not inside an archive folder (not a TorchScript file)');
    const archive = first.slice(0, first.indexOf('/') + 1);
    if (!zip.entries.has(`${archive}data.pkl`)) invalid(where, `no ${archive}data.pkl entry (not a TorchScript file)`);
    // A flipped bit anywhere must not become a silently different weight.
    await zip.verifyAll();
    for (const e of zip.order) {
      if (!e.name.startsWith(archive)) continue;
      const rel = e.name.slice(archive.length);
      const text = rel === 'data.pkl' || rel === 'constants.pkl' || rel.endsWith('.debug_pkl') || (rel.startsWith('code/') && rel.endsWith('.py'));
      if (!text) continue;
      if (e.size > MAX_ARCHIVE_TEXT_BYTES) invalid(where, `entry ${e.name} is ${e.size} bytes (at most ${MAX_ARCHIVE_TEXT_BYTES} accepted)`, e.name);
      const bytes = await zip.read(e.name);
      if (rel.endsWith('.py')) {
        const problem = codeProblem(new TextDecoder('utf-8').decode(bytes));
        if (problem) invalid(where, `code file ${e.name}: ${problem}`, e.name);
      } else if (rel.endsWith('.debug_pkl')) {
        // Source ranges: tuples, ints and strings (and torch's list builders).
        const value = unpickle(bytes, { source: `pickle ${e.name} in ${where}`, checkGlobal: refuseForeign(where, e.name) });
        checkDepth(value, where, e.name);
      } else {
        await checkStatePickle(zip, archive, rel.slice(0, -'.pkl'.length), bytes, where);
      }
    }
  } finally {
    await zip.close();
  }
}

/** Unpickles `data.pkl` / `constants.pkl` and checks every storage it names against its entry. */
async function checkStatePickle(zip: ZipReader, archive: string, name: string, bytes: Uint8Array, where: string): Promise<void> {
  const entry = `${archive}${name}.pkl`;
  // Every storage with the most bytes any reference to it needs.
  const storages = new Map<string, { ref: TorchStorageRef; bytes: number }>();
  const value = unpickle(bytes, {
    source: `pickle ${entry} in ${where}`,
    globals: torchGlobals(`${where}:${entry}`),
    checkGlobal: refuseForeign(where, entry),
    persistentLoad: (pid) => {
      const s = storageFromPid(pid, `${where}:${entry}`);
      const item = STORAGE_ITEM[s.typeName];
      if (item === undefined) invalid(where, `${entry} names an unknown storage type ${s.typeName} for storage ${s.key}`, entry);
      const bytes = s.numel * item;
      if ((storages.get(s.key)?.bytes ?? -1) < bytes) storages.set(s.key, { ref: s, bytes });
      return s as unknown as never;
    },
  });
  checkDepth(value, where, entry);
  for (const { ref: s, bytes } of storages.values()) {
    if (bytes === 0) continue;
    const file = zip.entries.get(`${archive}${name}/${s.key}`) ?? zip.entries.get(`${archive}.data/${s.key}`);
    if (!file) invalid(where, `storage ${s.key} named in ${entry} has no entry ${archive}${name}/${s.key}`, entry);
    if (file.size < bytes) {
      invalid(where, `entry ${file.name} holds ${file.size} bytes but its ${s.typeName} of ${s.numel} elements needs ${bytes}`, file.name);
    }
  }
}

/** Refuses values nested deeper than {@link MAX_VALUE_DEPTH} (walked without recursion, each value once). */
function checkDepth(root: PickleValue, where: string, entry: string): void {
  const seen = new Set<unknown>();
  const todo: Array<[unknown, number]> = [[root, 1]];
  while (todo.length) {
    const [v, depth] = todo.pop()!;
    if (typeof v !== 'object' || v === null || seen.has(v)) continue;
    seen.add(v);
    if (depth > MAX_VALUE_DEPTH) invalid(where, `${entry} nests values more than ${MAX_VALUE_DEPTH} levels deep`, entry);
    let children: Iterable<unknown> = [];
    if (Array.isArray(v) || v instanceof Set) children = v;
    else if (v instanceof Map) children = v.values();
    else if (v instanceof PickleObject) children = [...v.args, v.state, ...v.dictItems.values(), ...v.listItems];
    for (const c of children) if (typeof c === 'object' && c !== null) todo.push([c, depth + 1]);
  }
}

/**
 * What makes TorchScript source dangerous to hand to libtorch's recursive parser and emitter, or
 * undefined when nothing does: brackets, indentation or unary operators nested deeper than
 * {@link MAX_CODE_NESTING}, or a logical line with more than {@link MAX_CODE_OPERATORS} operators.
 * Strings and comments are skipped.
 */
export function codeProblem(code: string): string | undefined {
  let depth = 0;
  let unary = 0;
  let operators = 0;
  let line = 1;
  const indents: number[] = [0];
  let atLineStart = true;
  let prevSignificant = '';
  for (let i = 0; i < code.length; ) {
    const c = code[i]!;
    if (atLineStart && depth === 0) {
      let w = 0;
      while (code[i + w] === ' ' || code[i + w] === '\t') w++;
      const next = code[i + w];
      if (next !== undefined && next !== '\n' && next !== '\r' && next !== '#') {
        while (indents.length > 1 && indents[indents.length - 1]! > w) indents.pop();
        if (w > indents[indents.length - 1]!) indents.push(w);
        if (indents.length > MAX_CODE_NESTING) return `indentation nested more than ${MAX_CODE_NESTING} levels deep (line ${line})`;
      }
      atLineStart = false;
      i += w;
      continue;
    }
    if (c === '\n') {
      line++;
      if (depth === 0 && code[i - 1] !== '\\') {
        atLineStart = true;
        operators = 0;
      }
      i++;
      continue;
    }
    if (c === '#') {
      while (i < code.length && code[i] !== '\n') i++;
      continue;
    }
    if (c === '"' || c === "'") {
      const triple = code.startsWith(c.repeat(3), i);
      const quote = triple ? c.repeat(3) : c;
      i += quote.length;
      while (i < code.length && !code.startsWith(quote, i)) {
        if (code[i] === '\\') i++;
        else if (code[i] === '\n') {
          line++;
          if (!triple) break;
        }
        i++;
      }
      i += quote.length;
      prevSignificant = 'a';
      unary = 0;
      continue;
    }
    if (c === '(' || c === '[' || c === '{') {
      if (++depth > MAX_CODE_NESTING) return `brackets nested more than ${MAX_CODE_NESTING} deep (line ${line})`;
    } else if (c === ')' || c === ']' || c === '}') {
      depth = Math.max(0, depth - 1);
    } else if ('+-~*/%@&|^<>=!'.includes(c)) {
      // After an operand an operator is binary (a chain deepens the tree); after another operator
      // or an opening bracket `+ - ~` are unary (`- - - x` nests). `**` and `==` count once.
      const afterOperand = prevSignificant !== '' && !'+-~*/%@&|^<>=!([{,:'.includes(prevSignificant);
      if (afterOperand) {
        if (++operators > MAX_CODE_OPERATORS) return `more than ${MAX_CODE_OPERATORS} operators in one expression (line ${line})`;
      } else if ('+-~'.includes(c) && ++unary > MAX_CODE_NESTING) {
        return `unary operators nested more than ${MAX_CODE_NESTING} deep (line ${line})`;
      }
    } else if (/[ano]/.test(c) && !/\w/.test(code[i - 1] ?? '')) {
      const word = /^(not|and|or)(?!\w)/.exec(code.slice(i, i + 4))?.[1];
      if (word === 'not' && ++unary > MAX_CODE_NESTING) return `unary operators nested more than ${MAX_CODE_NESTING} deep (line ${line})`;
      if (word && word !== 'not' && ++operators > MAX_CODE_OPERATORS) return `more than ${MAX_CODE_OPERATORS} operators in one expression (line ${line})`;
      if (word) {
        i += word.length;
        prevSignificant = '!';
        continue;
      }
    }
    if (c !== ' ' && c !== '\t' && c !== '\r') {
      if (!'+-~'.includes(c)) unary = /\w|[)\]}]/.test(c) ? 0 : unary;
      prevSignificant = c;
    }
    i++;
  }
  return undefined;
}
