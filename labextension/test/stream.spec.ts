import { Flow, FlowPage, FlowStream, SocketLike } from '../src/stream';

function flow(seq: number, decision = 'allow'): Flow {
  return {
    seq,
    ts: seq,
    sandbox: 'box',
    method: 'GET',
    scheme: 'https',
    host: 'example.com',
    port: 443,
    path: `/${seq}`,
    decision,
    rule: null,
    status: 200
  };
}

class FakeSocket implements SocketLike {
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: unknown) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  closed = false;
  constructor(public url: string) {}
  close(): void {
    this.closed = true;
  }
  send(page: FlowPage): void {
    this.onmessage?.({ data: JSON.stringify(page) });
  }
  drop(): void {
    this.onclose?.({});
  }
}

function setup(mode: 'stream' | 'poll' = 'stream', after: number | null = null) {
  const sockets: FakeSocket[] = [];
  const got: number[] = [];
  const pages: Array<(after: number | null) => FlowPage> = [];
  const asked: Array<number | null> = [];
  const stream = new FlowStream({
    mode,
    after,
    socketUrl: a => `ws://x/openshell/api/flows/stream${a === null ? '' : `?after=${a}`}`,
    openSocket: url => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    fetchPage: a => {
      asked.push(a);
      const next = pages.shift();
      return next ? Promise.resolve(next(a)) : Promise.reject(new Error('offline'));
    },
    onFlows: fs => got.push(...fs.map(f => f.seq)),
    pollInterval: 1000,
    minBackoff: 100,
    maxBackoff: 400
  });
  return { stream, sockets, got, pages, asked };
}

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

describe('FlowStream over a websocket', () => {
  it('delivers each record once, in order, and tracks the cursor', () => {
    const { stream, sockets, got } = setup();
    stream.start();
    expect(sockets[0].url).toBe('ws://x/openshell/api/flows/stream');
    sockets[0].onopen?.({});
    sockets[0].send({ flows: [flow(2), flow(1)], next_after: 2 });
    sockets[0].send({ flows: [flow(2), flow(3)], next_after: 3 }); // 2 again: dropped
    expect(got).toEqual([1, 2, 3]);
    expect(stream.cursor).toBe(3);
  });

  it('reconnects after a drop with the after cursor, backing off up to the maximum', () => {
    const { stream, sockets, got } = setup('stream', 10);
    stream.start();
    expect(sockets[0].url).toContain('after=10');
    sockets[0].onopen?.({});
    sockets[0].send({ flows: [flow(11)], next_after: 11 });
    sockets[0].drop();
    expect(stream.state).toBe('reconnecting');
    expect(sockets).toHaveLength(1);
    jest.advanceTimersByTime(100);
    expect(sockets).toHaveLength(2);
    expect(sockets[1].url).toContain('after=11');
    // failing again and again: 200, then 400, then capped at 400
    sockets[1].drop();
    jest.advanceTimersByTime(199);
    expect(sockets).toHaveLength(2);
    jest.advanceTimersByTime(1);
    sockets[2].drop();
    jest.advanceTimersByTime(400);
    sockets[3].drop();
    jest.advanceTimersByTime(400);
    expect(sockets).toHaveLength(5);
    // an open resets the backoff; a record the server repeats after resuming is not delivered twice
    sockets[4].onopen?.({});
    sockets[4].send({ flows: [flow(11), flow(12)], next_after: 12 });
    expect(got).toEqual([11, 12]);
    sockets[4].drop();
    jest.advanceTimersByTime(100);
    expect(sockets).toHaveLength(6);
    expect(sockets[5].url).toContain('after=12');
  });

  it('advances the cursor on an empty page with a later next_after', () => {
    const { stream, sockets } = setup('stream', 5);
    stream.start();
    sockets[0].send({ flows: [], next_after: 9 });
    expect(stream.cursor).toBe(9);
  });

  it('ignores messages that are not JSON and stops for good', () => {
    const { stream, sockets, got } = setup();
    stream.start();
    sockets[0].onmessage?.({ data: 'garbage' });
    expect(got).toEqual([]);
    stream.stop();
    expect(sockets[0].closed).toBe(true);
    jest.advanceTimersByTime(10_000);
    expect(sockets).toHaveLength(1);
    expect(stream.state).toBe('stopped');
  });
});

describe('FlowStream by polling', () => {
  it('polls with the cursor and retries after an error', async () => {
    const { stream, pages, asked, got } = setup('poll', 0);
    pages.push(() => ({ flows: [flow(1, 'deny')], next_after: 1 }));
    stream.start();
    await Promise.resolve();
    await Promise.resolve();
    expect(got).toEqual([1]);
    expect(asked).toEqual([0]);
    // the next poll fails (no page queued): retried after the backoff with the same cursor
    jest.advanceTimersByTime(1000);
    await Promise.resolve();
    await Promise.resolve();
    pages.push(() => ({ flows: [flow(2)], next_after: 2 }));
    jest.advanceTimersByTime(100);
    await Promise.resolve();
    await Promise.resolve();
    expect(asked).toEqual([0, 1, 1]);
    expect(got).toEqual([1, 2]);
    stream.stop();
  });
});
