// Chat: the conversations with their unread counts, public rooms, and one
// conversation live — messages, typing, read markers, game invitations and
// tournament calls as cards, search, and moderation for room admins.

import { call, words } from "../api";
import { field, h } from "../dom";
import * as session from "../session";
import * as socket from "../socket";
import { action, avatar, errorBox, form, go, link, loading, type Person, when } from "../ui";

type Conversation = {
  id: string;
  kind: "direct" | "room";
  name?: string | null;
  peer?: Person | null;
  role: string;
  unread: number;
  last_seq: number;
  last_read_seq: number;
  channel: string;
};
type Card = {
  type: string;
  title: string;
  reference?: string;
  fields?: { label: string; value: string }[];
  actions?: { name: string; label: string; method: string; href: string }[];
  expires_at?: string | null;
};
type Message = {
  id: string;
  seq: number;
  kind: string;
  author?: Person | null;
  body: string;
  card?: Card | null;
  created_at: string;
  edited_at?: string | null;
  deleted: boolean;
};
type Room = { id: string; name: string; topic: string; visibility: string; members: number; my_role?: string | null };

function title(c: Conversation): string {
  return c.kind === "direct" ? (c.peer?.display_name ?? "Direct conversation") : `# ${c.name ?? "room"}`;
}

export function chatList(root: HTMLElement): () => void {
  root.append(h("h1", {}, "Chat"));
  const list = h("ul", { class: "conversations", "aria-label": "Conversations" });
  const rooms = h("ul", { class: "rooms", "aria-label": "Public rooms" });
  const error = errorBox();
  const refresh = async () => {
    try {
      const all = await call<Conversation[]>("GET", "/v1/chat/conversations");
      list.replaceChildren(
        ...all.map((c) =>
          h(
            "li",
            {},
            link(`/chat/${c.id}`, title(c)),
            c.unread ? h("span", { class: "badge", "aria-label": `${c.unread} unread` }, String(c.unread)) : null,
          ),
        ),
      );
      if (!all.length) list.append(h("li", { class: "muted" }, "No conversations yet: message a friend, or join a room."));
    } catch (e) {
      error.textContent = words(e);
    }
  };
  const findRooms = async (q: string) => {
    const page = await call<{ items: Room[] }>("GET", `/v1/chat/rooms?q=${encodeURIComponent(q)}&limit=20`);
    rooms.replaceChildren(
      ...page.items.map((r) =>
        h(
          "li",
          {},
          h("strong", {}, `# ${r.name}`),
          ` ${r.topic} · ${r.members} members `,
          r.my_role
            ? link(`/chat/${r.id}`, "Open")
            : action("Join", error, async () => {
                const password = r.visibility === "password" ? prompt(`The password of # ${r.name}`) : null;
                await call("POST", `/v1/chat/rooms/${r.id}/join`, password ? { password } : {});
                go(`/chat/${r.id}`);
              }, { "aria-label": `Join # ${r.name}` }),
        ),
      ),
    );
    if (!page.items.length) rooms.append(h("li", { class: "muted" }, "No room by that name."));
  };
  const found = h("ol", { class: "found", "aria-label": "Messages found" });
  root.append(
    error,
    list,
    h("h2", {}, "Rooms"),
    form(error, async (data) => findRooms(String(data.get("q") ?? "")), field("Find a room", "q", "search"), h("button", { type: "submit" }, "Find")),
    rooms,
    h("h2", {}, "New room"),
    form(
      error,
      async (data) => {
        const visibility = String(data.get("visibility"));
        const room = await call<Room>("POST", "/v1/chat/rooms", {
          name: data.get("name"),
          topic: data.get("topic") || null,
          visibility,
          password: visibility === "password" ? data.get("password") : null,
        });
        go(`/chat/${room.id}`);
      },
      field("Name", "name", "text", { required: true, maxlength: "40" }),
      field("Topic", "topic", "text", { maxlength: "200" }),
      h(
        "p",
        { class: "field" },
        h("label", { for: "room-visibility" }, "Who may join"),
        h(
          "select",
          { id: "room-visibility", name: "visibility" },
          h("option", { value: "public" }, "Anyone"),
          h("option", { value: "password" }, "Anyone with the password"),
          h("option", { value: "private" }, "Only people invited"),
        ),
      ),
      field("Password (for a room with a password)", "password", "password", { autocomplete: "new-password" }),
      h("button", { type: "submit" }, "Create the room"),
    ),
    h("h2", {}, "Search my messages"),
    form(
      error,
      async (data) => {
        const page = await call<{ items: (Message & { conversation_id: string })[] }>(
          "GET",
          `/v1/chat/search?q=${encodeURIComponent(String(data.get("q")))}&limit=20`,
        );
        found.replaceChildren(
          ...page.items.map((m) => h("li", {}, link(`/chat/${m.conversation_id}`, `${m.author?.display_name ?? "Panal"}: ${m.body}`))),
        );
        if (!page.items.length) found.append(h("li", { class: "muted" }, "Nothing found."));
      },
      field("Words", "q", "search", { required: true }),
      h("button", { type: "submit" }, "Search"),
    ),
    found,
  );
  void refresh();
  void findRooms("");
  // A new message anywhere moves the counts: chat tells each member's other
  // devices about reads on `user:`; messages come on the rooms' channels,
  // so the list is read again every few seconds while it is open.
  const timer = window.setInterval(() => void refresh(), 5_000);
  return () => window.clearInterval(timer);
}

