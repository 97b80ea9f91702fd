// bench/web.sh's measurements: first load (cold, uncompressed, warm) and the
// game page's frame rate. Prints a Markdown table for docs/benchmarks.md.
import { createRequire } from "node:module";
const require = createRequire(new URL("../../web/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const [base, runsArg, windowArg, work] = process.argv.slice(2);
const runs = Number(runsArg ?? 10);
const window_ = Number(windowArg ?? 10);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

/** One load of /signin in `context`: bytes on the wire, requests, and the
 * time from navigation start to the app's sign-in button. */
async function load(context) {
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  let bytes = 0;
  let requests = 0;
  cdp.on("Network.loadingFinished", (e) => {
    bytes += e.encodedDataLength;
    requests++;
  });
  await page.goto(`${base}/signin`);
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  const tti = await page.evaluate(() => performance.now());
  await page.waitForLoadState("networkidle");
  await page.close();
  return { bytes, requests, tti };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
async function series(name, options, warm = false) {
  const results = [];
  for (let i = 0; i < runs; i++) {
    const context = await browser.newContext(options);
    const tracing = name === "cold" && i === runs - 1;
    if (tracing) await context.tracing.start({ screenshots: false, snapshots: false });
    if (warm) await load(context); // fills the cache
    results.push(await load(context));
    if (tracing) await context.tracing.stop({ path: `${work}/first-load-trace.zip` });
    await context.close();
  }
  return {
    name,
    bytes: median(results.map((r) => r.bytes)),
    requests: median(results.map((r) => r.requests)),
    tti: median(results.map((r) => r.tti)),
    ttiMax: Math.max(...results.map((r) => r.tti)),
  };
}

const rows = [
  await series("cold (Brotli)", {}),
  await series("cold, Accept-Encoding: identity", { extraHTTPHeaders: { "accept-encoding": "identity" } }),
  await series("warm (reload, cached assets)", {}, true),
];

// The game page: play the AI, read the page's frame counter every second.
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
const email = `bench-web-${Date.now()}@example.com`;
await page.goto(`${base}/signup`);
await page.getByLabel("Display name").fill(`Bench ${Date.now() % 10000}`);
await page.getByLabel("Email").fill(email);
await page.getByLabel("Password").fill("correct horse battery staple 42");
await page.getByRole("button", { name: "Create my account" }).click();
await page.locator(".name").waitFor({ timeout: 20000 });
await page.goto(`${base}/play`);
const ai = page.locator("form", { has: page.getByRole("button", { name: "Play the AI" }) });
await ai.getByLabel("Points to win").fill("21");
await ai.getByRole("button", { name: "Play the AI" }).click();
await page.waitForURL(/\/play\/[0-9a-f-]{36}$/);
await page.locator(".score li").first().waitFor({ timeout: 30000 });
await page.waitForTimeout(2000);
const fps = [];
for (let i = 0; i < window_; i++) {
  await page.waitForTimeout(1000);
  fps.push(Number(await page.locator("canvas.field").getAttribute("data-fps")));
}
const latency = await page.locator(".netstats").textContent();
await browser.close();

console.log("| first load of /signin | bytes on the wire | requests | time to interactive, median (max) |");
console.log("|---|---|---|---|");
for (const r of rows) console.log(`| ${r.name} | ${r.bytes.toLocaleString("en")} | ${r.requests} | ${r.tti.toFixed(0)} ms (${r.ttiMax.toFixed(0)} ms) |`);
console.log();
console.log(`game page against the AI, frames drawn each second over ${window_} s: ${fps.join(", ")} (median ${median(fps)}); page said: "${latency}"`);
