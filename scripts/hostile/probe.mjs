// Preloaded into each target process (`node --import`): answers samples over the IPC channel, so the figures are
// the target's own, not an outside estimate: process.memoryUsage, and what its sockets and sessions hold.
//
// Sockets come from Node's own diagnostics channels (any build publishes them): every accepted socket
// ('net.server.socket', the listeners' clients) and every socket it opened ('net.client.socket', the relay's
// upstream). Sessions come from the API server's channel (this build's `SESSION_DIAGNOSTICS_CHANNEL`; an older
// build publishes nothing and its input figures stay 0). Node's own buffers are what backpressure bounds: with it
// lost, `queuedMax` grows past any per-session bound long before RSS shows anything.
import { subscribe } from 'node:diagnostics_channel';

if (typeof process.send === 'function') {
  const accepted = new Set();
  const opened = new Set();
  const sessions = new Set();
  const track = (set) => (message) => {
    const socket = message?.socket;
    if (socket === undefined || socket.destroyed) return;
    set.add(socket);
    socket.once('close', () => set.delete(socket));
  };
  subscribe('net.server.socket', track(accepted));
  subscribe('net.client.socket', track(opened));
  subscribe('esphome-ble:session', (message) => {
    if (message?.session !== undefined) sessions.add(message.session);
  });

  const sockets = () => {
    let queued = 0;
    let queuedMax = 0;
    let readable = 0;
    for (const socket of accepted) {
      queued += socket.writableLength;
      queuedMax = Math.max(queuedMax, socket.writableLength);
      readable += socket.readableLength;
    }
    let upstreamQueued = 0;
    for (const socket of opened) upstreamQueued += socket.writableLength;
    let input = 0;
    let inputMax = 0;
    for (const session of sessions) {
      input += session.inputBytes;
      inputMax = Math.max(inputMax, session.inputBytes);
    }
    return { serverSockets: accepted.size, queued, queuedMax, readable, upstreamQueued, sessions: sessions.size, input, inputMax };
  };

  process.on('message', (message) => {
    if (message?.type !== 'sample') return;
    // Closed sessions are let go first, so that a forced GC does not count them as retained.
    for (const session of sessions) if (session.isClosed) sessions.delete(session);
    // A forced GC shows what is retained (the target runs with --expose-gc); without it, what is in use now.
    if (message.gc === true && typeof globalThis.gc === 'function') globalThis.gc();
    const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage();
    try {
      process.send({ type: 'sample', id: message.id, rss, heapUsed, heapTotal, external, arrayBuffers, ...sockets() });
    } catch {
      // The run went away between its question and our answer: 'disconnect' ends us.
    }
  });
  // The channel must not keep a target alive once it has closed its listener (SIGTERM ends serve and relay)...
  process.channel?.unref();
  // ...and a target must not outlive the run that started it (killed, crashed, Ctrl-C'd without cleanup).
  process.once('disconnect', () => process.exit(0));
}
