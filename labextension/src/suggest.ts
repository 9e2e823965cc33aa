/**
 * The "allow this denied request" flow as a state machine: a denial is opened, the server offers rule
 * variants (narrowest first: exact path, path glob, whole host read-only), the user picks one and reviews
 * the staged policy and its diff, and only an explicit, confirmed apply moves on to applying.
 *
 * Pure (unit-tested alone). Nothing here applies a policy: the widget performs the PUT when the state
 * says `applying`, and it never reaches `applying` without `confirmed: true`.
 */

import { diffLines, DiffLine } from './diff';
import type { Flow } from './stream';

export interface Variant {
  label: string;
  rule: Record<string, unknown>;
  yaml: string;
  /** The sandbox's current policy with this rule inserted (what would be applied). */
  policy?: string;
}

export interface DeniedRequest {
  sandbox: string;
  method: string;
  url: string;
  /** The rule that denied it, as the proxy reported it. */
  rule?: string | number | null;
}

export type SuggestPhase = 'idle' | 'loading' | 'choose' | 'applying' | 'applied' | 'error';

export interface SuggestState {
  phase: SuggestPhase;
  request: DeniedRequest | null;
  variants: Variant[];
  selected: number;
  /** The policy in force when the variants were made. */
  current: string;
  message: string;
  version: string;
}

export type SuggestAction =
  | { type: 'open'; request: DeniedRequest }
  | { type: 'loaded'; variants: Variant[]; current: string }
  | { type: 'select'; index: number }
  | { type: 'apply'; confirmed: boolean }
  | { type: 'applied'; version: string }
  | { type: 'failed'; message: string }
  | { type: 'cancel' };

export const initialSuggest: SuggestState = {
  phase: 'idle',
  request: null,
  variants: [],
  selected: 0,
  current: '',
  message: '',
  version: ''
};

const DEFAULT_PORTS: Record<string, number> = { http: 80, https: 443 };

/** The URL of a flow record (scheme, host, non-default port, path; the proxy logs no query). */
export function flowUrl(flow: Pick<Flow, 'scheme' | 'host' | 'port' | 'path'>): string {
  const scheme = flow.scheme || 'https';
  const host = flow.host.includes(':') && !flow.host.startsWith('[') ? `[${flow.host}]` : flow.host;
  const port = flow.port && flow.port !== DEFAULT_PORTS[scheme] ? `:${flow.port}` : '';
  return `${scheme}://${host}${port}${flow.path || '/'}`;
}

/** The denial a flow record describes, or null when it was not denied. */
export function deniedRequest(flow: Flow): DeniedRequest | null {
  if (flow.decision !== 'deny' || !flow.sandbox) {
    return null;
  }
  return { sandbox: flow.sandbox, method: flow.method, url: flowUrl(flow), rule: flow.rule };
}

export function suggestReducer(state: SuggestState, action: SuggestAction): SuggestState {
  switch (action.type) {
    case 'open':
      return { ...initialSuggest, phase: 'loading', request: action.request };
    case 'loaded':
      if (state.phase !== 'loading') {
        return state;
      }
      if (!action.variants.length) {
        return { ...state, phase: 'error', message: 'the server offered no rule for this request' };
      }
      return { ...state, phase: 'choose', variants: action.variants, selected: 0, current: action.current };
    case 'select':
      if (state.phase !== 'choose' || action.index < 0 || action.index >= state.variants.length) {
        return state;
      }
      return { ...state, selected: action.index };
    case 'apply':
      if (state.phase !== 'choose' || !action.confirmed || !stagedPolicy(state)) {
        return state;
      }
      return { ...state, phase: 'applying', message: '' };
    case 'applied':
      return state.phase === 'applying' ? { ...state, phase: 'applied', version: action.version } : state;
    case 'failed':
      if (state.phase === 'applying') {
        return { ...state, phase: 'choose', message: action.message }; // keep the choice; say why
      }
      return state.phase === 'loading' ? { ...state, phase: 'error', message: action.message } : state;
    case 'cancel':
      return initialSuggest;
  }
  return state;
}

/** The policy text the chosen variant would make current ('' when there is none). */
export function stagedPolicy(state: SuggestState): string {
  return state.variants[state.selected]?.policy ?? '';
}

/** The diff between the policy in force and the staged one. */
export function stagedDiff(state: SuggestState): DiffLine[] {
  const staged = stagedPolicy(state);
  return staged ? diffLines(state.current, staged) : [];
}
