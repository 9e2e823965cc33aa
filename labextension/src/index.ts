/**
 * jupyter-openshell in JupyterLab 4 and Notebook 7: the sandboxes sidebar, the policy editor, the live
 * traffic view, the status bar item, denial notifications, commands (palette, Help menu, Launcher),
 * settings, and untrusted outputs for OpenShell kernels. Every optional plugin point is optional, so the
 * same plugins run where Notebook 7 lacks one (no status bar there).
 */

import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Dialog, ICommandPalette, Notification, showDialog } from '@jupyterlab/apputils';
import { IEditorServices } from '@jupyterlab/codeeditor';
import { ILauncher } from '@jupyterlab/launcher';
import { IMainMenu } from '@jupyterlab/mainmenu';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';
import React from 'react';

import { api, ApiError } from './api';
import { CommandIDs } from './commands';
import { PolicyDocs } from './docs';
import { shieldIcon } from './icons';
import { DEFAULT_SETTINGS, OpenShellModel, OpenShellSettings } from './model';
import { notifyDenials } from './notify';
import { PolicyEditor } from './policyeditor';
import { SandboxesSidebar } from './sidebar';
import { SandboxStatus } from './statusbar';
import { TrafficView } from './traffic';
import { untrustOpenShellOutputs } from './trust';

const PLUGIN_ID = 'jupyter-openshell:plugin';
const PROVISIONER = 'openshell-provisioner';
const KERNEL_RETRIES = 20;

/** Whether a kernelspec runs its kernels in an OpenShell sandbox (its provisioner says so). */
function openShellKernels(app: JupyterFrontEnd): (name: string | undefined) => boolean {
  return name => {
    if (!name) {
      return false;
    }
    const spec = app.serviceManager.kernelspecs.specs?.kernelspecs[name];
    const provisioner = (spec?.metadata as any)?.kernel_provisioner?.provisioner_name;
    return provisioner === PROVISIONER;
  };
}

