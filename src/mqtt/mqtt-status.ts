import type { CommandEvent } from './command-runner.js';

/** Counters of a running gateway (all since start). */
export interface MqttGatewayStats {
  /** Advertisements published (a report with several service-data structures counts once). */
  readonly advertisementsPublished: number;
  /** MQTT messages published for them (one per service-data structure and topic). */
  readonly messagesPublished: number;
  /** Advertisements left out on purpose: below `minRssi`, or by the per-device interval / change-only filter. */
  readonly advertisementsFiltered: number;
  /** Advertisements dropped because the broker was away (nothing is queued for it). */
  readonly droppedBrokerAway: number;
  /** Advertisements dropped because the broker did not read fast enough (more than `maxBufferedBytes` waiting). */
  readonly droppedSlowBroker: number;
  readonly commandsSucceeded: number;
  /** Commands answered with an error, refused ones included. */
  readonly commandsFailed: number;
  /** Answers and notifications that could not be published (broker away or backed up). */
  readonly answersDropped: number;
  /** Retained messages on the command topic, replayed by the broker on subscribe: never carried out. */
  readonly retainedCommandsDropped: number;
  /** Notification subscriptions open now. */
  readonly notifications: number;
  readonly brokerConnected: boolean;
  /** Times the broker connection was lost. */
  readonly brokerDisconnects: number;
  /** Bytes waiting in the broker socket now. */
  readonly brokerBufferedBytes: number;
}

/** Gateway life-cycle events, a union tagged by `type`. */
export type MqttGatewayStatus =
  | { type: 'brokerConnected'; url: string }
  | { type: 'brokerDisconnected'; code: string | undefined; message: string | undefined; retryInMs: number }
  | CommandEvent
  /**
   * Another gateway with this name is on the broker (host, pid, start time). The newer run carries out the commands:
   * `yielded` says this one stopped taking them, `kept` that the other did. Give each gateway its own name.
   */
  | { type: 'nameClash'; other: { host: string; pid: number; since: string }; commands: 'yielded' | 'kept' }
  /** The broker refused the subscription to these command topics (commands sent there are not heard). */
  | { type: 'subscribeRefused'; topics: string[]; message: string }
  /** A retained command was ignored (clear it: `mosquitto_pub -r -n -t <topic>`). */
  | { type: 'retainedCommandDropped'; topic: string }
  | { type: 'stats'; stats: MqttGatewayStats }
  | { type: 'closed' };
