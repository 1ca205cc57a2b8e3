/**
 * Human in the loop: the card of a tool call that waits for a person's decision.
 *
 * A pending card shows the call and lets a viewer who may write approve it (once,
 * or for the rest of the task), edit its arguments first, or reject it with a
 * reason. The editor is a form built from the tool's JSON schema when every
 * argument is simple (string, number, integer, boolean, enum), a JSON text
 * otherwise or on demand; both are checked here (required, types, JSON syntax)
 * before anything is sent, and the server's refusal (`invalid_arguments`, ...)
 * is shown on the card, which stays pending. A decided card says who decided
 * what, why, and the arguments the call ran with.
 *
 * Plain DOM, scoped by view.css (`.ak-task .ak-approval*`); text from the run
 * goes through the view's `show` (bidi controls made visible), never innerHTML.
 */

import { el } from './dom';
import { JSONRecord, isRecord } from './protocol';

/** Text from the run as DOM nodes (the view's: bidi controls shown). */
export type ShowText = (text: string) => Node[];

export type ApprovalScopeValue = 'once' | 'task';

/** What the card asks its view to do. */
export interface IApprovalHandlers {
  /** Send `approve`; `args` null when unedited. Rejects when it could not be sent. */
  approve(callId: string, args: JSONRecord | null, scope: ApprovalScopeValue): Promise<void>;
  /** Send `reject` with a reason ('' for none). */
  reject(callId: string, reason: string): Promise<void>;
}

export interface IApprovalCardOptions {
  /** The `approval_requested` data (unknown fields ignored, missing ones tolerated). */
  data: JSONRecord;
  /** When it was asked (epoch seconds): with `timeout`, when it times out. */
  timestamp: number;
  /** A prefix for element ids, unique in the page. */
  idPrefix: string;
  show: ShowText;
  handlers: IApprovalHandlers;
  /** No tool-call node above the card (a gap): it shows the arguments itself. */
  standalone: boolean;
}

/** How long a sent decision waits for its step before the card offers to try again. */
const SEND_TIMEOUT_MS = 15_000;
/** A string argument this long (or with a line break) is edited in a text area. */
const MULTILINE_CHARS = 60;

const POLICY_TEXT: Record<string, string> = {
  tool: 'this tool always asks',
  tool_rule: "the tool's rule asks for these arguments",
  agent: 'the agent asks before every tool call',
  agent_rule: "the agent's rule asks for this call"
};

const DECISION_LABEL: Record<string, string> = {
  approved: 'Approved',
  edited: 'Approved with edits',
  rejected: 'Rejected',
  timed_out: 'Timed out',
  cancelled: 'Cancelled'
};

const REFUSAL_TEXT: Record<string, string> = {
  invalid_arguments: 'The server refused these arguments',
  already_decided: 'Already decided',
  unknown_call: 'The server does not know this call',
  forbidden: 'You may watch this task, not decide its calls',
  task_finished: 'The run has ended'
};

let uid = 0;

function str(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** JSON with sorted keys: equal values give equal text. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) {
    return `[${value.map(canonical).join(',')}]`;
  }
  if (isRecord(value)) {
    const keys = Object.keys(value).sort();
    return `{${keys.map(key => `${JSON.stringify(key)}:${canonical(value[key])}`).join(',')}}`;
  }
  try {
    return JSON.stringify(value) ?? 'null';
  } catch {
    return String(value);
  }
}

function pretty(value: unknown): string {
  try {
    return JSON.stringify(value, null, 2) ?? String(value);
  } catch {
    return String(value);
  }
}

function oneLine(value: unknown): string {
  try {
    const compact = JSON.stringify(value);
    if (compact !== undefined && compact.length <= 100) {
      return compact;
    }
  } catch {
    return String(value);
  }
  return pretty(value);
}

// -- the schema ------------------------------------------------------------------------

type FieldKind = 'string' | 'number' | 'integer' | 'boolean' | 'enum';

interface IFieldSpec {
  name: string;
  kind: FieldKind;
  required: boolean;
  nullable: boolean;
  /** enum and boolean: the values offered. */
  options: unknown[];
  description: string;
  schema: JSONRecord;
}

/** A `$ref` into `$defs` / `definitions` of the root, followed (a few hops at most). */
function resolveRef(schema: JSONRecord, root: JSONRecord): JSONRecord {
  let current = schema;
  for (let hops = 0; typeof current.$ref === 'string' && hops < 8; hops++) {
    const match = /^#\/(\$defs|definitions)\/(.+)$/.exec(current.$ref);
    const defs = match ? root[match[1]] : undefined;
    const name = match ? match[2].replace(/~1/g, '/').replace(/~0/g, '~') : '';
    const target = isRecord(defs) ? defs[name] : undefined;
    if (!isRecord(target)) {
      return current;
    }
    const rest: JSONRecord = { ...current };
    delete rest.$ref;
    current = { ...target, ...rest };
  }
  return current;
}

