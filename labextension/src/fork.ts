/**
 * Runs as data: the "Fork from here" form of a finished task's step.
 *
 * A fork is a new task that copies this run's events up to a point (no model or
 * tool call makes them again) and goes on live from there, with at most one
 * change: no change (the copy ends with the step), a tool's result replaced (the
 * observation's seq), a tool call's arguments edited (the tool_call's seq: the
 * call runs again with them), or a new input (seq 0, the first step only). The
 * form says what it will do, checks what it can (JSON arguments against the
 * tool's schema when the run showed one), and shows the refusal of the server or
 * the kernel (`invalid_fork`, `fork_needs_kernel`, ...) in its own alert line.
 *
 * Plain DOM, scoped by view.css (`.ak-task .ak-fork*`); text from the run goes
 * through the view's `show` (bidi controls made visible).
 */

import { ArgumentEditor, ShowText } from './approval';
import { el } from './dom';
import { asText, formatArguments } from './format';
import { ErrorCode, IForkEdit, JSONRecord, isRecord } from './protocol';

/** One tool call of a step, as a fork can change it. */
export interface IForkCall {
  callId: string;
  name: string;
  /** The seq of its `tool_call` (null: not seen). */
  callSeq: number | null;
  /** The seq of its `observation` (null: it has no result). */
  resultSeq: number | null;
  arguments: unknown;
  output: string;
  /** The tool's JSON schema, when an approval request showed it. */
  schema?: unknown;
}

/** Where a step can be forked. */
export interface IForkPoint {
  step: number;
  /** The seq of the step's last event (no change: the copy ends there). */
  lastSeq: number;
  /** The step ended the run (an answer, an error, a cancel): it is asked again. */
  terminal: boolean;
  calls: IForkCall[];
}

export type ForkMode = 'none' | 'observation' | 'arguments' | 'input';

export interface IForkFormOptions {
  point: IForkPoint;
  /** The run's input, offered for a new one on the first step (null: not offered). */
  input: string | null;
  /** A prefix for element ids, unique in the page. */
  idPrefix: string;
  show: ShowText;
  /** Make the fork; rejects with an error carrying `code` and `message` when refused. */
  submit: (atSeq: number, edit: IForkEdit | null) => Promise<void>;
  /** The form is done with (cancelled, or the fork was made). */
  close: () => void;
}

const REFUSAL: Record<string, string> = {
  [ErrorCode.INVALID_FORK]: 'The server cannot fork here',
  [ErrorCode.INVALID_ARGUMENTS]: 'The server refused these arguments',
  [ErrorCode.FORK_NEEDS_KERNEL]:
    'This task ran in a notebook kernel, which has its tools: fork it from its output in that ' +
    'notebook (the widget), or with task.fork() there',
  [ErrorCode.FORBIDDEN]: 'You may watch this task, not fork it',
  [ErrorCode.UNKNOWN_TASK]: 'The server no longer has this task',
  [ErrorCode.UNKNOWN_AGENT]: "This task's agent is not on the server any more",
  [ErrorCode.TOO_MANY_RUNNING_TASKS]: 'Too many runs are in flight; try again once one has ended',
  [ErrorCode.TOO_MANY_CREATIONS]: 'Too many tasks were started just now; try again in a moment',
  no_answer: 'No answer from the kernel'
};

/** A fork's refusal as a sentence: what the code means, then the server's (or kernel's) words. */
export function refusalText(code: string, message: string, otherwise: string): string {
  const label = REFUSAL[code];
  return label ? `${label}${message ? `: ${message}` : '.'}` : message || otherwise;
}

