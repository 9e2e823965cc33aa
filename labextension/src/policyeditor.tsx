/**
 * The policy editor of one sandbox: YAML in JupyterLab's CodeMirror (highlighting from its language
 * registry), validation as you type through POST /openshell/api/policy/validate with the issues as lint
 * markers at their line and column, the diff against the policy in force, apply (hot reload), history
 * with rollback, presets to insert, and the staging of a rule that allows a denied request.
 *
 * Nothing is applied without the user pressing Apply (and confirming, unless the setting is off); a
 * staged rule only changes the editor's text. Rollback loads an old version into the editor: applying
 * it is the same PUT as any other edit, so the server's checks apply to it too.
 */

import { Dialog, showDialog } from '@jupyterlab/apputils';
import { CodeEditor, IEditorServices } from '@jupyterlab/codeeditor';
import { CodeMirrorEditor } from '@jupyterlab/codemirror';
import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { lintGutter, setDiagnostics } from '@codemirror/lint';
import { ISignal, Signal } from '@lumino/signaling';
import { Panel, Widget } from '@lumino/widgets';
import React from 'react';

import { api, ApiError, HistoryEntry, Preset, PolicyText, Validation } from './api';
import { issueMessage, issuesToDiagnostics, Issue } from './diagnostics';
import { diffStat, hunks } from './diff';
import { shieldIcon } from './icons';
import { OpenShellModel } from './model';
import {
  DeniedRequest,
  initialSuggest,
  stagedPolicy,
  SuggestAction,
  suggestReducer,
  SuggestState
} from './suggest';

const VALIDATE_DELAY_MS = 300;

interface Message {
  kind: 'info' | 'error';
  text: string;
}

export class PolicyEditor extends Panel {
  constructor(options: {
    sandbox: string;
    model: OpenShellModel;
    editorServices: IEditorServices;
  }) {
    super();
    this.sandbox = options.sandbox;
    this._model = options.model;
    this.id = `jp-openshell-policy-${options.sandbox}`;
    this.addClass('jp-OpenShell-policy');
    this.title.label = `Policy: ${options.sandbox}`;
    this.title.caption = `OpenShell policy of sandbox ${options.sandbox}`;
    this.title.icon = shieldIcon;
    this.title.closable = true;

    this.addWidget(ReactWidget.create(<this.Header />));
    // the editor and, beside it (below it where narrow), the issues and the diff against the policy in force
    const body = new Panel();
    body.addClass('jp-OpenShell-policyBody');
    const host = new Widget();
    host.addClass('jp-OpenShell-editorHost');
    body.addWidget(host);
    const side = ReactWidget.create(<this.Footer />);
    side.addClass('jp-OpenShell-policySide');
    body.addWidget(side);
    this.addWidget(body);

    this._editorModel = new CodeEditor.Model({ mimeType: 'text/x-yaml' });
    this._editor = options.editorServices.factoryService.newDocumentEditor({
      host: host.node,
      model: this._editorModel,
      config: { lineNumbers: true },
      extensions: [lintGutter()]
    });
    this._editorModel.sharedModel.changed.connect(this._onEdit, this);
    void this.load();
  }

  readonly sandbox: string;

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get draft(): string {
    return this._editorModel.sharedModel.getSource();
  }

  get inForce(): PolicyText | null {
    return this._inForce;
  }

  get suggest(): SuggestState {
    return this._suggest;
  }

  /** Load the policy in force (and put it in the editor unless the user has changes there). */
  async load(): Promise<void> {
    try {
      const previous = this._inForce;
      this._inForce = await api.policy(this.sandbox);
      if (!previous || this.draft === previous.yaml || !this.draft) {
        this._setDraft(this._inForce.yaml);
      }
    } catch (err) {
      this._say('error', `cannot read the policy: ${errorText(err)}`);
    }
    this._changed.emit();
  }

