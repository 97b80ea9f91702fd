// Elements built with createElement and textContent only: user content (names,
// messages) can never become HTML.

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | boolean | ((event: Event) => void)>;

export function h(tag: string, attrs: Attrs = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (typeof value === "function") el.addEventListener(name.replace(/^on/, ""), value);
    else if (value === true) el.setAttribute(name, "");
    else if (value !== false) el.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return el;
}

let fields = 0;

/** A labelled input: every control has a label (keyboard and screen readers). */
export function field(label: string, name: string, type = "text", extra: Attrs = {}): HTMLElement {
  const id = `f-${name}-${++fields}`;
  return h("p", { class: "field" }, h("label", { for: id }, label), h("input", { id, name, type, ...extra }));
}

/** A labelled choice among `options` ([value, label]). */
export function select(label: string, name: string, options: [string, string][], value?: string): HTMLElement {
  const id = `f-${name}-${++fields}`;
  const choice = h("select", { id, name }, ...options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)));
  return h("p", { class: "field" }, h("label", { for: id }, label), choice);
}
