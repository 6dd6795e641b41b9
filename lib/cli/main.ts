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
import { registerSubmit } from './commands/submit';
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
  registerPull(program);
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

/** Runs the CLI with `argv` (node, script, ...args); resolves to the exit code. */
export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  // A closed stdout (`dfdet detect ... | head`) ends the run quietly.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? EXIT.OK);
    throw e;
  });
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.OK;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return EXIT.OK;
      // Commander already printed the message.
      return e.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    process.stderr.write(`${errorMessage(e)}\n`);
    if (process.env.DFDET_DEBUG && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    return exitCodeOf(e);
  }
}

if (require.main === module) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`${errorMessage(e)}\n`);
      process.exitCode = EXIT.FAILED;
    },
  );
}
