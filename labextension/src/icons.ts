/** The OpenShell icons (a shield with a prompt): the sidebar tab, the Launcher card, the status bar. */

import { LabIcon } from '@jupyterlab/ui-components';

const SHIELD = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">
  <path class="jp-icon3" fill="#616161" d="M12 1.5 21 4.8V11c0 5.6-3.8 9.6-9 11.5C6.8 20.6 3 16.6 3 11V4.8z"/>
  <path fill="none" stroke="#fff" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round"
        d="M7.5 8.5 11 11.5 7.5 14.5M12.5 15.5h4"/>
</svg>`;

export const shieldIcon = new LabIcon({ name: 'jupyter-openshell:shield', svgstr: SHIELD });