function errorText(err: unknown): string {
  return err instanceof ApiError ? err.message : String(err);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'OpenShell sandboxes, policies and traffic in JupyterLab.',
  autoStart: true,
  requires: [IEditorServices],
  optional: [
    ILabShell,
    ILayoutRestorer,
    ICommandPalette,
    IMainMenu,
    ILauncher,
    INotebookTracker,
    IStatusBar,
    ISettingRegistry,
    IRenderMimeRegistry
  ],
  activate: (
    app: JupyterFrontEnd,
    editorServices: IEditorServices,
    labShell: ILabShell | null,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    mainMenu: IMainMenu | null,
    launcher: ILauncher | null,
    notebooks: INotebookTracker | null,
    statusBar: IStatusBar | null,
    settingRegistry: ISettingRegistry | null,
    rendermime: IRenderMimeRegistry | null
  ) => {
    const { commands, shell } = app;
    const model = new OpenShellModel();
    const isOpenShell = openShellKernels(app);
    // Notebook 7 holds one document in its main area: the other views go to its right panel there.
    const area = labShell ? 'main' : 'right';

    const sidebar = new SandboxesSidebar(model, commands);
    shell.add(sidebar, 'left', { rank: 900 });
    restorer?.add(sidebar, 'openshell-sidebar');

    const editors = new Map<string, PolicyEditor>();
    let traffic: TrafficView | null = null;
    let docs: PolicyDocs | null = null;

    const show = (widget: Widget): void => {
      if (!widget.isAttached) {
        shell.add(widget, area);
      }
      shell.activateById(widget.id);
    };
    const sandboxArg = (args: any): string | null =>
      (args.sandbox as string) || model.active.sandbox?.name || model.selected || null;
    const noSandbox = (): void => {
      Notification.info(
        'No OpenShell sandbox here: open a notebook with an OpenShell kernel, or pick a sandbox in the OpenShell sidebar.',
        { autoClose: 8000 }
      );
    };
    const editorFor = (name: string): PolicyEditor => {
      let editor = editors.get(name);
      if (!editor || editor.isDisposed) {
        editor = new PolicyEditor({ sandbox: name, model, editorServices });
        editors.set(name, editor);
      }
      show(editor);
      return editor;
    };

    commands.addCommand(CommandIDs.showSandboxes, {
      label: args => (args.isLauncher ? 'Sandboxes' : 'OpenShell: Show sandboxes'),
      caption: 'Your OpenShell sandboxes, their policies and traffic',
      icon: shieldIcon,
      execute: args => {
        void model.hub.start();
        shell.activateById(sidebar.id);
        if (args.sandbox) {
          model.select(args.sandbox as string);
        }
      }
    });
    commands.addCommand(CommandIDs.refresh, {
      label: 'OpenShell: Refresh sandboxes',
      execute: () => model.refresh()
    });
    commands.addCommand(CommandIDs.editPolicy, {
      label: args => (args.sandbox ? `Edit policy of ${args.sandbox}` : 'OpenShell: Edit policy of this kernel'),
      icon: shieldIcon,
      execute: args => {
        const name = sandboxArg(args);
        if (!name) {
          return noSandbox();
        }
        editorFor(name);
      }
    });
    commands.addCommand(CommandIDs.showTraffic, {
      label: 'OpenShell: Show traffic',
      execute: args => {
        void model.hub.start();
        if (!traffic || traffic.isDisposed) {
          traffic = new TrafficView(model, commands);
        }
        traffic.setSandbox((args.sandbox as string) || null);
        show(traffic);
      }
    });
    commands.addCommand(CommandIDs.allowRequest, {
      label: 'OpenShell: Allow a denied request…',
      execute: args => {
        const name = args.sandbox as string;
        if (!name || !args.method || !args.url) {
          return noSandbox();
        }
        const editor = editorFor(name);
        return editor.stage({
          sandbox: name,
          method: args.method as string,
          url: args.url as string,
          rule: (args.rule as string) || null
        });
      }
    });
    commands.addCommand(CommandIDs.showLogs, {
      label: 'OpenShell: Show sandbox logs',
      execute: async args => {
        const name = sandboxArg(args);
        if (!name) {
          return noSandbox();
        }
        let body: string;
        try {
          const logs = await api.logs(name);
          body = (logs.truncated ? '… (earlier lines left out)\n' : '') + (logs.logs || '(empty)');
        } catch (err) {
          body = errorText(err);
        }
        await showDialog({
          title: `Log of sandbox ${name}`,
          body: React.createElement('pre', { className: 'jp-OpenShell-logs' }, body),
          buttons: [Dialog.okButton({ label: 'Close' })]
        });
      }
    });
    commands.addCommand(CommandIDs.stopSandbox, {
      label: 'OpenShell: Stop sandbox',
      execute: async args => {
        const name = sandboxArg(args);
        if (!name) {
          return noSandbox();
        }
        const answer = await showDialog({
          title: `Stop sandbox ${name}?`,
          body: 'Its processes end (a kernel in it dies); its files and policy stay.',
          buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Stop' })]
        });
        if (answer.button.accept) {
          await api.stop(name).catch(err => Notification.error(`Not stopped: ${errorText(err)}`));
          await model.refresh();
        }
      }
    });
    commands.addCommand(CommandIDs.removeSandbox, {
      label: 'OpenShell: Remove sandbox',
      execute: async args => {
        const name = sandboxArg(args);
        if (!name) {
          return noSandbox();
        }
        const answer = await showDialog({
          title: `Remove sandbox ${name}?`,
          body: 'Its processes end and its state is deleted (a workspace you gave it stays).',
          buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Remove' })]
        });
        if (answer.button.accept) {
          try {
            await api.remove(name);
            editors.get(name)?.dispose();
            editors.delete(name);
          } catch (err) {
            Notification.error(`Not removed: ${errorText(err)}`);
          }
          await model.refresh();
        }
      }
    });
    commands.addCommand(CommandIDs.policyDocs, {
      label: 'OpenShell policy format',
      caption: 'The reference of the OpenShell policy YAML',
      execute: () => {
        if (!docs || docs.isDisposed) {
          docs = new PolicyDocs(rendermime);
        }
        show(docs);
      }
    });

    for (const id of [
      CommandIDs.showSandboxes,
      CommandIDs.editPolicy,
      CommandIDs.showTraffic,
      CommandIDs.showLogs,
      CommandIDs.refresh,
      CommandIDs.policyDocs
    ]) {
      palette?.addItem({ command: id, category: 'OpenShell' });
    }
    mainMenu?.helpMenu.addGroup([{ command: CommandIDs.policyDocs }], 60);
    launcher?.add({ command: CommandIDs.showSandboxes, category: 'OpenShell', rank: 1 });

    if (settingRegistry) {
      void settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          const read = (): void => {
            model.settings = { ...DEFAULT_SETTINGS, ...(settings.composite as unknown as OpenShellSettings) };
          };
          read();
          settings.changed.connect(read);
        })
        .catch(err => console.warn('openshell: settings unavailable, using the defaults', err));
    }

    notifyDenials(model, commands);
    if (statusBar) {
      const item = new SandboxStatus(model, commands);
      statusBar.registerStatusItem('jupyter-openshell:status', {
        item,
        align: 'left',
        rank: 4,
        isActive: () => !!model.active.sandbox,
        activeStateChanged: model.changed
      });
    }
    if (notebooks) {
      trackActiveKernel(notebooks, model, isOpenShell);
      untrustOpenShellOutputs(notebooks, isOpenShell);
    }
  }
};

