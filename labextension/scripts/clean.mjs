// Remove the build outputs (lib/, tsbuildinfo, the lab extension, the widget bundle).
import { rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
for (const target of [
  'lib',
  'tsconfig.tsbuildinfo',
  '../agentkit_jupyter/labextension',
  '../agentkit_jupyter/static/widget.js'
]) {
  rmSync(path.join(root, target), { recursive: true, force: true });
}
