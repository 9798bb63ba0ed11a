import type { Socket } from 'node:net';

/** `address:port` of a socket's peer, IPv6 in brackets (`[::1]:5000`): the one form every event and table prints. */
export function formatRemote(socket: Socket): string {
  const address = socket.remoteAddress ?? '?';
  return `${address.includes(':') ? `[${address}]` : address}:${socket.remotePort ?? 0}`;
}
