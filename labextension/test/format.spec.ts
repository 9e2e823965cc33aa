import { age, bytes, enforcementLayers, shield } from '../src/format';

describe('sandbox facts', () => {
  it('says ages and sizes plainly', () => {
    const now = Date.parse('2025-01-01T12:00:00Z');
    expect(age(now / 1000 - 5, now)).toBe('5 s');
    expect(age(now / 1000 - 300, now)).toBe('5 min');
    expect(age('2025-01-01T09:00:00Z', now)).toBe('3 h');
    expect(age(now / 1000 - 3 * 86400, now)).toBe('3 d');
    expect(age(null, now)).toBe('?');
    expect(age('not a date', now)).toBe('?');
    expect(bytes(512)).toBe('512 B');
    expect(bytes(1536)).toBe('1.5 kB');
    expect(bytes(5 * 1024 * 1024)).toBe('5.0 MB');
  });

  it('lists enforcement per layer, whatever shape the server sends', () => {
    expect(enforcementLayers({ enforcement: 'cgroup v2' })).toEqual([['resources', 'cgroup v2']]);
    expect(
      enforcementLayers({ enforcement: { network: 'proxy', filesystem: 'landlock + bwrap' } })
    ).toEqual([
      ['network', 'proxy'],
      ['filesystem', 'landlock + bwrap']
    ]);
    expect(
      enforcementLayers({
        enforcement: 'rlimits',
        details: { resources: { cpu: { limit: 1, by: 'none' }, memory: { limit: 2, by: 'RLIMIT_AS' }, timeout: { limit: null, by: 'none' } } }
      })
    ).toEqual([
      ['resources', 'rlimits'],
      ['cpu', 'none']
    ]);
  });

  it('shows a full shield only when every layer is enforced', () => {
    expect(shield({ state: 'running', enforcement: 'cgroup v2' })).toBe('enforced');
    expect(shield({ state: 'running', enforcement: 'rlimits' })).toBe('partial');
    expect(shield({ state: 'running', enforcement: { network: 'proxy', gpu: 'not enforced' } })).toBe(
      'partial'
    );
    expect(
      shield({ state: 'running', enforcement: 'cgroup v1', details: { resources: { disk: { limit: 5, by: 'none' } } } })
    ).toBe('partial');
    const layers = { network: 'network_mode none; out only through the proxy', resources: 'cgroup v2' };
    expect(shield({ state: 'running', enforcement: layers })).toBe('enforced');
    expect(
      shield({ state: 'running', enforcement: layers, details: { resources: { cpu: { limit: 1, by: 'none' } } } })
    ).toBe('partial');
    expect(shield({ state: 'running', enforcement: { filesystem: 'bubblewrap, Landlock unavailable' } })).toBe(
      'partial'
    );
    expect(shield({ state: 'stopped', enforcement: 'cgroup v2' })).toBe('down');
    expect(shield(null)).toBe('unknown');
  });
});