/** A property as a simple field, or null when the form cannot edit it. */
function fieldSpec(name: string, raw: unknown, root: JSONRecord, required: boolean): IFieldSpec | null {
  if (!isRecord(raw)) {
    return null;
  }
  let prop = resolveRef(raw, root);
  let nullable = false;
  const variants = Array.isArray(prop.anyOf) ? prop.anyOf : Array.isArray(prop.oneOf) ? prop.oneOf : null;
  if (variants) {
    const resolved = variants.filter(isRecord).map(variant => resolveRef(variant, root));
    const others = resolved.filter(variant => variant.type !== 'null');
    if (resolved.length !== variants.length || others.length !== 1) {
      return null;
    }
    nullable = others.length < resolved.length;
    const outer: JSONRecord = { ...prop };
    delete outer.anyOf;
    delete outer.oneOf;
    prop = { ...others[0], ...outer };
  }
  let type = prop.type;
  if (Array.isArray(type)) {
    const types = type.filter(item => item !== 'null');
    if (types.length !== 1) {
      return null;
    }
    nullable = nullable || types.length < type.length;
    type = types[0];
  }
  const description = str(prop.description) || str(prop.title);
  const spec = (kind: FieldKind, options: unknown[] = []): IFieldSpec => ({
    name,
    kind,
    required,
    nullable,
    options,
    description,
    schema: prop
  });
  if (Array.isArray(prop.enum) && prop.enum.length) {
    const options = prop.enum.filter(value => value !== null);
    nullable = nullable || options.length < prop.enum.length;
    return options.every(value => typeof value !== 'object') ? spec('enum', options) : null;
  }
  if ('const' in prop && (prop.const === null || typeof prop.const !== 'object')) {
    return spec('enum', [prop.const]);
  }
  switch (type) {
    case 'string':
    case 'number':
    case 'integer':
      return spec(type);
    case 'boolean':
      return spec('boolean', [true, false]);
    default:
      return null;
  }
}

/** The argument schema's pieces, read defensively. */
interface IArgumentSchema {
  root: JSONRecord;
  properties: JSONRecord;
  required: string[];
  closed: boolean;
}

function readSchema(schema: unknown): IArgumentSchema | null {
  if (!isRecord(schema)) {
    return null;
  }
  return {
    root: schema,
    properties: isRecord(schema.properties) ? schema.properties : {},
    required: Array.isArray(schema.required) ? schema.required.filter(item => typeof item === 'string') : [],
    closed: schema.additionalProperties === false
  };
}

function typeMatches(value: unknown, type: unknown): boolean {
  switch (type) {
    case 'string':
      return typeof value === 'string';
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'integer':
      return typeof value === 'number' && Number.isInteger(value);
    case 'boolean':
      return typeof value === 'boolean';
    case 'null':
      return value === null;
    case 'array':
      return Array.isArray(value);
    case 'object':
      return isRecord(value);
    default:
      return true; // a type this editor does not know: the server checks it
  }
}

function typeName(type: unknown): string {
  return type === 'integer' ? 'a whole number' : type === 'object' ? 'an object' : type === 'array' ? 'a list' : `a ${String(type)}`;
}

/** What is wrong with one value of a property (top level only), or ''. */
function checkValue(value: unknown, raw: unknown, root: JSONRecord, depth = 0): string {
  if (!isRecord(raw) || depth > 4) {
    return '';
  }
  const prop = resolveRef(raw, root);
  const variants = Array.isArray(prop.anyOf) ? prop.anyOf : Array.isArray(prop.oneOf) ? prop.oneOf : null;
  if (variants && variants.length) {
    const problems = variants.map(variant => checkValue(value, variant, root, depth + 1));
    return problems.some(problem => !problem) ? '' : problems[0];
  }
  if (Array.isArray(prop.enum)) {
    const wanted = canonical(value);
    if (!prop.enum.some(option => canonical(option) === wanted)) {
      return `must be one of ${prop.enum.map(option => JSON.stringify(option)).join(', ')}`;
    }
    return '';
  }
  if ('const' in prop && canonical(prop.const) !== canonical(value)) {
    return `must be ${JSON.stringify(prop.const)}`;
  }
  const types = Array.isArray(prop.type) ? prop.type : prop.type === undefined ? [] : [prop.type];
  if (types.length && !types.some(type => typeMatches(value, type))) {
    return `must be ${types.filter(type => type !== 'null').map(typeName).join(' or ')}${types.includes('null') ? ' (or null)' : ''}`;
  }
  return checkBounds(value, prop);
}

