// A minimal QMP client (QEMU Machine Protocol, JSON lines over a unix socket): the capabilities
// handshake, commands answered in order, and events (SHUTDOWN with its reason, RESET, ...).
import net from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
}

export class QmpClient {
  private buffer = '';
  private pending: { resolve: (v: unknown) => void; reject: (e: Error) => void; command: string }[] = [];
  private readonly eventListeners: ((e: QmpEvent) => void)[] = [];
  private greeted!: Promise<void>;

  private constructor(private readonly socket: net.Socket) {}

  /** Connects, retrying while QEMU creates the socket, and negotiates capabilities. */
  static async connect(path: string, timeoutMs = 10_000): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.createConnection(path);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        const client = new QmpClient(socket);
        client.listen();
        await client.greeted;
        await client.execute('qmp_capabilities');
        return client;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`QMP socket ${path}: ${(err as Error).message}`);
        await delay(100);
      }
    }
  }

  onEvent(listener: (e: QmpEvent) => void): void {
    this.eventListeners.push(listener);
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject, command });
      this.socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private listen(): void {
    let greet!: () => void;
    let fail!: (e: Error) => void;
    this.greeted = new Promise((resolve, reject) => {
      greet = resolve;
      fail = reject;
    });
    this.socket.setEncoding('utf8');
    this.socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (line) this.dispatch(JSON.parse(line) as Record<string, unknown>, greet);
      }
    });
    const closed = () => {
      const err = new Error('QMP connection closed');
      fail(err);
      for (const p of this.pending.splice(0)) p.reject(err);
    };
    this.socket.on('close', closed);
    this.socket.on('error', () => {});
  }

  private dispatch(msg: Record<string, unknown>, greet: () => void): void {
    if ('QMP' in msg) return greet();
    if ('event' in msg) {
      for (const l of this.eventListeners) l(msg as unknown as QmpEvent);
      return;
    }
    const p = this.pending.shift();
    if (!p) return;
    if ('error' in msg) {
      const e = msg.error as { class?: string; desc?: string };
      p.reject(new Error(`QMP ${p.command}: ${e.class ?? 'error'}: ${e.desc ?? ''}`));
    } else {
      p.resolve(msg.return);
    }
  }
}