  /** Stage a rule that allows a denied request: variants from the server, the narrowest in the editor. */
  async stage(request: DeniedRequest): Promise<void> {
    this._dispatch({ type: 'open', request });
    try {
      await this.load();
      const variants = await api.variants(request.method, request.url, this.sandbox);
      this._dispatch({ type: 'loaded', variants, current: this._inForce?.yaml ?? '' });
      const staged = stagedPolicy(this._suggest);
      if (staged) {
        this._setDraft(staged);
      }
    } catch (err) {
      this._dispatch({ type: 'failed', message: errorText(err) });
    }
  }

  selectVariant(index: number): void {
    this._dispatch({ type: 'select', index });
    const staged = stagedPolicy(this._suggest);
    if (staged) {
      this._setDraft(staged);
    }
  }

  cancelStaging(): void {
    this._dispatch({ type: 'cancel' });
    if (this._inForce) {
      this._setDraft(this._inForce.yaml);
    }
  }

  /** Apply the editor's text, after the confirmation the settings ask for. */
  async apply(): Promise<void> {
    const text = this.draft;
    const base = this._inForce?.yaml ?? '';
    if (this._model.settings.confirmBeforeApply) {
      const { added, removed } = diffStat(base, text);
      const result = await showDialog({
        title: `Apply this policy to ${this.sandbox}?`,
        body: (
          <div className="jp-OpenShell-confirm">
            <p>
              {added} line{added === 1 ? '' : 's'} added, {removed} removed. The proxy enforces it for the
              sandbox's next request.
            </p>
            <DiffView oldText={base} newText={text} />
          </div>
        ),
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Apply' })]
      });
      if (!result.button.accept) {
        return;
      }
    }
    if (this._suggest.phase === 'choose') {
      this._dispatch({ type: 'apply', confirmed: true });
    }
    this._applying = true;
    this._changed.emit();
    try {
      const applied = await api.apply(this.sandbox, text);
      this._inForce = { name: this.sandbox, version: applied.version, yaml: text };
      if (this._suggest.phase === 'applying') {
        this._dispatch({ type: 'applied', version: applied.version });
      }
      const warnings = applied.warnings.length ? ` Warnings: ${applied.warnings.join('; ')}` : '';
      this._say(
        'info',
        `Applied version ${applied.version}${applied.in_force ? ' (in force now)' : ' (the proxy loads it when it runs)'}.${warnings}`
      );
      this._history = null;
    } catch (err) {
      if (this._suggest.phase === 'applying') {
        this._dispatch({ type: 'failed', message: errorText(err) });
      }
      if (err instanceof ApiError && err.issues.length) {
        this._showIssues(text, err.issues);
      }
      this._say('error', `not applied: ${errorText(err)}`);
    } finally {
      this._applying = false;
      this._changed.emit();
      void this._model.refresh();
    }
  }

  revert(): void {
    if (this._inForce) {
      this._setDraft(this._inForce.yaml);
      this._say('info', 'Reverted to the policy in force.');
    }
  }

  async loadHistory(): Promise<void> {
    try {
      this._history = (await api.history(this.sandbox)).slice().reverse();
    } catch (err) {
      this._say('error', `cannot read the history: ${errorText(err)}`);
    }
    this._changed.emit();
  }

  /** Put an earlier version into the editor; Apply (after the diff) rolls back to it. */
  rollbackTo(version: string): void {
    const entry = this._history?.find(h => h.version === version);
    if (entry) {
      this._setDraft(entry.yaml);
      this._say('info', `Version ${version} (applied ${entry.applied}) is in the editor: review the diff, then Apply to roll back.`);
    }
  }

  async loadPresets(): Promise<void> {
    try {
      this._presets = await api.presets();
    } catch (err) {
      this._presets = [];
      this._presetsError = errorText(err);
    }
    this._changed.emit();
  }

  async insertPreset(name: string): Promise<void> {
    try {
      const { policy } = await api.insertPreset(name, this.draft);
      this._setDraft(policy);
      this._say('info', `Preset ${name} inserted: review the diff, then Apply.`);
    } catch (err) {
      this._say('error', `cannot insert preset ${name}: ${errorText(err)}`);
    }
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    if (this._timer) {
      clearTimeout(this._timer);
    }
    this._editor.dispose();
    this._editorModel.dispose();
    Signal.clearData(this);
    super.dispose();
  }