function checkBounds(value: unknown, prop: JSONRecord): string {
  const num = (key: string): number | null => (typeof prop[key] === 'number' ? (prop[key] as number) : null);
  if (typeof value === 'number') {
    const min = num('minimum');
    const max = num('maximum');
    const above = num('exclusiveMinimum');
    const below = num('exclusiveMaximum');
    if (min !== null && value < min) {
      return `must be at least ${min}`;
    }
    if (max !== null && value > max) {
      return `must be at most ${max}`;
    }
    if (above !== null && value <= above) {
      return `must be more than ${above}`;
    }
    if (below !== null && value >= below) {
      return `must be less than ${below}`;
    }
  }
  if (typeof value === 'string') {
    const length = Array.from(value).length;
    const min = num('minLength');
    const max = num('maxLength');
    if (min !== null && length < min) {
      return `must have at least ${min} character${min === 1 ? '' : 's'}`;
    }
    if (max !== null && length > max) {
      return `must have at most ${max} characters`;
    }
  }
  return '';
}

/** What is wrong with a whole set of arguments, as sentences (empty: fine). */
export function checkArguments(args: unknown, schema: unknown): string[] {
  if (!isRecord(args)) {
    return ['The arguments must be a JSON object ({…}).'];
  }
  const shape = readSchema(schema);
  if (!shape) {
    return [];
  }
  const problems: string[] = [];
  for (const name of shape.required) {
    if (!(name in args)) {
      problems.push(`"${name}" is required.`);
    }
  }
  for (const [name, value] of Object.entries(args)) {
    if (!(name in shape.properties)) {
      if (shape.closed) {
        problems.push(`"${name}" is not an argument of this tool.`);
      }
      continue;
    }
    const problem = checkValue(value, shape.properties[name], shape.root);
    if (problem) {
      problems.push(`"${name}" ${problem}.`);
    }
  }
  return problems;
}

// -- the form --------------------------------------------------------------------------

type ReadResult = { ok: true; present: boolean; value?: unknown } | { ok: false; error: string };

/** One argument in the form: its label, control, help and error. */
class Field {
  readonly row: HTMLElement;
  readonly control: HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement;
  private readonly errorNode: HTMLElement;
  private initialText = '';
  private initialPresent = false;
  private initialValue: unknown = undefined;
  /** The values a select offers (by index). */
  private choices: unknown[] = [];

  constructor(
    readonly spec: IFieldSpec,
    id: string,
    present: boolean,
    value: unknown
  ) {
    this.row = el('div', 'ak-field');
    this.row.dataset.name = spec.name;
    this.row.dataset.kind = spec.kind;
    const label = el('label', 'ak-field-label');
    label.htmlFor = id;
    const name = el('code', 'ak-field-name', spec.name);
    label.append(name);
    if (spec.required) {
      const mark = el('span', 'ak-required', ' *');
      mark.setAttribute('aria-hidden', 'true');
      label.append(mark);
    }
    const kind = spec.kind === 'enum' ? 'choice' : spec.kind;
    label.append(el('span', 'ak-field-type', ` ${kind}${spec.required ? '' : ', optional'}`));
    if (spec.kind === 'enum' || spec.kind === 'boolean') {
      const select = el('select', 'ak-field-input');
      this.choices = [...spec.options];
      if (spec.nullable) {
        this.choices.push(null);
      }
      if (!spec.required || !present) {
        select.append(new Option(spec.required ? '(choose)' : '(not set)', ''));
      }
      this.choices.forEach((option, index) => {
        select.append(new Option(typeof option === 'string' ? option : JSON.stringify(option), String(index)));
      });
      this.control = select;
    } else {
      const text = spec.kind === 'string' && typeof value === 'string' ? value : '';
      const long = text.length > MULTILINE_CHARS || text.includes('\n');
      const input = long ? el('textarea', 'ak-field-input') : el('input', 'ak-field-input');
      if (input instanceof HTMLInputElement) {
        input.type = 'text';
        if (spec.kind !== 'string') {
          input.inputMode = spec.kind === 'integer' ? 'numeric' : 'decimal';
        }
      } else {
        input.rows = Math.min(8, Math.max(3, Math.ceil(text.length / 70) + text.split('\n').length - 1));
      }
      input.spellcheck = spec.kind === 'string';
      input.autocomplete = 'off';
      this.control = input;
    }
    this.control.id = id;
    this.control.name = spec.name;
    if (spec.required) {
      this.control.required = true;
      this.control.setAttribute('aria-required', 'true');
    }
    const described: string[] = [];
    this.row.append(label, this.control);
    if (spec.description) {
      const help = el('div', 'ak-field-help', spec.description);
      help.id = `${id}-help`;
      described.push(help.id);
      this.row.append(help);
    }
    this.errorNode = el('div', 'ak-field-error');
    this.errorNode.id = `${id}-error`;
    this.errorNode.hidden = true;
    described.push(this.errorNode.id);
    this.row.append(this.errorNode);
    this.control.setAttribute('aria-describedby', described.join(' '));
    this.control.addEventListener('input', () => this.setError(''));
    this.control.addEventListener('change', () => this.setError(''));
    this.fill(present, value);
  }

