import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

/** Who runs a gateway: what each instance announces on `<root>/instance` when it connects. */
export interface InstanceClaim {
  /** Random per run. */
  readonly id: string;
  /** When this run started (ms since the epoch): the newer run takes the commands. */
  readonly since: number;
  readonly host: string;
  readonly pid: number;
}

/** What to do about another instance's claim. */
export interface ClaimVerdict {
  readonly other: InstanceClaim;
  /** First time we hear from it: answer with our own claim (so it learns of us) and report the clash. */
  readonly first: boolean;
  /** It is the newer run: we stop carrying out commands. */
  readonly yieldCommands: boolean;
}

/** A claim is a few dozen bytes; anything much bigger is not one. */
const MAX_CLAIM_BYTES = 512;
/** Other instances remembered (so each is answered and reported once); a stranger inventing ids cannot grow it. */
const MAX_REMEMBERED = 64;

/**
 * Two gateways with one name on one broker would both carry out every command sent to that name (a write
 * twice). Each run announces itself on `<root>/instance`; when one hears another, the newer run keeps the
 * commands and the older stops taking them, as OpenMQTTGateway's fixed client id has the broker drop the older
 * session, but without the two then taking turns at kicking each other off.
 */
export class NameClaim {
  readonly mine: InstanceClaim;
  readonly #heard = new Set<string>();
  #yielded = false;

  constructor(now = Date.now()) {
    this.mine = { id: randomBytes(6).toString('hex'), since: now, host: hostname(), pid: process.pid };
  }

  /** Our claim as published. */
  get payload(): string {
    return JSON.stringify(this.mine);
  }

  /** True once a newer instance with our name was heard: commands are its. */
  get yielded(): boolean {
    return this.#yielded;
  }

  /** Reads a message from the instance topic; undefined for our own claim or one that does not decode. */
  receive(payload: Uint8Array): ClaimVerdict | undefined {
    if (payload.length > MAX_CLAIM_BYTES) return undefined;
    let other: InstanceClaim;
    try {
      const body = JSON.parse(Buffer.from(payload).toString('utf8')) as Partial<InstanceClaim>;
      if (typeof body.id !== 'string' || typeof body.since !== 'number' || !Number.isFinite(body.since)) return undefined;
      other = {
        id: body.id.slice(0, 64),
        since: body.since,
        host: typeof body.host === 'string' ? body.host.slice(0, 128) : '?',
        pid: typeof body.pid === 'number' ? body.pid : 0,
      };
    } catch {
      return undefined;
    }
    if (other.id === this.mine.id) return undefined;
    const first = !this.#heard.has(other.id);
    if (first) {
      if (this.#heard.size >= MAX_REMEMBERED) this.#heard.delete(this.#heard.values().next().value!);
      this.#heard.add(other.id);
    }
    // Both sides order the two runs the same way, so exactly one of them yields.
    const newer = other.since > this.mine.since || (other.since === this.mine.since && other.id > this.mine.id);
    if (newer) this.#yielded = true;
    return { other, first, yieldCommands: newer };
  }
}
