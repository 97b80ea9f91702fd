// The one WebSocket (realtime, the Centrifugo protocol) and the signed-in
// user's own channel. The SDK (npm `centrifuge`) reconnects with backoff,
// renews the token through `getToken`, and recovers a channel's missed
// publications from their offset when it comes back.

import { Centrifuge, type PublicationContext, type Subscription, UnauthorizedError } from "centrifuge";
import * as session from "./session";

export type Push = { type: string; [key: string]: unknown };

let client: Centrifuge | null = null;
const pushListeners = new Set<(push: Push) => void>();
const stateListeners = new Set<(state: string) => void>();

function url(): string {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`;
}

/** Opens the socket and subscribes to `user:<me>` (once per session). */
export function open(): void {
  const me = session.userId();
  if (client || !me) return;
  client = new Centrifuge(url(), {
    getToken: async () => {
      const token = await session.freshToken();
      if (!token) throw new UnauthorizedError("signed out");
      return token;
    },
  });
  client.on("state", (ctx) => {
    for (const l of stateListeners) l(ctx.newState);
  });
  const mine = client.newSubscription(`user:${me}`);
  mine.on("publication", (ctx) => {
    for (const l of pushListeners) l(ctx.data as Push);
  });
  mine.subscribe();
  client.connect();
}

export function close(): void {
  client?.disconnect();
  client = null;
}

/** What arrives on the user's own channel (match_ready, notifications…);
 * returns the function that stops listening. */
export function onPush(listener: (push: Push) => void): () => void {
  pushListeners.add(listener);
  return () => pushListeners.delete(listener);
}

/** connecting / connected / disconnected. */
export function onState(listener: (state: string) => void): () => void {
  stateListeners.add(listener);
  return () => stateListeners.delete(listener);
}

export type Channel = {
  /** Called at every (re)subscription; `caughtUp` is false unless the SDK
   * recovered every publication missed, so the page reads what it shows
   * again from the owning service. */
  onSubscribed?: (caughtUp: boolean) => void;
  onPublication: (data: any, ctx: PublicationContext) => void;
};

/** Subscribes a page to a channel; returns the unsubscribe. */
export function subscribe(channel: string, handlers: Channel): () => void {
  if (!client) open();
  if (!client) return () => {};
  const existing = client.getSubscription(channel);
  if (existing) client.removeSubscription(existing);
  const sub: Subscription = client.newSubscription(channel);
  sub.on("publication", (ctx) => handlers.onPublication(ctx.data, ctx));
  sub.on("subscribed", (ctx) => handlers.onSubscribed?.(ctx.wasRecovering && ctx.recovered));
  sub.subscribe();
  return () => {
    sub.unsubscribe();
    client?.removeSubscription(sub);
  };
}

/** An rpc forwarded to the owning service (`game.input`, `chat.send`). */
export async function rpc<T>(method: string, data: unknown): Promise<T> {
  if (!client) open();
  if (!client) throw new Error("not signed in");
  const result = await client.rpc(method, data);
  return result.data as T;
}

session.onChange((signedIn) => (signedIn ? open() : close()));