  /** Show `value` (or nothing, when not `present`), as the untouched state. */
  fill(present: boolean, value: unknown): void {
    this.initialPresent = present;
    this.initialValue = value;
    let text = '';
    if (this.control instanceof HTMLSelectElement) {
      const wanted = canonical(value);
      const index = present ? this.choices.findIndex(option => canonical(option) === wanted) : -1;
      if (present && index < 0) {
        // A value the schema does not offer: shown, so that it can be changed.
        this.choices.push(value);
        this.control.append(new Option(`${oneLine(value)} (not allowed)`, String(this.choices.length - 1)));
        text = String(this.choices.length - 1);
      } else {
        text = index < 0 ? '' : String(index);
      }
    } else if (present && value !== null) {
      text = typeof value === 'string' ? value : oneLine(value);
    }
    this.control.value = text;
    this.initialText = this.control.value;
    this.setError('');
  }

  read(): ReadResult {
    const text = this.control.value;
    if (text === this.initialText) {
      return { ok: true, present: this.initialPresent, value: this.initialValue };
    }
    const { spec } = this;
    if (this.control instanceof HTMLSelectElement) {
      if (text === '') {
        return spec.required ? { ok: false, error: 'Choose a value.' } : { ok: true, present: false };
      }
      return { ok: true, present: true, value: this.choices[Number(text)] };
    }
    const empty = spec.kind === 'string' ? text === '' : text.trim() === '';
    if (empty) {
      if (spec.required) {
        return { ok: false, error: 'Required.' };
      }
      return { ok: true, present: false };
    }
    let value: unknown = text;
    if (spec.kind === 'integer') {
      const trimmed = text.trim();
      if (!/^-?(0|[1-9]\d*)$/.test(trimmed) || !Number.isSafeInteger(Number(trimmed))) {
        return { ok: false, error: 'Must be a whole number, e.g. 42.' };
      }
      value = Number(trimmed);
    } else if (spec.kind === 'number') {
      const trimmed = text.trim();
      if (!/^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/.test(trimmed) || !Number.isFinite(Number(trimmed))) {
        return { ok: false, error: 'Must be a number, e.g. 3.5.' };
      }
      value = Number(trimmed);
    }
    const problem = checkBounds(value, spec.schema);
    return problem ? { ok: false, error: `Must ${problem.replace(/^must /, '')}.` } : { ok: true, present: true, value };
  }

  setError(text: string): void {
    this.errorNode.textContent = text;
    this.errorNode.hidden = !text;
    if (text) {
      this.control.setAttribute('aria-invalid', 'true');
    } else {
      this.control.removeAttribute('aria-invalid');
    }
  }
}

/**
 * The arguments' editor: the form (when the schema allows it) and the JSON text.
 * `read()` checks what is there and gives the arguments, or says what is wrong.
 * Also the fork form's editor of a tool call's arguments (fork.ts).
 */
export class ArgumentEditor {
  readonly node: HTMLElement;
  readonly toggle: HTMLButtonElement | null;
  private readonly fields: Field[] = [];
  private readonly form: HTMLElement | null;
  private readonly json: HTMLElement;
  private readonly textarea: HTMLTextAreaElement;
  private readonly jsonError: HTMLElement;
  private mode: 'form' | 'json';

  constructor(
    private readonly original: unknown,
    private readonly schema: unknown,
    id: string
  ) {
    this.node = el('div', 'ak-approval-editor');
    const shape = readSchema(schema);
    const args = isRecord(original) ? original : null;
    // The form: when every argument the tool takes (and every one given) is simple.
    let specs: IFieldSpec[] | null = null;
    if (shape && args) {
      specs = [];
      for (const [name, raw] of Object.entries(shape.properties)) {
        const spec = fieldSpec(name, raw, shape.root, shape.required.includes(name));
        if (!spec) {
          specs = null;
          break;
        }
        specs.push(spec);
      }
      if (specs && (!specs.length || Object.keys(args).some(name => !(name in shape.properties)))) {
        specs = null;
      }
    }
    if (specs && args) {
      const form = el('div', 'ak-approval-fields');
      specs.forEach((spec, index) => {
        const field = new Field(spec, `${id}-f${index}`, spec.name in args, args[spec.name]);
        this.fields.push(field);
        form.append(field.row);
      });
      if (specs.some(spec => spec.required)) {
        const legend = el('div', 'ak-field-legend', '* required');
        legend.setAttribute('aria-hidden', 'true');
        form.append(legend);
      }
      this.form = form;
    } else {
      this.form = null;
    }
    this.json = el('div', 'ak-approval-json');
    const jsonLabel = el('label', 'ak-field-label', 'Arguments (JSON)');
    this.textarea = el('textarea', 'ak-approval-json-input');
    this.textarea.id = `${id}-json`;
    jsonLabel.htmlFor = this.textarea.id;
    this.textarea.spellcheck = false;
    this.textarea.autocomplete = 'off';
    this.jsonError = el('div', 'ak-field-error');
    this.jsonError.id = `${id}-json-error`;
    this.jsonError.hidden = true;
    this.textarea.setAttribute('aria-describedby', this.jsonError.id);
    this.textarea.addEventListener('input', () => this.setJsonError(''));
    this.setJsonText(original);
    this.json.append(jsonLabel, this.textarea, this.jsonError);
    if (this.form) {
      this.node.append(this.form);
      this.toggle = el('button', 'ak-approval-mode', 'Edit as JSON');
      this.toggle.type = 'button';
      this.toggle.setAttribute('aria-pressed', 'false');
      this.toggle.setAttribute('aria-controls', `${this.textarea.id}`);
      this.toggle.addEventListener('click', () => this.switchMode());
      this.mode = 'form';
    } else {
      this.toggle = null;
      this.mode = 'json';
    }
    this.node.append(this.json);
    this.json.hidden = this.mode !== 'json';
    this.node.dataset.mode = this.mode;
  }

