/**
 * True when CI says every test must run (CI set, and not to `false`): what a test waits for is then required, and
 * its absence fails the test instead of skipping it, so a skip cannot hide a regression there.
 */
export const CI_REQUIRED = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';
