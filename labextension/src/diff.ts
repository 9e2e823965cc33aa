/**
 * Line diff of two policy texts, for the review before a policy is applied.
 *
 * Pure (unit-tested alone): a longest-common-subsequence diff, then unified hunks with context lines.
 * Policies are small; inputs beyond MAX_CELLS fall back to "everything removed, everything added" rather
 * than spending the browser's time.
 */

export interface DiffLine {
  kind: ' ' | '+' | '-';
  text: string;
  /** 1-based line in the old text (context and removed lines). */
  oldLine?: number;
  /** 1-based line in the new text (context and added lines). */
  newLine?: number;
}

export interface Hunk {
  header: string;
  lines: DiffLine[];
}

const MAX_CELLS = 4_000_000;

function splitLines(text: string): string[] {
  if (text === '') {
    return [];
  }
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') {
    lines.pop();
  }
  return lines;
}

/** Every line of both texts, marked kept, added or removed, in order (removals before additions). */
export function diffLines(oldText: string, newText: string): DiffLine[] {
  const a = splitLines(oldText);
  const b = splitLines(newText);
  const n = a.length;
  const m = b.length;
  let prefix = 0;
  while (prefix < n && prefix < m && a[prefix] === b[prefix]) {
    prefix++;
  }
  let suffix = 0;
  while (suffix < n - prefix && suffix < m - prefix && a[n - 1 - suffix] === b[m - 1 - suffix]) {
    suffix++;
  }
  const out: DiffLine[] = [];
  for (let i = 0; i < prefix; i++) {
    out.push({ kind: ' ', text: a[i], oldLine: i + 1, newLine: i + 1 });
  }
  const a2 = a.slice(prefix, n - suffix);
  const b2 = b.slice(prefix, m - suffix);
  const rows = a2.length;
  const cols = b2.length;
  if ((rows + 1) * (cols + 1) > MAX_CELLS) {
    a2.forEach((text, i) => out.push({ kind: '-', text, oldLine: prefix + i + 1 }));
    b2.forEach((text, j) => out.push({ kind: '+', text, newLine: prefix + j + 1 }));
  } else {
    // lcs[i][j] = length of the LCS of a2[i:] and b2[j:]
    const width = cols + 1;
    const lcs = new Int32Array((rows + 1) * width);
    for (let i = rows - 1; i >= 0; i--) {
      for (let j = cols - 1; j >= 0; j--) {
        lcs[i * width + j] =
          a2[i] === b2[j]
            ? lcs[(i + 1) * width + j + 1] + 1
            : Math.max(lcs[(i + 1) * width + j], lcs[i * width + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < rows || j < cols) {
      if (i < rows && j < cols && a2[i] === b2[j]) {
        out.push({ kind: ' ', text: a2[i], oldLine: prefix + i + 1, newLine: prefix + j + 1 });
        i++;
        j++;
      } else if (j >= cols || (i < rows && lcs[(i + 1) * width + j] >= lcs[i * width + j + 1])) {
        out.push({ kind: '-', text: a2[i], oldLine: prefix + i + 1 });
        i++;
      } else {
        out.push({ kind: '+', text: b2[j], newLine: prefix + j + 1 });
        j++;
      }
    }
  }
  for (let k = 0; k < suffix; k++) {
    out.push({
      kind: ' ',
      text: a[n - suffix + k],
      oldLine: n - suffix + k + 1,
      newLine: m - suffix + k + 1
    });
  }
  return out;
}

/** Unified-diff hunks (`@@ -a,b +c,d @@`) with `context` unchanged lines around each change. */
export function hunks(oldText: string, newText: string, context = 3): Hunk[] {
  const lines = diffLines(oldText, newText);
  const changed = lines.map((l, i) => (l.kind === ' ' ? -1 : i)).filter(i => i >= 0);
  const result: Hunk[] = [];
  let k = 0;
  while (k < changed.length) {
    const start = Math.max(0, changed[k] - context);
    let end = Math.min(lines.length, changed[k] + context + 1);
    while (k + 1 < changed.length && changed[k + 1] - context <= end) {
      k++;
      end = Math.min(lines.length, changed[k] + context + 1);
    }
    k++;
    const slice = lines.slice(start, end);
    const oldNos = slice.filter(l => l.oldLine !== undefined).map(l => l.oldLine as number);
    const newNos = slice.filter(l => l.newLine !== undefined).map(l => l.newLine as number);
    const oldStart = oldNos.length ? oldNos[0] : firstBefore(lines, start, 'oldLine');
    const newStart = newNos.length ? newNos[0] : firstBefore(lines, start, 'newLine');
    result.push({
      header: `@@ -${oldStart},${oldNos.length} +${newStart},${newNos.length} @@`,
      lines: slice
    });
  }
  return result;
}

function firstBefore(lines: DiffLine[], index: number, key: 'oldLine' | 'newLine'): number {
  for (let i = index - 1; i >= 0; i--) {
    const value = lines[i][key];
    if (value !== undefined) {
      return value;
    }
  }
  return 0;
}

/** The whole unified diff as text (empty when the texts are equal). */
export function unifiedDiff(oldText: string, newText: string, name = 'policy.yaml'): string {
  const found = hunks(oldText, newText);
  if (!found.length) {
    return '';
  }
  const body = found.flatMap(h => [h.header, ...h.lines.map(l => `${l.kind}${l.text}`)]);
  return [`--- ${name} (in force)`, `+++ ${name} (staged)`, ...body].join('\n') + '\n';
}

/** Added and removed line counts. */
export function diffStat(oldText: string, newText: string): { added: number; removed: number } {
  const lines = diffLines(oldText, newText);
  return {
    added: lines.filter(l => l.kind === '+').length,
    removed: lines.filter(l => l.kind === '-').length
  };
}
