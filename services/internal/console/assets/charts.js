// charts.js — the console's chart library.
//
// A small SVG line and bar chart module of our own, vendored with the console (no
// dependency, no CDN, no network). It draws where people compare over time: answer
// rates against their target, loyalty points per month, score histories, lag.
//
//   lineChart(container, {series: [{name, points: [{x: Date|number, y: number}]}],
//                         yFormat, xFormat, yMin, yMax, target: {y, label}})
//   barChart(container,  {categories: [string], series: [{name, values: [number]}],
//                         yFormat, stacked})
//
// Both replace the container's children with an <svg> and a legend, set
// data-points on the container (the number of points or bars drawn, for tests) and
// give every point a <title> with its exact value. Colours come from PALETTE in order.

const SVG = 'http://www.w3.org/2000/svg';
export const PALETTE = ['#1f6feb', '#e36209', '#1a7f37', '#8250df', '#bf3989', '#0a7ea4', '#9a6700', '#57606a'];
const W = 640, H = 240, M = { top: 12, right: 14, bottom: 30, left: 52 };

function el(name, attrs = {}, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// niceTicks returns about n round values covering [lo, hi].
export function niceTicks(lo, hi, n = 5) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}

function legend(series) {
  const box = document.createElement('div');
  box.className = 'legend';
  series.forEach((s, i) => {
    const item = document.createElement('span');
    item.textContent = s.name;
    item.style.setProperty('--swatch', PALETTE[i % PALETTE.length]);
    box.append(item);
  });
  return box;
}

function frame(container) {
  container.classList.add('chart');
  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img' });
  container.replaceChildren(svg);
  return svg;
}

function yAxis(svg, ticks, y, fmt) {
  for (const t of ticks) {
    svg.append(el('line', { class: 'grid', x1: M.left, x2: W - M.right, y1: y(t), y2: y(t) }));
    svg.append(el('text', { x: M.left - 6, y: y(t) + 4, 'text-anchor': 'end' }, fmt(t)));
  }
  svg.append(el('line', { class: 'axis', x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom }));
  svg.append(el('line', { class: 'axis', x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }));
}

const num = (v) => (v instanceof Date ? v.getTime() : +v);
const defaultX = (v) => (v instanceof Date ? `${String(v.getMonth() + 1).padStart(2, '0')}-${String(v.getDate()).padStart(2, '0')} ${String(v.getHours()).padStart(2, '0')}h` : String(v));

// lineChart draws series of (x, y) points, x a Date or a number.
export function lineChart(container, opts) {
  const series = (opts.series || []).filter((s) => s.points && s.points.length);
  const yFmt = opts.yFormat || ((v) => String(v));
  const xFmt = opts.xFormat || defaultX;
  const svg = frame(container);
  const pts = series.flatMap((s) => s.points);
  container.dataset.points = String(pts.length);
  if (!pts.length) {
    svg.append(el('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, opts.empty || 'no data'));
    return;
  }
  const xs = pts.map((p) => num(p.x));
  let ys = pts.map((p) => p.y);
  if (opts.target) ys = ys.concat(opts.target.y);
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  const ticks = niceTicks(opts.yMin ?? Math.min(0, ...ys), opts.yMax ?? Math.max(...ys));
  const y0 = ticks[0], y1 = ticks[ticks.length - 1];
  const x = (v) => M.left + ((num(v) - x0) / (x1 - x0)) * (W - M.left - M.right);
  const y = (v) => H - M.bottom - ((v - y0) / (y1 - y0 || 1)) * (H - M.top - M.bottom);
  yAxis(svg, ticks, y, yFmt);
  const xTicks = [...new Set(xs)].sort((a, b) => a - b);
  const every = Math.max(1, Math.ceil(xTicks.length / 6));
  xTicks.forEach((v, i) => {
    if (i % every) return;
    const label = pts.find((p) => num(p.x) === v).x;
    svg.append(el('text', { x: x(v), y: H - M.bottom + 16, 'text-anchor': 'middle' }, xFmt(label)));
  });
  if (opts.target) {
    svg.append(el('line', { class: 'target', x1: M.left, x2: W - M.right, y1: y(opts.target.y), y2: y(opts.target.y) }));
    svg.append(el('text', { x: W - M.right, y: y(opts.target.y) - 4, 'text-anchor': 'end' }, opts.target.label || yFmt(opts.target.y)));
  }
  series.forEach((s, i) => {
    const colour = PALETTE[i % PALETTE.length];
    const sorted = [...s.points].sort((a, b) => num(a.x) - num(b.x));
    const d = sorted.map((p, j) => `${j ? 'L' : 'M'}${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join('');
    svg.append(el('path', { d, fill: 'none', stroke: colour, 'stroke-width': 2 }));
    for (const p of sorted) {
      const c = el('circle', { cx: x(p.x).toFixed(1), cy: y(p.y).toFixed(1), r: 3, fill: colour });
      c.append(el('title', {}, `${s.name} ${xFmt(p.x)}: ${yFmt(p.y)}`));
      svg.append(c);
    }
  });
  if (series.length > 1 || opts.legend) container.append(legend(series));
}

// barChart draws one group of bars per category, or stacked bars.
export function barChart(container, opts) {
  const cats = opts.categories || [];
  const series = opts.series || [];
  const yFmt = opts.yFormat || ((v) => String(v));
  const svg = frame(container);
  container.dataset.points = String(cats.length * series.length);
  if (!cats.length || !series.length) {
    svg.append(el('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, opts.empty || 'no data'));
    return;
  }
  const totals = cats.map((_, i) => series.reduce((a, s) => a + Math.max(0, s.values[i] || 0), 0));
  const all = opts.stacked ? totals : series.flatMap((s) => s.values);
  const ticks = niceTicks(Math.min(0, ...all), Math.max(0, ...all));
  const y0 = ticks[0], y1 = ticks[ticks.length - 1];
  const y = (v) => H - M.bottom - ((v - y0) / (y1 - y0 || 1)) * (H - M.top - M.bottom);
  yAxis(svg, ticks, y, yFmt);
  const band = (W - M.left - M.right) / cats.length;
  const inner = band * 0.8;
  const every = Math.max(1, Math.ceil(cats.length / 12));
  cats.forEach((cat, i) => {
    const bx = M.left + i * band + (band - inner) / 2;
    if (i % every === 0) svg.append(el('text', { x: bx + inner / 2, y: H - M.bottom + 16, 'text-anchor': 'middle' }, cat));
    let acc = 0;
    series.forEach((s, j) => {
      const v = s.values[i] || 0;
      let rx, ry, rh, rw;
      if (opts.stacked) {
        rw = inner; rx = bx; ry = y(acc + Math.max(0, v)); rh = y(acc) - ry; acc += Math.max(0, v);
      } else {
        rw = inner / series.length; rx = bx + j * rw; ry = y(Math.max(0, v)); rh = Math.abs(y(v) - y(0));
      }
      const r = el('rect', { x: rx.toFixed(1), y: ry.toFixed(1), width: Math.max(1, rw - 1).toFixed(1), height: Math.max(0, rh).toFixed(1),
        fill: PALETTE[j % PALETTE.length] });
      r.append(el('title', {}, `${s.name} ${cat}: ${yFmt(v)}`));
      svg.append(r);
    });
  });
  if (series.length > 1 || opts.legend) container.append(legend(series));
}