  get currentMode(): 'form' | 'json' {
    return this.mode;
  }

  /** The first control, to focus. */
  get firstControl(): HTMLElement {
    return this.mode === 'form' && this.fields.length ? this.fields[0].control : this.textarea;
  }

  /** The arguments, checked: `args` null when they are the ones the agent asked for. */
  read(): { ok: true; args: JSONRecord | null } | { ok: false; errors: string[]; focus: HTMLElement } {
    let args: JSONRecord;
    if (this.mode === 'form') {
      args = {};
      let first: HTMLElement | null = null;
      const errors: string[] = [];
      for (const field of this.fields) {
        const result = field.read();
        if (!result.ok) {
          field.setError(result.error);
          errors.push(`${field.spec.name}: ${result.error}`);
          first = first ?? field.control;
        } else if (result.present) {
          args[field.spec.name] = result.value;
        }
      }
      if (first) {
        return { ok: false, errors, focus: first };
      }
      const problems = checkArguments(args, this.schema);
      if (problems.length) {
        return { ok: false, errors: problems, focus: this.fields[0]?.control ?? this.textarea };
      }
    } else {
      let parsed: unknown;
      try {
        parsed = JSON.parse(this.textarea.value);
      } catch (error) {
        const text = `Not valid JSON: ${error instanceof Error ? error.message : String(error)}`;
        this.setJsonError(text);
        return { ok: false, errors: [text], focus: this.textarea };
      }
      const problems = checkArguments(parsed, this.schema);
      if (problems.length) {
        this.setJsonError(problems.join(' '));
        return { ok: false, errors: problems, focus: this.textarea };
      }
      args = parsed as JSONRecord;
    }
    return { ok: true, args: canonical(args) === canonical(this.original) ? null : args };
  }

  /** Form to JSON (what the form holds, where it reads) and back (if the JSON fits). */
  private switchMode(): void {
    if (!this.form || !this.toggle) {
      return;
    }
    if (this.mode === 'form') {
      const args: JSONRecord = {};
      for (const field of this.fields) {
        const result = field.read();
        const original = isRecord(this.original) ? this.original : {};
        if (result.ok && result.present) {
          args[field.spec.name] = result.value;
        } else if (!result.ok && field.spec.name in original) {
          args[field.spec.name] = original[field.spec.name];
        }
      }
      this.setJsonText(args);
      this.mode = 'json';
    } else {
      let parsed: unknown;
      try {
        parsed = JSON.parse(this.textarea.value);
      } catch (error) {
        this.setJsonError(`Not valid JSON, so the form cannot show it: ${error instanceof Error ? error.message : String(error)}`);
        this.textarea.focus();
        return;
      }
      const names = new Set(this.fields.map(field => field.spec.name));
      if (!isRecord(parsed) || Object.keys(parsed).some(name => !names.has(name))) {
        this.setJsonError('The form cannot show these arguments (not an object, or names the tool does not take).');
        this.textarea.focus();
        return;
      }
      const values = parsed;
      for (const field of this.fields) {
        field.fill(field.spec.name in values, values[field.spec.name]);
      }
      this.mode = 'form';
    }
    this.form.hidden = this.mode !== 'form';
    this.json.hidden = this.mode !== 'json';
    this.node.dataset.mode = this.mode;
    this.toggle.setAttribute('aria-pressed', String(this.mode === 'json'));
    this.firstControl.focus();
  }

  private setJsonText(value: unknown): void {
    this.textarea.value = pretty(value);
    this.textarea.rows = Math.min(14, Math.max(3, this.textarea.value.split('\n').length));
    this.setJsonError('');
  }

