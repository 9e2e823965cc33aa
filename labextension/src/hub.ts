/**
 * One live feed of the user's flow records for the whole page: the traffic views, the status bar and the
 * denial notifications all read it. It loads the recent history first (never notified), then follows
 * the stream from that cursor, and counts each sandbox's denials since the user last looked at it.
 */

import { ISignal, Signal } from '@lumino/signaling';

import { api, openSocket, streamUrl } from './api';
import { Flow, FlowStream, StreamState } from './stream';

export const KEEP = 2000;

export class FlowHub {
  constructor(mode: 'stream' | 'poll' = 'stream') {
    this._mode = mode;
  }

  /** Records, oldest first (the last KEEP). */
  get flows(): readonly Flow[] {
    return this._flows;
  }

  get state(): StreamState | 'loading' | 'error' {
    return this._state;
  }

  get detail(): string {
    return this._detail;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** A live denial (not one from the history loaded at start). */
  get denied(): ISignal<this, Flow> {
    return this._denied;
  }

  /** Denials of `sandbox` since `markSeen(sandbox)` (or since the page was loaded). */
  unseen(sandbox: string): number {
    return this._unseen.get(sandbox) ?? 0;
  }

  markSeen(sandbox: string): void {
    if (this._unseen.get(sandbox)) {
      this._unseen.set(sandbox, 0);
      this._changed.emit();
    }
  }

  setMode(mode: 'stream' | 'poll'): void {
    if (mode !== this._mode) {
      this._mode = mode;
      if (this._stream) {
        const cursor = this._stream.cursor;
        this._stream.stop();
        this._follow(cursor);
      }
    }
  }

  async start(): Promise<void> {
    if (this._started) {
      return;
    }
    this._started = true;
    this._state = 'loading';
    let cursor: number | null = null;
    try {
      const page = await api.flows(null, 200);
      this._append(page.flows);
      cursor = page.next_after;
    } catch (err) {
      this._state = 'error';
      this._detail = String(err);
    }
    this._follow(cursor);
  }

  dispose(): void {
    this._stream?.stop();
    this._stream = null;
    Signal.clearData(this);
  }

  private _follow(cursor: number | null): void {
    this._stream = new FlowStream({
      mode: this._mode,
      after: cursor,
      socketUrl: streamUrl,
      openSocket: url => openSocket(url),
      fetchPage: after => api.flows(after, 200),
      onFlows: flows => {
        this._append(flows);
        for (const f of flows) {
          if (f.decision === 'deny' && f.sandbox) {
            this._unseen.set(f.sandbox, (this._unseen.get(f.sandbox) ?? 0) + 1);
            this._denied.emit(f);
          }
        }
        this._changed.emit();
      },
      onState: (state, detail) => {
        this._state = state;
        this._detail = detail ?? '';
        this._changed.emit();
      }
    });
    this._stream.start();
  }

  private _append(flows: Flow[]): void {
    this._flows = this._flows.concat(flows).slice(-KEEP);
  }

  private _mode: 'stream' | 'poll';
  private _stream: FlowStream | null = null;
  private _flows: Flow[] = [];
  private _unseen = new Map<string, number>();
  private _state: StreamState | 'loading' | 'error' = 'stopped';
  private _detail = '';
  private _started = false;
  private _changed = new Signal<this, void>(this);
  private _denied = new Signal<this, Flow>(this);
}
