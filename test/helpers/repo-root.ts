import { fileURLToPath } from 'node:url';

/**
 * The project's folder, whatever the current directory: vitest runs from elsewhere with --root, or from a
 * workspace's top, and a relative path would then name another file.
 */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
