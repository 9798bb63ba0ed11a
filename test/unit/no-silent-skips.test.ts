import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const TEST_DIR = fileURLToPath(new URL('../', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
/** A conditional or unconditional skip of a test or suite (the skip, skipIf, runIf and todo modifiers, or a context skip call). */
const SKIP = new RegExp(['\\b(?:it|test|describe|bench)\\.(?:skip|skipIf|runIf|todo)\\b', '\\b(?:ctx|context|t)\\.skip\\('].join('|'), 'g');
/** Where a skip's title or note has ended: the test body starts, or the statement ends. */
const BODY = /async\s*\(|\(\)\s*=>|\bfunction\b|;/;

function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return testFiles(path);
    return entry.name.endsWith('.ts') && path !== SELF ? [path] : [];
  });
}

describe('test suite rules', () => {
  it('test suite - every skip names what it waits for ("waits for …" in its title or note)', () => {
    const silent: string[] = [];
    for (const file of testFiles(TEST_DIR)) {
      const source = readFileSync(file, 'utf8');
      for (const match of source.matchAll(SKIP)) {
        const rest = source.slice(match.index + match[0].length);
        const end = rest.search(BODY);
        const statement = end < 0 ? rest : rest.slice(0, end);
        if (!/waits for /.test(statement)) {
          const line = source.slice(0, match.index).split('\n').length;
          silent.push(`${relative(TEST_DIR, file)}:${line}: ${match[0]}`);
        }
      }
    }
    expect(silent, 'a fresh clone must run every test, or say what a skipped one waits for').toEqual([]);
  });
});
