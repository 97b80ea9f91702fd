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
//
// Rotation is why renewals are serialised: two renewals with the same
// refresh token would look like a theft and end the session. Within a tab
// one renewal is in flight at a time; across tabs (which share the stored
// token) a Web Lock orders them, and each reads the stored token inside the
// lock, so it uses the one the previous renewal left.

import { accessToken, call, setAccessToken, type Tokens } from "./api";

const KEY = "panal.refresh_token";
let refreshTimer: number | undefined;
let renewing: Promise<boolean> | null = null;
const listeners = new Set<(signedIn: boolean) => void>();

export function signedIn(): boolean {
  return localStorage.getItem(KEY) !== null;
}

/** Told when the session starts or ends (the socket follows it). */
export function onChange(listener: (signedIn: boolean) => void): void {
  listeners.add(listener);
}

export function start(tokens: Tokens): void {
  const was = accessToken() !== null;
  setAccessToken(tokens.access_token);
  localStorage.setItem(KEY, tokens.refresh_token);
  window.clearTimeout(refreshTimer);
  // Renew at four fifths of the access token's life.
  refreshTimer = window.setTimeout(() => void resume(), tokens.expires_in * 800);
  if (!was) for (const l of listeners) l(true);
}

function claims(): { sub?: string; exp?: number } {
  const token = accessToken();
  if (!token) return {};
  try {
    return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    return {};
  }
}

/** The signed-in user's id (the access token's subject), or null. */
export function userId(): string | null {
  return claims().sub ?? null;
}

/** An access token good for at least another minute (the socket's). */
export async function freshToken(): Promise<string | null> {
  const exp = claims().exp ?? 0;
  if (exp * 1000 - Date.now() < 60_000) await resume();
  return accessToken();
}

/** A new access token from the kept refresh token (after a reload, before
 * the current one runs out, or when the socket asks). */
export function resume(): Promise<boolean> {
  renewing ??= withLock(renew).finally(() => {
    renewing = null;
  });
  return renewing;
}

async function renew(): Promise<boolean> {
  const refresh = localStorage.getItem(KEY);
  if (!refresh) return false;
  try {
    start(await call<Tokens>("POST", "/v1/auth/refresh", { refresh_token: refresh }));
    return true;
  } catch (e) {
    // Unreachable is not signed out: keep the token for the next try.
    if ((e as { status?: number }).status === 0) return false;
    end();
    return false;
  }
}

function withLock<T>(f: () => Promise<T>): Promise<T> {
  // Web Locks exist in secure contexts (https, localhost); elsewhere one tab
  // at a time is the user's business.
  const locks = (navigator as Navigator & { locks?: LockManager }).locks;
  return locks ? (locks.request("panal.refresh", f) as Promise<T>) : f();
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
  const was = accessToken() !== null;
  setAccessToken(null);
  localStorage.removeItem(KEY);
  if (was) for (const l of listeners) l(false);
}
