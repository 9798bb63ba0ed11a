// Preloaded into each target process (`node --import`): answers memory samples over the IPC channel, so the
// figures are the target's own (process.memoryUsage in the process under attack), not an outside estimate.
if (typeof process.send === 'function') {
  process.on('message', (message) => {
    if (message?.type !== 'sample') return;
    // A forced GC shows what is retained (the target runs with --expose-gc); without it, what is in use now.
    if (message.gc === true && typeof globalThis.gc === 'function') globalThis.gc();
    const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage();
    process.send({ type: 'sample', id: message.id, rss, heapUsed, heapTotal, external, arrayBuffers });
  });
  // The channel must not keep a target alive once it has closed its listener (SIGTERM ends serve and relay).
  process.channel?.unref();
}
