// What the browser flows share: Debian's Chromium, pages that record every console error,
// failed response and CSP violation as a problem, and the codes mailed to the outbox.
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
