// Panal's web client: a single-page application. Pages are routes of the
// History API, so Back, Forward and deep links work; the gateway answers any
// path that is not an API with this app.

import { ApiError, call, type Tokens } from "./api";
import { errorBox, field, h } from "./dom";
import * as session from "./session";

type Page = (root: HTMLElement) => void | Promise<void>;

const routes: Record<string, Page> = {
  "/": home,
  "/signin": signIn,
  "/signup": signUp,
};

const app = document.getElementById("app") as HTMLElement;
const nav = document.getElementById("nav") as HTMLElement;

export function go(path: string): void {
  history.pushState(null, "", path);
  void render();
}

async function render(): Promise<void> {
  const page = routes[location.pathname] ?? notFound;
  renderNav();
  app.replaceChildren();
  await page(app);
  app.focus();
}

function renderNav(): void {
  const links = session.signedIn()
    ? [link("/", "My profile"), h("button", { type: "button", class: "link", onclick: () => void out() }, "Sign out")]
    : [link("/signin", "Sign in"), link("/signup", "Sign up")];
  nav.replaceChildren(...links);
}

async function out(): Promise<void> {
  await session.signOut();
  go("/signin");
}

function link(path: string, text: string): HTMLElement {
  const current = location.pathname === path ? "page" : "false";
  return h("a", { href: path, "data-link": true, "aria-current": current }, text);
}

// Same-origin links are handled here, not by a page load.
document.addEventListener("click", (event) => {
  const a = (event.target as Element).closest("a[data-link]") as HTMLAnchorElement | null;
  if (!a || event.ctrlKey || event.metaKey || event.shiftKey) return;
  event.preventDefault();
  go(a.pathname);
});
window.addEventListener("popstate", () => void render());

/** A form whose submission runs `submit` with its fields; what goes wrong
 * is shown in `error`, in words (the API's problem detail and fields). */
function form(error: HTMLElement, submit: (data: FormData) => Promise<void>, ...children: HTMLElement[]): HTMLElement {
  return h(
    "form",
    {
      onsubmit: async (event: Event) => {
        event.preventDefault();
        error.textContent = "";
        try {
          await submit(new FormData(event.target as HTMLFormElement));
        } catch (e) {
          if (e instanceof ApiError) {
            const fields = e.fields.map((f) => `${f.field}: ${f.message}`).join("; ");
            error.textContent = fields ? `${e.message} (${fields})` : e.message;
          } else {
            error.textContent = String(e);
          }
        }
      },
    },
    ...children,
  );
}

function signIn(root: HTMLElement): void {
  const error = errorBox();
  let mfaToken: string | null = null;
  const code = field("Code from your authenticator app", "code", "text", {
    inputmode: "numeric",
    autocomplete: "one-time-code",
  });
  code.hidden = true;
  const signInForm = form(
    error,
    async (data) => {
      let answer: Tokens & { mfa_required?: boolean; mfa_token?: string };
      if (mfaToken) {
        answer = await call("POST", "/v1/auth/login/mfa", { mfa_token: mfaToken, code: data.get("code") });
      } else {
        answer = await call("POST", "/v1/auth/login", { email: data.get("email"), password: data.get("password") });
      }
      if (answer.mfa_required && answer.mfa_token) {
        mfaToken = answer.mfa_token;
        code.hidden = false;
        (code.querySelector("input") as HTMLInputElement).focus();
        return;
      }
      session.start(answer);
      go("/");
    },
    field("Email", "email", "email", { autocomplete: "username", required: true }),
    field("Password", "password", "password", { autocomplete: "current-password", required: true }),
    code,
    error,
    h("button", { type: "submit" }, "Sign in"),
  );
  root.append(h("h1", {}, "Sign in"), signInForm, h("p", {}, "New here? ", link("/signup", "Create an account")));
}

function signUp(root: HTMLElement): void {
  const error = errorBox();
  const signUpForm = form(
    error,
    async (data) => {
      const email = data.get("email");
      const password = data.get("password");
      await call("POST", "/v1/auth/register", { email, password, display_name: data.get("display_name") });
      // Registration answers the same whether or not the address was free
      // (no account enumeration); signing in tells.
      session.start(await call<Tokens>("POST", "/v1/auth/login", { email, password }));
      go("/");
    },
    field("Display name", "display_name", "text", { autocomplete: "nickname", required: true }),
    field("Email", "email", "email", { autocomplete: "email", required: true }),
    field("Password", "password", "password", { autocomplete: "new-password", required: true, minlength: "12" }),
    error,
    h("button", { type: "submit" }, "Create my account"),
  );
  root.append(h("h1", {}, "Create an account"), signUpForm);
}

type Profile = { id: string; display_name: string; bio?: string | null };

async function home(root: HTMLElement): Promise<void> {
  if (!session.signedIn()) {
    go("/signin");
    return;
  }
  const error = errorBox();
  root.append(h("h1", {}, "My profile"), error);
  let me: Profile | null = null;
  // A new account's profile is made from auth's event, a moment later:
  // until then users answers 503 "profile pending" (docs/users.md).
  for (let i = 0; i < 40 && !me; i++) {
    try {
      me = await call<Profile>("GET", "/v1/users/me");
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 503) {
        error.textContent = e instanceof ApiError ? e.message : String(e);
        return;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  if (!me) {
    error.textContent = "Your profile is not ready yet. Reload the page in a moment.";
    return;
  }
  const saved = h("p", { class: "notice", role: "status" });
  const bio = field("About me", "bio", "text", { value: me.bio ?? "", maxlength: "500" });
  root.append(
    h("p", { class: "name" }, me.display_name),
    form(
      error,
      async (data) => {
        saved.textContent = "";
        await call("PUT", "/v1/users/me", { bio: data.get("bio") });
        saved.textContent = "Saved.";
      },
      bio,
      saved,
      h("button", { type: "submit" }, "Save"),
    ),
  );
}

function notFound(root: HTMLElement): void {
  root.append(h("h1", {}, "Nothing here"), h("p", {}, "This page does not exist. ", link("/", "Go home")));
}

// A reload keeps the session: a new access token from the refresh token.
void (async () => {
  if (session.signedIn()) await session.resume();
  await render();
})();
