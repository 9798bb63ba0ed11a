import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';

/** One message a test client received. */
export interface Received {
  readonly topic: string;
  readonly text: string;
  readonly retain: boolean;
  /** The payload as JSON when it is JSON, else undefined. */
  readonly json: Record<string, unknown> | undefined;
}

/** A plain MQTT.js client that records what it receives, as any consumer on the broker would. */
export class TestClient {
  readonly client: MqttClient;
  readonly messages: Received[] = [];
  readonly #waiters = new Set<{ match: (m: Received) => boolean; resolve: (m: Received) => void }>();

  private constructor(client: MqttClient) {
    this.client = client;
    client.on('message', (topic, payload, packet) => {
      const text = payload.toString('utf8');
      let json: Record<string, unknown> | undefined;
      try {
        const parsed = JSON.parse(text) as unknown;
        if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) json = parsed as Record<string, unknown>;
      } catch {}
      const message = { topic, text, retain: packet.retain, json };
      this.messages.push(message);
      for (const waiter of this.#waiters) {
        if (waiter.match(message)) {
          this.#waiters.delete(waiter);
          waiter.resolve(message);
        }
      }
    });
  }

  /** Connects to `url` and subscribes to `topics`. */
  static async connect(url: string, topics: readonly string[] = [], options: IClientOptions = {}): Promise<TestClient> {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 3_000, ...options });
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
      client.once('close', () => reject(new Error(`could not connect to ${url}`)));
    });
    client.removeAllListeners('error');
    client.on('error', () => {});
    const test = new TestClient(client);
    if (topics.length > 0) await client.subscribeAsync([...topics], { qos: 0 });
    return test;
  }

  /** The first message (already received or coming) that matches, within `timeoutMs`. */
  next(match: (m: Received) => boolean, timeoutMs = 3_000, what = 'a matching message'): Promise<Received> {
    const seen = this.messages.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (m: Received) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(
          new Error(
            `no ${what} within ${timeoutMs} ms (got ${this.messages.length}: ${this.messages
              .slice(-5)
              .map((m) => `${m.topic} ${m.text}`)
              .join(' | ')})`,
          ),
        );
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  /** Like next() but only messages arriving from now on. */
  after(match: (m: Received) => boolean, timeoutMs = 3_000, what?: string): Promise<Received> {
    const from = this.messages.length;
    return this.next((m) => this.messages.indexOf(m) >= from && match(m), timeoutMs, what);
  }

  /** Publishes a string. */
  async publish(topic: string, payload: string, retain = false): Promise<void> {
    await this.client.publishAsync(topic, payload, { qos: 0, retain });
  }

  /** Disconnects. */
  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}
