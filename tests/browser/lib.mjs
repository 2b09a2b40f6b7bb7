// What the browser flows share: Debian's Chromium, pages that record every console error,
// failed response and CSP violation as a problem, and the codes mailed to the outbox.
import { createHmac } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

export const problems = [];
// A form answered with its error status makes Chromium log "Failed to load resource"; such
// an answer is a problem unless the flow says it expects it at that moment.
let expectedStatus = null;
export function expectStatus(status) {
  expectedStatus = status;
}

export async function openPage(context) {
  const page = await context.newPage();
  page.on("response", (r) => {
    if (r.status() >= 400 && r.status() !== expectedStatus) problems.push(`${r.status()} ${r.url()}`);
  });
  page.on("console", (m) => {
    const expected = expectedStatus && m.text().includes(`status of ${expectedStatus}`);
    if (m.type() === "error" && !expected) problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e}`));
  await page.addInitScript(() =>
    document.addEventListener("securitypolicyviolation", (e) =>
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`)));
  return page;
}

/// The code in the newest message to `email` in the outbox, waiting for it to arrive.
export async function latestCode(outbox, email) {
  for (let i = 0; i < 100; i++) {
    const messages = readdirSync(outbox, { withFileTypes: true })
      .filter((f) => f.isFile())
      .map((f) => join(outbox, f.name))
      .sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs)
      .map((path) => readFileSync(path, "utf8"))
      .filter((raw) => raw.includes(`To: ${email}`));
    const subject = messages.at(-1)?.match(/Subject: Your mailroom code: (\d{6})/);
    if (subject) return subject[1];
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("no code in the outbox");
}

/// RFC 4648 base32, as authenticator apps take the key.
export function base32(text) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const char of text.replace(/=+$/, "").toUpperCase()) {
    bits += alphabet.indexOf(char).toString(2).padStart(5, "0");
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

/// RFC 6238: HMAC-SHA1 over the 30-second step, dynamically truncated to six digits.
export function totp(key, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return value.toString().padStart(6, "0");
}

/// Signs up through the pages, with the code from the outbox; ends on the security page.
export async function signUp(page, base, outbox, email, password) {
  await page.goto(`${base}/signup`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.waitForURL(/\/confirm/);
  await page.getByLabel("6-digit code from your email").fill(await latestCode(outbox, email));
  await page.getByRole("button", { name: "Confirm" }).click();
  await page.waitForURL(/\/security/);
}