  private setJsonError(text: string): void {
    this.jsonError.textContent = text;
    this.jsonError.hidden = !text;
    if (text) {
      this.textarea.setAttribute('aria-invalid', 'true');
    } else {
      this.textarea.removeAttribute('aria-invalid');
    }
  }
}

// -- the card --------------------------------------------------------------------------

export class ApprovalCard {
  readonly node: HTMLElement;
  readonly callId: string;
  readonly tool: string;
  private readonly show: ShowText;
  private readonly handlers: IApprovalHandlers;
  private readonly id: string;
  private readonly label: HTMLElement;
  private readonly about: HTMLElement;
  private readonly arguments: unknown;
  private readonly schema: unknown;
  private readonly standalone: boolean;
  private pendingNode: HTMLElement | null;
  private readOnlyNode: HTMLElement | null = null;
  private formNode: HTMLElement | null = null;
  private editor: ArgumentEditor | null = null;
  private reasonInput: HTMLTextAreaElement | null = null;
  private buttons: HTMLButtonElement[] = [];
  private errorNode: HTMLElement | null = null;
  private sendingNode: HTMLElement | null = null;
  private busy = false;
  private sendTimer = 0;
  private state: 'pending' | 'decided' | 'ended' = 'pending';
  private writable: boolean | null = null;

  constructor(options: IApprovalCardOptions) {
    const { data } = options;
    this.show = options.show;
    this.handlers = options.handlers;
    this.standalone = options.standalone;
    this.callId = str(data.call_id);
    this.tool = str(data.tool) || str(data.name) || 'a tool';
    this.arguments = data.arguments;
    this.schema = data.schema;
    this.id = `${options.idPrefix}-approval-${++uid}`;

    this.node = el('div', 'ak-approval');
    this.node.dataset.callId = this.callId;
    this.node.dataset.state = 'pending';
    this.node.dataset.tool = this.tool;
    this.node.setAttribute('role', 'group');
    this.node.tabIndex = -1;
    const head = el('div', 'ak-approval-head');
    head.id = `${this.id}-head`;
    this.label = el('span', 'ak-approval-label', 'Needs your approval');
    const tool = el('code', 'ak-approval-tool');
    tool.append(...this.show(this.tool));
    head.append(this.label, tool);
    this.node.setAttribute('aria-labelledby', head.id);

    this.about = el('div', 'ak-approval-about');
    this.about.id = `${this.id}-about`;
    const policy = POLICY_TEXT[str(data.policy)];
    const why = policy ? ` (${policy})` : '';
    this.about.append(
      'The agent asks to run ',
      el('code', undefined, this.tool),
      `${why}. It runs only once someone approves it; a rejection's reason goes back to the agent.`
    );
    const timeout = typeof data.timeout === 'number' && data.timeout > 0 ? data.timeout : null;
    if (timeout !== null && Number.isFinite(options.timestamp)) {
      const at = new Date((options.timestamp + timeout) * 1000);
      const time = el('span', 'ak-approval-deadline');
      time.textContent = ` Not run if nobody decides by ${at.toLocaleTimeString()}.`;
      this.about.append(time);
    }
    this.node.setAttribute('aria-describedby', this.about.id);
    this.pendingNode = el('div', 'ak-approval-pending');
    this.node.append(head, this.about, this.pendingNode);
    this.renderPending();
  }

  get isPending(): boolean {
    return this.state === 'pending';
  }

  /** Whether this viewer may decide (null: not known yet). */
  setWritable(writable: boolean | null): void {
    if (writable === this.writable) {
      return;
    }
    this.writable = writable;
    this.renderPending();
  }

  /** Focus the card (its group, whose name says what it is about). */
  focus(): void {
    this.node.focus();
  }

  /** The first thing to edit (a field or the JSON text), else the card. */
  focusEditor(): void {
    (this.editor?.firstControl ?? this.node).focus();
  }

  /** The server refused this view's decision: the card stays pending. */
  showError(code: string, message: string): void {
    this.setBusy(false);
    if (!this.errorNode || this.state !== 'pending') {
      return;
    }
    const lead = REFUSAL_TEXT[code] ?? 'Refused';
    this.errorNode.replaceChildren(el('strong', undefined, `${lead}: `), ...this.show(message));
    this.errorNode.hidden = false;
    this.node.dataset.error = code;
  }

