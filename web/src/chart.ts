// Small SVG charts, drawn from numbers only (no user text inside but the
// title, set as text): a line of ratings and bars of wins and losses a day.

const NS = "http://www.w3.org/2000/svg";

function svg(tag: string, attrs: Record<string, string | number>): SVGElement {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

export type Day = { day: string; matches: number; wins: number; losses: number; rating: number };

/** The rating over the days, with the day's wins (up) and losses (down). */
export function ratingChart(days: Day[], title: string): SVGElement {
  const width = 600;
  const height = 200;
  const pad = 30;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart" });
  const label = svg("title", {});
  label.textContent = title;
  root.append(label);
  if (days.length === 0) return root;
  const ratings = days.map((d) => d.rating);
  const lo = Math.min(...ratings) - 20;
  const hi = Math.max(...ratings) + 20;
  const most = Math.max(1, ...days.map((d) => Math.max(d.wins, d.losses)));
  const step = (width - 2 * pad) / Math.max(1, days.length - 1);
  const x = (i: number) => pad + i * step;
  const y = (r: number) => height - pad - ((r - lo) / (hi - lo)) * (height - 2 * pad);
  const mid = height / 2;
  days.forEach((d, i) => {
    const bar = Math.max(2, step * 0.4);
    if (d.wins) root.append(svg("rect", { x: x(i) - bar / 2, y: mid - (d.wins / most) * 40, width: bar, height: (d.wins / most) * 40, class: "won" }));
    if (d.losses) root.append(svg("rect", { x: x(i) - bar / 2, y: mid, width: bar, height: (d.losses / most) * 40, class: "lost" }));
  });
  root.append(svg("polyline", { points: days.map((d, i) => `${x(i)},${y(d.rating)}`).join(" "), class: "line" }));
  for (const [r, at] of [[hi - 20, y(hi - 20)], [lo + 20, y(lo + 20)]] as [number, number][]) {
    const t = svg("text", { x: 2, y: at + 4, class: "axis" });
    t.textContent = String(Math.round(r));
    root.append(t);
  }
  return root;
}
