// Rewrites README "CLI"'s generated tables from the built CLI (npm run build first); test/cli/vocabulary.test.ts
// fails when README and the vocabulary disagree.
import { readFileSync, writeFileSync } from 'node:fs';
import { COMMANDS } from '../dist/cli/main.js';
import { README_MARKERS, readmeCliTables } from '../dist/cli/readme-tables.js';

const readme = readFileSync('README.md', 'utf8');
const start = readme.indexOf(README_MARKERS.start);
const end = readme.indexOf(README_MARKERS.end);
if (start < 0 || end < start) throw new Error('README.md has no cli-tables markers');
writeFileSync('README.md', readme.slice(0, start) + readmeCliTables(COMMANDS) + readme.slice(end + README_MARKERS.end.length));
