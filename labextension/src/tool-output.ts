/**
 * Streamed tool output: what a tool call writes while it runs (`tool_output`
 * steps: a generator's pieces, `emit()`, its prints) and how far it is
 * (`tool_progress`), shown under the call's card before its result arrives.
 *
 * The text is bounded in the DOM (the last LIVE_MAX_LINES lines and
 * LIVE_MAX_CHARS characters; the server streams at most MAX_TOOL_OUTPUT_CHARS
 * per call anyway) and shown collapsed to its last LIVE_LINES_SHOWN lines, a
 * terminal's tail, with "Show all" to expand. Pieces are buffered and written
 * into the DOM by `flush()`, which the view calls once per animation frame: a
 * tool printing in a tight loop costs one DOM write per frame, not one per piece.
 * When the call's observation arrives (`finish()`), the progress bar goes and the
 * output stays, collapsed, above the result.
 *
 * Plain DOM, scoped by view.css (`.ak-task .ak-live*`, `.ak-progress*`); text
 * from the run goes through the view's `show` (bidi controls made visible).
 */

import { ShowText } from './approval';
import { el } from './dom';
import { plural } from './format';
import { MAX_TOOL_OUTPUT_CHARS } from './protocol.generated';
import type { IToolProgressData } from './protocol.generated';

/** At most this many lines of a call's output stay in the DOM (the last ones). */
export const LIVE_MAX_LINES = 2_000;
/** At most this many characters of a call's output stay in the DOM (the last ones). */
export const LIVE_MAX_CHARS = 256 * 1024;
/** The output shows its last this many lines until "Show all". */
export const LIVE_LINES_SHOWN = 12;
/** Trimmed, the output keeps this share of its bounds, so it is not trimmed again at once. */
const TRIM_TO = 0.75;

/** A number as the progress line says it: `3`, `2.5`, `1,024`. */
function amount(value: number): string {
  return Number.isInteger(value)
    ? value.toLocaleString()
    : value.toLocaleString(undefined, { maximumFractionDigits: 2 });
}

function countLines(text: string): number {
  let count = 0;
  for (let index = text.indexOf('\n'); index !== -1; index = text.indexOf('\n', index + 1)) {
    count += 1;
  }
  return count;
}

/** The text without its first `lines` lines (up to and including their line breaks). */
function dropLines(text: string, lines: number): string {
  let index = -1;
  for (let dropped = 0; dropped < lines; dropped++) {
    index = text.indexOf('\n', index + 1);
    if (index === -1) {
      return '';
    }
  }
  return text.slice(index + 1);
}

export type LiveState = 'running' | 'done' | 'ended';

export interface ILiveOutputOptions {
  /** The tool's name (for the labels of the bar and the output). */
  name: string;
  /** A prefix for element ids, unique in the page. */
  idPrefix: string;
  show: ShowText;
}

let uid = 0;

/** One running (or finished) call's streamed output and progress; `node` goes in the call. */
export class LiveToolOutput {
  readonly node: HTMLElement;
  private readonly name: string;
  private readonly show: ShowText;
  private readonly progressNode: HTMLElement;
  private readonly progressFill: HTMLElement;
  private readonly progressText: HTMLElement;
  private readonly outputWrap: HTMLElement;
  private readonly droppedNode: HTMLElement;
  private readonly outputNode: HTMLPreElement;
  private readonly toggle: HTMLButtonElement;
  private readonly cutNode: HTMLElement;
  /** What the DOM shows (its last lines), and what is still to be written. */
  private kept = '';
  private keptLines = 0;
  private pending = '';
  private pendingProgress: IToolProgressData | null = null;
  /** Lines (whole or partial) dropped from the start to stay within the bounds. */
  private droppedLines = 0;
  private droppedChars = 0;
  private cut = false;
  private expanded = false;
  /** The reader scrolled the collapsed output up: it stops following the end. */
  private following = true;
  private state: LiveState = 'running';
  private dirty = false;