export async function conversation(root: HTMLElement, params: Record<string, string>): Promise<() => void> {
  const id = params.id;
  const me = session.userId();
  const all = await loading(root, () => call<Conversation[]>("GET", "/v1/chat/conversations"));
  const c = all?.find((x) => x.id === id);
  if (!c) {
    if (all) root.append(h("h1", {}, "Conversation"), h("p", { class: "error", role: "alert" }, "This conversation does not exist, or you are not in it."));
    return () => {};
  }
  const error = errorBox();
  const log = h("ol", { class: "messages", "aria-label": "Messages", "aria-live": "polite" });
  const typing = h("p", { class: "typing muted", "aria-live": "polite" });
  const shown = new Map<number, HTMLElement>();
  let lastSeq = 0;
  let lastRead = c.last_read_seq;

  const draw = (m: Message) => {
    const item = messageItem(m, me, error);
    const old = shown.get(m.seq);
    if (old) old.replaceWith(item);
    else {
      // In order by seq, whatever order they arrive in.
      const after = [...shown.keys()].filter((s) => s > m.seq).sort((a, b) => a - b)[0];
      if (after !== undefined) log.insertBefore(item, shown.get(after) ?? null);
      else log.append(item);
    }
    shown.set(m.seq, item);
    lastSeq = Math.max(lastSeq, m.seq);
  };
  const markRead = () => {
    if (lastSeq > lastRead && document.visibilityState === "visible") {
      lastRead = lastSeq;
      void call("PUT", `/v1/chat/conversations/${id}/read`, { seq: lastSeq }).catch(() => {});
    }
  };
  const catchUp = async () => {
    // After a gap (first load, or a reconnect the SDK could not recover):
    // what came after the last message shown, from chat itself.
    const first = lastSeq === 0;
    let more = true;
    while (more) {
      const page = await call<{ items: Message[]; has_more: boolean }>(
        "GET",
        `/v1/chat/conversations/${id}/messages?${lastSeq ? `after=${lastSeq}&` : ""}limit=100`,
      );
      page.items.forEach(draw);
      more = !first && page.has_more;
    }
    markRead();
    log.lastElementChild?.scrollIntoView({ block: "end" });
  };

  let typingTimer: number | undefined;
  const stop = socket.subscribe(c.channel, {
    onSubscribed: (caughtUp) => {
      if (!caughtUp) void catchUp().catch((e) => (error.textContent = words(e)));
    },
    onPublication: (data: { type: string; message?: Message; user_id?: string }) => {
      if (data.message && (data.type === "message" || data.type === "message_edited" || data.type === "message_deleted")) {
        draw(data.message);
        if (data.type === "message") {
          typing.textContent = "";
          markRead();
          log.lastElementChild?.scrollIntoView({ block: "end" });
        }
      } else if (data.type === "typing" && data.user_id !== me) {
        const who = c.kind === "direct" ? (c.peer?.display_name ?? "Someone") : "Someone";
        typing.textContent = `${who} is typing…`;
        window.clearTimeout(typingTimer);
        typingTimer = window.setTimeout(() => (typing.textContent = ""), 4000);
      }
    },
  });

  let lastTyping = 0;
  const composer = form(
    error,
    async (data, f) => {
      const body = String(data.get("body") ?? "");
      if (!body.trim()) return;
      // Over HTTP, not the socket's rpc: a send that timed out on a socket
      // being replaced could not be retried without posting twice.
      const m = await call<Message>("POST", `/v1/chat/conversations/${id}/messages`, { body });
      draw(m);
      f.reset();
      log.lastElementChild?.scrollIntoView({ block: "end" });
    },
    field("Message", "body", "text", {
      autocomplete: "off",
      maxlength: "2000",
      required: true,
      oninput: () => {
        const now = Date.now();
        if (now - lastTyping > 3000) {
          lastTyping = now;
          void socket.rpc("chat.typing", { conversation_id: id }).catch(() => {});
        }
      },
    }),
    h("button", { type: "submit" }, "Send"),
  );
  root.append(h("h1", {}, title(c)), error, log, typing, composer);
  if (c.kind === "direct" && c.peer) root.append(inviteForm(c.peer));
  if (c.kind === "room") root.append(await roomPanel(c));
  const visible = () => markRead();
  document.addEventListener("visibilitychange", visible);
  return () => {
    stop();
    window.clearTimeout(typingTimer);
    document.removeEventListener("visibilitychange", visible);
  };
}

