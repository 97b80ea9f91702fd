// The signed-in session.
//
// The access token (15 minutes) lives in memory only. The refresh token is
// kept in localStorage so that a reload keeps the session: auth's API hands it
// to the app in JSON, so an HttpOnly cookie is not an option without a
// change to auth. What protects it is what protects the page: a strict
// Content-Security-Policy (scripts from this origin only, no inline script)
// and never inserting user content as HTML. Refresh tokens rotate on every
// use and a reused one ends the session (docs/auth.md), so a stolen copy is
// short-lived once the owner's tab refreshes.

import { call, setAccessToken, type Tokens } from "./api";

const KEY = "panal.refresh_token";
let refreshTimer: number | undefined;

export function signedIn(): boolean {
  return localStorage.getItem(KEY) !== null;
}

export function start(tokens: Tokens): void {
  setAccessToken(tokens.access_token);
  localStorage.setItem(KEY, tokens.refresh_token);
  window.clearTimeout(refreshTimer);
  // Renew at four fifths of the access token's life.
  refreshTimer = window.setTimeout(() => void resume(), tokens.expires_in * 800);
}

/** After a reload: a new access token from the kept refresh token. */
export async function resume(): Promise<boolean> {
  const refresh = localStorage.getItem(KEY);
  if (!refresh) return false;
  try {
    start(await call<Tokens>("POST", "/v1/auth/refresh", { refresh_token: refresh }));
    return true;
  } catch {
    end();
    return false;
  }
}

export async function signOut(): Promise<void> {
  try {
    await call("POST", "/v1/auth/logout");
  } finally {
    end();
  }
}

function end(): void {
  window.clearTimeout(refreshTimer);
  setAccessToken(null);
  localStorage.removeItem(KEY);
}
