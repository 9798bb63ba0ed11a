import { describe, expect, it } from 'vitest';
import { UsageError } from '../../../src/cli/command.js';
import type { Output } from '../../../src/cli/output.js';
import {
  type Prompter,
  type PromptStreams,
  relayNote,
  requireConsent,
  subscriptionNote,
  terminalPrompter,
} from '../../../src/cli/real-home.js';

const out: Output = { isTty: false, line: () => {}, error: () => {}, json: () => {} };
const ctx = () => ({ out, signal: new AbortController().signal });

describe('real-home rule', () => {
  it('real-home - the note names the proxies by what holding them means on their firmware', () => {
    expect(subscriptionNote([])).toBeUndefined();
    const note = subscriptionNote([
      { label: 'kitchen', esphomeVersion: '2026.8.0' },
      { label: 'garage', esphomeVersion: '2025.5.2' },
      { label: 'attic', esphomeVersion: '2023.5.5' },
      { label: 'custom', esphomeVersion: undefined },
    ]);
    expect(note).toBe(
      "this command holds the Bluetooth subscription of kitchen, custom (newest wins, 2026.7+: taken from Home Assistant: the events of its open links come to this command instead, and when the command exits the proxy has no subscriber and drops every link, Home Assistant's included; Home Assistant gets no advertisements from it until it subscribes again, and should it subscribe again this command takes it back (with backoff))" +
        ' and garage (first wins: Home Assistant cannot subscribe to them meanwhile)' +
        ' and attic (before 2023.6 every client is served: nothing is taken); `esphome-ble relay` shares proxies instead',
    );
    // A command that does not fight for it (slots --subscribe) says nothing about taking it back.
    expect(subscriptionNote([{ label: 'kitchen', esphomeVersion: '2026.8.0' }], { winsBack: false })).not.toContain('takes it back');
    expect(relayNote(['a:6053', 'b:6053'])).toMatch(/^the relay holds the Bluetooth subscription of a:6053, b:6053 while it runs/);
  });

  it('real-home - consent: the flag goes ahead, a terminal asks, no terminal is a usage error naming the flag', async () => {
    const request = { action: 'release 2 slots', flag: '--yes' };
    expect(await requireConsent(ctx(), { ...request, given: true }, undefined)).toBe(true);
    await expect(requireConsent(ctx(), { ...request, given: false }, undefined)).rejects.toThrow(UsageError);
    await expect(requireConsent(ctx(), { ...request, given: false }, undefined)).rejects.toThrow(
      'Refusing to release 2 slots without a terminal to confirm it: pass --yes (nothing was changed)',
    );
    const asked: string[] = [];
    const answer =
      (text: string | undefined): Prompter =>
      async (question) => {
        asked.push(question);
        return text;
      };
    expect(await requireConsent(ctx(), { ...request, given: false }, answer('y'))).toBe(true);
    expect(await requireConsent(ctx(), { ...request, given: false }, answer(' Yes '))).toBe(true);
    expect(await requireConsent(ctx(), { ...request, given: false }, answer(''))).toBe(false);
    expect(await requireConsent(ctx(), { ...request, given: false }, answer(undefined))).toBe(false);
    expect(asked[0]).toBe('Release 2 slots? [y/N] ');
  });

  it('real-home - a terminal prompt needs stdin and stderr to be terminals, whatever stdout is (--json > file)', () => {
    const streams = (input: boolean, output: boolean): PromptStreams =>
      ({ input: { isTTY: input }, output: { isTTY: output } }) as unknown as PromptStreams;
    expect(terminalPrompter(streams(true, true))).toBeTypeOf('function');
    expect(terminalPrompter(streams(true, false))).toBeUndefined();
    expect(terminalPrompter(streams(false, true))).toBeUndefined();
  });
});
