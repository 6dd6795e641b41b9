// ES module entry point of dfdet: the CommonJS build's exports, re-exported by name, so that
// `import { Detector } from 'dfdet'` and `require('dfdet')` share ONE instance (one addon, one
// model cache: no dual-package hazard).
export * from '../dist/lib/index.js';
import dfdet from '../dist/lib/index.js';
export default dfdet;
