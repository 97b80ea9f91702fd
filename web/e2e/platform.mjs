// The Pong platform in the browser, end to end (issue 20), against a running
// Panal on a fresh data directory (CI: `panal up`):
//
//   node e2e/platform.mjs http://127.0.0.1:8000 [screenshot-dir]
//
// Two people register in two browser contexts, become friends (the other
// shows online), chat (each sees the other's message live, and typing), one
// invites the other from the chat and they play the match to its end; the
// result is in both histories and the leaderboard. Then a match against the
// AI, a four-player tournament of one person and three bots through to the
// ledger's verified badge, Back/Forward, a reload, a phone-width check, and
// axe-core on every page; with PANAL_MAIL_DIR (the mail directory of the
// Panal under test, `<data-dir>/mail`; CI sets it), the links of the
// verification and password-reset e-mails opened in the browser. Exits
// non-zero at the first surprise.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { axe, eventually, launch, newPage, shots, signUp } from "./lib.mjs";

// A 1×1 PNG: users decodes, crops and re-encodes whatever it is given.
const PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
const base = process.argv[2] ?? "http://127.0.0.1:8000";
const shoot = shots(process.argv[3] ?? "/tmp/panal-web-screenshots");
const started = Date.now();
const step = (what) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${what}`);
const checked = new Set();
async function page_(page, name) {
  await shoot(page, name);
  if (!checked.has(name)) {
    checked.add(name);
    await axe(page, name);
  }
}

/** Holds a key on the match page until the match is over (a point to win:
 * the one who moves into a corner misses the serve). */
async function playToTheEnd(page, key) {
  await page.locator("canvas.field").waitFor();
  await page.waitForFunction(() => document.querySelector(".score li") !== null, null, { timeout: 30000 });
  await page.keyboard.down(key);
  await page.locator(".result").waitFor({ timeout: 90000 });
  await page.keyboard.up(key);
  return page.locator(".result").textContent();
}

const browser = await launch();
const pages = {};
try {
  const tag = String(Date.now() % 100000);
  const adaName = `Ada ${tag}`;
  const bobName = `Bob ${tag}`;
  const ada = await newPage(browser);
  const bob = await newPage(browser);
  Object.assign(pages, { ada, bob });

  step("two people sign up");
  const adaEmail = await signUp(ada, base, adaName);
  await page_(ada, "profile");
  // A picture: the profile's image is the uploaded one (a new versioned URL).
  const before = await ada.locator(".who img").getAttribute("src");
  await ada.getByLabel(/^Picture/).setInputFiles({ name: "me.png", mimeType: "image/png", buffer: Buffer.from(PNG, "base64") });
  await ada.getByRole("button", { name: "Upload picture" }).click();
  await ada.waitForFunction((old) => document.querySelector(".who img")?.getAttribute("src") !== old, before);
  assert.equal((await ada.request.get(`${base}${await ada.locator(".who img").getAttribute("src")}`)).status(), 200);
  const bobEmail = await signUp(bob, base, bobName);

  step("Ada finds Bob and asks him to be friends");
  await ada.locator("#nav").getByRole("link", { name: "Friends", exact: true }).click();
  await ada.getByLabel("Find players by name").fill(bobName);
  await ada.getByRole("button", { name: "Search" }).click();
  await ada.locator("main").getByRole("link", { name: bobName, exact: true }).click();
  await ada.getByRole("heading", { name: bobName }).waitFor();
  await page_(ada, "player");
  await ada.getByRole("button", { name: "Add friend" }).click();
  await ada.getByText("Friend request sent.").waitFor();

  step("Bob accepts; each sees the other online");
  await bob.locator("#nav").getByRole("link", { name: "Friends", exact: true }).click();
  await bob.getByRole("button", { name: `Accept ${adaName}'s request` }).click({ timeout: 15000 });
  await bob.locator(".people li", { hasText: adaName }).locator(".dot.online").waitFor({ timeout: 20000 });
  await page_(bob, "friends");
  await ada.locator("#nav").getByRole("link", { name: "Friends", exact: true }).click();
  await ada.locator(".people li", { hasText: bobName }).locator(".dot.online").waitFor({ timeout: 20000 });

  step("they chat, live");
  await ada.getByRole("button", { name: `Message ${bobName}` }).click();
  await ada.getByRole("heading", { name: bobName }).waitFor();
  await ada.getByLabel("Message", { exact: true }).fill("Hello Bob <i>fancy</i> a game?");
  await ada.getByRole("button", { name: "Send" }).click();
  await ada.locator(".message .body", { hasText: "Hello Bob" }).waitFor();
  await bob.locator("#nav").getByRole("link", { name: "Chat", exact: true }).click();
  await bob.locator(".conversations .badge").waitFor({ timeout: 15000 });
  await page_(bob, "chat");
  await bob.locator(".conversations").getByRole("link", { name: adaName, exact: true }).click();
  const hello = bob.locator(".message .body", { hasText: "Hello Bob" });
  await hello.waitFor();
  assert.equal(await bob.locator(".message .body i").count(), 0, "a message is text, never HTML");
  await bob.getByLabel("Message", { exact: true }).pressSequentially("Sure");
  await ada.getByText(`${bobName} is typing…`).waitFor({ timeout: 10000 });
  await bob.getByRole("button", { name: "Send" }).click();
  await ada.locator(".message .body", { hasText: "Sure" }).waitFor({ timeout: 10000 });
  await page_(ada, "conversation");

  step("a room: Ada makes it, Bob joins, Ada mutes him, he is told why he cannot post");
  await ada.locator("#nav").getByRole("link", { name: "Chat", exact: true }).click();
  await ada.getByLabel("Name", { exact: true }).fill(`pong-${tag}`);
  await ada.getByLabel("Topic").fill("Everything Pong");
  await ada.getByRole("button", { name: "Create the room" }).click();
  await ada.getByRole("heading", { name: `# pong-${tag}` }).waitFor();
  await bob.locator("#nav").getByRole("link", { name: "Chat", exact: true }).click();
  await bob.getByLabel("Find a room").fill(`pong-${tag}`);
  await bob.getByRole("button", { name: "Find", exact: true }).click();
  await bob.getByRole("button", { name: `Join # pong-${tag}` }).click();
  await bob.getByRole("heading", { name: `# pong-${tag}` }).waitFor();
  await bob.getByLabel("Message", { exact: true }).fill("hello room");
  await bob.getByRole("button", { name: "Send" }).click();
  await ada.locator(".message .body", { hasText: "hello room" }).waitFor({ timeout: 10000 });
  await ada.reload();
  await ada.getByRole("button", { name: `Mute ${bobName} for 10 minutes` }).click();
  await ada.locator(".members li", { hasText: bobName }).getByText("muted").waitFor();
  await page_(ada, "room");
  await bob.getByLabel("Message", { exact: true }).fill("can I still talk?");
  await bob.getByRole("button", { name: "Send" }).click();
  await bob.locator(".error:not(:empty)").waitFor();
  assert.match(await bob.locator(".error:not(:empty)").first().textContent(), /mute/i);
  await bob.goBack();
  await bob.getByRole("heading", { name: "Chat", exact: true }).waitFor();
  await bob.locator(".conversations").getByRole("link", { name: adaName, exact: true }).click();
  await bob.locator(".message .body", { hasText: "Sure" }).waitFor();
  await ada.goBack();
  await ada.getByRole("heading", { name: "Chat", exact: true }).waitFor();
  await ada.locator(".conversations").getByRole("link", { name: bobName, exact: true }).click();
  await ada.locator(".message .body", { hasText: "Sure" }).waitFor();

  step("Ada invites Bob from the chat; Bob accepts on the card");
  await ada.getByText(`Invite ${bobName} to a match`).click();
  await ada.getByLabel("Points to win").fill("1");
  await ada.getByRole("button", { name: "Send the invitation" }).click();
  const card = bob.locator(".card.game_invitation");
  await card.waitFor({ timeout: 15000 });
  await card.getByRole("button", { name: "Play", exact: true }).click();
  // match_ready on each one's channel opens the match for both.
  await ada.waitForURL(/\/play\/[0-9a-f-]{36}$/, { timeout: 15000 });
  await bob.waitForURL(/\/play\/[0-9a-f-]{36}$/, { timeout: 15000 });
  assert.equal(new URL(ada.url()).pathname, new URL(bob.url()).pathname, "the same match");

  step("they play it to the end");
  await ada.locator(".score li").first().waitFor({ timeout: 20000 });
  await page_(ada, "match");
  const [adaEnd, bobEnd] = await Promise.all([playToTheEnd(ada, "ArrowDown"), playToTheEnd(bob, "ArrowUp")]);
  assert.notEqual(adaEnd, bobEnd, "one won, the other lost");
  await page_(bob, "match-over");
  const fps = Number(await ada.locator("canvas.field").getAttribute("data-fps"));
  assert.ok(fps > 0, "the field was drawn");

  step("the result in both histories and on the leaderboard");
  for (const [page, name] of [[ada, adaName], [bob, bobName]]) {
    await page.locator("#nav").getByRole("link", { name: "Me", exact: true }).click();
    await page.getByRole("link", { name: "My stats and match history" }).click();
    await eventually(page, async () => (await page.locator(".history li").count()) === 1, `${name}'s history`);
  }
  await page_(ada, "history");
  await ada.locator("#nav").getByRole("link", { name: "Leaderboard", exact: true }).click();
  await eventually(ada, async () => (await ada.locator(".board").getByText(bobName).count()) === 1 && (await ada.locator(".board").getByText(adaName).count()) === 1, "both on the leaderboard");
  await page_(ada, "leaderboard");

  step("the queue matches Ada and Bob, who play it out");
  for (const page of [ada, bob]) {
    await page.locator("#nav").getByRole("link", { name: "Play", exact: true }).click();
    const queue = page.locator("form", { has: page.getByRole("button", { name: "Find a match" }) });
    await queue.getByLabel("Mode").selectOption("duel");
    await queue.getByRole("button", { name: "Find a match" }).click();
  }
  await ada.waitForURL(/\/play\/[0-9a-f-]{36}$/, { timeout: 30000 });
  await bob.waitForURL(/\/play\/[0-9a-f-]{36}$/, { timeout: 30000 });
  assert.equal(new URL(ada.url()).pathname, new URL(bob.url()).pathname, "the queue put them in one match");
  await Promise.all([playToTheEnd(ada, "ArrowDown"), playToTheEnd(bob, "ArrowUp")]);

  step("Ada plays the AI");
  await ada.locator("#nav").getByRole("link", { name: "Play", exact: true }).click();
  await page_(ada, "play");
  const aiForm = ada.locator("form", { has: ada.getByRole("button", { name: "Play the AI" }) });
  await aiForm.getByLabel("Level").selectOption("easy");
  await aiForm.getByLabel("Points to win").fill("1");
  await aiForm.getByRole("button", { name: "Play the AI" }).click();
  await ada.waitForURL(/\/play\/[0-9a-f-]{36}$/);
  await playToTheEnd(ada, "ArrowUp");

  step("four players: Ada and three bots, until the last one standing");
  await ada.locator("#nav").getByRole("link", { name: "Play", exact: true }).click();
  await aiForm.getByLabel("Level").selectOption("easy");
  await aiForm.getByLabel("Mode").selectOption("four_players");
  await aiForm.getByLabel("Points to win").fill("1");
  await aiForm.getByRole("button", { name: "Play the AI" }).click();
  await ada.waitForURL(/\/play\/[0-9a-f-]{36}$/);
  await ada.waitForFunction(() => document.querySelectorAll(".score li").length === 4, null, { timeout: 30000 });
  await playToTheEnd(ada, "ArrowUp");

  step("a four-player tournament: Ada and three bots");
  await ada.locator("#nav").getByRole("link", { name: "Tournaments", exact: true }).click();
  await ada.getByLabel("Name").fill(`Cup ${tag}`);
  await ada.getByLabel("Places").fill("4");
  await ada.getByLabel("Points to win each match").fill("1");
  await page_(ada, "tournaments");
  await ada.getByRole("button", { name: "Create", exact: true }).click();
  await ada.getByRole("heading", { name: `Cup ${tag}` }).waitFor();
  await ada.getByLabel("My alias in this tournament").fill("Countess");
  await ada.getByRole("button", { name: "Enter", exact: true }).click();
  for (let i = 0; i < 3; i++) {
    await ada.getByLabel("Bot level").selectOption("easy");
    await ada.getByRole("button", { name: "Add a bot" }).click();
    await ada.locator("ol li").nth(i + 1).waitFor();
  }
  const tournamentUrl = ada.url();
  await ada.getByRole("button", { name: "Start the tournament" }).click();
  // Her matches open by themselves (match_ready); she plays each to its end:
  // a win takes her to the final once the other semi-final is over.
  await ada.waitForURL(/\/play\/[0-9a-f-]{36}$/, { timeout: 30000 });
  let outcome = await playToTheEnd(ada, "ArrowUp");
  if (/you won/.test(outcome)) {
    const semi = ada.url();
    await ada.waitForURL((url) => url.toString() !== semi && /\/play\/[0-9a-f-]{36}$/.test(url.toString()), { timeout: 180000 });
    outcome = await playToTheEnd(ada, "ArrowUp");
  }
  step(`her last match: ${outcome}`);
  await ada.goto(tournamentUrl);
  await ada.getByText("✔ Verified on the ledger").waitFor({ timeout: 120000 });
  await page_(ada, "tournament");

  step("the inbox, the settings, a local match");
  await ada.locator("#inbox-link").click();
  await ada.locator(".inbox li", { hasText: bobName }).first().waitFor({ timeout: 15000 });
  await page_(ada, "inbox");
  await ada.locator("#nav").getByRole("link", { name: "Settings", exact: true }).click();
  await ada.getByRole("heading", { name: "Where I am signed in" }).waitFor();
  await ada.locator(".prefs").waitFor();
  await page_(ada, "settings");
  await ada.goto(`${base}/play/local`);
  await ada.getByRole("heading", { name: "Local match" }).waitFor();
  await page_(ada, "local");

  step("Back and Forward; a reload keeps the session");
  await ada.locator("#nav").getByRole("link", { name: "Leaderboard", exact: true }).click();
  await ada.getByRole("heading", { name: "Leaderboard", exact: true }).waitFor();
  await ada.locator("#nav").getByRole("link", { name: "Friends", exact: true }).click();
  await ada.getByRole("heading", { name: "Friends", exact: true }).waitFor();
  await ada.locator("#nav").getByRole("link", { name: "Chat", exact: true }).click();
  await ada.getByRole("heading", { name: "Chat", exact: true }).waitFor();
  await ada.goBack();
  await ada.getByRole("heading", { name: "Friends", exact: true }).waitFor();
  await ada.goBack();
  await ada.getByRole("heading", { name: "Leaderboard", exact: true }).waitFor();
  await ada.goForward();
  await ada.getByRole("heading", { name: "Friends", exact: true }).waitFor();
  await ada.reload();
  await ada.getByRole("heading", { name: "Friends", exact: true }).waitFor();
  await ada.locator(".people li", { hasText: bobName }).waitFor();

  step("pages at a phone's width");
  const phone = await newPage(browser, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  Object.assign(pages, { phone });
  // The phone's socket goes through the test, which can cut it (below).
  const sockets = [];
  let frames = 0;
  await phone.routeWebSocket(/\/v1\/ws$/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((m) => server.send(m));
    server.onMessage((m) => {
      if (typeof m === "string" && m.includes('"type":"frame"')) frames++;
      ws.send(m);
    });
    sockets.push({ ws, server });
  });
  const fits = async (path) => {
    await phone.locator("main h1").first().waitFor();
    await phone.waitForLoadState("networkidle");
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${path} fits a phone (${overflow} px too wide)`);
    await shoot(phone, `phone${path.replace(/\//g, "-")}`);
  };
  for (const path of ["/signin", "/signup", "/play/local"]) {
    await phone.goto(`${base}${path}`);
    await fits(path);
  }
  await page_(phone, "signin");
  await phone.goto(`${base}/signin`);
  await phone.getByLabel("Email").fill(adaEmail);
  await phone.getByLabel("Password").fill("correct horse battery staple 42");
  await phone.getByRole("button", { name: "Sign in" }).click();
  await phone.locator(".name").waitFor();
  for (const path of ["/", "/play", "/friends", "/chat", "/leaderboard", "/tournaments", new URL(tournamentUrl).pathname, "/inbox", "/settings"]) {
    await phone.goto(`${base}${path}`);
    await fits(path);
  }
  // The match page on a touch screen has its own buttons. First to 21: the
  // match is still on when its socket is cut below.
  await phone.goto(`${base}/play`);
  const phoneAi = phone.locator("form", { has: phone.getByRole("button", { name: "Play the AI" }) });
  await phoneAi.getByLabel("Points to win").fill("21");
  await phoneAi.getByRole("button", { name: "Play the AI" }).click();
  await phone.waitForURL(/\/play\/[0-9a-f-]{36}$/);
  await phone.locator(".score li").first().waitFor({ timeout: 20000 });
  assert.ok(await phone.locator(".touch .pad").first().isVisible(), "touch buttons on a touch screen");
  await fits("/play/match");
  // The socket drops mid-match: the SDK reconnects, the page subscribes to
  // the match again and frames come back.
  const opened = sockets.length;
  assert.ok(frames > 0, "frames reached the phone");
  for (const { ws, server } of sockets) {
    // 4000: a close the SDK answers by reconnecting (as after a network drop).
    await ws.close({ code: 4000, reason: "cut by the test" }).catch(() => {});
    await server.close().catch(() => {});
  }
  const cut = frames;
  for (let i = 0; i < 60 && !(sockets.length > opened && frames > cut + 30); i++) await phone.waitForTimeout(250);
  assert.ok(sockets.length > opened, "the SDK opened a new socket");
  assert.ok(frames > cut + 30, `frames again after the reconnect (${frames - cut})`);
  assert.doesNotMatch(await phone.locator(".error").first().textContent(), /./, "no error shown");
  // Bob watches it: frames drawn, no controls of a player.
  await bob.goto(phone.url());
  await bob.locator(".score li").first().waitFor({ timeout: 20000 });
  await bob.waitForFunction(() => Number(document.querySelector("canvas.field")?.dataset.fps) > 0, null, { timeout: 10000 });
  assert.match(await bob.locator(".phase").textContent(), /Watching|Serving|won/);
  await page_(bob, "spectator");
  await phone.locator("#nav").getByRole("link", { name: "Play", exact: true }).click();

  const mailDir = process.env.PANAL_MAIL_DIR;
  if (mailDir) {
    step("the e-mails' links: Bob verifies his address, then resets his password");
    const link = async (to, page) => {
      for (let i = 0; i < 40; i++) {
        for (const name of readdirSync(mailDir).sort().reverse()) {
          // Quoted-printable: soft line breaks out, `=XX` decoded; the
          // plain-text part comes first.
          const mail = readFileSync(`${mailDir}/${name}`, "utf8")
            .replace(/=\r?\n/g, "")
            .replace(/=([0-9A-F]{2})/g, (_, hex) => String.fromCharCode(parseInt(hex, 16)));
          const found = mail.includes(`To: ${to}`) && mail.match(new RegExp(`/${page}#token=([A-Za-z0-9_-]+)`));
          if (found) return `${base}/${page}#token=${found[1]}`;
        }
        await bob.waitForTimeout(250);
      }
      assert.fail(`no ${page} e-mail to ${to}`);
    };
    await bob.goto(await link(bobEmail, "verify-email"));
    await bob.getByText("Your address is verified. Thank you!").waitFor();
    assert.equal(new URL(bob.url()).hash, "", "the token leaves the address bar");
    await page_(bob, "verify-email");
    await bob.goto(`${base}/forgot-password`);
    await bob.getByLabel("Email").fill(bobEmail);
    await bob.getByRole("button", { name: "Send me a link" }).click();
    await bob.getByText("a link to choose a new password is on its way").waitFor();
    await page_(bob, "forgot-password");
    await bob.goto(await link(bobEmail, "reset-password"));
    await bob.getByLabel("New password").fill("a brand new passphrase 77");
    await bob.getByRole("button", { name: "Change my password" }).click();
    await bob.getByText("Your password is changed.").waitFor();
    await page_(bob, "reset-password");
    await bob.goto(`${base}/signin`);
    await bob.getByLabel("Email").fill(bobEmail);
    await bob.getByLabel("Password").fill("a brand new passphrase 77");
    await bob.getByRole("button", { name: "Sign in" }).click();
    await bob.getByRole("heading", { name: "My profile" }).waitFor();
  } else {
    step("PANAL_MAIL_DIR not set: the e-mails' links are not checked");
  }

  for (const p of [ada, bob, phone]) assert.deepEqual(p.problems, [], "no errors in the console");
  step(`all as expected; axe-core found no serious violation on ${checked.size} pages`);
} catch (e) {
  // What each person saw when it went wrong.
  for (const [who, page] of Object.entries(pages)) {
    await shoot(page, `failure-${who}`).catch(() => {});
    console.error(`--- ${who} at ${page.url()}:\n${await page.locator("main").innerText().catch(() => "?")}`);
    console.error(`--- ${who}'s console: ${JSON.stringify(page.problems)}`);
  }
  throw e;
} finally {
  await browser.close();
}
