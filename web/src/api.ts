// The gateway's API, with errors turned into words (RFC 9457 problem
// documents carry a `detail` meant for people).

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly fields: { field: string; message: string }[] = [],
  ) {
    super(message);
  }
}

export type Tokens = { access_token: string; refresh_token: string; expires_in: number };

let current: string | null = null;
let renewer: (() => Promise<boolean>) | null = null;

export function setAccessToken(token: string | null): void {
  current = token;
}

export function accessToken(): string | null {
  return current;
}

/** How to get a new access token when one is refused (the session's). */
export function setRenewer(renew: () => Promise<boolean>): void {
  renewer = renew;
}

/** `body` is sent as JSON, or as it is when it is FormData (uploads). */
export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  let response = await send(method, path, body);
  // An access token that ran out while the tab slept: renew once and retry.
  if (response.status === 401 && current && renewer && !path.startsWith("/v1/auth/") && (await renewer())) {
    response = await send(method, path, body);
  }
  if (response.status === 204 || response.status === 202 && !response.headers.get("content-type")) {
    return undefined as T;
  }
  const text = await response.text();
  let data: any;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = undefined;
  }
  if (!response.ok) {
    const detail = data?.detail ?? data?.title ?? `The request failed (${response.status}).`;
    throw new ApiError(response.status, detail, data?.errors ?? []);
  }
  return data as T;
}

async function send(method: string, path: string, body: unknown): Promise<Response> {
  const headers: Record<string, string> = { accept: "application/json" };
  const form = body instanceof FormData;
  if (body !== undefined && !form) headers["content-type"] = "application/json";
  if (current) headers.authorization = `Bearer ${current}`;
  try {
    return await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : form ? body : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "Panal cannot be reached. Check your connection and try again.");
  }
}

/** A message for people from whatever was thrown. */
export function words(e: unknown): string {
  if (e instanceof ApiError) {
    const fields = e.fields.map((f) => `${f.field}: ${f.message}`).join("; ");
    return fields ? `${e.message} (${fields})` : e.message;
  }
  return e instanceof Error ? e.message : String(e);
}
