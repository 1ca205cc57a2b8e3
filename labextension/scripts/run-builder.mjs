// Run `jupyter-builder <args>` (PyPI jupyter-builder): from PATH (the build
// environment of `pip install`, an activated venv), else from ../.venv.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const exe = process.platform === 'win32' ? 'jupyter-builder.exe' : 'jupyter-builder';
const bin = process.platform === 'win32' ? 'Scripts' : 'bin';
const candidates = [];
for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
  if (dir) candidates.push(path.join(dir, exe));
}
if (process.env.VIRTUAL_ENV) candidates.push(path.join(process.env.VIRTUAL_ENV, bin, exe));
candidates.push(path.resolve(here, '..', '..', '.venv', bin, exe));

const found = candidates.find(candidate => existsSync(candidate));
if (!found) {
  process.stderr.write(
    'jupyter-builder not found: `pip install "jupyter-builder>=1.3"` or activate the venv.\n'
  );
  process.exit(1);
}
const result = spawnSync(found, process.argv.slice(2), { stdio: 'inherit' });
process.exit(result.status ?? 1);