  private _dispatch(action: SuggestAction): void {
    this._suggest = suggestReducer(this._suggest, action);
    this._changed.emit();
  }

  private _setDraft(text: string): void {
    if (text !== this.draft) {
      this._editorModel.sharedModel.setSource(text);
    }
  }

  private _say(kind: Message['kind'], text: string): void {
    this._message = { kind, text };
    this._changed.emit();
  }

  private _onEdit(): void {
    if (this._timer) {
      clearTimeout(this._timer);
    }
    this._timer = setTimeout(() => void this._validate(), VALIDATE_DELAY_MS);
    this._changed.emit();
  }

  private async _validate(): Promise<void> {
    const text = this.draft;
    try {
      const result = await api.validate(text);
      if (text === this.draft) {
        this._validation = result;
        this._showIssues(text, result.issues);
      }
    } catch (err) {
      this._say('error', `validation is unavailable: ${errorText(err)}`);
    }
  }

  private _showIssues(text: string, issues: Issue[]): void {
    const view = (this._editor as CodeMirrorEditor).editor;
    view.dispatch(setDiagnostics(view.state, issuesToDiagnostics(text, issues)));
    this._issues = issues;
    this._changed.emit();
  }

  // -- views ------------------------------------------------------------------------------------

  private Header = (): JSX.Element => (
    <UseSignal signal={this._changed}>
      {() => {
        const dirty = !!this._inForce && this.draft !== this._inForce.yaml;
        const errors = this._issues.filter(i => i.severity !== 'warning').length;
        const valid = this._validation ? this._validation.valid : errors === 0;
        return (
          <div className="jp-OpenShell-policyHeader">
            <div className="jp-OpenShell-policyTitle">
              <b>{this.sandbox}</b>
              <span> in force: {this._inForce?.version ?? '…'}</span>
              <span className={`jp-OpenShell-validity ${valid ? 'jp-mod-valid' : 'jp-mod-invalid'}`}>
                {valid ? 'valid' : `${errors} error${errors === 1 ? '' : 's'}`}
              </span>
            </div>
            <div className="jp-OpenShell-toolbar">
              <button
                className="jp-mod-styled jp-mod-accept jp-OpenShell-apply"
                disabled={!dirty || !valid || this._applying}
                onClick={() => void this.apply()}
              >
                {this._applying ? 'Applying…' : 'Apply'}
              </button>
              <button className="jp-mod-styled" disabled={!dirty} onClick={() => this.revert()}>
                Revert
              </button>
              {this._history === null ? (
                <button className="jp-mod-styled" onClick={() => void this.loadHistory()}>
                  History…
                </button>
              ) : (
                <select
                  className="jp-OpenShell-history"
                  value=""
                  onChange={e => this.rollbackTo(e.target.value)}
                >
                  <option value="">Roll back to…</option>
                  {this._history.map(h => (
                    <option key={`${h.version}-${h.ts_ms}`} value={h.version}>
                      {h.version} ({h.applied})
                    </option>
                  ))}
                </select>
              )}
              {this._presets === null ? (
                <button className="jp-mod-styled" onClick={() => void this.loadPresets()}>
                  Presets…
                </button>
              ) : (
                <select
                  className="jp-OpenShell-presets"
                  value=""
                  title={this._presetsError || 'Insert the rules of a preset'}
                  disabled={!this._presets.length}
                  onChange={e => void this.insertPreset(e.target.value)}
                >
                  <option value="">{this._presets.length ? 'Insert preset…' : 'No presets'}</option>
                  {this._presets.map(p => (
                    <option key={p.name} value={p.name} title={p.description}>
                      {p.name}: {p.description}
                    </option>
                  ))}
                </select>
              )}
            </div>
            {this._message ? (
              <div className={`jp-OpenShell-message jp-mod-${this._message.kind}`}>{this._message.text}</div>
            ) : null}
            <Staging editor={this} />
          </div>
        );
      }}
    </UseSignal>
  );

