// Both sides of the benchmark child processes (sim-host.mjs, fleet-child.mjs, relay-child.mjs): fork, request/answer over IPC.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** A forked benchmark helper answering `{ op, seq, ... }` requests. */
export class ChildRpc {
  #child;
  #seq = 0;
  #pending = new Map();

  /** Forks `script` (a file next to this one) and waits for its ready message. */
  static async start(script, execArgv = []) {
    const rpc = new ChildRpc();
    const child = fork(fileURLToPath(new URL(script, import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
    rpc.#child = child;
    await new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code) => {
        reject(new Error(`${script} exited with ${code}`));
        for (const pending of rpc.#pending.values()) pending.reject(new Error(`${script} exited with ${code}`));
        rpc.#pending.clear();
      });
      child.on('message', (m) => {
        if (m.ready) resolve();
        const pending = rpc.#pending.get(m.seq);
        if (pending === undefined) return;
        rpc.#pending.delete(m.seq);
        if (m.error !== undefined) pending.reject(new Error(`${script}: ${m.error}`));
        else pending.resolve(m.result);
      });
    });
    return rpc;
  }

  /** Sends one command; resolves with the child's answer. */
  request(op, payload = {}) {
    const seq = ++this.#seq;
    return new Promise((resolve, reject) => {
      this.#pending.set(seq, { resolve, reject });
      this.#child.send({ op, seq, ...payload });
    });
  }

  /** Disconnects IPC (the child closes its servers and exits) and waits for the exit. */
  async close() {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.#child.once('exit', resolve));
    if (this.#child.connected) this.#child.disconnect();
    await exited;
  }
}

/** Simulated proxies living in a child process (sim-host.mjs). */
export class SimHost {
  #rpc;
  #ids = 0;

  /** Forks the host; `BENCH_SIM_ARGV` adds Node options to it (e.g. `--cpu-prof` to profile the server side). */
  static async start() {
    const host = new SimHost();
    host.#rpc = await ChildRpc.start('./sim-host.mjs', process.env.BENCH_SIM_ARGV?.split(' ').filter(Boolean) ?? []);
    return host;
  }

  /** Starts a simulated proxy (startSimulatedProxy options); resolves with a handle. */
  async proxy(options) {
    const id = ++this.#ids;
    const rpc = this.#rpc;
    const { port, name } = await rpc.request('start', { id, options: { name: `bench-${id}`, ...options } });
    return {
      id,
      port,
      name,
      prepare: (batches) => rpc.request('prepare', { id, batches }),
      go: () => rpc.request('go', { id }),
      warm: (connects, psk) => rpc.request('warm', { id, connects, psk }),
      call: (target, method, ...args) => rpc.request('call', { id, target, method, args }),
      close: () => rpc.request('close', { id }),
    };
  }

  /** Starts a proxy with a BTP echo peripheral (C1 writes come back as C2 indications); resolves with a handle. */
  async btpEcho() {
    const id = ++this.#ids;
    const rpc = this.#rpc;
    const { port, name, mac } = await rpc.request('startBtpEcho', { id });
    return { id, port, name, mac, close: () => rpc.request('close', { id }) };
  }

  close() {
    return this.#rpc.close();
  }
}

/** Child side: answers `{ op, seq }` requests with `handlers[op]`, runs `onDisconnect` and exits when the parent goes, then says ready. */
export function serveRpc(handlers, onDisconnect = async () => {}) {
  process.on('message', async (message) => {
    try {
      process.send({ seq: message.seq, result: await handlers[message.op](message) });
    } catch (error) {
      process.send({ seq: message.seq, error: String(error?.stack ?? error) });
    }
  });
  process.on('disconnect', async () => {
    await onDisconnect();
    process.exit(0);
  });
  process.send({ ready: true });
}
