// Settings: sessions, password, the second factor, notification
// preferences, and the GDPR rights (a copy of everything, erasure).

import { ApiError, call, words } from "../api";
import { field, h } from "../dom";
import * as session from "../session";
import { action, errorBox, form, go, when } from "../ui";

type SessionInfo = { id: string; current: boolean; created_at: string; last_used_at: string; user_agent?: string | null; ip?: string | null };
type Preference = { kind: string; channel: string; enabled: boolean; locked: boolean };

export async function settings(root: HTMLElement): Promise<void> {
  root.append(h("h1", {}, "Settings"));
  root.append(await sessions(), password(), secondFactor(), await preferences(), privacyRights());
}

async function sessions(): Promise<HTMLElement> {
  const error = errorBox();
  const list = h("ul", { class: "sessions" });
  const box = h("section", { "aria-labelledby": "sessions-h" }, h("h2", { id: "sessions-h" }, "Where I am signed in"), error, list);
  const draw = async () => {
    const all = await call<SessionInfo[]>("GET", "/v1/auth/sessions");
    list.replaceChildren(
      ...all.map((s) =>
        h(
          "li",
          {},
          `${s.user_agent ?? "Unknown device"}${s.ip ? ` · ${s.ip}` : ""} · last used ${when(s.last_used_at)}`,
          s.current
            ? h("strong", {}, " (this device)")
            : action("Sign out", error, async () => {
                await call("DELETE", `/v1/auth/sessions/${s.id}`);
                await draw();
              }, { "aria-label": `Sign out the session last used ${when(s.last_used_at)}` }),
        ),
      ),
    );
  };
  await draw().catch((e) => (error.textContent = words(e)));
  box.append(
    action("Sign out everywhere else", error, async () => {
      await call("POST", "/v1/auth/sessions/revoke-others");
      await draw();
    }),
  );
  return box;
}

function password(): HTMLElement {
  const error = errorBox();
  const done = h("p", { class: "notice", role: "status" });
  return h(
    "section",
    { "aria-labelledby": "password-h" },
    h("h2", { id: "password-h" }, "Password"),
    form(
      error,
      async (data, f) => {
        await call("POST", "/v1/auth/password", { current_password: data.get("current_password"), new_password: data.get("new_password") });
        f.reset();
        done.textContent = "Changed. Your other sessions were signed out.";
      },
      field("Current password", "current_password", "password", { autocomplete: "current-password", required: true }),
      field("New password", "new_password", "password", { autocomplete: "new-password", required: true, minlength: "12" }),
      error,
      done,
      h("button", { type: "submit" }, "Change my password"),
    ),
  );
}

function secondFactor(): HTMLElement {
  const error = errorBox();
  const steps = h("div", {});
  const enrol = form(
    error,
    async (data) => {
      const e = await call<{ secret: string; otpauth_uri: string }>("POST", "/v1/auth/mfa/totp", { password: data.get("password") });
      steps.replaceChildren(
        h("p", {}, "Add this key to your authenticator app (or open the link on your phone), then type the code it shows."),
        h("p", {}, h("code", { class: "secret" }, e.secret)),
        h("p", {}, h("a", { href: e.otpauth_uri }, "Open in my authenticator app")),
        form(
          error,
          async (d) => {
            const codes = await call<{ recovery_codes: string[] }>("POST", "/v1/auth/mfa/totp/confirm", { code: d.get("code") });
            steps.replaceChildren(
              h("p", { role: "status" }, "The second factor is on. Keep these recovery codes somewhere safe: each works once if you lose your phone."),
              h("ul", { class: "codes" }, ...codes.recovery_codes.map((c) => h("li", {}, h("code", {}, c)))),
            );
          },
          field("Code", "code", "text", { autocomplete: "one-time-code", inputmode: "numeric", required: true }),
          h("button", { type: "submit" }, "Turn it on"),
        ),
      );
    },
    field("Password", "password", "password", { autocomplete: "current-password", required: true }),
    h("button", { type: "submit" }, "Set up an authenticator app"),
  );
  const disable = form(
    error,
    async (data, f) => {
      await call("POST", "/v1/auth/mfa/totp/disable", { password: data.get("password"), code: data.get("code") });
      f.reset();
      steps.replaceChildren(h("p", { role: "status" }, "The second factor is off."));
    },
    field("Password", "password", "password", { autocomplete: "current-password", required: true }),
    field("Code", "code", "text", { autocomplete: "one-time-code", required: true }),
    h("button", { type: "submit" }, "Turn it off"),
  );
  return h(
    "section",
    { "aria-labelledby": "mfa-h" },
    h("h2", { id: "mfa-h" }, "Second factor"),
    error,
    h("details", {}, h("summary", {}, "Turn on"), enrol),
    h("details", {}, h("summary", {}, "Turn off"), disable),
    steps,
  );
}

async function preferences(): Promise<HTMLElement> {
  const error = errorBox();
  const box = h("section", { "aria-labelledby": "prefs-h" }, h("h2", { id: "prefs-h" }, "Notifications"), error);
  try {
    const all = await call<Preference[]>("GET", "/v1/notify/preferences");
    const kinds = [...new Set(all.map((p) => p.kind))];
    const channels = [...new Set(all.map((p) => p.channel))];
    const table = h(
      "table",
      { class: "prefs" },
      h("caption", {}, "What reaches me, and how"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "About"), ...channels.map((c) => h("th", { scope: "col" }, c)))),
    );
    const body = h("tbody", {});
    for (const kind of kinds) {
      const row = h("tr", {}, h("th", { scope: "row" }, kind.replace(/_/g, " ")));
      for (const channel of channels) {
        const p = all.find((x) => x.kind === kind && x.channel === channel);
        if (!p) {
          row.append(h("td", {}, "—"));
          continue;
        }
        const box = h("input", {
          type: "checkbox",
          checked: p.enabled,
          disabled: p.locked,
          "aria-label": `${kind.replace(/_/g, " ")} by ${channel}`,
        }) as HTMLInputElement;
        box.addEventListener("change", async () => {
          error.textContent = "";
          try {
            await call("PUT", "/v1/notify/preferences", { kind, channel, enabled: box.checked });
          } catch (e) {
            box.checked = !box.checked;
            error.textContent = words(e);
          }
        });
        row.append(h("td", {}, box));
      }
      body.append(row);
    }
    table.append(body);
    box.append(h("div", { class: "scroll" }, table));
  } catch (e) {
    error.textContent = words(e);
  }
  return box;
}

function privacyRights(): HTMLElement {
  const error = errorBox();
  return h(
    "section",
    { "aria-labelledby": "gdpr-h" },
    h("h2", { id: "gdpr-h" }, "My data"),
    error,
    h("p", {}, "A copy of everything Panal holds about you, from every service, as one JSON file."),
    action("Download my data", error, async () => {
      const data = await call<unknown>("GET", "/v1/users/me/export");
      const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: "application/json" }));
      const a = h("a", { href: url, download: "panal-my-data.json" }) as HTMLAnchorElement;
      document.body.append(a);
      a.click();
      a.remove();
      URL.revokeObjectURL(url);
    }),
    h("p", {}, "Erasing your account removes your profile, friends and messages' authorship for good. It needs a sign-in from the last 10 minutes."),
    action("Erase my account", error, async () => {
      if (!confirm("Erase your account for good? This cannot be undone.")) return;
      try {
        await call("DELETE", "/v1/users/me");
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) throw new Error("For your safety, sign out and in again, then erase within 10 minutes.");
        throw e;
      }
      await session.signOut().catch(() => {});
      go("/signin");
    }, { class: "danger" }),
  );
}
