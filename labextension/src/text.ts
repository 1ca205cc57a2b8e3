/**
 * Text from a model or a tool, made safe to show as text.
 *
 * Bidirectional control characters (U+202A-U+202E, U+2066-U+2069, and the
 * invisible marks U+200E, U+200F, U+061C) reorder what follows them, so
 * `invoice_\u202egnp.exe` reads as "invoice_exe.png". The view never lets
 * them act: each is replaced by a visible marker such as `⟨U+202E⟩`.
 */

const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const BIDI_TEST = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

/** The marker shown instead of a bidirectional control character. */
export function bidiMarker(char: string): string {
  return `⟨U+${char.codePointAt(0)?.toString(16).toUpperCase().padStart(4, '0') ?? '?'}⟩`;
}

/** Whether the text holds a bidirectional control character. */
export function hasBidi(text: string): boolean {
  return BIDI_TEST.test(text);
}

/** The text with every bidirectional control character replaced by its marker. */
export function revealBidi(text: string): string {
  return hasBidi(text) ? text.replace(BIDI, bidiMarker) : text;
}

/**
 * The text as DOM nodes: text nodes, and each bidirectional control character
 * as a highlighted `<span class="ak-bidi">⟨U+202E⟩</span>` with an explanation.
 */
export function textNodes(text: string): Node[] {
  if (!hasBidi(text)) {
    return [document.createTextNode(text)];
  }
  const nodes: Node[] = [];
  let last = 0;
  for (const match of text.matchAll(BIDI)) {
    const index = match.index ?? 0;
    if (index > last) {
      nodes.push(document.createTextNode(text.slice(last, index)));
    }
    const marker = document.createElement('span');
    marker.className = 'ak-bidi';
    marker.textContent = bidiMarker(match[0]);
    marker.title = 'A bidirectional control character: invisible, it would reorder the text after it';
    nodes.push(marker);
    last = index + match[0].length;
  }
  if (last < text.length) {
    nodes.push(document.createTextNode(text.slice(last)));
  }
  return nodes;
}
