/**
 * Outputs of OpenShell kernels are never trusted in the page (defence in depth: the server already filters
 * what a sandboxed kernel sends). JupyterLab trusts a cell when it runs it; for a notebook whose kernel is
 * an OpenShell kernel this takes the trust back at once, before any output arrives, so HTML is sanitized
 * and JavaScript is not run. It also removes the cell's `trusted` mark, so saving never signs such a
 * notebook and reopening it trusts nothing.
 *
 * Widget views stay renderable there: their renderer only draws a model of an installed widget package
 * (the kernel names a model id, never code), so in such a notebook it is registered as safe; every other
 * mime type of an untrusted bundle keeps JupyterLab's untrusted handling.
 */

import { ICellModel } from '@jupyterlab/cells';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';

const WIDGET_VIEW = 'application/vnd.jupyter.widget-view+json';

/** Let an untrusted output render a widget view (the widget manager registers its renderer as unsafe). */
function widgetViewsRender(rendermime: IRenderMimeRegistry): void {
  const factory = rendermime.getFactory(WIDGET_VIEW);
  if (factory && !factory.safe) {
    rendermime.addFactory({ ...factory, safe: true }, rendermime.getRank(WIDGET_VIEW));
  }
}

export function untrustOpenShellOutputs(
  tracker: INotebookTracker,
  isOpenShell: (kernelName: string | undefined) => boolean
): void {
  tracker.widgetAdded.connect((_, panel) => watch(panel, isOpenShell));
  tracker.forEach(panel => watch(panel, isOpenShell));
}

function watch(panel: NotebookPanel, isOpenShell: (kernelName: string | undefined) => boolean): void {
  const openShell = (): boolean => {
    const ctx = panel.sessionContext;
    const name =
      ctx.session?.kernel?.name ??
      ctx.kernelPreference.name ??
      (panel.model?.getMetadata('kernelspec') as { name?: string } | undefined)?.name;
    return isOpenShell(name);
  };
  const untrust = (cell: ICellModel): void => {
    if (cell.type !== 'code') {
      return;
    }
    widgetViewsRender(panel.content.rendermime);
    if (cell.trusted) {
      cell.trusted = false;
    }
    if (cell.sharedModel.getMetadata('trusted') !== undefined) {
      cell.sharedModel.deleteMetadata('trusted');
    }
  };
  const hooked = new WeakSet<ICellModel>();
  const hook = (cell: ICellModel): void => {
    if (hooked.has(cell)) {
      return;
    }
    hooked.add(cell);
    cell.stateChanged.connect((model, args) => {
      // runs synchronously inside `trusted = true` (CodeCell.execute), i.e. before the request is sent
      if (args.name === 'trusted' && args.newValue && openShell()) {
        untrust(model);
      }
    });
    if (openShell()) {
      untrust(cell);
    }
  };
  const hookAll = (): void => {
    const cells = panel.model?.cells;
    if (!cells) {
      return;
    }
    for (let i = 0; i < cells.length; i++) {
      hook(cells.get(i));
    }
  };
  void panel.context.ready.then(() => {
    hookAll();
    panel.model?.cells.changed.connect(hookAll);
  });
  panel.sessionContext.kernelChanged.connect(() => {
    const cells = panel.model?.cells;
    if (cells && openShell()) {
      for (let i = 0; i < cells.length; i++) {
        untrust(cells.get(i));
      }
    }
  });
}
