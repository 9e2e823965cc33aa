/**
 * The OpenShell sidebar: the user's sandboxes with their facts (backend, image, state, enforcement per layer,
 * policy version, age, denials not yet seen) and actions (policy, traffic, logs, stop, remove), the
 * kernel of the active notebook highlighted, and GPU status where there is a GPU.
 */

import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import React from 'react';

import { api, GpuStatus, Sandbox } from './api';
import { CommandIDs } from './commands';
import { age, enforcementLayers, shield, shieldText } from './format';
import { shieldIcon } from './icons';
import { OpenShellModel } from './model';

const REFRESH_MS = 5000;

function Facts({ sandbox }: { sandbox: Sandbox }): JSX.Element {
  const layers = enforcementLayers(sandbox);
  return (
    <div className="jp-OpenShell-facts">
      <span title="backend">{sandbox.backend ?? '?'}</span>
      {sandbox.image ? <span title="image">{sandbox.image}</span> : null}
      <span className={`jp-OpenShell-state jp-mod-${sandbox.state ?? 'unknown'}`}>{sandbox.state ?? '?'}</span>
      <span title="created">{age(sandbox.created)}</span>
      {sandbox.policy_version ? <span title="policy version">policy {sandbox.policy_version}</span> : null}
      {sandbox.gpu ? <span>GPU</span> : null}
      <div className="jp-OpenShell-layers">
        {layers.map(([layer, how]) => (
          <span key={layer} className="jp-OpenShell-layer" title={`${layer}: ${how}`}>
            {layer}: {how}
          </span>
        ))}
      </div>
    </div>
  );
}

function SandboxCard(props: {
  sandbox: Sandbox;
  model: OpenShellModel;
  commands: CommandRegistry;
}): JSX.Element {
  const { sandbox, model, commands } = props;
  const selected = model.selected === sandbox.name;
  const active = model.active.sandbox?.name === sandbox.name;
  const unseen = model.hub.unseen(sandbox.name);
  const state = shield(sandbox);
  const run = (id: string) => (ev: React.MouseEvent) => {
    ev.stopPropagation();
    void commands.execute(id, { sandbox: sandbox.name });
  };
  return (
    <li
      className={`jp-OpenShell-sandbox${selected ? ' jp-mod-selected' : ''}${active ? ' jp-mod-active' : ''}`}
      data-sandbox={sandbox.name}
      onClick={() => model.select(sandbox.name)}
    >
      <div className="jp-OpenShell-sandboxHead">
        <span className={`jp-OpenShell-shield jp-mod-${state}`} title={shieldText(state)}>
          <shieldIcon.react tag="span" />
        </span>
        <span className="jp-OpenShell-name">{sandbox.name}</span>
        {active ? <span className="jp-OpenShell-tag">this notebook</span> : null}
        {unseen ? (
          <span className="jp-OpenShell-denials" title="denied requests since you last looked">
            {unseen} denied
          </span>
        ) : null}
      </div>
      <Facts sandbox={sandbox} />
      <div className="jp-OpenShell-actions">
        <button className="jp-mod-styled jp-mod-accept" data-action="policy" onClick={run(CommandIDs.editPolicy)}>
          Policy
        </button>
        <button className="jp-mod-styled" data-action="traffic" onClick={run(CommandIDs.showTraffic)}>
          Traffic
        </button>
        <button className="jp-mod-styled" data-action="logs" onClick={run(CommandIDs.showLogs)}>
          Logs
        </button>
        <button className="jp-mod-styled" data-action="stop" onClick={run(CommandIDs.stopSandbox)} disabled={sandbox.state !== 'running'}>
          Stop
        </button>
        <button className="jp-mod-styled jp-mod-warn" data-action="remove" onClick={run(CommandIDs.removeSandbox)}>
          Remove
        </button>
      </div>
    </li>
  );
}

function Gpu({ gpu }: { gpu: GpuStatus | null }): JSX.Element | null {
  if (!gpu || !gpu.available) {
    return null;
  }
  return (
    <div className="jp-OpenShell-gpu">
      <h3>GPU</h3>
      {gpu.gpus.map((g: any) => (
        <div key={g.index}>
          {g.name}: {g.utilization_gpu ?? '?'}% busy, {Math.round((g.memory_used ?? 0) / 2 ** 20)} /{' '}
          {Math.round((g.memory_total ?? 0) / 2 ** 20)} MiB
          {g.temperature_c !== null && g.temperature_c !== undefined ? `, ${g.temperature_c} °C` : ''}
        </div>
      ))}
    </div>
  );
}

export class SandboxesSidebar extends ReactWidget {
  constructor(
    private _model: OpenShellModel,
    private _commands: CommandRegistry
  ) {
    super();
    this.id = 'jp-openshell-sidebar';
    this.addClass('jp-OpenShell-sidebar');
    this.title.icon = shieldIcon;
    this.title.caption = 'OpenShell sandboxes';
    this._model.hub.changed.connect(() => this.update());
  }

  protected onAfterShow(): void {
    void this._tick();
  }

  protected onBeforeHide(): void {
    if (this._timer) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private async _tick(): Promise<void> {
    if (this._timer) {
      clearTimeout(this._timer);
    }
    await this._model.refresh();
    if (this._gpu === null) {
      this._gpu = await api.gpu().catch(() => null);
      this.update();
    }
    if (this.isVisible) {
      this._timer = setTimeout(() => void this._tick(), REFRESH_MS);
    }
  }

  render(): JSX.Element {
    return (
      <UseSignal signal={this._model.changed}>
        {() => {
          const m = this._model;
          return (
            <div className="jp-OpenShell-sidebarBody">
              <header>
                <h2>OpenShell sandboxes</h2>
                <button
                  className="jp-mod-styled"
                  title="Refresh"
                  onClick={() => void this._commands.execute(CommandIDs.refresh)}
                >
                  ⟳
                </button>
              </header>
              {m.error ? <div className="jp-OpenShell-error">{m.error}</div> : null}
              {m.loaded && !m.sandboxes.length && !m.error ? (
                <p className="jp-OpenShell-empty">
                  No sandboxes yet. Start a notebook with the "Python 3 (OpenShell sandbox)" kernel, or create
                  one with <code>openshell sandbox create</code>.
                </p>
              ) : null}
              <ul className="jp-OpenShell-sandboxes">
                {m.sandboxes.map(s => (
                  <SandboxCard key={s.name} sandbox={s} model={m} commands={this._commands} />
                ))}
              </ul>
              <div className="jp-OpenShell-feed">
                Live traffic: {m.hub.state}
                {m.hub.detail ? ` (${m.hub.detail})` : ''}
              </div>
              <Gpu gpu={this._gpu} />
            </div>
          );
        }}
      </UseSignal>
    );
  }

  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _gpu: GpuStatus | null = null;
}
