/**
 * The state the OpenShell UI shares: the user's sandboxes (from the REST API), the selected one, the
 * sandbox of the active notebook's kernel, the settings, and the live flow feed. Widgets observe
 * `changed`; nothing here holds a credential.
 */

import { ISignal, Signal } from '@lumino/signaling';

import { api, ApiError, Sandbox } from './api';
import { FlowHub } from './hub';

export interface OpenShellSettings {
  updates: 'stream' | 'poll';
  notifications: 'active-kernel' | 'all' | 'off';
  confirmBeforeApply: boolean;
}

export const DEFAULT_SETTINGS: OpenShellSettings = {
  updates: 'stream',
  notifications: 'active-kernel',
  confirmBeforeApply: true
};

export interface ActiveKernel {
  kernelId: string | null;
  sandbox: Sandbox | null;
}

export class OpenShellModel {
  readonly hub = new FlowHub();

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get settings(): OpenShellSettings {
    return this._settings;
  }

  set settings(value: OpenShellSettings) {
    this._settings = value;
    this.hub.setMode(value.updates);
    this._changed.emit();
  }

  get sandboxes(): readonly Sandbox[] {
    return this._sandboxes;
  }

  get error(): string {
    return this._error;
  }

  get selected(): string | null {
    return this._selected;
  }

  get active(): ActiveKernel {
    return this._active;
  }

  get loaded(): boolean {
    return this._loaded;
  }

  /** Select a sandbox (null: none); its denials count as seen. */
  select(name: string | null): void {
    this._selected = name;
    if (name) {
      this.hub.markSeen(name);
    }
    this._changed.emit();
  }

  setActive(active: ActiveKernel): void {
    this._active = active;
    this._changed.emit();
  }

  sandbox(name: string | null | undefined): Sandbox | null {
    return (name && this._sandboxes.find(s => s.name === name)) || null;
  }

  async refresh(): Promise<void> {
    try {
      this._sandboxes = await api.sandboxes();
      this._error = '';
    } catch (err) {
      this._error = err instanceof ApiError ? err.message : String(err);
    }
    this._loaded = true;
    const active = this._active.sandbox && this.sandbox(this._active.sandbox.name);
    if (active) {
      this._active = { ...this._active, sandbox: active };
    }
    this._changed.emit();
  }

  dispose(): void {
    this.hub.dispose();
    Signal.clearData(this);
  }

  private _settings = DEFAULT_SETTINGS;
  private _sandboxes: Sandbox[] = [];
  private _error = '';
  private _loaded = false;
  private _selected: string | null = null;
  private _active: ActiveKernel = { kernelId: null, sandbox: null };
  private _changed = new Signal<this, void>(this);
}
