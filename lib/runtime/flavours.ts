/**
 * Prebuilt addon flavours: one npm package per platform and libtorch build, listed by the main
 * package as `optionalDependencies` (the sharp / node-llama-cpp pattern). npm installs only the
 * ones whose `os`/`cpu`/`libc` fit the machine; at load, {@link planCandidates} orders those whose
 * libtorch is present and the loader keeps the first that loads.
 *
 * Naming: `@dfdet/<platform>-<arch>-torch<major.minor>-<device>`, with `linux` meaning glibc and
 * `linuxmusl` musl (sharp's convention). libtorch has no stable ABI across minor versions, so a
 * flavour pins `major.minor`. To add one (e.g. libtorch 2.5 CPU or CUDA 12 for linux-x64), append
 * an entry here, build its binary on a machine with that libtorch (`npm run package -- --flavour
 * <id>`) and add the package to `optionalDependencies`: the loader, `dfdet doctor` and the
 * install script pick it up from this table.
 */

/** How a flavour's binary finds its libtorch at run time. */
export type LibtorchLayout =
  /**
   * Debian/Ubuntu's packaged libtorch (`libtorch1.13`): versioned sonames (`libtorch.so.1.13`) in
   * the system library folder, found by the dynamic loader without any setting.
   */
  | 'system'
  /**
   * An upstream libtorch (the pytorch.org zip, or `torch/lib` of a pip install): unversioned
   * sonames in a folder the user points to with `LIBTORCH`, and which must be on `LD_LIBRARY_PATH`.
   */
  | 'upstream';

/** One prebuilt addon package. */
export interface Flavour {
  /** `<platform>-<arch>-torch<major.minor>-<device>`, e.g. `linux-x64-torch1.13-cpu`. */
  id: string;
  /** The npm package that holds the binary (`dfdet.node`). */
  package: string;
  /** `process.platform` it runs on. */
  os: NodeJS.Platform;
  /** `process.arch` it runs on. */
  cpu: string;
  /** C library (Linux only). */
  libc?: 'glibc' | 'musl';
  /** libtorch `major.minor` it was built against. */
  torch: string;
  /** `cuda` flavours are only tried where a CUDA libtorch was found. */
  device: 'cpu' | 'cuda';
  layout: LibtorchLayout;
  /** Whether the release publishes this flavour (listed in `optionalDependencies`). */
  published: boolean;
}

/** Package scope of the prebuilt packages. */
export const PREBUILT_SCOPE = '@dfdet';

/** The npm package name of a flavour id. */
export function flavourPackage(id: string): string {
  return `${PREBUILT_SCOPE}/${id}`;
}

function flavour(f: Omit<Flavour, 'id' | 'package'>): Flavour {
  const platform = f.os === 'linux' && f.libc === 'musl' ? 'linuxmusl' : f.os;
  const id = `${platform}-${f.cpu}-torch${f.torch}-${f.device}`;
  return { id, package: flavourPackage(id), ...f };
}

/** Every flavour dfdet knows, published or not. The release publishes the `published` ones. */
export const FLAVOURS: readonly Flavour[] = [
  flavour({ os: 'linux', cpu: 'x64', libc: 'glibc', torch: '1.13', device: 'cpu', layout: 'system', published: true }),
];

let glibc: string | null | undefined;

/** glibc version of this process, when it runs on glibc (read once: a diagnostic report takes ms). */
export function hostGlibcVersion(): string | undefined {
  if (glibc === undefined) {
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
    glibc = header?.glibcVersionRuntime ?? null;
  }
  return glibc ?? undefined;
}

/** The C library of this process (Linux), as npm's `libc` field names it. */
export function hostLibc(): 'glibc' | 'musl' | undefined {
  if (process.platform !== 'linux') return undefined;
  return hostGlibcVersion() ? 'glibc' : 'musl';
}

/** `linux-x64 (glibc 2.36)`: the platform as messages name it. */
export function hostPlatformLabel(): string {
  const glibc = hostGlibcVersion();
  const libc = process.platform === 'linux' ? (glibc ? ` (glibc ${glibc})` : ' (musl)') : '';
  return `${process.platform}-${process.arch}${libc}`;
}

/** The flavours whose os/cpu/libc fit this machine (what npm would install here). */
export function flavoursForHost(all: readonly Flavour[] = FLAVOURS): Flavour[] {
  const libc = hostLibc();
  return all.filter((f) => f.os === process.platform && f.cpu === process.arch && (f.libc === undefined || f.libc === libc));
}
