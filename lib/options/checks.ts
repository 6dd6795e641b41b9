/**
 * The checks of the options schema (sharp's `is` module, as rules): each rule knows what it
 * expects, so the API (BAD_INPUT, "Expected X for NAME but received Y") and the CLI ("--flag must
 * be X.") word the same rule the same way.
 */
import { invalidParameter } from '../errors';

/** One rule: a description of the values it accepts, and the test. */
export interface Rule<T> {
  /** What the rule accepts, as a noun phrase ("an integer between 1 and 1024"). */
  readonly expected: string;
  /** True when `v` is accepted as it is. */
  valid(v: unknown): v is T;
  /**
   * Checks `v` (named `name` in the error) and returns it, possibly normalised. Rules of nested
   * values (sampling strategies) name the nested field that is wrong.
   * @throws DfdetError BAD_INPUT
   */
  check(v: unknown, name: string): T;
}

function rule<T>(expected: string, valid: (v: unknown) => v is T): Rule<T> {
  return {
    expected,
    valid,
    check(v, name) {
      if (!valid(v)) invalidParameter(name, expected, v);
      return v;
    },
  };
}

const isNumber = (v: unknown): v is number => typeof v === 'number' && !Number.isNaN(v);

/** An integer in [min, max]; `orInfinity` also accepts Infinity (meaning "no limit"). */
export function integer(min: number, max: number, orInfinity = false): Rule<number> {
  const range = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer between ${min} and ${max}`;
  return rule(orInfinity ? `${range} or Infinity` : range, (v): v is number => isNumber(v) && ((orInfinity && v === Infinity) || (Number.isSafeInteger(v) && v >= min && v <= max)));
}

/** A finite number in [min, max]. */
export function number(min: number, max: number): Rule<number> {
  return rule(`a number between ${min} and ${max}`, (v): v is number => isNumber(v) && Number.isFinite(v) && v >= min && v <= max);
}

/** A finite number > 0. */
export const positive: Rule<number> = rule('a positive number', (v): v is number => isNumber(v) && Number.isFinite(v) && v > 0);

/** One of a fixed set of strings. */
export function oneOf<T extends string>(values: readonly T[]): Rule<T> {
  return rule(values.map((v) => `'${v}'`).join(', ').replace(/, ([^,]*)$/, ' or $1'), (v): v is T => (values as readonly unknown[]).includes(v));
}

/** true or false. */
export const boolean: Rule<boolean> = rule('a boolean', (v): v is boolean => typeof v === 'boolean');

/** A non-empty string. */
export const text: Rule<string> = rule('a non-empty string', (v): v is string => typeof v === 'string' && v.length > 0);

/** A plain object (options bags). */
export const object: Rule<Record<string, unknown>> = rule('an options object', (v): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v));

/** An AbortSignal. */
export const abortSignal: Rule<AbortSignal> = rule('an AbortSignal', (v): v is AbortSignal => v instanceof AbortSignal);

/** `rule`, or undefined when `v` is undefined. */
export function optional<T>(r: Rule<T>, v: unknown, name: string): T | undefined {
  return v === undefined ? undefined : r.check(v, name);
}
