/**
 * The status bar item of the active notebook's kernel: its sandbox, a shield for the enforcement state and
 * the denials since the user last opened the sandbox in the sidebar. Clicking opens the sidebar on it.
 * It shows nothing for a kernel that is not an OpenShell kernel.
 */

import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import React from 'react';

import { CommandIDs } from './commands';
import { shield, shieldText } from './format';
import { shieldIcon } from './icons';
import { OpenShellModel } from './model';

export class SandboxStatus extends ReactWidget {
  constructor(
    private _model: OpenShellModel,
    private _commands: CommandRegistry
  ) {
    super();
    this.addClass('jp-OpenShell-statusItem');
    this._model.hub.changed.connect(() => this.update());
  }

  render(): JSX.Element {
    return (
      <UseSignal signal={this._model.changed}>
        {() => {
          const sandbox = this._model.active.sandbox;
          if (!sandbox) {
            return <span />;
          }
          const state = shield(sandbox);
          const unseen = this._model.hub.unseen(sandbox.name);
          return (
            <span
              className="jp-OpenShell-status"
              data-sandbox={sandbox.name}
              data-denials={unseen}
              title={`OpenShell sandbox ${sandbox.name}: ${shieldText(state)}. Click to open it in the sidebar.`}
              onClick={() => void this._commands.execute(CommandIDs.showSandboxes, { sandbox: sandbox.name })}
            >
              <span className={`jp-OpenShell-shield jp-mod-${state}`}>
                <shieldIcon.react tag="span" />
              </span>
              <span>{sandbox.name}</span>
              {unseen ? <span className="jp-OpenShell-denials">{unseen} denied</span> : null}
            </span>
          );
        }}
      </UseSignal>
    );
  }
}
