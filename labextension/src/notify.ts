/**
 * Notifications of denied requests (JupyterLab's Notification API): what was denied, by which rule, with
 * an "Allow…" action that opens the policy editor with a rule staged. Nothing is ever applied from here.
 * By default only the active notebook's kernel is reported; a repeat of the same request within
 * REPEAT_MS is not reported again.
 */

import { Notification } from '@jupyterlab/apputils';
import { CommandRegistry } from '@lumino/commands';

import { CommandIDs } from './commands';
import { OpenShellModel } from './model';
import { Flow } from './stream';
import { flowUrl } from './suggest';

const REPEAT_MS = 30_000;
const MAX_MESSAGE = 140; // longer messages are cut by the notification center

export function notifyDenials(model: OpenShellModel, commands: CommandRegistry): void {
  const recent = new Map<string, number>();
  model.hub.denied.connect((_, flow: Flow) => {
    const level = model.settings.notifications;
    if (level === 'off' || !flow.sandbox) {
      return;
    }
    if (level === 'active-kernel' && model.active.sandbox?.name !== flow.sandbox) {
      return;
    }
    const url = flowUrl(flow);
    const key = `${flow.sandbox} ${flow.method} ${url}`;
    const now = Date.now();
    if (now - (recent.get(key) ?? -Infinity) < REPEAT_MS) {
      return;
    }
    recent.set(key, now);
    const rule = flow.rule === null || flow.rule === undefined ? 'no rule' : String(flow.rule);
    const head = `OpenShell denied ${flow.method} `;
    const tail = ` (rule: ${rule}, sandbox ${flow.sandbox})`;
    const room = Math.max(20, MAX_MESSAGE - head.length - tail.length);
    const what = `${flow.host}${flow.path}`;
    const message = head + (what.length > room ? `${what.slice(0, room - 1)}…` : what) + tail;
    Notification.warning(message, {
      autoClose: 20_000,
      actions: [
        {
          label: 'Allow…',
          caption: 'Open the policy editor with a rule that allows this request staged (nothing is applied yet)',
          callback: () =>
            void commands.execute(CommandIDs.allowRequest, {
              sandbox: flow.sandbox as string,
              method: flow.method,
              url,
              rule
            })
        },
        {
          label: 'Traffic',
          caption: 'Show the sandbox traffic',
          displayType: 'link',
          callback: () => void commands.execute(CommandIDs.showTraffic, { sandbox: flow.sandbox as string })
        }
      ]
    });
  });
}
