// What the browser tests share: Debian's Chromium driven by playwright-core,
// console errors collected, axe-core's checks, screenshots.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    // As this machine needs it (the env notes): root, no GPU, no network
    // besides the page's own.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** A page whose console errors and uncaught exceptions are collected in
 * `problems` (Chromium's "Failed to load resource" lines for 4xx answers
 * aside: the app shows those in words). */
export async function newPage(browser, options = {}) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  page.problems = [];
  page.on("pageerror", (e) => page.problems.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) page.problems.push(m.text());
  });
  return page;
}

export function shots(dir) {
  mkdirSync(dir, { recursive: true });
  return async (page, name) => page.screenshot({ path: `${dir}/${name}.png`, fullPage: true });
}

/** axe-core on the page as it is: no serious or critical violation.
 * Evaluated through the DevTools protocol, which the page's CSP does not
 * govern: the CSP stays on for the app itself. */
export async function axe(page, what) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    (await axe.run(document, { resultTypes: ["violations"] })).violations.map((v) => ({
      id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")),
    })));
  const serious = result.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(serious, [], `accessibility of ${what}: ${JSON.stringify(serious)}`);
  return result.length;
}

export async function signUp(page, base, name) {
  const email = `${name.toLowerCase().replace(/[^a-z]/g, "")}-${Date.now()}@example.com`;
  await page.goto(`${base}/signup`);
  await page.getByLabel("Display name").fill(name);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("correct horse battery staple 42");
  await page.getByRole("button", { name: "Create my account" }).click();
  await page.locator(".name").waitFor({ timeout: 20000 });
  return email;
}

/** Waits until `probe` holds, reloading the page between tries (for what
 * arrives by an event a moment later: stats, the leaderboard). Each try
 * gives the page three seconds to render after a reload. */
export async function eventually(page, probe, what, tries = 15) {
  for (let i = 0; i < tries; i++) {
    for (let j = 0; j < 12; j++) {
      if (await probe()) return;
      await page.waitForTimeout(250);
    }
    await page.reload();
  }
  assert.fail(`timed out: ${what}`);
}
