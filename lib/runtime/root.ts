/** The package root: the folder holding package.json and binding.d.ts (lib/ in sources, dist/lib/ when built). */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Package root, found by walking up from this file. */
export const packageRoot: string = (() => {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'binding.d.ts'))) return dir;
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..', '..');
})();
