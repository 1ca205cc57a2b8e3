/**
 * Runs as data: two runs side by side (a `Comparison`: `GET agentkit/api/compare`,
 * the compare widget's `comparison` trait, the compare mimetype's data).
 *
 * The header has both runs (agent, status, steps, tokens, cost, duration) and
 * the deltas, b minus a. The rows are the runs' steps aligned by the server
 * (thoughts, tool calls with their results, the answer or the end): a row where
 * the runs differ is marked and its differing fields show the server's diff
 * segments, deleted text marked on side a, inserted text on side b; a side that
 * has nothing at that place is an empty cell. Copied steps of a fork say so.
 *
 * Plain DOM, no JupyterLab package (the anywidget bundle has it too), scoped by
 * view.css (`.ak-compare`). Every text from the runs goes through `textNodes`.
 */

import { el } from './dom';
import { formatArguments, formatCost, formatDelta, formatDuration, plural, shortId } from './format';
import {
  ICompareCell,
  ICompareRow,
  ICompareSide,
  IComparison,
  IDiffSegment,
  JSONRecord,
  isRecord
} from './protocol';
import { textNodes } from './text';

export interface ICompareViewOptions {
  /** `inline` (an output, bounded height) or `fill` (a main-area panel). */
  layout?: 'inline' | 'fill';
  /** Open one of the two tasks where the host shows tasks (the ids become buttons). */
  openTask?: (taskId: string) => void;
}

type Side = 'a' | 'b';

const KIND_LABEL: Record<string, string> = {
  thought: 'Thought',
  tool: 'Tool',
  answer: 'Answer',
  end: 'End'
};

/** What `deltas` holds, in the order shown, and how each reads. */
const DELTAS: ReadonlyArray<[string, string, (size: number) => string]> = [
  ['steps', 'steps', size => size.toLocaleString()],
  ['tokens_in', 'tokens in', size => Math.round(size).toLocaleString()],
  ['tokens_out', 'tokens out', size => Math.round(size).toLocaleString()],
  ['cost', 'cost', size => formatCost(size)],
  ['duration_s', 'time', size => formatDuration(size)]
];

let uid = 0;