  /**
   * `approval_decided`: who decided what. Returns whether the focus was inside the
   * pending part (now gone), for the view to move it somewhere sensible.
   */
  decide(data: JSONRecord): boolean {
    const hadFocus = this.dropPending();
    this.state = 'decided';
    const decision = str(data.decision) || 'decided';
    const scope = str(data.scope);
    this.node.dataset.state = 'decided';
    this.node.dataset.decision = decision;
    let label = DECISION_LABEL[decision] ?? decision;
    if (scope === 'task' && (decision === 'approved' || decision === 'edited')) {
      label += ' for this task';
      this.node.dataset.scope = 'task';
    }
    this.label.textContent = label;
    const summary = el('div', 'ak-approval-decision');
    summary.id = `${this.id}-decision`;
    summary.tabIndex = -1;
    const by = str(data.by);
    const line = el('div', 'ak-approval-by');
    line.append(el('strong', 'ak-approval-verdict', label));
    if (by) {
      line.append(' by ', el('span', 'ak-approval-who'));
      (line.lastChild as HTMLElement).append(...this.show(by));
    }
    if (decision === 'timed_out' || decision === 'rejected' || decision === 'cancelled') {
      line.append(': not run');
    } else if (scope === 'task') {
      line.append(`: later calls of ${this.tool} in this task run without asking`);
    }
    line.append('.');
    summary.append(line);
    const reason = str(data.reason);
    if (reason) {
      const why = el('div', 'ak-approval-reason-text');
      why.append(el('span', 'ak-approval-reason-label', 'Reason: '), ...this.show(reason));
      summary.append(why);
    }
    if (decision === 'edited' && data.arguments !== undefined) {
      summary.append(el('div', 'ak-approval-args-label', 'Runs with the edited arguments:'));
      const edited = el('pre', 'ak-args ak-approval-args');
      edited.append(...this.show(oneLine(data.arguments)));
      edited.setAttribute('aria-label', `Edited arguments of ${this.tool}`);
      summary.append(edited);
      if (this.arguments !== undefined) {
        const asked = el('details', 'ak-approval-asked');
        asked.append(el('summary', undefined, 'As the agent asked'));
        const pre = el('pre', 'ak-args');
        pre.append(...this.show(oneLine(this.arguments)));
        asked.append(pre);
        summary.append(asked);
      }
    } else if (this.standalone && data.arguments !== undefined) {
      const args = el('pre', 'ak-args ak-approval-args');
      args.append(...this.show(oneLine(data.arguments)));
      summary.append(args);
    }
    this.node.append(summary);
    this.node.setAttribute('aria-describedby', summary.id);
    return hadFocus;
  }

  /** The run ended with the call undecided. Returns whether the focus was inside. */
  end(text: string): boolean {
    if (this.state !== 'pending') {
      return false;
    }
    const hadFocus = this.dropPending();
    this.state = 'ended';
    this.node.dataset.state = 'ended';
    this.label.textContent = 'Not decided';
    const summary = el('div', 'ak-approval-decision', text);
    summary.id = `${this.id}-decision`;
    summary.tabIndex = -1;
    this.node.append(summary);
    this.node.setAttribute('aria-describedby', summary.id);
    return hadFocus;
  }

  /** The decision's summary (to move the focus to), or the card. */
  focusDecision(): void {
    (this.node.querySelector<HTMLElement>('.ak-approval-decision') ?? this.node).focus();
  }

  dispose(): void {
    window.clearTimeout(this.sendTimer);
  }

  // -- the pending part --------------------------------------------------------------

  private dropPending(): boolean {
    window.clearTimeout(this.sendTimer);
    this.busy = false;
    const root = this.node.getRootNode();
    const active = root instanceof Document || root instanceof ShadowRoot ? root.activeElement : null;
    const hadFocus = !!(this.pendingNode && active && (this.pendingNode.contains(active) || active === this.node));
    this.pendingNode?.remove();
    this.pendingNode = null;
    this.formNode = null;
    this.editor = null;
    this.buttons = [];
    this.about.hidden = true;
    return hadFocus;
  }

  private renderPending(): void {
    const pending = this.pendingNode;
    if (!pending) {
      return;
    }
    if (this.writable === true) {
      if (!this.formNode) {
        this.formNode = this.buildForm();
        pending.append(this.formNode);
      }
      this.formNode.hidden = false;
      if (this.readOnlyNode) {
        this.readOnlyNode.hidden = true;
      }
      this.node.dataset.writable = 'true';
      return;
    }
    if (this.formNode) {
      this.formNode.hidden = true;
    }
    if (!this.readOnlyNode) {
      this.readOnlyNode = el('div', 'ak-approval-readonly');
      if (this.standalone) {
        const args = el('pre', 'ak-args');
        args.append(...this.show(oneLine(this.arguments)));
        args.setAttribute('aria-label', `Arguments of ${this.tool}`);
        this.readOnlyNode.append(args);
      }
      this.readOnlyNode.append(el('p', 'ak-approval-note'));
      pending.append(this.readOnlyNode);
    }
    this.readOnlyNode.hidden = false;
    const note = this.readOnlyNode.querySelector('.ak-approval-note');
    if (note) {
      note.textContent =
        this.writable === false
          ? 'Waiting for a decision by someone who may change this run (you may watch it).'
          : 'Waiting for a decision.';
    }
    this.node.dataset.writable = String(this.writable);
  }

