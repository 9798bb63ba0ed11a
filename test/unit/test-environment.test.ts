import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { commandLines } from '../helpers/processes.js';

describe('test environment helpers', () => {
  it('processes - a command line longer than any terminal is found whole while the process runs, and not once it has exited', async () => {
    // ps cut lines to $COLUMNS (80 when exported), so a marker past the cut was never found and "none left" passed.
    const marker = `marker-${process.pid}-${'x'.repeat(5_000)}-end`;
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', marker], { stdio: 'ignore' });
    try {
      await once(child, 'spawn');
      const found = commandLines().filter((line) => line.includes(marker));
      expect(found).toEqual([`${process.execPath} -e setInterval(() => {}, 1000) ${marker}`]);
    } finally {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    expect(commandLines().filter((line) => line.includes(marker))).toEqual([]);
  });
});
