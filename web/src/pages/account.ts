// Signing up and in (password, second factor, OpenID / 42 providers), and
// the pages e-mails link to: address verification and password reset.

import { ApiError, call, type Tokens } from "../api";
import { field, h } from "../dom";
import * as session from "../session";
import { action, errorBox, form, go, link } from "../ui";

type SignInAnswer = Tokens & { mfa_required?: boolean; mfa_token?: string };

export function signIn(root: HTMLElement): void {
  const error = errorBox();
  let mfaToken: string | null = null;
  const code = field("Code from your authenticator app (or a recovery code)", "code", "text", {
    autocomplete: "one-time-code",
  });
  code.hidden = true;
  const signInForm = form(
    error,
    async (data) => {
      let answer: SignInAnswer;
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
  const providers = h("div", { class: "providers" });
  root.append(
    h("h1", {}, "Sign in"),
    signInForm,
    providers,
    h("p", {}, "New here? ", link("/signup", "Create an account"), " · ", link("/forgot-password", "Forgot your password?")),
  );
  void providerButtons(providers);
}

type Provider = { name: string; display_name?: string };

/** One button per configured identity provider (42, any OpenID issuer). */
async function providerButtons(box: HTMLElement): Promise<void> {
  let providers: Provider[] = [];
  try {
    providers = await call<Provider[]>("GET", "/v1/auth/oauth/providers");
  } catch {
    return; // auth unreachable: the password form stays
  }
  if (providers.length === 0) return;
  const error = errorBox();
  for (const p of providers) {
    box.append(
      action(`Sign in with ${p.display_name ?? p.name}`, error, async () => {
        const redirect_uri = `${location.origin}/oauth/callback`;
        const start = await call<{ authorization_url: string; state: string }>(
          "POST",
          `/v1/auth/oauth/${encodeURIComponent(p.name)}/start`,
          { redirect_uri },
        );
        sessionStorage.setItem("panal.oauth", JSON.stringify({ provider: p.name, state: start.state }));
        location.assign(start.authorization_url);
      }),
    );
  }
  box.append(error);
}

/** Where a provider sends the browser back: `?code=…&state=…`. */
export async function oauthCallback(root: HTMLElement): Promise<void> {
  root.append(h("h1", {}, "Signing you in"));
  const error = errorBox();
  root.append(error);
  const params = new URLSearchParams(location.search);
  const kept = JSON.parse(sessionStorage.getItem("panal.oauth") ?? "null") as { provider: string; state: string } | null;
  sessionStorage.removeItem("panal.oauth");
  if (!kept || kept.state !== params.get("state") || !params.get("code")) {
    error.textContent = "This sign-in link is not one this browser started. Start again from the sign-in page.";
    return;
  }
  try {
    const answer = await call<SignInAnswer & { link_required?: boolean }>(
      "POST",
      `/v1/auth/oauth/${encodeURIComponent(kept.provider)}/callback`,
      { code: params.get("code"), state: kept.state },
    );
    if (answer.link_required) {
      error.textContent =
        "An account with this address exists. Sign in with your password, then link the provider from your settings.";
      return;
    }
    if (answer.mfa_required) {
      error.textContent = "This account has a second factor: sign in with your password and code.";
      return;
    }
    session.start(answer);
    go("/");
  } catch (e) {
    error.textContent = e instanceof ApiError ? e.message : String(e);
  }
}

export function signUp(root: HTMLElement): void {
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

/** The token of a link from an e-mail: after `#`, so it never reaches a
 * server log or a Referer. */
function tokenFromFragment(): string | null {
  return new URLSearchParams(location.hash.slice(1)).get("token");
}

export async function verifyEmail(root: HTMLElement): Promise<void> {
  root.append(h("h1", {}, "Verify your address"));
  const status = h("p", { role: "status" });
  root.append(status);
  const token = tokenFromFragment();
  if (!token) {
    status.textContent = "This link has no token. Open the link from the e-mail again.";
    return;
  }
  try {
    await call("POST", "/v1/auth/email/verify", { token });
    status.textContent = "Your address is verified. Thank you!";
  } catch (e) {
    status.textContent = e instanceof ApiError ? e.message : String(e);
  }
  history.replaceState(null, "", "/verify-email");
  root.append(h("p", {}, link("/", "Go to Panal")));
}

export function forgotPassword(root: HTMLElement): void {
  const error = errorBox();
  const sent = h("p", { class: "notice", role: "status" });
  root.append(
    h("h1", {}, "Forgot your password?"),
    form(
      error,
      async (data) => {
        await call("POST", "/v1/auth/password/forgot", { email: data.get("email") });
        sent.textContent = "If an account has this address, a link to choose a new password is on its way.";
      },
      field("Email", "email", "email", { autocomplete: "email", required: true }),
      error,
      sent,
      h("button", { type: "submit" }, "Send me a link"),
    ),
  );
}

export function resetPassword(root: HTMLElement): void {
  const token = tokenFromFragment();
  history.replaceState(null, "", "/reset-password");
  const error = errorBox();
  const done = h("p", { class: "notice", role: "status" });
  root.append(
    h("h1", {}, "Choose a new password"),
    form(
      error,
      async (data) => {
        if (!token) throw new Error("This link has no token. Open the link from the e-mail again.");
        await call("POST", "/v1/auth/password/reset", { token, new_password: data.get("password") });
        done.textContent = "Your password is changed. Every other session was signed out.";
        root.append(h("p", {}, link("/signin", "Sign in")));
      },
      field("New password", "password", "password", { autocomplete: "new-password", required: true, minlength: "12" }),
      error,
      done,
      h("button", { type: "submit" }, "Change my password"),
    ),
  );
}
