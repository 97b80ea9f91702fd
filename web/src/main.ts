// Panal's web client: a single-page application. Pages are routes of the
// History API, so Back, Forward and deep links work; the gateway answers any
// path that is not an API with this app.

import { call, setRenewer } from "./api";
import { h } from "./dom";
import { localMatch } from "./game/local";
import { matchPage } from "./game/page";
import { forgotPassword, oauthCallback, resetPassword, signIn, signUp, verifyEmail } from "./pages/account";
import { inbox, leaderboard, tournament, tournaments } from "./pages/boards";
import { chatList, conversation } from "./pages/chat";
import { friends, home, player } from "./pages/people";
import { play } from "./pages/play";
import { settings } from "./pages/settings";
import * as session from "./session";
import * as socket from "./socket";
import { link, setNavigate, toast } from "./ui";

type Cleanup = () => void;
type Page = (root: HTMLElement, params: Record<string, string>) => void | Cleanup | Promise<void | Cleanup>;

/** Pattern, page, and whether it needs a signed-in user. */
const routes: [string, Page, boolean][] = [
  ["/", home, true],
  ["/signin", signIn, false],
  ["/signup", signUp, false],
  ["/forgot-password", forgotPassword, false],
  ["/reset-password", resetPassword, false],
  ["/verify-email", verifyEmail, false],
  ["/oauth/callback", oauthCallback, false],
  ["/players/:id", player, true],
  ["/friends", friends, true],
  ["/chat", chatList, true],
  ["/chat/:id", conversation, true],
  ["/play", play, true],
  ["/play/local", localMatch, false],
  ["/play/:id", matchPage, true],
  ["/leaderboard", leaderboard, true],
  ["/leaderboard/:mode", leaderboard, true],
  ["/tournaments", tournaments, true],
  ["/tournaments/:id", tournament, true],
  ["/inbox", inbox, true],
  ["/settings", settings, true],
];

function match(path: string): [Page, Record<string, string>, boolean] {
  const parts = path.split("/").filter(Boolean);
  for (const [pattern, page, auth] of routes) {
    const want = pattern.split("/").filter(Boolean);
    if (want.length !== parts.length) continue;
    const params: Record<string, string> = {};
    if (want.every((w, i) => (w.startsWith(":") ? ((params[w.slice(1)] = decodeURIComponent(parts[i])), true) : w === parts[i]))) {
      return [page, params, auth];
    }
  }
  return [notFound, {}, false];
}

const app = document.getElementById("app") as HTMLElement;
const nav = document.getElementById("nav") as HTMLElement;
let cleanup: Cleanup | null = null;
let rendering = 0;
let unread = 0;

export function go(path: string): void {
  if (path === location.pathname + location.search) return;
  history.pushState(null, "", path);
  void render();
}
setNavigate(go);
setRenewer(session.resume);

async function render(): Promise<void> {
  const mine = ++rendering;
  cleanup?.();
  cleanup = null;
  const [page, params, auth] = match(location.pathname);
  if (auth && !session.signedIn()) {
    history.replaceState(null, "", "/signin");
    return render();
  }
  renderNav();
  const root = h("div", { class: "page" });
  app.replaceChildren(root);
  // Focus moves to the new page at once (screen readers start there), not
  // when its data has loaded: by then the person may be typing in a field.
  window.scrollTo(0, 0);
  app.focus({ preventScroll: true });
  const done = await page(root, params);
  // A page that finished after the user moved on cleans up at once.
  if (mine !== rendering) {
    if (typeof done === "function") done();
    return;
  }
  if (typeof done === "function") cleanup = done;
}

function renderNav(): void {
  const links = session.signedIn()
    ? [
        link("/play", "Play"),
        link("/chat", "Chat"),
        link("/friends", "Friends"),
        link("/tournaments", "Tournaments"),
        link("/leaderboard", "Leaderboard"),
        h("a", { href: "/inbox", "data-link": true, "aria-current": location.pathname === "/inbox" ? "page" : "false", id: "inbox-link" }, "Inbox", unread ? h("span", { class: "badge" }, String(unread)) : null),
        link("/", "Me"),
        link("/settings", "Settings"),
        h("button", { type: "button", class: "link", onclick: () => void out() }, "Sign out"),
      ]
    : [link("/play/local", "Local match"), link("/signin", "Sign in"), link("/signup", "Sign up")];
  nav.replaceChildren(...links);
}

async function out(): Promise<void> {
  await session.signOut();
  go("/signin");
}

function notFound(root: HTMLElement): void {
  root.append(h("h1", {}, "Nothing here"), h("p", {}, "This page does not exist. ", link("/", "Go home")));
}

// Same-origin links are handled here, not by a page load.
document.addEventListener("click", (event) => {
  const a = (event.target as Element).closest("a[data-link]") as HTMLAnchorElement | null;
  if (!a || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  go(a.pathname + a.search);
});
window.addEventListener("popstate", () => void render());

const refreshUnread = async () => {
  if (!session.signedIn()) return;
  try {
    unread = (await call<{ unread: number }>("GET", "/v1/notify/inbox?limit=1")).unread;
  } catch {
    return;
  }
  renderNav();
};
document.addEventListener("panal:unread", (e) => {
  unread = (e as CustomEvent<number>).detail;
  renderNav();
});

// What the user's own channel says, wherever they are in the app.
socket.onPush((push) => {
  if (push.type === "match_ready" && typeof push.match_id === "string") {
    // The queue, an invitation or a rematch made the match: to the field.
    if (location.pathname !== `/play/${push.match_id}`) go(`/play/${push.match_id}`);
  } else if (push.type === "notification") {
    toast(String(push.title ?? "New notification"), { path: "/inbox", label: "Open" });
    void refreshUnread();
  } else if (push.type === "tournament_match" && typeof push.tournament_id === "string") {
    const opponent = (push.opponent as { alias?: string } | undefined)?.alias ?? "your opponent";
    toast(`Your tournament match against ${opponent} is ready.`, { path: `/tournaments/${push.tournament_id}`, label: "Open" });
  }
});

// A reload keeps the session: a new access token from the refresh token.
void (async () => {
  if (session.signedIn()) await session.resume();
  await render();
  void refreshUnread();
})();