  private Footer = (): JSX.Element => (
    <UseSignal signal={this._changed}>
      {() => (
        <div className="jp-OpenShell-policyFooter">
          {this._issues.length ? (
            <ul className="jp-OpenShell-issues">
              {this._issues.map((issue, i) => (
                <li
                  key={i}
                  data-line={issue.line}
                  className={`jp-mod-${issue.severity === 'warning' ? 'warning' : 'error'}`}
                >
                  <b>
                    line {issue.line}, column {issue.column}:
                  </b>{' '}
                  <span style={{ whiteSpace: 'pre-wrap' }}>{issueMessage(issue)}</span>
                </li>
              ))}
            </ul>
          ) : null}
          {this._inForce && this.draft !== this._inForce.yaml ? (
            <div>
              <h3>Changes against the policy in force</h3>
              <DiffView oldText={this._inForce.yaml} newText={this.draft} />
            </div>
          ) : (
            <p className="jp-OpenShell-empty">The editor holds the policy in force.</p>
          )}
        </div>
      )}
    </UseSignal>
  );

  private _model: OpenShellModel;
  private _editorModel: CodeEditor.Model;
  private _editor: CodeEditor.IEditor;
  private _inForce: PolicyText | null = null;
  private _validation: Validation | null = null;
  private _issues: Issue[] = [];
  private _suggest: SuggestState = initialSuggest;
  private _history: HistoryEntry[] | null = null;
  private _presets: Preset[] | null = null;
  private _presetsError = '';
  private _message: Message | null = null;
  private _applying = false;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _changed = new Signal<this, void>(this);
}

function Staging({ editor }: { editor: PolicyEditor }): JSX.Element | null {
  const s = editor.suggest;
  if (s.phase === 'idle' || !s.request) {
    return null;
  }
  return (
    <div className="jp-OpenShell-staging">
      <div>
        <b>Denied:</b> <code>{s.request.method} {s.request.url}</code>
        {s.request.rule !== null && s.request.rule !== undefined ? (
          <>
            {' '}
            (rule: <code>{String(s.request.rule)}</code>)
          </>
        ) : null}
      </div>
      {s.phase === 'loading' ? <div>Finding the narrowest rule that allows it…</div> : null}
      {s.phase === 'error' ? <div className="jp-OpenShell-error">{s.message}</div> : null}
      {s.variants.length ? (
        <fieldset className="jp-OpenShell-variants">
          <legend>Rule to add (narrowest first); it is staged in the editor below</legend>
          {s.variants.map((v, i) => (
            <label key={i} className="jp-OpenShell-variant" data-variant={v.label}>
              <input
                type="radio"
                name={`variant-${editor.sandbox}`}
                checked={s.selected === i}
                disabled={s.phase !== 'choose'}
                onChange={() => editor.selectVariant(i)}
              />
              <span>{v.label}</span>
              <pre>{v.yaml}</pre>
            </label>
          ))}
        </fieldset>
      ) : null}
      {s.phase === 'choose' && s.message ? <div className="jp-OpenShell-error">{s.message}</div> : null}
      {s.phase === 'applied' ? (
        <div className="jp-OpenShell-done">Rule applied (policy version {s.version}). Run the request again.</div>
      ) : null}
      <button className="jp-mod-styled" onClick={() => editor.cancelStaging()}>
        {s.phase === 'applied' ? 'Close' : 'Discard staged rule'}
      </button>
    </div>
  );
}

export function DiffView({ oldText, newText }: { oldText: string; newText: string }): JSX.Element {
  const found = hunks(oldText, newText);
  if (!found.length) {
    return <div className="jp-OpenShell-diff jp-mod-empty">No changes.</div>;
  }
  return (
    <pre className="jp-OpenShell-diff">
      {found.map((h, i) => (
        <React.Fragment key={i}>
          <div className="jp-OpenShell-hunk">{h.header}</div>
          {h.lines.map((l, j) => (
            <div
              key={j}
              className={l.kind === '+' ? 'jp-mod-added' : l.kind === '-' ? 'jp-mod-removed' : 'jp-mod-context'}
            >
              {l.kind}
              {l.text}
            </div>
          ))}
        </React.Fragment>
      ))}
    </pre>
  );
}

function errorText(err: unknown): string {
  return err instanceof ApiError ? err.message : String(err);
}
