/**
 * Live flow records from the server: the websocket /openshell/api/flows/stream, or polling GET
 * /openshell/api/flows, resumed by the `after` cursor (the proxy's `seq`) so a dropped connection neither
 * repeats nor loses records.
 *
 * Pure of JupyterLab: the socket and the page fetch are injected (unit-tested with fakes). A record is
 * delivered at most once: only records with a seq above the cursor pass, and the cursor only grows.
 */

export interface Flow {
  seq: number;
  ts: number;
  sandbox: string | null;
  method: string;
  scheme: string;
  host: string;
  port: number | null;
  path: string;
  decision: 'allow' | 'deny' | 'audit-allow' | string;
  rule: string | number | null;
  reason?: string | null;
  policy_version?: string | null;
  status: number | null;
  bytes_in?: number | null;
  bytes_out?: number | null;
  duration_ms?: number | null;
  route?: unknown;
  error?: string | null;
}

export interface FlowPage {
  flows: Flow[];
  next_after: number;
}

/** The part of a browser WebSocket the stream uses. */
export interface SocketLike {
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: any) => void) | null;
  onclose: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
  close(): void;
}

export type StreamState = 'connecting' | 'open' | 'polling' | 'reconnecting' | 'stopped';

export interface FlowStreamOptions {
  mode: 'stream' | 'poll';
  /** The websocket URL that resumes after `after` (null: from now on, as the server decides). */
  socketUrl: (after: number | null) => string;
  openSocket: (url: string) => SocketLike;
  /** One page of records after `after` (GET flows?after=...). */
  fetchPage: (after: number | null) => Promise<FlowPage>;
  onFlows: (flows: Flow[]) => void;
  onState?: (state: StreamState, detail?: string) => void;
  /** Start after this seq (null: let the server pick, i.e. the newest). */
  after?: number | null;
  pollInterval?: number;
  pageLimit?: number;
  minBackoff?: number;
  maxBackoff?: number;
}

export class FlowStream {
  constructor(options: FlowStreamOptions) {
    this._opts = options;
    this._cursor = options.after ?? null;
    this._backoff = options.minBackoff ?? 500;
  }

  /** The seq of the last record delivered (or the server's cursor); null before anything arrived. */
  get cursor(): number | null {
    return this._cursor;
  }

  get state(): StreamState {
    return this._state;
  }

  start(): void {
    if (this._started) {
      return;
    }
    this._started = true;
    this._stopped = false;
    if (this._opts.mode === 'poll') {
      this._poll();
    } else {
      this._connect();
    }
  }

  stop(): void {
    this._stopped = true;
    this._started = false;
    this._clearTimer();
    const socket = this._socket;
    this._socket = null;
    if (socket) {
      socket.onclose = socket.onmessage = socket.onerror = socket.onopen = null;
      socket.close();
    }
    this._setState('stopped');
  }

  /**
   * Take one page or message: deliver its records newer than the cursor, in seq order, and advance the
   * cursor (to the page's next_after when that is further). Returns what was delivered.
   */
  accept(page: FlowPage): Flow[] {
    const cursor = this._cursor;
    const fresh = (page.flows || [])
      .filter(f => typeof f.seq === 'number' && (cursor === null || f.seq > cursor))
      .sort((a, b) => a.seq - b.seq);
    let next = cursor;
    for (const f of fresh) {
      next = next === null ? f.seq : Math.max(next, f.seq);
    }
    if (typeof page.next_after === 'number') {
      next = next === null ? page.next_after : Math.max(next, page.next_after);
    }
    this._cursor = next;
    if (fresh.length) {
      this._opts.onFlows(fresh);
    }
    return fresh;
  }

  private _connect(): void {
    if (this._stopped) {
      return;
    }
    this._setState(this._everOpened ? 'reconnecting' : 'connecting');
    let socket: SocketLike;
    try {
      socket = this._opts.openSocket(this._opts.socketUrl(this._cursor));
    } catch (err) {
      this._retry(String(err));
      return;
    }
    this._socket = socket;
    socket.onopen = () => {
      this._everOpened = true;
      this._backoff = this._opts.minBackoff ?? 500;
      this._setState('open');
    };
    socket.onmessage = ev => {
      let page: FlowPage;
      try {
        page = JSON.parse(String(ev.data));
      } catch {
        return; // not ours; the server only sends JSON
      }
      this.accept(page);
    };
    socket.onerror = () => {
      /* a close follows */
    };
    socket.onclose = () => {
      if (this._socket === socket) {
        this._socket = null;
        this._retry('connection closed');
      }
    };
  }

  private _retry(detail: string): void {
    if (this._stopped) {
      return;
    }
    this._setState('reconnecting', detail);
    const delay = this._backoff;
    this._backoff = Math.min(this._backoff * 2, this._opts.maxBackoff ?? 10_000);
    this._timer = setTimeout(() => {
      this._timer = null;
      if (this._opts.mode === 'poll') {
        this._poll();
      } else {
        this._connect();
      }
    }, delay);
  }

  private _poll(): void {
    if (this._stopped) {
      return;
    }
    this._setState('polling');
    this._opts.fetchPage(this._cursor).then(
      page => {
        if (this._stopped) {
          return;
        }
        this._backoff = this._opts.minBackoff ?? 500;
        this.accept(page);
        const full = (page.flows || []).length >= (this._opts.pageLimit ?? 200);
        this._timer = setTimeout(
          () => {
            this._timer = null;
            this._poll();
          },
          full ? 0 : (this._opts.pollInterval ?? 2000)
        );
      },
      err => this._retry(String(err))
    );
  }

  private _clearTimer(): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _setState(state: StreamState, detail?: string): void {
    this._state = state;
    this._opts.onState?.(state, detail);
  }

  private _opts: FlowStreamOptions;
  private _cursor: number | null;
  private _socket: SocketLike | null = null;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _backoff: number;
  private _state: StreamState = 'stopped';
  private _started = false;
  private _stopped = false;
  private _everOpened = false;
}
