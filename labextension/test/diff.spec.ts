import { diffLines, diffStat, hunks, unifiedDiff } from '../src/diff';

const OLD = 'mode: enforce\nnetwork:\n  egress:\n    - action: deny\n';
const NEW =
  'mode: enforce\nnetwork:\n  egress:\n    - host: pypi.org\n      action: allow\n    - action: deny\n';

describe('diff', () => {
  it('finds an inserted rule as additions only', () => {
    const lines = diffLines(OLD, NEW);
    expect(lines.filter(l => l.kind === '+').map(l => l.text)).toEqual([
      '    - host: pypi.org',
      '      action: allow'
    ]);
    expect(lines.filter(l => l.kind === '-')).toEqual([]);
    expect(diffStat(OLD, NEW)).toEqual({ added: 2, removed: 0 });
  });

  it('numbers lines of both sides', () => {
    const added = diffLines(OLD, NEW).find(l => l.kind === '+');
    expect(added?.newLine).toBe(4);
    const kept = diffLines(OLD, NEW).filter(l => l.kind === ' ');
    expect(kept[kept.length - 1]).toMatchObject({ oldLine: 4, newLine: 6 });
  });

  it('shows a changed line as removal then addition', () => {
    const lines = diffLines('a\nb\nc\n', 'a\nB\nc\n');
    expect(lines.map(l => `${l.kind}${l.text}`)).toEqual([' a', '-b', '+B', ' c']);
  });

  it('is empty for equal texts and handles empty sides', () => {
    expect(unifiedDiff(OLD, OLD)).toBe('');
    expect(diffLines('', 'x\n')).toEqual([{ kind: '+', text: 'x', newLine: 1 }]);
    expect(diffLines('x\n', '')).toEqual([{ kind: '-', text: 'x', oldLine: 1 }]);
  });

  it('writes unified hunks with context and correct headers', () => {
    const old = Array.from({ length: 20 }, (_, i) => `line ${i + 1}`).join('\n') + '\n';
    const changed = old.replace('line 3\n', 'line three\n').replace('line 18\n', 'line eighteen\n');
    const hs = hunks(old, changed, 2);
    expect(hs.map(h => h.header)).toEqual(['@@ -1,5 +1,5 @@', '@@ -16,5 +16,5 @@']);
    const text = unifiedDiff(old, changed);
    expect(text.startsWith('--- policy.yaml (in force)\n+++ policy.yaml (staged)\n')).toBe(true);
    expect(text).toContain('-line 3\n+line three\n');
  });
});