  constructor(options: ILiveOutputOptions) {
    this.name = options.name;
    this.show = options.show;
    const id = `${options.idPrefix}-live-${++uid}`;
    this.node = el('div', 'ak-live');
    this.node.dataset.state = this.state;

    // The progress bar: determinate with a total, indeterminate without.
    this.progressNode = el('div', 'ak-progress');
    this.progressNode.hidden = true;
    const bar = el('div', 'ak-progress-bar');
    bar.setAttribute('role', 'progressbar');
    bar.setAttribute('aria-label', `Progress of ${this.name || 'the tool'}`);
    bar.id = `${id}-bar`;
    this.progressFill = el('div', 'ak-progress-fill');
    bar.append(this.progressFill);
    this.progressText = el('span', 'ak-progress-text');
    this.progressNode.append(bar, this.progressText);

    // The output: its head, a note when its start was dropped, the text, "Show all".
    this.outputWrap = el('div', 'ak-live-body');
    this.outputWrap.hidden = true;
    const head = el('div', 'ak-live-head');
    head.append(el('span', 'ak-live-label', 'Output'), el('span', 'ak-live-state', 'streaming…'));
    this.droppedNode = el('div', 'ak-live-dropped');
    this.droppedNode.setAttribute('role', 'note');
    this.droppedNode.hidden = true;
    this.outputNode = el('pre', 'ak-live-output ak-live-output--collapsed');
    this.outputNode.id = `${id}-output`;
    this.outputNode.tabIndex = 0;
    this.outputNode.setAttribute('aria-label', `Output of ${this.name || 'the tool'} as it runs`);
    this.outputNode.addEventListener('scroll', () => {
      const pre = this.outputNode;
      this.following = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    });
    this.toggle = el('button', 'ak-live-toggle');
    this.toggle.type = 'button';
    this.toggle.hidden = true;
    this.toggle.setAttribute('aria-expanded', 'false');
    this.toggle.setAttribute('aria-controls', this.outputNode.id);
    this.toggle.addEventListener('click', () => this.setExpanded(!this.expanded));
    this.cutNode = el('div', 'ak-live-cut');
    this.cutNode.setAttribute('role', 'note');
    this.cutNode.hidden = true;
    this.outputWrap.append(head, this.droppedNode, this.outputNode, this.toggle, this.cutNode);

    this.node.append(this.progressNode, this.outputWrap);
  }

  /** Whether `flush()` has something to write. */
  get isDirty(): boolean {
    return this.dirty;
  }

  /** A `tool_output` piece: text to append (`cut`: the stream stops here). */
  append(text: string, cut = false): void {
    if (this.cut) {
      return;
    }
    if (text) {
      this.pending += text;
      this.dirty = true;
    }
    if (cut) {
      this.cut = true;
      this.dirty = true;
    }
  }

  /** A `tool_progress`: the latest one wins (it is drawn once per frame). */
  progress(data: IToolProgressData): void {
    if (this.state !== 'running') {
      return;
    }
    this.pendingProgress = data;
    this.dirty = true;
  }

  /**
   * The call is over: its observation arrived (`done`), or the run ended without
   * one (`ended`). The progress bar goes; the output stays, collapsed.
   */
  finish(state: Exclude<LiveState, 'running'>): void {
    if (this.state !== 'running') {
      return;
    }
    this.state = state;
    this.pendingProgress = null;
    this.dirty = true;
  }

  /** Write what arrived since the last flush into the DOM (the view calls it once per frame). */
  flush(): void {
    if (!this.dirty) {
      return;
    }
    this.dirty = false;
    if (this.pending) {
      this.writeText(this.pending);
      this.pending = '';
    }
    if (this.pendingProgress) {
      this.drawProgress(this.pendingProgress);
      this.pendingProgress = null;
    }
    if (this.cut && this.cutNode.hidden) {
      this.cutNode.textContent =
        `The output was cut here: a call streams at most ${plural(MAX_TOOL_OUTPUT_CHARS, 'character')}. ` +
        'Its result below is what the tool returned.';
      this.cutNode.hidden = false;
      this.outputWrap.hidden = false;
      this.node.dataset.cut = 'true';
    }
    if (this.state !== 'running' && this.node.dataset.state !== this.state) {
      this.node.dataset.state = this.state;
      this.progressNode.hidden = true;
      const label = this.node.querySelector('.ak-live-state');
      if (label) {
        label.textContent = this.state === 'done' ? '' : 'the run ended before the call did';
      }
      // A call that only said its progress leaves nothing to show.
      this.node.hidden = !this.kept && !this.cut;
    }
    this.updateToggle();
    if (!this.expanded && this.following) {
      this.outputNode.scrollTop = this.outputNode.scrollHeight;
    }
  }