function str(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function num(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/** A side of the comparison, read defensively (a widget trait may hold anything). */
function readSide(raw: unknown): ICompareSide {
  const side: JSONRecord = isRecord(raw) ? raw : {};
  return {
    task_id: str(side.task_id),
    agent: str(side.agent),
    status: str(side.status),
    input: str(side.input),
    output: typeof side.output === 'string' ? side.output : null,
    steps: num(side.steps) ?? 0,
    tokens_in: num(side.tokens_in) ?? 0,
    tokens_out: num(side.tokens_out) ?? 0,
    cost: num(side.cost),
    duration_s: num(side.duration_s),
    parent_id: typeof side.parent_id === 'string' ? side.parent_id : null
  };
}

function readCell(raw: unknown): ICompareCell | null {
  if (!isRecord(raw)) {
    return null;
  }
  return { ...(raw as unknown as ICompareCell), kind: str(raw.kind) || 'thought', seq: num(raw.seq) ?? 0 };
}

function readSegments(raw: unknown): IDiffSegment[] | null {
  if (!Array.isArray(raw)) {
    return null;
  }
  return raw
    .filter(isRecord)
    .map(segment => ({
      op: segment.op === 'delete' || segment.op === 'insert' ? segment.op : 'equal',
      text: str(segment.text)
    }));
}

function readRow(raw: unknown): ICompareRow | null {
  if (!isRecord(raw)) {
    return null;
  }
  const diffs: { [key: string]: IDiffSegment[] } = {};
  if (isRecord(raw.diffs)) {
    for (const [field, segments] of Object.entries(raw.diffs)) {
      const read = readSegments(segments);
      if (read) {
        diffs[field] = read;
      }
    }
  }
  return {
    step: num(raw.step) ?? 0,
    key: str(raw.key),
    a: readCell(raw.a),
    b: readCell(raw.b),
    same: raw.same === true,
    diffs
  };
}

/** A `Comparison` from anything (null when it is not one). */
export function readComparison(raw: unknown): IComparison | null {
  if (!isRecord(raw) || !isRecord(raw.a) || !isRecord(raw.b)) {
    return null;
  }
  const deltas: { [key: string]: number | null } = {};
  if (isRecord(raw.deltas)) {
    for (const [key, value] of Object.entries(raw.deltas)) {
      deltas[key] = num(value);
    }
  }
  const rows = Array.isArray(raw.rows) ? raw.rows.map(readRow).filter((row): row is ICompareRow => row !== null) : [];
  return { a: readSide(raw.a), b: readSide(raw.b), rows, deltas };
}

/**
 * A diff's segments as one side shows them: side a the equal and deleted text
 * (deletions marked), side b the equal and inserted text (insertions marked).
 */
export function diffNodes(segments: IDiffSegment[], side: Side): Node[] {
  const nodes: Node[] = [];
  for (const segment of segments) {
    if (segment.op === 'equal') {
      nodes.push(...textNodes(segment.text));
    } else if (segment.op === 'delete' && side === 'a') {
      const mark = el('del', 'ak-diff-del');
      mark.append(...textNodes(segment.text));
      nodes.push(mark);
    } else if (segment.op === 'insert' && side === 'b') {
      const mark = el('ins', 'ak-diff-ins');
      mark.append(...textNodes(segment.text));
      nodes.push(mark);
    }
  }
  return nodes;
}

/** The comparison of two runs, as DOM; `update()` shows a newer one in place. */
export class CompareView {
  readonly node: HTMLElement;
  private readonly options: ICompareViewOptions;
  private readonly id: string;
  private readonly body: HTMLElement;
  private onlyDifferences = false;

  constructor(comparison: unknown, options: ICompareViewOptions = {}) {
    this.options = options;
    this.id = `agentkit-compare-${++uid}`;
    this.node = el('section', `ak-compare ak-compare--${options.layout ?? 'inline'}`);
    this.node.setAttribute('aria-labelledby', `${this.id}-title`);
    this.body = el('div', 'ak-cmp-body');
    this.node.append(this.body);
    this.update(comparison);
  }

  /** Show `comparison` (a newer one of the same runs, or others). */
  update(comparison: unknown): void {
    const data = readComparison(comparison);
    if (!data) {
      const title = el('div', 'ak-cmp-title', 'Compare runs');
      title.id = `${this.id}-title`;
      const error = el('p', 'ak-cmp-error', 'This is not a comparison of two runs.');
      error.setAttribute('role', 'alert');
      this.body.replaceChildren(title, error);
      return;
    }
    this.node.dataset.a = data.a.task_id;
    this.node.dataset.b = data.b.task_id;
    const differing = data.rows.filter(row => !row.same).length;
    this.node.dataset.differing = String(differing);
    this.body.replaceChildren(this.header(data, differing), this.rows(data));
  }

  private header(data: IComparison, differing: number): HTMLElement {
    const header = el('header', 'ak-cmp-header');
    const top = el('div', 'ak-cmp-top');
    const title = el('div', 'ak-cmp-title', 'Compare runs');
    title.id = `${this.id}-title`;
    const summary = el(
      'span',
      'ak-cmp-summary',
      data.rows.length
        ? differing
          ? `${plural(differing, 'row')} of ${data.rows.length.toLocaleString()} differ`
          : `All ${plural(data.rows.length, 'row')} are the same`
        : 'No steps to compare'
    );
    const only = el('label', 'ak-cmp-only');
    const box = el('input');
    box.type = 'checkbox';
    box.checked = this.onlyDifferences;
    box.addEventListener('change', () => {
      this.onlyDifferences = box.checked;
      this.node.dataset.onlyDifferences = String(box.checked);
    });
    only.append(box, ' Only differences');
    top.append(title, summary, only);
    this.node.dataset.onlyDifferences = String(this.onlyDifferences);

    const sides = el('div', 'ak-cmp-sides');
    sides.append(this.side('a', data.a), this.side('b', data.b));
    const deltas = el('div', 'ak-cmp-deltas');
    deltas.append(el('span', 'ak-cmp-deltas-label', 'B − A:'));
    for (const [key, label, show] of DELTAS) {
      const value = key in data.deltas ? data.deltas[key] : null;
      const delta = el('span', 'ak-cmp-delta', `${label} ${formatDelta(value, show)}`);
      delta.dataset.key = key;
      delta.dataset.sign = value === null ? 'unknown' : value > 0 ? 'more' : value < 0 ? 'less' : 'same';
      if (value === null) {
        delta.title = key === 'cost' ? 'Unknown: a model without a known price' : 'Unknown for one of the runs';
      }
      deltas.append(delta);
    }
    header.append(top, sides, deltas);
    return header;
  }

  private side(which: Side, side: ICompareSide): HTMLElement {
    const node = el('div', 'ak-cmp-side');
    node.dataset.side = which;
    node.dataset.taskId = side.task_id;
    const head = el('div', 'ak-cmp-side-head');
    head.append(el('span', 'ak-cmp-letter', which.toUpperCase()));
    const agent = el('span', 'ak-cmp-agent');
    agent.append(...textNodes(side.agent || 'Agent'));
    head.append(agent);
    const status = el('span', 'ak-status', side.status || 'unknown');
    status.dataset.status = side.status;
    head.append(status);
    const openTask = this.options.openTask;
    if (openTask && side.task_id) {
      const open = el('button', 'ak-cmp-id', shortId(side.task_id));
      open.type = 'button';
      open.title = `Open task ${side.task_id}`;
      open.setAttribute('aria-label', `Open task ${side.task_id} (run ${which.toUpperCase()})`);
      open.addEventListener('click', () => openTask(side.task_id));
      head.append(open);
    } else {
      const id = el('code', 'ak-cmp-id', shortId(side.task_id));
      id.title = side.task_id;
      head.append(id);
    }
    if (side.parent_id) {
      const fork = el('span', 'ak-cmp-fork', `fork of ${shortId(side.parent_id)}`);
      fork.title = `Forked from task ${side.parent_id}`;
      head.append(fork);
    }
    const input = el('div', 'ak-cmp-input');
    input.append(...textNodes(side.input));
    input.title = side.input;
    const totals = el('dl', 'ak-cmp-totals');
    const total = (key: string, label: string, text: string, title = ''): void => {
      const dt = el('dt', undefined, label);
      const dd = el('dd', undefined, text);
      dd.dataset.key = key;
      if (title) {
        dd.title = title;
      }
      totals.append(dt, dd);
    };
    total('steps', 'Steps', side.steps.toLocaleString());
    total(
      'tokens',
      'Tokens',
      `${side.tokens_in.toLocaleString()} in · ${side.tokens_out.toLocaleString()} out`,
      "This run's own model calls (a fork's copied steps were its parent's)"
    );
    total('cost', 'Cost', formatCost(side.cost), side.cost === null ? 'Unknown: no price is known for this model' : '');
    total('duration', 'Time', side.duration_s === null ? '—' : formatDuration(side.duration_s));
    node.append(head, input, totals);
    return node;
  }

  private rows(data: IComparison): HTMLElement {
    const table = el('div', 'ak-cmp-rows');
    table.setAttribute('role', 'table');
    table.setAttribute('aria-label', 'The steps of both runs, aligned');
    const head = el('div', 'ak-cmp-row ak-cmp-row--head');
    head.setAttribute('role', 'row');
    for (const text of ['Step', `A · ${shortId(data.a.task_id)}`, `B · ${shortId(data.b.task_id)}`]) {
      const cell = el('div', 'ak-cmp-colhead', text);
      cell.setAttribute('role', 'columnheader');
      head.append(cell);
    }
    table.append(head);
    for (const row of data.rows) {
      const node = el('div', 'ak-cmp-row');
      node.setAttribute('role', 'row');
      node.dataset.step = String(row.step);
      node.dataset.key = row.key;
      node.dataset.same = String(row.same);
      const step = el('div', 'ak-cmp-step', row.step > 0 ? `Step ${row.step}` : '');
      step.setAttribute('role', 'rowheader');
      if (!row.same) {
        step.append(el('span', 'ak-cmp-differs', row.a && row.b ? 'differs' : 'one run'));
      }
      node.append(step, this.cell('a', row.a, row), this.cell('b', row.b, row));
      table.append(node);
    }
    return table;
  }

  private cell(side: Side, cell: ICompareCell | null, row: ICompareRow): HTMLElement {
    const node = el('div', 'ak-cmp-cell');
    node.setAttribute('role', 'cell');
    node.dataset.side = side;
    if (!cell) {
      node.dataset.missing = 'true';
      node.append(el('span', 'ak-cmp-missing', side === 'a' ? 'Not in run A' : 'Not in run B'));
      return node;
    }
    node.dataset.kind = cell.kind;
    if (cell.copied) {
      node.dataset.copied = 'true';
    }
    const head = el('div', 'ak-cmp-cell-head');
    const kind = cell.kind === 'end' && cell.is_error ? 'Error' : (KIND_LABEL[cell.kind] ?? cell.kind);
    head.append(el('span', 'ak-cmp-kind', kind));
    if (cell.kind === 'tool') {
      const name = el('code', 'ak-cmp-tool');
      name.append(...textNodes(str(cell.tool)));
      head.append(name);
    }
    if (cell.copied) {
      const copied = el('span', 'ak-cmp-copied', 'copied');
      copied.title = 'Copied from the parent run: no model or tool call made it in this run';
      head.append(copied);
    }
    node.append(head);
    const field = (name: string, className: string, plain: string): HTMLElement => {
      const box = el(className === 'ak-cmp-text' ? 'div' : 'pre', className);
      const segments = row.diffs[name];
      if (segments && row.a && row.b) {
        box.dataset.diff = 'true';
        box.append(...diffNodes(segments, side));
      } else {
        box.append(...textNodes(plain));
      }
      return box;
    };
    if (cell.kind === 'tool') {
      if (cell.arguments !== undefined) {
        node.append(field('arguments', 'ak-cmp-args', formatArguments(cell.arguments)));
      }
      if (typeof cell.observation === 'string') {
        const label = el('div', 'ak-cmp-obs-label', cell.is_error ? 'Tool error' : 'Result');
        if (cell.is_error) {
          node.dataset.error = 'true';
        }
        node.append(label, field('observation', 'ak-cmp-obs', cell.observation));
      } else {
        node.append(el('div', 'ak-cmp-obs-label', 'No result'));
      }
    } else {
      if (cell.is_error) {
        node.dataset.error = 'true';
      }
      node.append(field('text', 'ak-cmp-text', str(cell.text)));
    }
    return node;
  }
}
