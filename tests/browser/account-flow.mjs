// The account pages as a person uses them, in Debian's headless Chromium: sign up, read the
// code from the outbox, verify, sign out, sign in, sign in again from a second browser, and
// end that second session from the first. Reports one JSON line of what happened, with every
// console error and CSP violation seen on the way.
// Usage: node account-flow.mjs BASE_URL OUTBOX_DIR SCREENSHOT.png
import { latestCode, launch, openPage, problems } from "./lib.mjs";

const [base, outbox, screenshot] = process.argv.slice(2);
const email = "person@example.test";
const password = "correct horse battery staple";

const browser = await launch();

async function signIn(page) {
  await page.goto(`${base}/signin`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/security/);
}

const result = {};
try {
  const first = await browser.newContext();
  const page = await openPage(first);

  await page.goto(`${base}/signup`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.waitForURL(/\/confirm/);
  result.confirmNotice = (await page.locator(".notice").textContent())?.trim();

  await page.getByLabel("6-digit code from your email").fill(await latestCode(outbox, email));
  await page.getByRole("button", { name: "Confirm" }).click();
  await page.waitForURL(/\/security/);
  result.signedInAs = (await page.locator("#account-email").textContent())?.trim();

  await page.getByRole("button", { name: "Sign out", exact: true }).last().click();
  await page.waitForURL(/\/signin/);
  await page.goto(`${base}/security`);
  result.afterSignOut = new URL(page.url()).pathname;

  await signIn(page);
  const second = await browser.newContext({ userAgent: "Second browser" });
  const other = await openPage(second);
  await signIn(other);

  await page.reload();
  result.sessionsBefore = await page.locator("#sessions tbody tr").count();
  await page.locator("#sessions tbody tr", { hasText: "Second browser" }).getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(/\/security\?notice=/);
  result.revokeNotice = (await page.locator(".notice").textContent())?.trim();
  result.sessionsAfter = await page.locator("#sessions tbody tr").count();
  result.activity = await page.locator("#activity li").allTextContents();

  await other.goto(`${base}/security`);
  result.otherAfterRevoke = new URL(other.url()).pathname;
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
} catch (error) {
  result.error = String(error);
} finally {
  result.problems = problems;
  console.log(JSON.stringify(result));
  await browser.close();
}
