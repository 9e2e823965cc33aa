/**
 * The live traffic view: each proxied request of the user's sandboxes (method, host, path, decision, rule,
 * status, bytes, time) as the stream delivers it, filtered by text and decision, with allowed/denied
 * counts. Clicking a denied request stages the narrowest rule that allows it in the policy editor (which
 * applies nothing until the user confirms).
 */

import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import React from 'react';

import { CommandIDs } from './commands';
import { bytes, clock } from './format';
import { shieldIcon } from './icons';
import { OpenShellModel } from './model';
import { Flow } from './stream';
import { flowUrl } from './suggest';

const SHOWN = 500;

export class TrafficView extends ReactWidget {
  constructor(
    private _model: OpenShellModel,
    private _commands: CommandRegistry
  ) {
    super();
    this.id = 'jp-openshell-traffic';
    this.addClass('jp-OpenShell-traffic');
    this.title.label = 'OpenShell traffic';
    this.title.icon = shieldIcon;
    this.title.closable = true;
  }

  /** Show one sandbox only (null: all of the user's sandboxes). */
  setSandbox(name: string | null): void {
    this._sandbox = name;
    this.title.label = name ? `Traffic: ${name}` : 'OpenShell traffic';
    this.update();
  }

  render(): JSX.Element {
    return (
      <UseSignal signal={this._model.hub.changed}>
        {() => this._table()}
      </UseSignal>
    );
  }

  private _table(): JSX.Element {
    const hub = this._model.hub;
    const text = this._text.trim().toLowerCase();
    const mine = hub.flows.filter(f => !this._sandbox || f.sandbox === this._sandbox);
    const allowed = mine.filter(f => f.decision !== 'deny').length;
    const denied = mine.length - allowed;
    const shown = mine
      .filter(f => this._decision === 'all' || decisionClass(f) === this._decision)
      .filter(
        f =>
          !text ||
          `${f.sandbox} ${f.method} ${f.host} ${f.path} ${f.rule ?? ''} ${f.status ?? ''}`
            .toLowerCase()
            .includes(text)
      )
      .slice(-SHOWN)
      .reverse();
    const sandboxes = Array.from(new Set(hub.flows.map(f => f.sandbox).filter(Boolean))) as string[];
    return (
      <div className="jp-OpenShell-trafficBody">
        <div className="jp-OpenShell-trafficBar">
          <select
            value={this._sandbox ?? ''}
            onChange={e => this.setSandbox(e.target.value || null)}
            title="Sandbox"
          >
            <option value="">all sandboxes</option>
            {sandboxes.map(s => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
          <input
            className="jp-OpenShell-filter"
            placeholder="Filter: host, path, method, rule…"
            value={this._text}
            onChange={e => {
              this._text = e.target.value;
              this.update();
            }}
          />
          <select
            className="jp-OpenShell-decision"
            value={this._decision}
            onChange={e => {
              this._decision = e.target.value as typeof this._decision;
              this.update();
            }}
          >
            <option value="all">all decisions</option>
            <option value="allow">allowed</option>
            <option value="deny">denied</option>
          </select>
          <span className="jp-OpenShell-counts">
            <span className="jp-mod-allow">{allowed} allowed</span> ·{' '}
            <span className="jp-mod-deny">{denied} denied</span>
          </span>
          <span className="jp-OpenShell-feedState">{hub.state}</span>
        </div>
        <table className="jp-OpenShell-flows">
          <thead>
            <tr>
              <th>time</th>
              <th>sandbox</th>
              <th>method</th>
              <th>host</th>
              <th>path</th>
              <th>decision</th>
              <th>rule</th>
              <th>status</th>
              <th>bytes in/out</th>
            </tr>
          </thead>
          <tbody>
            {shown.map(f => (
              <tr
                key={f.seq}
                data-seq={f.seq}
                className={`jp-mod-${decisionClass(f)}`}
                title={f.decision === 'deny' ? 'Click to stage a rule that allows this request' : f.reason ?? ''}
                onClick={() => this._open(f)}
              >
                <td>{clock(f.ts)}</td>
                <td>{f.sandbox ?? 'host'}</td>
                <td>{f.method}</td>
                <td>{f.host}{f.port && f.port !== 443 && f.port !== 80 ? `:${f.port}` : ''}</td>
                <td className="jp-OpenShell-path">{f.path}</td>
                <td>{f.decision}</td>
                <td className="jp-OpenShell-rule" title={f.rule === null ? '' : String(f.rule)}>
                  {f.rule ?? ''}
                </td>
                <td>{f.status ?? ''}</td>
                <td>
                  {bytes(f.bytes_in)} / {bytes(f.bytes_out)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {!shown.length ? <p className="jp-OpenShell-empty">No requests yet.</p> : null}
      </div>
    );
  }

  private _open(f: Flow): void {
    if (f.decision !== 'deny' || !f.sandbox) {
      return;
    }
    void this._commands.execute(CommandIDs.allowRequest, {
      sandbox: f.sandbox,
      method: f.method,
      url: flowUrl(f),
      rule: f.rule === null ? '' : String(f.rule)
    });
  }

  private _sandbox: string | null = null;
  private _text = '';
  private _decision: 'all' | 'allow' | 'deny' = 'all';
}

function decisionClass(f: Flow): 'allow' | 'deny' {
  return f.decision === 'deny' ? 'deny' : 'allow';
}
