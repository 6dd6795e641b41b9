/**
 * What the CPU can do, read at run time (machines of one project differ: some have AVX-512 BF16,
 * others AVX2 only), for `dtype: 'auto'` and for benchmarks to report.
 */
import * as fs from 'node:fs';

/** The CPU features dfdet cares about. */
export interface CpuFeatures {
  /** Model name from /proc/cpuinfo ('' when unknown). */
  model: string;
  /** The flags of interest that were found (avx2, avx512f, avx512_bf16, amx_bf16, ...). */
  flags: string[];
  /** True when the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16): bf16 matmuls run ~2x fp32. */
  bf16: boolean;
}

const INTERESTING = /^(avx2|fma|f16c|avx512f|avx512bw|avx512vl|avx512_vnni|avx512_bf16|avx512_fp16|amx_bf16|amx_tile|amx_int8|avx_vnni)$/;

/** Features from the text of /proc/cpuinfo (its first processor). */
export function parseCpuInfo(text: string): CpuFeatures {
  const flagLine = /^flags\s*:\s*(.*)$/m.exec(text)?.[1] ?? '';
  const all = new Set(flagLine.split(/\s+/).filter(Boolean));
  const flags = [...all].filter((f) => INTERESTING.test(f)).sort();
  const model = /^model name\s*:\s*(.*)$/m.exec(text)?.[1]?.trim() ?? '';
  return { model, flags, bf16: all.has('avx512_bf16') || all.has('amx_bf16') };
}

let cached: CpuFeatures | undefined;

/** This machine's CPU features (Linux: /proc/cpuinfo; elsewhere none are claimed, so bf16 is false). */
export function cpuFeatures(): CpuFeatures {
  if (cached) return cached;
  let text = '';
  try {
    text = fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // Not Linux: no flags known.
  }
  return (cached = parseCpuInfo(text));
}