/** Keep `model.active` on the sandbox of the current notebook's kernel (null for other kernels). */
function trackActiveKernel(
  notebooks: INotebookTracker,
  model: OpenShellModel,
  isOpenShell: (name: string | undefined) => boolean
): void {
  let panel: NotebookPanel | null = null;
  let generation = 0;
  const resolve = async (): Promise<void> => {
    const mine = ++generation;
    const kernel = panel?.sessionContext.session?.kernel;
    if (!kernel || !isOpenShell(kernel.name)) {
      model.setActive({ kernelId: kernel?.id ?? null, sandbox: null });
      return;
    }
    if (model.active.kernelId === kernel.id && model.active.sandbox) {
      return;
    }
    void model.hub.start();
    for (let attempt = 0; attempt < KERNEL_RETRIES && mine === generation; attempt++) {
      try {
        const found = await api.kernelSandbox(kernel.id);
        if (mine === generation) {
          model.setActive({ kernelId: kernel.id, sandbox: found.sandbox });
          void model.refresh();
        }
        return;
      } catch (err) {
        // the kernel's sandbox may still be starting: 404 until the provisioner has it
        if (!(err instanceof ApiError) || err.status !== 404) {
          break;
        }
        await new Promise(done => setTimeout(done, 1000));
      }
    }
    if (mine === generation) {
      model.setActive({ kernelId: kernel.id, sandbox: null });
    }
  };
  const follow = (next: NotebookPanel | null): void => {
    if (panel) {
      panel.sessionContext.kernelChanged.disconnect(onKernel);
      panel.sessionContext.statusChanged.disconnect(onStatus);
    }
    panel = next;
    if (panel) {
      panel.sessionContext.kernelChanged.connect(onKernel);
      panel.sessionContext.statusChanged.connect(onStatus);
    }
    void resolve();
  };
  const onKernel = (): void => void resolve();
  const onStatus = (_: unknown, status: string): void => {
    if (status === 'idle' && !model.active.sandbox) {
      void resolve();
    }
  };
  notebooks.currentChanged.connect((_, next) => follow(next));
  follow(notebooks.currentWidget);
}

export default [plugin];