function messageItem(m: Message, me: string | null, error: HTMLElement): HTMLElement {
  const author = m.author?.display_name ?? "Panal";
  const item = h(
    "li",
    { class: `message${m.author?.id === me ? " mine" : ""}`, "data-seq": String(m.seq) },
    h("span", { class: "author" }, author),
    " ",
    h("time", { datetime: m.created_at }, when(m.created_at)),
  );
  if (m.deleted) {
    item.append(h("p", { class: "muted" }, "This message was deleted."));
    return item;
  }
  if (m.body) item.append(h("p", { class: "body" }, m.body, m.edited_at ? h("span", { class: "muted" }, " (edited)") : null));
  if (m.card) item.append(cardView(m.card, error));
  return item;
}

function cardView(card: Card, error: HTMLElement): HTMLElement {
  const expired = card.expires_at ? new Date(card.expires_at).getTime() < Date.now() : false;
  const box = h(
    "div",
    { class: `card ${card.type}`, role: "group", "aria-label": card.title },
    h("strong", {}, card.title),
    card.fields?.length ? h("dl", {}, ...card.fields.flatMap((f) => [h("dt", {}, f.label), h("dd", {}, f.value)])) : null,
  );
  const buttons = h("div", { class: "actions" });
  for (const a of card.actions ?? []) {
    // Actions go back to the owning service with the user's own token; chat
    // only lets services post paths under /v1/.
    const button = action(a.label, error, async () => {
      await call(a.method, a.href);
      buttons.replaceChildren(h("span", { class: "muted" }, a.name === "accept" ? "Accepted: the match is starting…" : "Done."));
    });
    if (expired) (button as HTMLButtonElement).disabled = true;
    buttons.append(button);
  }
  if (card.type === "tournament_call" && card.reference) buttons.append(link(`/play/${card.reference}`, "Go to the match"));
  if (expired) buttons.append(h("span", { class: "muted" }, " Expired."));
  box.append(buttons);
  return box;
}

function inviteForm(peer: Person): HTMLElement {
  const error = errorBox();
  const sent = h("p", { class: "notice", role: "status" });
  return h(
    "details",
    { class: "invite" },
    h("summary", {}, `Invite ${peer.display_name} to a match`),
    form(
      error,
      async (data) => {
        await call("POST", "/v1/game/invitations", {
          to: peer.id,
          options: { points_to_win: Number(data.get("points_to_win")), ball_speed: data.get("ball_speed"), power_ups: data.get("power_ups") === "on" },
        });
        sent.textContent = "Invitation sent: it is in this conversation.";
      },
      field("Points to win", "points_to_win", "number", { min: "1", max: "21", value: "5", required: true }),
      h(
        "p",
        { class: "field" },
        h("label", { for: "invite-speed" }, "Ball speed"),
        h("select", { id: "invite-speed", name: "ball_speed" }, h("option", { value: "slow" }, "Slow"), h("option", { value: "normal", selected: true }, "Normal"), h("option", { value: "fast" }, "Fast")),
      ),
      h("p", { class: "field check" }, h("input", { type: "checkbox", id: "invite-power", name: "power_ups" }), h("label", { for: "invite-power" }, "Power-ups")),
      error,
      sent,
      h("button", { type: "submit" }, "Send the invitation"),
    ),
  );
}

type Member = { user: Person; role: string; muted_until?: string | null };

/** Members, and for admins and the owner: mute, kick, ban. */
async function roomPanel(c: Conversation): Promise<HTMLElement> {
  const error = errorBox();
  const box = h("section", { class: "members", "aria-labelledby": "members-h" }, h("h2", { id: "members-h" }, "Members"), error);
  const admin = c.role === "admin" || c.role === "owner";
  const list = h("ul", { class: "people" });
  const draw = async () => {
    const members = await call<Member[]>("GET", `/v1/chat/rooms/${c.id}/members`);
    list.replaceChildren(
      ...members.map((m) => {
        const row = h("li", {}, avatar(m.user.avatar_url), link(`/players/${m.user.id}`, m.user.display_name), ` ${m.role}`);
        if (m.muted_until && new Date(m.muted_until).getTime() > Date.now()) row.append(" · muted");
        if (admin && m.role === "member") {
          const name = m.user.display_name;
          row.append(
            " ",
            action("Mute 10 min", error, async () => {
              await call("PUT", `/v1/chat/rooms/${c.id}/members/${m.user.id}/mute`, { seconds: 600 });
              await draw();
            }, { "aria-label": `Mute ${name} for 10 minutes` }),
            action("Kick", error, async () => {
              await call("DELETE", `/v1/chat/rooms/${c.id}/members/${m.user.id}`);
              await draw();
            }, { "aria-label": `Kick ${name}` }),
            action("Ban", error, async () => {
              await call("PUT", `/v1/chat/rooms/${c.id}/bans/${m.user.id}`, {});
              await draw();
            }, { "aria-label": `Ban ${name}` }),
          );
        }
        return row;
      }),
    );
  };
  box.append(list);
  await draw().catch((e) => (error.textContent = words(e)));
  box.append(
    action("Leave the room", error, async () => {
      await call("POST", `/v1/chat/rooms/${c.id}/leave`);
      go("/chat");
    }),
  );
  return box;
}
