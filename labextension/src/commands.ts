/** Command ids of the extension (the palette, the menus, the Launcher and the widgets use them). */

export const CommandIDs = {
  showSandboxes: 'openshell:show-sandboxes',
  refresh: 'openshell:refresh',
  editPolicy: 'openshell:edit-policy',
  showTraffic: 'openshell:show-traffic',
  allowRequest: 'openshell:allow-request',
  showLogs: 'openshell:show-logs',
  stopSandbox: 'openshell:stop-sandbox',
  removeSandbox: 'openshell:remove-sandbox',
  policyDocs: 'openshell:policy-docs'
};
