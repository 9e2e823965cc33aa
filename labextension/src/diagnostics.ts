/**
 * Policy validation issues (from POST /openshell/api/policy/validate) mapped to editor diagnostics.
 *
 * Pure: no JupyterLab or CodeMirror import, so it is unit-tested alone. A diagnostic covers the token that
 * starts at the issue's 1-based line and column (a key, a value); line 0 means the whole document (first
 * line), column 0 the whole line. Positions beyond the text are clamped, never thrown.
 */

export interface Issue {
  line: number;
  column: number;
  field?: string | null;
  message: string;
  expected?: string | null;
  example?: string | null;
  severity?: 'error' | 'warning' | string | null;
  did_you_mean?: string | null;
}

/** Structurally a @codemirror/lint Diagnostic. */
export interface DiagnosticLike {
  from: number;
  to: number;
  severity: 'error' | 'warning';
  message: string;
  source: string;
}

const TOKEN_END = /[\s:,[\]{}#]/;

/** Offsets at which each line of `text` starts (line i+1 starts at result[i]). */
export function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\n') {
      starts.push(i + 1);
    }
  }
  return starts;
}

/** The full explanation shown on a marker: message, field, expected, example fix, did-you-mean. */
export function issueMessage(issue: Issue): string {
  const parts = [issue.field ? `${issue.field}: ${issue.message}` : issue.message];
  if (issue.expected) {
    parts.push(`expected: ${issue.expected}`);
  }
  if (issue.example) {
    parts.push(`example: ${issue.example}`);
  }
  if (issue.did_you_mean && !issue.message.includes('did you mean')) {
    parts.push(`did you mean '${issue.did_you_mean}'?`);
  }
  return parts.join('\n');
}

/** One issue as a diagnostic over `text`. */
export function issueToDiagnostic(text: string, issue: Issue): DiagnosticLike {
  const starts = lineStarts(text);
  const line = Math.min(Math.max(issue.line || 1, 1), starts.length);
  const lineStart = starts[line - 1];
  const lineEnd = line < starts.length ? starts[line] - 1 : text.length;
  let from = lineStart;
  let to = lineEnd;
  if (issue.line > 0 && issue.column > 0) {
    from = Math.min(lineStart + issue.column - 1, lineEnd);
    to = from;
    while (to < lineEnd && !TOKEN_END.test(text[to])) {
      to++;
    }
    if (to === from) {
      // nothing token-like there (a space, the end of the line): mark the rest of the line, or one char
      to = from < lineEnd ? lineEnd : Math.min(from + 1, text.length);
      if (to === from && from > lineStart) {
        from = lineStart;
      }
    }
  }
  return {
    from,
    to,
    severity: issue.severity === 'warning' ? 'warning' : 'error',
    message: issueMessage(issue),
    source: 'openshell policy'
  };
}

/** Every issue as a diagnostic, in document order. */
export function issuesToDiagnostics(text: string, issues: Issue[]): DiagnosticLike[] {
  return issues
    .map(issue => issueToDiagnostic(text, issue))
    .sort((a, b) => a.from - b.from || a.to - b.to);
}
