/** The policy format reference (docs/policy-format.md, served by the server) rendered in a tab. */

import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Widget } from '@lumino/widgets';

import { api } from './api';
import { shieldIcon } from './icons';

export class PolicyDocs extends Widget {
  constructor(private _rendermime: IRenderMimeRegistry | null) {
    super();
    this.id = 'jp-openshell-policy-docs';
    this.addClass('jp-OpenShell-docs');
    this.title.label = 'OpenShell policy format';
    this.title.icon = shieldIcon;
    this.title.closable = true;
    void this._load();
  }

  private async _load(): Promise<void> {
    let markdown: string;
    try {
      markdown = (await api.docs('policy-format')).markdown;
    } catch (err) {
      markdown = `The policy format reference could not be loaded: ${err}`;
    }
    if (this._rendermime) {
      const renderer = this._rendermime.createRenderer('text/markdown');
      await renderer.renderModel(
        this._rendermime.createModel({ data: { 'text/markdown': markdown }, trusted: false })
      );
      this.node.appendChild(renderer.node);
    } else {
      const pre = document.createElement('pre');
      pre.textContent = markdown;
      this.node.appendChild(pre);
    }
  }
}
