// What every page shares: navigation, forms that explain failures in words,
// people's names and pictures, short notices.

import { call, words } from "./api";
import { h } from "./dom";

type Navigate = (path: string) => void;
let navigate: Navigate = (path) => (location.href = path);

export function setNavigate(n: Navigate): void {
  navigate = n;
}

export function go(path: string): void {
  navigate(path);
}

export function link(path: string, text: string, attrs: Record<string, string> = {}): HTMLElement {
  const current = location.pathname === path ? "page" : "false";
  return h("a", { href: path, "data-link": true, "aria-current": current, ...attrs }, text);
}

/** Where a form says what went wrong, announced to screen readers. */
export function errorBox(): HTMLElement {
  return h("p", { class: "error", role: "alert", "aria-live": "assertive" });
}

/** A form whose submission runs `submit` with its fields; what goes wrong
 * is shown in `error`, in words (the API's problem detail and fields). */
export function form(
  error: HTMLElement,
  submit: (data: FormData, form: HTMLFormElement) => Promise<void>,
  ...children: (HTMLElement | string)[]
): HTMLFormElement {
  return h(
    "form",
    {
      onsubmit: async (event: Event) => {
        event.preventDefault();
        error.textContent = "";
        const f = event.target as HTMLFormElement;
        const button = f.querySelector("button[type=submit]") as HTMLButtonElement | null;
        if (button) button.disabled = true;
        try {
          await submit(new FormData(f), f);
        } catch (e) {
          error.textContent = words(e);
        } finally {
          if (button) button.disabled = false;
        }
      },
    },
    ...children,
  ) as HTMLFormElement;
}

/** A button whose action's failure is shown in `error`. */
export function action(label: string, error: HTMLElement, run: () => Promise<void>, attrs: Record<string, string> = {}): HTMLElement {
  const button = h("button", { type: "button", ...attrs }, label) as HTMLButtonElement;
  button.addEventListener("click", async () => {
    error.textContent = "";
    button.disabled = true;
    try {
      await run();
    } catch (e) {
      error.textContent = words(e);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

export function avatar(url: string | null | undefined, size = 32): HTMLElement {
  // Decorative: the name beside it says who it is.
  return h("img", { class: "avatar", src: url ?? "", alt: "", width: String(size), height: String(size) });
}

export type Person = { id: string; display_name: string; avatar_url?: string | null };

const names = new Map<string, Promise<string>>();

/** A player's display name; bots and people whose profile cannot be read
 * get `fallback`. */
export function nameOf(id: string, fallback: string): Promise<string> {
  let name = names.get(id);
  if (!name) {
    name = call<Person>("GET", `/v1/users/${id}`)
      .then((p) => p.display_name)
      .catch(() => fallback);
    names.set(id, name);
  }
  return name;
}

let bots: Promise<Map<string, string>> | null = null;

/** A bot's name (bots have no profile in users; the AI service names them). */
export async function botName(id: string, fallback: string): Promise<string> {
  bots ??= call<{ id: string; name: string }[]>("GET", "/v1/ai/bots")
    .then((all) => new Map(all.map((b) => [b.id, b.name])))
    .catch(() => new Map());
  const known = (await bots).get(id);
  if (known) return known;
  bots = null; // a bot made since: ask again next time
  return fallback;
}

export function rememberName(id: string, name: string): void {
  names.set(id, Promise.resolve(name));
}

/** A short notice at the corner of the screen, read out by screen readers. */
export function toast(text: string, linkTo?: { path: string; label: string }): void {
  const box = document.getElementById("toasts");
  if (!box) return;
  const item = h("div", { class: "toast" }, text, linkTo ? " " : null, linkTo ? link(linkTo.path, linkTo.label) : null);
  box.append(item);
  window.setTimeout(() => item.remove(), 8000);
}

export function when(iso: string | null | undefined): string {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** A page's loading state until `load` answers; its failure in words. */
export async function loading<T>(root: HTMLElement, load: () => Promise<T>): Promise<T | null> {
  const note = h("p", { class: "muted", role: "status" }, "Loading…");
  root.append(note);
  try {
    return await load();
  } catch (e) {
    root.append(h("p", { class: "error", role: "alert" }, words(e)));
    return null;
  } finally {
    note.remove();
  }
}
