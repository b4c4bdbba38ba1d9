// The budget gate's panel in locust's web UI: the app's connections on the database server over the run, against
// the budget line, live, and the verdict once the run stops. Reads ./db-connections (loadtest/_budget.py) each second.
(() => {
  "use strict";
  const W = 400, H = 150, PAD = {left: 34, right: 10, top: 12, bottom: 22};
  const SVG = "http://www.w3.org/2000/svg";

  const style = document.createElement("style");
  style.textContent = `
    #kit-db { position: fixed; right: 12px; bottom: 12px; z-index: 2000; width: min(${W + 24}px, calc(100vw - 24px));
      background: #fff; color: #1d2430; border: 1px solid #cfd7e0; border-radius: 10px;
      box-shadow: 0 4px 18px rgba(0,0,0,.18); font: 13px/1.4 system-ui, sans-serif; }
    #kit-db header { display: flex; align-items: center; gap: 8px; padding: 8px 12px; cursor: pointer; }
    #kit-db header b { flex: 1; }
    #kit-db .body { padding: 0 12px 10px; }
    #kit-db.closed .body { display: none; }
    #kit-db svg { width: 100%; height: auto; display: block; }
    #kit-db .state { color: #5f6b7a; }
    #kit-db .verdict { margin-top: 6px; padding: 6px 8px; border-radius: 6px; font-weight: 600; }
    #kit-db .verdict.ok { background: #e6f4ea; color: #1a7f37; }
    #kit-db .verdict.over { background: #fdecea; color: #c62828; }
    #kit-db .verdict.none { background: #fff4e0; color: #8a5300; font-weight: 400; }
    #kit-db .where { color: #5f6b7a; font-size: 12px; margin-top: 4px; }`;
  document.head.append(style);

  const box = document.createElement("section");
  box.id = "kit-db";
  box.innerHTML = `
    <header title="show or hide"><b>DB connections vs budget</b><span class="state" id="kit-db-state">waiting for a run</span></header>
    <div class="body">
      <div class="state" id="kit-db-hint">The app's connections on the database server, against the budget, appear here when a run starts.</div>
      <svg id="kit-db-chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="app connections on the database server against the budget"></svg>
      <div class="verdict" id="kit-db-verdict" hidden></div>
      <div class="where" id="kit-db-where"></div>
    </div>`;
  document.body.append(box);
  box.querySelector("header").addEventListener("click", () => box.classList.toggle("closed"));

  const node = (tag, attrs, text) => {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    return el;
  };

  // Gridlines at round numbers: a step of 1, 2 or 5 times a power of ten, four steps or fewer to the top.
  function scale(top) {
    for (let power = 1; ; power *= 10) {
      for (const step of [power, 2 * power, 5 * power]) {
        if (top / step <= 4) return {step, max: step * Math.max(1, Math.ceil(top / step))};
      }
    }
  }

  function draw(report) {
    const samples = report.samples || [], budget = report.budget || 0;
    const tMax = Math.max(10, ...samples.map((s) => s[0]));
    const {step, max: yMax} = scale(Math.max(budget, ...samples.map((s) => s[1])) * 1.2);
    const x = (t) => PAD.left + ((W - PAD.left - PAD.right) * t) / tMax;
    const y = (n) => H - PAD.bottom - ((H - PAD.top - PAD.bottom) * n) / yMax;
    const parts = [];
    for (let n = 0; n <= yMax; n += step) {
      parts.push(node("line", {x1: PAD.left, x2: W - PAD.right, y1: y(n), y2: y(n), stroke: "#e6ebf0"}));
      parts.push(node("text", {x: PAD.left - 5, y: y(n) + 4, "text-anchor": "end", "font-size": 10, fill: "#5f6b7a"}, n));
    }
    parts.push(node("text", {x: W - PAD.right, y: H - 6, "text-anchor": "end", "font-size": 10, fill: "#5f6b7a"},
                    `${Math.round(tMax)} s`));
    parts.push(node("text", {x: PAD.left, y: H - 6, "font-size": 10, fill: "#3b74d8"},
                    "— app connections on the server"));
    // A step line: the count holds from one sample to the next.
    const points = [];
    samples.forEach(([t, n], i) => {
      if (i > 0) points.push(`${x(t).toFixed(1)},${y(samples[i - 1][1]).toFixed(1)}`);
      points.push(`${x(t).toFixed(1)},${y(n).toFixed(1)}`);
    });
    parts.push(node("polyline", {id: "kit-db-samples", points: points.join(" "), fill: "none", stroke: "#3b74d8",
                                 "stroke-width": 2.5, "data-samples": samples.length}));
    // Drawn last, so a count that sits on the budget still shows the line.
    parts.push(node("line", {id: "kit-db-budget-line", x1: PAD.left, x2: W - PAD.right, y1: y(budget), y2: y(budget),
                             stroke: "#c62828", "stroke-width": 1.5, "stroke-dasharray": "6 4"}));
    parts.push(node("text", {id: "kit-db-budget-label", x: W - PAD.right - 2, y: y(budget) - 5, "text-anchor": "end",
                             "font-size": 11, fill: "#c62828"}, `budget ${budget}`));
    document.getElementById("kit-db-chart").replaceChildren(...parts);
  }

  function show(report) {
    const state = document.getElementById("kit-db-state"), verdict = document.getElementById("kit-db-verdict");
    if (report.state === "waiting") return;
    document.getElementById("kit-db-hint").hidden = true;
    draw(report);
    state.textContent = report.state === "counting" ? `now ${report.now ?? "–"}, peak ${report.peak ?? "–"}`
                      : report.state === "not counted" ? "not counted" : "run over";
    document.getElementById("kit-db-where").textContent = report.where ? `Counting ${report.where}.` : "";
    if (report.verdict) {
      verdict.hidden = false;
      verdict.className = `verdict ${report.over === null ? "none" : report.over ? "over" : "ok"}`;
      verdict.textContent = report.verdict;
    } else if (report.reason) {
      verdict.hidden = false;
      verdict.className = "verdict none";
      verdict.textContent = `Not counting: ${report.reason}`;
    } else {
      verdict.hidden = true;
    }
  }

  async function poll() {
    try {
      const response = await fetch("./db-connections", {cache: "no-store"});
      if (response.ok) show(await response.json());
    } catch (error) {
      document.getElementById("kit-db-state").textContent = "locust is not answering";
    }
  }
  poll();
  setInterval(poll, 1000);
})();
