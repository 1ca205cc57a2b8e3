// Bundle the anywidget front end (src/widget.ts and its stylesheet) into one
// self-contained ES module inside the Python package.
import { build } from 'esbuild';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dev = process.argv.includes('--dev');

await build({
  entryPoints: [path.join(here, '..', 'src', 'widget.ts')],
  outfile: path.join(here, '..', '..', 'agentkit_jupyter', 'static', 'widget.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  loader: { '.css': 'text' },
  minify: !dev,
  sourcemap: dev ? 'inline' : false,
  legalComments: 'none',
  logLevel: 'warning'
});
