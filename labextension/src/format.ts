/**
 * How numbers and values read in the views: counts, durations, tokens, costs,
 * tool arguments. Shared by the task view, the comparison and the side panel.
 */

/** `1 step`, `1,024 steps`. */
export function plural(count: number, word: string): string {
  return `${count.toLocaleString()} ${word}${count === 1 ? '' : 's'}`;
}

/** A value as text: strings as they are, anything else as indented JSON. */
export function asText(value: unknown): string {
  if (typeof value === 'string') {
    return value;
  }
  if (value === undefined || value === null) {
    return '';
  }
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

/** Tool arguments: one line when short, indented JSON otherwise. */
export function formatArguments(value: unknown): string {
  if (typeof value === 'string') {
    return value;
  }
  try {
    const compact = JSON.stringify(value);
    if (compact !== undefined && compact.length <= 100) {
      return compact;
    }
  } catch {
    return String(value);
  }
  return asText(value);
}

/** `12 ms` below a second. */
export function formatMillis(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : formatDuration(ms / 1000);
}

/** `3.2 s`, `1 min 05 s`, `1 h 02 min`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) {
    return '';
  }
  if (seconds < 60) {
    return `${seconds < 10 ? seconds.toFixed(1) : Math.floor(seconds)} s`;
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    return `${minutes} min ${String(Math.floor(seconds % 60)).padStart(2, '0')} s`;
  }
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} min`;
}

/** What the views say for a cost that is not known (a model without a price). */
export const UNKNOWN_COST = '—';

/**
 * US dollars as the views show them: `$0.0123` below a dollar (four decimals),
 * `$1.23` from there, `<$0.0001` for a cost too small for four decimals;
 * `—` (UNKNOWN_COST) for `null`, never a made-up figure.
 */
export function formatCost(cost: number | null | undefined): string {
  if (typeof cost !== 'number' || !Number.isFinite(cost)) {
    return UNKNOWN_COST;
  }
  const size = Math.abs(cost);
  if (size > 0 && size < 0.00005) {
    return `${cost < 0 ? '−' : ''}<$0.0001`;
  }
  const text = size < 1 ? size.toFixed(4) : size.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  return `${cost < 0 ? '−' : ''}$${text}`;
}

/** A token count in a few characters: `950`, `12.3k`, `4.1M`. */
export function formatTokens(count: number): string {
  if (!Number.isFinite(count)) {
    return '';
  }
  const size = Math.abs(count);
  if (size < 1000) {
    return String(Math.round(count));
  }
  if (size < 1_000_000) {
    return `${(count / 1000).toFixed(size < 10_000 ? 1 : 0)}k`;
  }
  return `${(count / 1_000_000).toFixed(1)}M`;
}

/** A signed difference (`+3`, `−2`, `0`), the number shown by `show`; `—` for null. */
export function formatDelta(
  value: number | null | undefined,
  show: (size: number) => string = size => size.toLocaleString()
): string {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    return UNKNOWN_COST;
  }
  if (value === 0) {
    return show(0);
  }
  return `${value > 0 ? '+' : '−'}${show(Math.abs(value))}`;
}

/** The start of a task id, enough to tell tasks apart in a sentence. */
export function shortId(taskId: string): string {
  return taskId.length > 8 ? taskId.slice(0, 8) : taskId;
}
