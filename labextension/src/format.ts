/**
 * How sandbox facts read in the UI: ages, sizes, enforcement per layer and the shield state.
 *
 * Pure (unit-tested alone). It shows whatever the sandbox JSON carries: `enforcement` is an object per
 * layer ({network, filesystem, syscalls, user, resources}; a string from older servers); missing fields
 * read as "?".
 */

export type Shield = 'enforced' | 'partial' | 'down' | 'unknown';

export interface SandboxFacts {
  state?: string;
  enforcement?: string | Record<string, unknown> | null;
  details?: Record<string, unknown> | null;
  created?: number | string | null;
}

// A wall that is missing: said first ("none", "not enforced"), or flagged anywhere ("Landlock unavailable",
// "NOT-ENFORCED + RLIMIT_FSIZE"); "network_mode none" (no network at all) is a wall, not a weakness.
const WEAK = /^\s*(none|not[- ]?enforced|off|disabled|unenforced|unavailable)\b|\b(not[- ]enforced|unavailable)\b/i;

/** "12 s", "5 min", "3 h", "2 d" since `created` (unix seconds or an ISO date). */
export function age(created: number | string | null | undefined, nowMs: number = Date.now()): string {
  if (created === null || created === undefined || created === '') {
    return '?';
  }
  const ms = typeof created === 'number' ? created * 1000 : Date.parse(created);
  if (!Number.isFinite(ms)) {
    return '?';
  }
  const s = Math.max(0, Math.floor((nowMs - ms) / 1000));
  if (s < 60) {
    return `${s} s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)} min`;
  }
  if (s < 86400) {
    return `${Math.floor(s / 3600)} h`;
  }
  return `${Math.floor(s / 86400)} d`;
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) {
    return '';
  }
  if (n < 1024) {
    return `${n} B`;
  }
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/**
 * [layer, how] pairs: per layer as the server says it ({network, filesystem, syscalls, user, resources}),
 * or the one resources line of an older server; then each resource limit that is set but enforced by
 * nothing (from `details.resources`: an unset limit is no weakness of the sandbox).
 */
export function enforcementLayers(sandbox: SandboxFacts): Array<[string, string]> {
  const e = sandbox.enforcement;
  const layers: Array<[string, string]> = [];
  if (e && typeof e === 'object') {
    for (const [layer, how] of Object.entries(e)) {
      layers.push([layer, typeof how === 'string' ? how : JSON.stringify(how)]);
    }
  } else if (typeof e === 'string' && e) {
    layers.push(['resources', e]);
  }
  const resources = (sandbox.details?.resources ?? null) as Record<
    string,
    { by?: string; limit?: unknown }
  > | null;
  if (resources && typeof resources === 'object') {
    for (const [what, info] of Object.entries(resources)) {
      const set = info && typeof info === 'object' && info.limit !== null && info.limit !== undefined;
      if (set && typeof info.by === 'string' && WEAK.test(info.by)) {
        layers.push([what, info.by]);
      }
    }
  }
  return layers;
}

/**
 * The shield: `down` when the sandbox is not running, `partial` when a layer says it is not enforced
 * (or limits only by rlimits, which leave the CPU rate open), `enforced` otherwise, `unknown` without facts.
 */
export function shield(sandbox: SandboxFacts | null | undefined): Shield {
  if (!sandbox) {
    return 'unknown';
  }
  if (sandbox.state && sandbox.state !== 'running') {
    return 'down';
  }
  const layers = enforcementLayers(sandbox);
  if (!layers.length) {
    return sandbox.state === 'running' ? 'enforced' : 'unknown';
  }
  return layers.some(([, how]) => WEAK.test(how) || /^rlimits$/i.test(how)) ? 'partial' : 'enforced';
}

export function shieldText(s: Shield): string {
  return {
    enforced: 'all layers enforced',
    partial: 'some limits are not enforced',
    down: 'the sandbox is not running',
    unknown: 'enforcement unknown'
  }[s];
}

export function clock(ts: number): string {
  const d = new Date(ts * 1000);
  return d.toTimeString().slice(0, 8);
}