  private writeText(text: string): void {
    const lines = countLines(text);
    this.outputWrap.hidden = false;
    this.node.hidden = false;
    const over =
      this.kept.length + text.length > LIVE_MAX_CHARS || this.keptLines + lines > LIVE_MAX_LINES;
    if (!over) {
      this.kept += text;
      this.keptLines += lines;
      this.outputNode.append(...this.show(text));
      return;
    }
    // Over a bound: keep the last lines (a share of the bounds) and draw them again.
    let kept = this.kept + text;
    let keptLines = this.keptLines + lines;
    const maxLines = Math.floor(LIVE_MAX_LINES * TRIM_TO);
    if (keptLines > maxLines) {
      const drop = keptLines - maxLines;
      const rest = dropLines(kept, drop);
      this.droppedChars += kept.length - rest.length;
      this.droppedLines += drop;
      kept = rest;
      keptLines = maxLines;
    }
    const maxChars = Math.floor(LIVE_MAX_CHARS * TRIM_TO);
    if (kept.length > maxChars) {
      let start = kept.length - maxChars;
      // Not in the middle of a UTF-16 surrogate pair.
      const code = kept.charCodeAt(start);
      if (code >= 0xdc00 && code <= 0xdfff) {
        start += 1;
      }
      const droppedPart = kept.slice(0, start);
      const droppedLines = countLines(droppedPart);
      // A line cut in its middle counts as dropped too.
      this.droppedLines += droppedLines + (droppedPart.endsWith('\n') ? 0 : 1);
      this.droppedChars += start;
      kept = kept.slice(start);
      keptLines -= droppedLines;
    }
    this.kept = kept;
    this.keptLines = keptLines;
    this.outputNode.replaceChildren(...this.show(kept));
    this.droppedNode.textContent =
      `The start of this output is not shown here: ${plural(this.droppedLines, 'line')} ` +
      `(${plural(this.droppedChars, 'character')}) before these were let go ` +
      `(a view keeps the last ${LIVE_MAX_LINES.toLocaleString()} lines).`;
    this.droppedNode.hidden = false;
    this.node.dataset.dropped = String(this.droppedLines);
  }

  private drawProgress(data: IToolProgressData): void {
    const done = typeof data.progress === 'number' && Number.isFinite(data.progress) ? data.progress : 0;
    const total =
      typeof data.total === 'number' && Number.isFinite(data.total) && data.total > 0 ? data.total : null;
    const message = typeof data.message === 'string' ? data.message : '';
    const bar = this.progressFill.parentElement as HTMLElement;
    const parts: string[] = [];
    if (message) {
      parts.push(message);
    }
    if (total !== null) {
      const share = Math.max(0, Math.min(1, done / total));
      this.progressFill.style.width = `${(share * 100).toFixed(1)}%`;
      bar.setAttribute('aria-valuemin', '0');
      bar.setAttribute('aria-valuemax', String(total));
      bar.setAttribute('aria-valuenow', String(Math.min(done, total)));
      this.progressNode.dataset.indeterminate = 'false';
      parts.push(`${amount(done)} / ${amount(total)}`);
    } else {
      // Unknown total: an indeterminate bar (no aria-valuenow), the count said.
      this.progressFill.style.removeProperty('width');
      bar.removeAttribute('aria-valuemin');
      bar.removeAttribute('aria-valuemax');
      bar.removeAttribute('aria-valuenow');
      this.progressNode.dataset.indeterminate = 'true';
      if (done) {
        parts.push(`${amount(done)} so far`);
      }
    }
    const text = parts.join(' · ');
    bar.setAttribute('aria-valuetext', text || 'running');
    this.progressText.replaceChildren(...this.show(text));
    this.progressNode.hidden = false;
    this.node.hidden = false;
  }

  private setExpanded(expanded: boolean): void {
    this.expanded = expanded;
    this.outputNode.classList.toggle('ak-live-output--collapsed', !expanded);
    this.updateToggle();
    if (!expanded) {
      this.following = true;
      this.outputNode.scrollTop = this.outputNode.scrollHeight;
    }
  }

  private updateToggle(): void {
    // The lines shown: a last line without its line break counts too.
    const lines = this.keptLines + (this.kept && !this.kept.endsWith('\n') ? 1 : 0);
    const long = lines > LIVE_LINES_SHOWN;
    this.toggle.hidden = !long && !this.expanded;
    this.toggle.setAttribute('aria-expanded', String(this.expanded));
    this.toggle.textContent = this.expanded ? 'Show less' : `Show all (${plural(lines, 'line')})`;
    this.node.dataset.lines = String(lines);
  }
}
