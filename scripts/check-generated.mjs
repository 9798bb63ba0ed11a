// Regenerates src/gen with buf and fails when the committed code differs (stale codegen).
import { execFileSync } from 'node:child_process';

execFileSync('node_modules/.bin/buf', ['generate'], { stdio: 'inherit' });
const status = execFileSync('git', ['status', '--porcelain', '--', 'src/gen'], { encoding: 'utf8' });
if (status.trim() !== '') {
  console.error('Generated code in src/gen is stale; run `npm run gen` and commit:\n' + status);
  process.exit(1);
}
console.log('generated code is up to date');
