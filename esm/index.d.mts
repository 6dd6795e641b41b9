// Types of the ES module entry point: the same declarations as the CommonJS entry.
export * from '../dist/lib/index.js';
import * as dfdet from '../dist/lib/index.js';
export default dfdet;
