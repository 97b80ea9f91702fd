// The web client in headless Chromium, driven by playwright-core, against a
// running Panal (CI: `panal up` on a fresh data directory):
//
//   node e2e/first-steps.mjs http://127.0.0.1:8000 [screenshot-dir]
//
// Sign up, the profile page (a name with markup shown as text), a reload
// keeps the session, edit the profile, sign out, Back, a wrong password's
// error in words, a deep link. Exits non-zero at the first thing that is not
// as a person expects. The rest of the platform: e2e/platform.mjs.
import assert from "node:assert/strict";
import { launch, newPage, shots } from "./lib.mjs";

const base = process.argv[2] ?? "http://127.0.0.1:8000";
const dir = process.argv[3] ?? "/tmp/panal-web-screenshots";
const shoot = shots(dir);
const browser = await launch();
const page = await newPage(browser);

try {
  // Unique: a taken display name gets a number added.
  const name = `Ada <b>${Date.now() % 1000000}</b>`;
  const email = `ada-${Date.now()}@example.com`;
  await page.goto(`${base}/signup`);
  await page.getByLabel("Display name").fill(name);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("correct horse battery staple 42");
  await shoot(page, "signup");
  await page.getByRole("button", { name: "Create my account" }).click();
  await page.getByRole("heading", { name: "My profile" }).waitFor();
  const shown = page.locator(".name");
  await shown.waitFor({ timeout: 15000 });
  assert.equal(await shown.textContent(), name, "the name, markup and all, as text");
  assert.equal(await page.locator(".name b").count(), 0, "user content never becomes HTML");
  await shoot(page, "first-profile");

  await page.reload();
  await shown.waitFor();
  assert.equal(await shown.textContent(), name, "a reload keeps the session");

  await page.getByLabel("About me").fill("plays Pong");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("Saved.").waitFor();

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await page.goBack();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  assert.equal(await page.locator(".name").count(), 0, "signed out: no profile after Back");

  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("not the password at all");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator(".error:not(:empty)").waitFor();
  assert.match(await page.locator(".error:not(:empty)").textContent(), /invalid email or password/);
  await shoot(page, "signin-error");

  await page.getByLabel("Password").fill("correct horse battery staple 42");
  await page.getByRole("button", { name: "Sign in" }).click();
  await shown.waitFor();
  await page.goto(`${base}/no/such/page`);
  await page.getByRole("heading", { name: "Nothing here" }).waitFor();
  await page.goBack();
  await shown.waitFor();

  assert.deepEqual(page.problems, [], "no errors in the console");
  console.log(`web client: sign-up, profile, reload, edit, sign-out, Back, errors, deep link — all as expected (screenshots in ${dir})`);
} finally {
  await browser.close();
}