/** The `code` of a refusal (an `ApiError`, or anything with a string `code`), else ''. */
export function refusalCode(reason: unknown): string {
  const code = (reason as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

let uid = 0;

/** The form; `node` goes under the step's "Fork from here" button. */
export class ForkForm {
  readonly node: HTMLFormElement;
  readonly step: number;
  private readonly options: IForkFormOptions;
  private readonly id: string;
  private readonly radios = new Map<ForkMode, HTMLInputElement>();
  private readonly panes = new Map<ForkMode, HTMLElement>();
  private readonly submitButton: HTMLButtonElement;
  private readonly cancelButton: HTMLButtonElement;
  private readonly sending: HTMLElement;
  private readonly errorNode: HTMLElement;
  private readonly observationCall: HTMLSelectElement | null;
  private readonly observationText: HTMLTextAreaElement | null;
  private readonly argumentsCall: HTMLSelectElement | null;
  private readonly argumentsHost: HTMLElement | null;
  private readonly inputText: HTMLTextAreaElement | null;
  private editor: ArgumentEditor | null = null;
  private busy = false;

  constructor(options: IForkFormOptions) {
    this.options = options;
    const { point } = options;
    this.step = point.step;
    this.id = `${options.idPrefix}-fork-${++uid}`;
    const withResult = point.calls.filter(call => call.resultSeq !== null);
    const withCall = point.calls.filter(call => call.callSeq !== null);

    this.node = el('form', 'ak-fork-form');
    this.node.noValidate = true;
    this.node.dataset.step = String(point.step);
    const heading = el('div', 'ak-fork-heading', `Fork from step ${point.step}`);
    heading.id = `${this.id}-heading`;
    this.node.setAttribute('aria-labelledby', heading.id);
    const about = el(
      'p',
      'ak-fork-about',
      'A new run copies this one up to here (no model or tool call is made again), ' +
        'then goes on live. It opens below.'
    );
    about.id = `${this.id}-about`;
    this.node.setAttribute('aria-describedby', about.id);

    const choices = el('fieldset', 'ak-fork-choices');
    choices.append(el('legend', 'ak-fork-legend', 'What changes'));
    this.addChoice(
      choices,
      'none',
      point.terminal
        ? 'No change: ask the model again from this step'
        : 'No change: copy up to the end of this step, then go on'
    );

    // Replace a tool's result: its observation's seq.
    if (withResult.length) {
      const pane = el('div', 'ak-fork-pane');
      this.observationCall = this.callSelect(pane, withResult, 'result', () => this.fillObservation());
      const label = el('label', 'ak-field-label', 'The result the model reads instead');
      this.observationText = el('textarea', 'ak-fork-text ak-fork-observation');
      this.observationText.id = `${this.id}-observation`;
      label.htmlFor = this.observationText.id;
      this.observationText.spellcheck = false;
      pane.append(label, this.observationText);
      this.addChoice(choices, 'observation', "Replace a tool's result", pane);
      this.fillObservation();
    } else {
      this.observationCall = null;
      this.observationText = null;
    }

    // Edit a tool call's arguments: its tool_call's seq; the call runs again.
    if (withCall.length) {
      const pane = el('div', 'ak-fork-pane');
      this.argumentsCall = this.callSelect(pane, withCall, 'call', () => this.fillArguments());
      this.argumentsHost = el('div', 'ak-fork-arguments');
      pane.append(this.argumentsHost);
      this.addChoice(choices, 'arguments', "Edit a tool call's arguments (it runs again with them)", pane);
      this.fillArguments();
    } else {
      this.argumentsCall = null;
      this.argumentsHost = null;
    }

    // A new input: seq 0, the first step only.
    if (options.input !== null && point.step === 1) {
      const pane = el('div', 'ak-fork-pane');
      const label = el('label', 'ak-field-label', 'The new input');
      this.inputText = el('textarea', 'ak-fork-text ak-fork-input');
      this.inputText.id = `${this.id}-input`;
      label.htmlFor = this.inputText.id;
      this.inputText.value = options.input;
      this.inputText.rows = Math.min(8, Math.max(2, options.input.split('\n').length));
      pane.append(label, this.inputText);
      this.addChoice(choices, 'input', 'A new input (the run starts again with it)', pane);
    } else {
      this.inputText = null;
    }

    this.errorNode = el('div', 'ak-fork-error');
    this.errorNode.setAttribute('role', 'alert');
    this.errorNode.hidden = true;

    const actions = el('div', 'ak-fork-actions');
    this.submitButton = el('button', 'ak-fork-submit', 'Fork');
    this.submitButton.type = 'submit';
    this.cancelButton = el('button', 'ak-fork-cancel', 'Cancel');
    this.cancelButton.type = 'button';
    this.cancelButton.addEventListener('click', () => this.options.close());
    this.sending = el('span', 'ak-fork-sending');
    this.sending.setAttribute('role', 'status');
    actions.append(this.submitButton, this.cancelButton, this.sending);

    this.node.append(heading, about, choices, this.errorNode, actions);
    this.node.addEventListener('submit', event => {
      event.preventDefault();
      void this.send();
    });
    this.node.addEventListener('keydown', event => {
      if (event.key === 'Escape' && !this.busy) {
        event.stopPropagation();
        this.options.close();
      }
    });
    this.select('none');
  }

  /** The choice selected now. */
  get mode(): ForkMode {
    for (const [mode, radio] of this.radios) {
      if (radio.checked) {
        return mode;
      }
    }
    return 'none';
  }

  focus(): void {
    this.radios.get(this.mode)?.focus();
  }

  /** Say why the fork was refused, in the form, which stays open. */
  showError(code: string, message: string): void {
    const text = refusalText(code, message, 'The fork failed.');
    this.errorNode.replaceChildren(...this.options.show(text));
    this.errorNode.dataset.code = code;
    this.errorNode.hidden = false;
    this.node.dataset.error = code;
  }

  private clearError(): void {
    this.errorNode.hidden = true;
    this.errorNode.replaceChildren();
    delete this.errorNode.dataset.code;
    delete this.node.dataset.error;
  }

  private addChoice(choices: HTMLElement, mode: ForkMode, text: string, pane?: HTMLElement): void {
    const row = el('div', 'ak-fork-choice');
    row.dataset.mode = mode;
    const label = el('label', 'ak-fork-option');
    const radio = el('input');
    radio.type = 'radio';
    radio.name = `${this.id}-mode`;
    radio.value = mode;
    radio.addEventListener('change', () => this.select(mode));
    label.append(radio, ` ${text}`);
    row.append(label);
    if (pane) {
      pane.id = `${this.id}-${mode}`;
      radio.setAttribute('aria-controls', pane.id);
      row.append(pane);
      this.panes.set(mode, pane);
    }
    choices.append(row);
    this.radios.set(mode, radio);
  }

  private select(mode: ForkMode): void {
    for (const [name, radio] of this.radios) {
      radio.checked = name === mode;
    }
    for (const [name, pane] of this.panes) {
      pane.hidden = name !== mode;
    }
    this.node.dataset.mode = mode;
    this.clearError();
  }

  /** A select of the step's calls, when there is more than one (else none). */
  private callSelect(
    pane: HTMLElement,
    calls: IForkCall[],
    what: string,
    onChange: () => void
  ): HTMLSelectElement | null {
    const select = el('select', 'ak-fork-call');
    select.id = `${this.id}-${what}-call`;
    calls.forEach((call, index) => {
      const args = formatArguments(call.arguments);
      const text = `${call.name}(${args.length > 60 ? `${args.slice(0, 59)}…` : args})`;
      select.append(new Option(text, String(index)));
    });
    select.dataset.what = what;
    if (calls.length > 1) {
      const label = el('label', 'ak-field-label', what === 'result' ? 'The call whose result changes' : 'The call');
      label.htmlFor = select.id;
      pane.append(label, select);
    }
    select.addEventListener('change', onChange);
    return select;
  }

  private chosen(select: HTMLSelectElement | null, filter: (call: IForkCall) => boolean): IForkCall | null {
    const calls = this.options.point.calls.filter(filter);
    return calls[Number(select?.value ?? 0)] ?? calls[0] ?? null;
  }

  private fillObservation(): void {
    const call = this.chosen(this.observationCall, c => c.resultSeq !== null);
    if (this.observationText && call) {
      this.observationText.value = call.output;
      this.observationText.rows = Math.min(10, Math.max(3, call.output.split('\n').length));
    }
  }

  private fillArguments(): void {
    const call = this.chosen(this.argumentsCall, c => c.callSeq !== null);
    if (!this.argumentsHost || !call) {
      return;
    }
    this.editor = new ArgumentEditor(call.arguments, call.schema, `${this.id}-args`);
    this.argumentsHost.replaceChildren(this.editor.node);
    if (this.editor.toggle) {
      this.argumentsHost.append(this.editor.toggle);
    }
  }

  /** What the choice asks for: the fork point and the edit, or what is wrong. */
  private read(): { atSeq: number; edit: IForkEdit | null } | { error: string; focus: HTMLElement } {
    const point = this.options.point;
    switch (this.mode) {
      case 'observation': {
        const call = this.chosen(this.observationCall, c => c.resultSeq !== null);
        if (!call || call.resultSeq === null || !this.observationText) {
          return { error: 'This step has no tool result to replace.', focus: this.submitButton };
        }
        return { atSeq: call.resultSeq, edit: { observation: this.observationText.value } };
      }
      case 'arguments': {
        const call = this.chosen(this.argumentsCall, c => c.callSeq !== null);
        if (!call || call.callSeq === null || !this.editor) {
          return { error: 'This step has no tool call to edit.', focus: this.submitButton };
        }
        const result = this.editor.read();
        if (!result.ok) {
          return { error: result.errors.join(' '), focus: result.focus };
        }
        // Unchanged arguments: the call runs again as it was.
        const args: JSONRecord | null = result.args ?? (isRecord(call.arguments) ? call.arguments : null);
        if (!args) {
          return { error: 'The arguments must be a JSON object ({…}).', focus: this.editor.firstControl };
        }
        return { atSeq: call.callSeq, edit: { arguments: args } };
      }
      case 'input': {
        const text = this.inputText?.value.trim() ?? '';
        if (!text || !this.inputText) {
          return { error: 'Type the new input first.', focus: this.inputText ?? this.submitButton };
        }
        return { atSeq: 0, edit: { input: text } };
      }
      default:
        return { atSeq: point.lastSeq, edit: null };
    }
  }

  private async send(): Promise<void> {
    if (this.busy) {
      return;
    }
    this.clearError();
    const choice = this.read();
    if ('error' in choice) {
      this.showError('', choice.error);
      choice.focus.focus();
      return;
    }
    this.busy = true;
    this.node.dataset.state = 'sending';
    this.submitButton.setAttribute('aria-disabled', 'true');
    this.sending.textContent = 'Forking…';
    try {
      await this.options.submit(choice.atSeq, choice.edit);
    } catch (reason) {
      const code = refusalCode(reason);
      const message = reason instanceof Error ? reason.message : asText(reason);
      this.showError(code, message);
      this.submitButton.focus();
    } finally {
      this.busy = false;
      delete this.node.dataset.state;
      this.submitButton.removeAttribute('aria-disabled');
      this.sending.textContent = '';
    }
  }
}

export interface IFollowUpFormOptions {
  /** A prefix for element ids, unique in the page. */
  idPrefix: string;
  show: ShowText;
  /**
   * Ask the question: a fork at the answer with `edit.follow_up`, whose view opens
   * below. Rejects with an error carrying `code` and `message` when refused.
   */
  submit: (question: string) => Promise<void>;
}

/**
 * "Ask a follow-up…" under a finished run's answer: the question goes on the same
 * conversation in a new, linked task (a fork at the `final_answer` with
 * `edit.follow_up`), which opens below; its view has the field again under its own
 * answer, so a run becomes a conversation. Enter sends (Shift+Enter: a new line);
 * a refusal stays here, in an alert line.
 */
export class FollowUpForm {
  readonly node: HTMLFormElement;
  private readonly options: IFollowUpFormOptions;
  private readonly text: HTMLTextAreaElement;
  private readonly sendButton: HTMLButtonElement;
  private readonly sending: HTMLElement;
  private readonly errorNode: HTMLElement;
  private busy = false;

  constructor(options: IFollowUpFormOptions) {
    this.options = options;
    const id = `${options.idPrefix}-follow-up-${++uid}`;
    this.node = el('form', 'ak-follow-up');
    this.node.noValidate = true;
    this.node.setAttribute('aria-label', 'Ask a follow-up question');
    const label = el('label', 'ak-follow-up-label', 'Follow-up');
    this.text = el('textarea', 'ak-follow-up-text');
    this.text.id = `${id}-text`;
    label.htmlFor = this.text.id;
    this.text.rows = 1;
    this.text.placeholder = 'Ask a follow-up…';
    this.text.title =
      'Enter sends, Shift+Enter starts a new line. The answer comes in a new, linked task below.';
    const hint = el(
      'span',
      'ak-follow-up-hint',
      'A new run goes on from this answer (copied, no model call made again) with your question.'
    );
    hint.id = `${id}-hint`;
    this.text.setAttribute('aria-describedby', hint.id);
    this.sendButton = el('button', 'ak-follow-up-send', 'Send');
    this.sendButton.type = 'submit';
    this.sending = el('span', 'ak-follow-up-sending');
    this.sending.setAttribute('role', 'status');
    this.errorNode = el('div', 'ak-follow-up-error');
    this.errorNode.id = `${id}-error`;
    this.errorNode.setAttribute('role', 'alert');
    this.errorNode.hidden = true;
    const row = el('div', 'ak-follow-up-row');
    row.append(label, this.text, this.sendButton, this.sending);
    this.node.append(row, hint, this.errorNode);

    this.text.addEventListener('keydown', event => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        void this.send();
      }
    });
    this.text.addEventListener('input', () => {
      if (!this.errorNode.hidden) {
        this.clearError();
      }
    });
    this.node.addEventListener('submit', event => {
      event.preventDefault();
      void this.send();
    });
  }

  focus(): void {
    this.text.focus();
  }

  /** Say why the question was not asked, under the field (which keeps it). */
  showError(code: string, message: string): void {
    this.errorNode.replaceChildren(...this.options.show(refusalText(code, message, 'The follow-up failed.')));
    if (code) {
      this.errorNode.dataset.code = code;
    } else {
      delete this.errorNode.dataset.code;
    }
    this.errorNode.hidden = false;
    this.node.dataset.error = code || 'invalid';
    this.text.setAttribute('aria-invalid', 'true');
    this.text.setAttribute('aria-errormessage', this.errorNode.id);
  }

  private clearError(): void {
    this.errorNode.hidden = true;
    this.errorNode.replaceChildren();
    delete this.errorNode.dataset.code;
    delete this.node.dataset.error;
    this.text.removeAttribute('aria-invalid');
    this.text.removeAttribute('aria-errormessage');
  }

  private async send(): Promise<void> {
    if (this.busy) {
      return;
    }
    this.clearError();
    const question = this.text.value.trim();
    if (!question) {
      this.showError('', 'Type a question first.');
      this.text.focus();
      return;
    }
    this.busy = true;
    this.node.dataset.state = 'sending';
    this.sendButton.setAttribute('aria-disabled', 'true');
    this.text.readOnly = true;
    this.sending.textContent = 'Asking…';
    try {
      await this.options.submit(question);
      this.text.value = '';
    } catch (reason) {
      this.showError(refusalCode(reason), reason instanceof Error ? reason.message : asText(reason));
      this.text.focus();
    } finally {
      this.busy = false;
      delete this.node.dataset.state;
      this.sendButton.removeAttribute('aria-disabled');
      this.text.readOnly = false;
      this.sending.textContent = '';
    }
  }
}