  private buildForm(): HTMLElement {
    const form = el('form', 'ak-approval-form');
    form.noValidate = true;
    form.setAttribute('aria-label', `Decide the call of ${this.tool}`);
    form.addEventListener('submit', event => event.preventDefault());
    this.editor = new ArgumentEditor(this.arguments, this.schema, this.id);
    form.append(this.editor.node);

    const reasonRow = el('div', 'ak-approval-reason');
    const reasonLabel = el('label', 'ak-field-label', 'Reason for a rejection');
    reasonLabel.append(el('span', 'ak-field-type', ' optional, sent to the agent'));
    const reason = el('textarea', 'ak-approval-reason-input');
    reason.id = `${this.id}-reason`;
    reason.rows = 1;
    reason.placeholder = 'e.g. not on production data';
    reasonLabel.htmlFor = reason.id;
    reasonRow.append(reasonLabel, reason);
    this.reasonInput = reason;
    form.append(reasonRow);

    const actions = el('div', 'ak-approval-actions');
    const approve = this.button('ak-approve', 'Approve', `Approve this call of ${this.tool}`, () =>
      this.onApprove('once')
    );
    const approveTask = this.button(
      'ak-approve-task',
      'Approve for this task',
      `Approve for this task: this call and every later call of ${this.tool}`,
      () => this.onApprove('task')
    );
    const reject = this.button('ak-reject', 'Reject', `Reject this call of ${this.tool}`, () => this.onReject());
    actions.append(approve, approveTask, reject);
    if (this.editor.toggle) {
      actions.append(this.editor.toggle);
      this.buttons.push(this.editor.toggle);
    }
    this.sendingNode = el('span', 'ak-approval-sending');
    this.sendingNode.setAttribute('role', 'status');
    actions.append(this.sendingNode);
    form.append(actions);

    this.errorNode = el('div', 'ak-approval-error');
    this.errorNode.setAttribute('role', 'alert');
    this.errorNode.hidden = true;
    form.append(this.errorNode);
    return form;
  }

  private button(className: string, text: string, label: string, onClick: () => void): HTMLButtonElement {
    const button = el('button', className, text);
    button.type = 'button';
    button.setAttribute('aria-label', label);
    button.addEventListener('click', () => {
      // Not `disabled` while busy: a focused button that is disabled drops the focus.
      if (!this.busy) {
        onClick();
      }
    });
    this.buttons.push(button);
    return button;
  }

  private clearError(): void {
    if (this.errorNode) {
      this.errorNode.hidden = true;
      this.errorNode.replaceChildren();
    }
    delete this.node.dataset.error;
  }

  private onApprove(scope: ApprovalScopeValue): void {
    if (!this.editor) {
      return;
    }
    this.clearError();
    const result = this.editor.read();
    if (!result.ok) {
      if (this.errorNode) {
        this.errorNode.replaceChildren(
          el('strong', undefined, 'Not sent: '),
          result.errors.length === 1 ? result.errors[0] : `${result.errors.length} problems with the arguments (marked above).`
        );
        this.errorNode.hidden = false;
      }
      this.node.dataset.error = 'invalid';
      result.focus.focus();
      return;
    }
    this.send(scope === 'task' ? 'Approving for this task…' : 'Approving…', () =>
      this.handlers.approve(this.callId, result.args, scope)
    );
  }

  private onReject(): void {
    this.clearError();
    const reason = this.reasonInput?.value.trim() ?? '';
    this.send('Rejecting…', () => this.handlers.reject(this.callId, reason));
  }

  private send(text: string, action: () => Promise<void>): void {
    this.setBusy(true, text);
    action().then(
      () => {
        // Sent: the decision's step follows on the stream. If it never comes (a
        // front end whose kernel does not relay decisions), offer to try again.
        window.clearTimeout(this.sendTimer);
        this.sendTimer = window.setTimeout(() => {
          if (this.state === 'pending' && this.busy) {
            this.setBusy(false);
            if (this.errorNode) {
              this.errorNode.replaceChildren('No confirmation came from the server yet. You can try again.');
              this.errorNode.hidden = false;
            }
          }
        }, SEND_TIMEOUT_MS);
      },
      (reason: unknown) => {
        const code = isRecord(reason) && typeof reason.code === 'string' ? reason.code : '';
        const message = reason instanceof Error ? reason.message : String(reason);
        this.showError(code, message || 'The decision could not be sent.');
      }
    );
  }

  private setBusy(busy: boolean, text = ''): void {
    this.busy = busy;
    if (!busy) {
      window.clearTimeout(this.sendTimer);
    }
    for (const button of this.buttons) {
      button.setAttribute('aria-disabled', String(busy));
    }
    if (this.sendingNode) {
      this.sendingNode.textContent = busy ? text : '';
    }
    this.node.classList.toggle('ak-approval--busy', busy);
  }
}
