#!/usr/bin/env node
/**
 * The `dfdet` command line: a thin layer over the library (Detector, eval, convert, registry/pull,
 * native runtime). Usage errors exit 2; see {@link EXIT} for every code.
 */
import { Command, CommanderError } from 'commander';

import { registerConvert } from './commands/convert';
import { registerDetect } from './commands/detect';
import { registerDoctor } from './commands/doctor';
import { registerEval } from './commands/eval';
import { registerInfo } from './commands/info';
import { registerModel } from './commands/model';
import { registerPull } from './commands/pull';
import { registerQueue } from './commands/queue';
import { registerServe } from './commands/serve';
import { registerSubmit } from './commands/submit';
import { registerTrain } from './commands/train';
import { registerWorker } from './commands/worker';
import { errorMessage, EXIT, EXIT_HELP, exitCodeOf } from './options';

function version(): string {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('../../../package.json') as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

/** Builds the program (exported for tests and embedding). */
export function buildProgram(): Command {
  const program = new Command('dfdet');
  program
    .description('Deepfake face detection with CLIP ViT detectors (Yermakov, Cech, Matas 2025) on libtorch')
    .version(version(), '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    // Usage errors become CommanderErrors handled in main() (exit 2) instead of process.exit(1).
    .exitOverride()
    .configureHelp({ sortSubcommands: false, showGlobalOptions: false });
  registerDetect(program);
  registerEval(program);
  registerTrain(program);
  registerPull(program);
  registerServe(program);
  registerConvert(program);
  registerModel(program);
  registerInfo(program);
  registerDoctor(program);
  registerWorker(program);
  registerSubmit(program);
  registerQueue(program);
  program.addHelpText(
    'after',
    `
Start with \`dfdet pull\` (downloads and converts the authors' detector), then \`dfdet detect photo.jpg\`.
\`dfdet doctor\` checks the installation.

${EXIT_HELP}`,
  );
  return program;
}

/** Writes to stderr; a stderr that cannot be written (full disk, closed) is not worth a crash. */
function writeStderr(text: string): void {
  try {
    process.stderr.write(text);
  } catch {
    // nowhere left to report it
  }
}

let watching = false;

/**
 * Output that cannot be written ends the run with one line and exit 1 instead of an unhandled
 * 'error' event (a stack trace): `> /dev/full` gives ENOSPC. A closed pipe (`dfdet detect ... |
 * head`) ends it quietly. A failing stderr is ignored: there is nowhere to report it.
 */
function watchOutputStreams(): void {
  if (watching) return;
  watching = true;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? EXIT.OK);
    const why = e.code && !e.message.includes(e.code) ? `${e.code}: ${e.message}` : e.message;
    writeStderr(`dfdet: cannot write the output to stdout: ${why}\n`);
    process.exit(EXIT.FAILED);
  });
  process.stderr.on('error', () => undefined);
}

/** Runs the CLI with `argv` (node, script, ...args); resolves to the exit code. */
export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  watchOutputStreams();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.OK;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return EXIT.OK;
      // Commander already printed the message.
      return e.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    writeStderr(`${errorMessage(e)}\n`);
    if (process.env.DFDET_DEBUG && e instanceof Error && e.stack) writeStderr(`${e.stack}\n`);
    return exitCodeOf(e);
  }
}

if (require.main === module) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      writeStderr(`${errorMessage(e)}\n`);
      process.exitCode = EXIT.FAILED;
    },
  );
}
