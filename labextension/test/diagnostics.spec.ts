import { issueMessage, issuesToDiagnostics, issueToDiagnostic, lineStarts } from '../src/diagnostics';

const POLICY = [
  'mode: enforce', // line 1
  'network:', // line 2
  '  egres:', // line 3: unknown key at column 3
  '    - host: example.com', // line 4
  '      action: alow', // line 5: bad value at column 15
  ''
].join('\n');

function covered(text: string, d: { from: number; to: number }): string {
  return text.slice(d.from, d.to);
}

describe('issue -> diagnostic', () => {
  it('marks the key at its line and column', () => {
    const d = issueToDiagnostic(POLICY, { line: 3, column: 3, message: "unknown key 'egres'" });
    expect(covered(POLICY, d)).toBe('egres');
    expect(POLICY.slice(0, d.from).split('\n').length).toBe(3);
    expect(d.severity).toBe('error');
  });

  it('marks a value token and keeps warnings as warnings', () => {
    const d = issueToDiagnostic(POLICY, { line: 5, column: 15, message: 'x', severity: 'warning' });
    expect(covered(POLICY, d)).toBe('alow');
    expect(d.severity).toBe('warning');
  });

  it('marks the whole line when the column is unknown, the first line for the document', () => {
    expect(covered(POLICY, issueToDiagnostic(POLICY, { line: 4, column: 0, message: 'x' }))).toBe(
      '    - host: example.com'
    );
    expect(covered(POLICY, issueToDiagnostic(POLICY, { line: 0, column: 0, message: 'x' }))).toBe(
      'mode: enforce'
    );
  });

  it('clamps positions beyond the text instead of throwing', () => {
    const beyondLine = issueToDiagnostic(POLICY, { line: 99, column: 4, message: 'x' });
    expect(beyondLine.from).toBeLessThanOrEqual(POLICY.length);
    const beyondColumn = issueToDiagnostic(POLICY, { line: 2, column: 80, message: 'x' });
    expect(POLICY.slice(0, beyondColumn.from).split('\n').length).toBe(2);
    expect(beyondColumn.to).toBeGreaterThan(beyondColumn.from);
    const empty = issueToDiagnostic('', { line: 1, column: 1, message: 'x' });
    expect([empty.from, empty.to]).toEqual([0, 0]);
  });

  it('handles CRLF-free offsets line by line', () => {
    expect(lineStarts('a\nbc\n')).toEqual([0, 2, 5]);
  });

  it('puts field, expected, example and did-you-mean into the message', () => {
    const text = issueMessage({
      line: 3,
      column: 3,
      field: 'network.egres',
      message: "unknown key 'egres'",
      expected: 'one of: mode, egress',
      example: "rename 'egres' to 'egress'",
      did_you_mean: 'egress'
    });
    expect(text).toContain('network.egres: unknown key');
    expect(text).toContain('expected: one of: mode, egress');
    expect(text).toContain("example: rename 'egres' to 'egress'");
    expect(text).toContain("did you mean 'egress'?");
    // not repeated when the server's message already says it
    const once = issueMessage({ line: 1, column: 1, message: "x (did you mean 'y'?)", did_you_mean: 'y' });
    expect(once.match(/did you mean/g)).toHaveLength(1);
  });

  it('sorts diagnostics in document order', () => {
    const ds = issuesToDiagnostics(POLICY, [
      { line: 5, column: 15, message: 'b' },
      { line: 3, column: 3, message: 'a' }
    ]);
    expect(ds.map(d => covered(POLICY, d))).toEqual(['egres', 'alow']);
  });
});
