"""Browser render cost of the task widget: 5,000 steps at once, and step by step.

    .venv/bin/python benchmarks/render.py [--steps 5000] [--runs 3]

Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; no browser
download) opens a standalone page, served on 127.0.0.1, that imports the widget's
own ES module (agentkit_jupyter/static/widget.js, the anywidget bundle of
labextension/src/view.ts) and renders it with a stand-in anywidget model in relay
mode, as the kernel relay drives it: the page feeds it ``relay_batch`` messages
shaped exactly like the server's log. No JupyterLab, no kernel, no network: what
is timed is the view alone (parsing the messages, building the DOM, style and
layout), not the transport; the transports are measured by the other scripts.

A "step" is one ReAct turn as the engine emits it: a ``thought``, a ``tool_call``
and its ``observation`` (three events under one ``step`` number, one list item).

- replay: a finished task of N steps (3N + 2 messages) in one batch, as when a
  notebook is reopened: time until the DOM is built and laid out, and until the
  next frame is painted;
- live: the same task arriving one step per batch, the page yielding to the
  browser between steps (animation frames run as they fall due); the time of
  each step (delivery + forced style and layout), the first 100 steps against
  the last 100 (target: flat);
- tokens: N ``token`` events streaming into one thought, one per batch; the same
  first-100 / last-100 comparison.

Medians of ``--runs`` fresh pages. Every scenario also reports whether the view
still follows the end of the run afterwards (its list scrolled to the bottom).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import shutil
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _harness import ROOT, machine, median, table
from playwright.sync_api import sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDGET = ROOT / "agentkit_jupyter" / "static" / "widget.js"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>agentkit render benchmark</title></head>
<body style="width: 900px">
<div id="out"></div>
<script type="module">
import widget from "./widget.js";

const TASK = "renderbench0001";
const T0 = 1795604586.0;
let listeners = [];
let sent = [];

function model() {
  const traits = { task_id: TASK, agent: "bench", transport: "relay" };
  return {
    get: (key) => traits[key],
    send: (content) => sent.push(content),
    on: (event, callback) => listeners.push(callback),
    off: (event, callback) => { listeners = listeners.filter((c) => c !== callback); },
  };
}

function emit(messages, task) {
  const content = { type: "relay_batch", task_id: TASK, messages };
  if (task) content.task = task;
  for (const callback of listeners) callback(content);
}

function step(seq, n, eventType, data) {
  return { type: "step", seq, task_id: TASK,
           data: { event_type: eventType, step: n, data, timestamp: T0 + seq * 0.01 } };
}

// One ReAct turn: thought, tool call, observation.
function turn(n, seq) {
  const call = `call_${n}_0`;
  return [
    step(seq, n, "thought", {
      text: `Step ${n}: I look up the next city in the table to compare its population.`,
      usage: { prompt_tokens: 120, completion_tokens: 30, total_tokens: 150 } }),
    step(seq + 1, n, "tool_call", { call_id: call, name: "lookup_city",
                                   arguments: { city: "Paris", step: n } }),
    step(seq + 2, n, "observation", { call_id: call, name: "lookup_city",
      output: JSON.stringify({ city: "Paris", country: "France", population: 2102650,
                               area_km2: 105.4, note: "x".repeat(80) }),
      is_error: false, duration_ms: 0.4 }),
  ];
}

function ending(n, seq) {
  return [
    step(seq, n + 1, "final_answer",
         { output: "Done.", total_steps: n + 1, total_tokens: 150 * n }),
    { type: "result", seq: seq + 1, task_id: TASK,
      data: { status: "succeeded", task_id: TASK, output: "Done.", total_steps: n + 1,
              total_tokens: 150 * n } },
  ];
}

const RECORD = { task_id: TASK, agent: "bench", status: "running", input: "benchmark",
                 created_at: T0, started_at: T0 };

function mount() {
  const out = document.getElementById("out");
  out.replaceChildren();
  listeners = [];
  sent = [];
  const el = document.createElement("div");
  out.append(el);
  const cleanup = widget.render({ model: model(), el });
  return { el, cleanup };
}

const frame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));
const channel = new MessageChannel();
const yieldTask = () => new Promise((resolve) => {
  channel.port1.onmessage = () => resolve();
  channel.port2.postMessage(0);
});

window.replay = async (steps) => {
  const { el } = mount();
  const messages = [];
  for (let n = 1; n <= steps; n++) messages.push(...turn(n, 3 * n - 2));
  messages.push(...ending(steps, 3 * steps + 1));
  await frame();
  const t0 = performance.now();
  emit(messages, { ...RECORD, status: "succeeded" });
  void el.offsetHeight;  // style and layout, synchronously
  const built = performance.now() - t0;
  await frame();
  await frame();
  const painted = performance.now() - t0;
  const items = el.querySelectorAll(".ak-step").length;
  return { messages: messages.length, built, painted, items, atEnd: atEnd(el) };
};

// The view follows the end of the run (it scrolls its list of steps to the bottom).
function atEnd(el) {
  const list = el.querySelector(".ak-steps");
  return list.scrollTop + list.clientHeight >= list.scrollHeight - 12;
}

window.live = async (steps, kind) => {
  const { el } = mount();
  emit([], RECORD);
  await frame();
  const times = [];
  const started = performance.now();
  let seq = 1;
  for (let n = 1; n <= steps; n++) {
    const batch = kind === "tokens"
      ? [step(seq, 1, "token", { delta: `tok${n} ` })]
      : turn(n, seq);
    seq += batch.length;
    const t0 = performance.now();
    emit(batch);
    void el.offsetHeight;
    times.push(performance.now() - t0);
    await yieldTask();
  }
  const t0 = performance.now();
  emit(ending(kind === "tokens" ? 1 : steps, seq));
  void el.offsetHeight;
  times.push(performance.now() - t0);
  const total = performance.now() - started;
  await frame();
  await frame();
  const items = el.querySelectorAll(".ak-step").length;
  const status = el.querySelector(".ak-task").dataset.status;
  return { times, total, items, status, atEnd: atEnd(el) };
};
window.ready = true;
</script>
</body></html>
"""


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = socketserver.TCPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
    finally:
        httpd.shutdown()
        httpd.server_close()


