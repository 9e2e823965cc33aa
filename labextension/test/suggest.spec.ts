import {
  deniedRequest,
  flowUrl,
  initialSuggest,
  stagedDiff,
  stagedPolicy,
  SuggestAction,
  suggestReducer,
  SuggestState
} from '../src/suggest';
import type { Flow } from '../src/stream';

const DENIED: Flow = {
  seq: 7,
  ts: 1,
  sandbox: 'kernel-1',
  method: 'GET',
  scheme: 'http',
  host: '127.0.0.2',
  port: 8080,
  path: '/data/x.csv',
  decision: 'deny',
  rule: 'default deny',
  status: 403
};
const CURRENT = 'network:\n  egress:\n    - action: deny\n';
const VARIANTS = [
  { label: 'exact path', rule: {}, yaml: '- host: 127.0.0.2', policy: CURRENT.replace('    - action', '    - host: a\n    - action') },
  { label: 'path glob', rule: {}, yaml: '- host: 127.0.0.2', policy: CURRENT.replace('    - action', '    - host: b\n    - action') },
  { label: 'whole host (read-only)', rule: {}, yaml: '- host: 127.0.0.2', policy: CURRENT.replace('    - action', '    - host: c\n    - action') }
];

function run(...actions: SuggestAction[]): SuggestState {
  return actions.reduce(suggestReducer, initialSuggest);
}

describe('rule suggestion state', () => {
  it('builds the URL and the request of a denial, nothing for an allowed flow', () => {
    expect(flowUrl(DENIED)).toBe('http://127.0.0.2:8080/data/x.csv');
    expect(flowUrl({ scheme: 'https', host: 'pypi.org', port: 443, path: '/simple/' })).toBe(
      'https://pypi.org/simple/'
    );
    expect(flowUrl({ scheme: 'https', host: '::1', port: 8443, path: '/' })).toBe('https://[::1]:8443/');
    expect(deniedRequest(DENIED)).toEqual({
      sandbox: 'kernel-1',
      method: 'GET',
      url: 'http://127.0.0.2:8080/data/x.csv',
      rule: 'default deny'
    });
    expect(deniedRequest({ ...DENIED, decision: 'allow' })).toBeNull();
  });

  it('offers the narrowest variant first and stages it, with its diff', () => {
    const s = run({ type: 'open', request: deniedRequest(DENIED)! }, { type: 'loaded', variants: VARIANTS, current: CURRENT });
    expect(s.phase).toBe('choose');
    expect(s.selected).toBe(0);
    expect(stagedPolicy(s)).toContain('host: a');
    expect(stagedDiff(s).filter(l => l.kind === '+').map(l => l.text)).toEqual(['    - host: a']);
  });

  it('switches variants but never applies without a confirmed apply', () => {
    let s = run({ type: 'open', request: deniedRequest(DENIED)! }, { type: 'loaded', variants: VARIANTS, current: CURRENT });
    s = suggestReducer(s, { type: 'select', index: 2 });
    expect(stagedPolicy(s)).toContain('host: c');
    s = suggestReducer(s, { type: 'select', index: 9 });
    expect(s.selected).toBe(2);
    expect(suggestReducer(s, { type: 'apply', confirmed: false }).phase).toBe('choose');
    s = suggestReducer(s, { type: 'apply', confirmed: true });
    expect(s.phase).toBe('applying');
    expect(suggestReducer(s, { type: 'applied', version: 'abc' })).toMatchObject({ phase: 'applied', version: 'abc' });
  });

  it('keeps the choice and says why when applying fails', () => {
    let s = run(
      { type: 'open', request: deniedRequest(DENIED)! },
      { type: 'loaded', variants: VARIANTS, current: CURRENT },
      { type: 'select', index: 1 },
      { type: 'apply', confirmed: true },
      { type: 'failed', message: 'policy changes for this kernel are disabled' }
    );
    expect(s).toMatchObject({ phase: 'choose', selected: 1, message: 'policy changes for this kernel are disabled' });
    s = suggestReducer(s, { type: 'cancel' });
    expect(s).toEqual(initialSuggest);
  });

  it('ignores stale answers and errors out when nothing is offered', () => {
    expect(run({ type: 'loaded', variants: VARIANTS, current: CURRENT }).phase).toBe('idle');
    expect(run({ type: 'open', request: deniedRequest(DENIED)! }, { type: 'loaded', variants: [], current: CURRENT }).phase).toBe('error');
    expect(run({ type: 'open', request: deniedRequest(DENIED)! }, { type: 'failed', message: 'offline' })).toMatchObject({
      phase: 'error',
      message: 'offline'
    });
    // a variant without a staged policy cannot be applied
    const bare = run(
      { type: 'open', request: deniedRequest(DENIED)! },
      { type: 'loaded', variants: [{ label: 'x', rule: {}, yaml: '' }], current: CURRENT },
      { type: 'apply', confirmed: true }
    );
    expect(bare.phase).toBe('choose');
  });
});
