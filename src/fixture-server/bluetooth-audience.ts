import type { MessageType, PartialMessage } from '@protobuf-ts/runtime';
import type { ApiServer, ApiSession } from '../server/api-server.js';
import type { SubscriptionPolicy } from './firmware.js';

/**
 * Who hears the simulated proxy's Bluetooth side: since 2023.6 the one advertisement subscriber gets every
 * Bluetooth answer and the advertisements; before, every client past its Hello got the answers and every client
 * that subscribed the advertisements.
 */
export class BluetoothAudience {
  /** Before 2023.6: every session that subscribed gets advertisements, and every session every other answer. */
  readonly answersToAll: boolean;
  #subscriber: ApiSession | undefined;
  readonly #adSessions = new Set<ApiSession>();
  /** The node served (known from its first message): whom answers reach before 2023.6. */
  #server: ApiServer | undefined;

  constructor(answersToAll: boolean) {
    this.answersToAll = answersToAll;
  }

  /** The session that holds the Bluetooth subscription (before 2023.6: the first of those that subscribed). */
  get subscriber(): ApiSession | undefined {
    return this.answersToAll ? this.#adSessions.values().next().value : this.#subscriber;
  }

  /** Learns the node from a session's first message. */
  attach(server: ApiServer): void {
    this.#server ??= server;
  }

  /** True when `session` holds the subscription (since 2023.6). */
  holds(session: ApiSession): boolean {
    return this.#subscriber === session;
  }

  /** `session` subscribes; false when the subscription stays with another session (nothing changes then). */
  subscribe(session: ApiSession, policy: SubscriptionPolicy): boolean {
    if (this.answersToAll) {
      this.#adSessions.add(session);
      return true;
    }
    // 2023.6 to 2026.6: "Only one API subscription is allowed at a time" — any subscribe while one exists is
    // ignored, even the subscriber's own. From 2026.7 the newest subscriber takes the slot over; the firmware
    // tells the previous one nothing, and the links it opened stay up, their events now going to the new one.
    if (this.#subscriber !== undefined && policy === 'first-wins') return false;
    this.#subscriber = session;
    return true;
  }

  /** The subscriber let go of the subscription (since 2023.6). */
  unsubscribe(): void {
    this.#subscriber = undefined;
  }

  /** Before 2023.6: `session` gets no more advertisements; true when no session gets any now. */
  removeAdSession(session: ApiSession): boolean {
    this.#adSessions.delete(session);
    return this.#adSessions.size === 0;
  }

  /** Whether anyone receives the Bluetooth answers: the subscriber, or before 2023.6 any connected client. */
  hasListener(): boolean {
    if (!this.answersToAll) return this.#subscriber !== undefined;
    for (const session of this.#server?.sessions ?? []) if (session.state !== 'closed') return true;
    return false;
  }

  /** Sends a Bluetooth answer to whoever hears them. */
  send<T extends object>(type: MessageType<T>, message: PartialMessage<T>): void {
    if (!this.answersToAll) {
      this.#subscriber?.send(type, message);
      return;
    }
    // Every client past its Hello: the firmware wrote to every connection it had.
    for (const session of this.#server?.sessions ?? []) {
      if (session.state === 'setup' || session.state === 'authenticated') session.send(type, message);
    }
  }

  /** Advertisements are the droppable kind: a session behind on its reads skips them (the firmware drops them too). */
  sendAdvertisements<T extends object>(type: MessageType<T>, message: PartialMessage<T>, reports: number): void {
    if (!this.answersToAll) this.#subscriber?.sendDroppable(type, message, reports);
    else for (const session of this.#adSessions) session.sendDroppable(type, message, reports);
  }
}