def yes_no(values: list[bool]) -> str:
    return "/".join("yes" if v else "NO" for v in values)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--widget", type=Path, default=WIDGET, help="the widget bundle to measure (default: ours)"
    )
    args = parser.parse_args()
    if not CHROMIUM.exists():
        raise SystemExit("needs Debian's chromium: apt-get install -y chromium")
    if not args.widget.exists():
        raise SystemExit(f"{args.widget} is missing: build the front end (scripts/setup.sh)")
    print(machine())
    replays: list[dict[str, float]] = []
    lives: dict[str, list[dict[str, Any]]] = {"steps": [], "tokens": []}
    follows: dict[str, list[bool]] = {"replay": [], "steps": [], "tokens": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy(args.widget, folder / "widget.js")
        (folder / "index.html").write_text(PAGE)
        with serve(folder) as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                for run in range(args.runs):
                    for scenario in ("replay", "steps", "tokens"):
                        page = browser.new_page(viewport={"width": 1000, "height": 800})
                        errors: list[str] = []
                        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
                        page.goto(url)
                        page.wait_for_function("window.ready === true")
                        if scenario == "replay":
                            result = page.evaluate("n => window.replay(n)", args.steps)
                            assert result["items"] == args.steps, result
                            replays.append(result)
                        else:
                            result = page.evaluate(
                                "([n, kind]) => window.live(n, kind)", [args.steps, scenario]
                            )
                            assert result["status"] == "succeeded", result["status"]
                            lives[scenario].append(result)
                        follows[scenario].append(bool(result["atEnd"]))
                        if errors:
                            raise RuntimeError(f"errors in the page: {errors}")
                        page.close()
                    print(
                        f"run {run + 1}: replay {replays[-1]['painted']:.0f} ms; live steps "
                        f"{lives['steps'][-1]['total']:.0f} ms; tokens "
                        f"{lives['tokens'][-1]['total']:.0f} ms"
                    )
            finally:
                browser.close()

    n = args.steps
    rows = [
        [
            f"replay: a finished task of {n:,} steps ({3 * n + 2:,} messages) in one batch",
            f"built and laid out {median([r['built'] for r in replays]):,.0f} ms; "
            f"painted {median([r['painted'] for r in replays]):,.0f} ms",
            yes_no(follows["replay"]),
        ]
    ]
    flat: list[tuple[str, float]] = []
    for kind, label in (("steps", "ReAct steps"), ("tokens", "token events")):
        runs = lives[kind]
        first = median([mean(r["times"][:100]) for r in runs])
        last = median([mean(r["times"][-101:-1]) for r in runs])
        total = median([r["total"] for r in runs])
        busy = median([sum(r["times"]) for r in runs])
        rows.append(
            [
                f"live: {n:,} {label}, one per batch",
                f"first 100: {first * 1000:.0f} µs each; last 100: {last * 1000:.0f} µs each "
                f"({last / first:.2f}x); busy {busy:,.0f} ms of {total:,.0f} ms",
                yes_no(follows[kind]),
            ]
        )
        flat.append((label, last / first))
    print(f"\nmedian of {args.runs} runs (a fresh page each)\n")
    print(table(["scenario", "time", "follows the end"], rows))
    for label, ratio in flat:
        if label == "ReAct steps":
            verdict = "met" if ratio < 1.5 else "MISSED"
            print(f"target: time per appended step flat (last/first < 1.5): {verdict}")
        else:  # no target: one paragraph growing to N tokens is laid out again each time
            print(f"tokens into one growing thought: last/first {ratio:.2f}x (no target)")


if __name__ == "__main__":
    main()
