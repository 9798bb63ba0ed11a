import { readdirSync, readFileSync } from 'node:fs';

/**
 * Command lines (arguments joined by spaces) of this machine's processes, read from /proc: whole, where `ps` cuts
 * them to $COLUMNS, and without needing procps (slim images lack it). Linux only, as the test suite is.
 */
export function commandLines(): string[] {
  const lines: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let raw: string;
    try {
      raw = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue; // it exited since the listing
    }
    // Kernel threads and zombies have no command line.
    if (raw !== '') lines.push(raw.replace(/\0$/, '').split('\0').join(' '));
  }
  return lines;
}
