// Two-factor authentication as a person uses it, in Debian's headless Chromium: sign up, set
// up an authenticator app from the QR page (the test computes the TOTP codes itself), keep
// the backup codes, sign out, sign in with a code, sign in with a backup code trusting the
// browser, sign in again without a code, then delete the account with the typed
// confirmation. Reports one JSON line of what happened, with every console error and CSP
// violation seen on the way.
// Usage: node two-factor-flow.mjs BASE_URL OUTBOX_DIR SCREENSHOT.png
import { base32, expectStatus, launch, openPage, problems, signUp, totp } from "./lib.mjs";

const [base, outbox, screenshot] = process.argv.slice(2);
const email = "guarded@example.test";
const password = "correct horse battery staple";

const browser = await launch();

async function signOut(page) {
  await page.goto(`${base}/security`);
  await page.getByRole("button", { name: "Sign out", exact: true }).last().click();
  await page.waitForURL(/\/signin/);
}

async function passwordStep(page) {
  await page.goto(`${base}/signin`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForLoadState();
}

const result = {};
try {
  const context = await browser.newContext();
  const page = await openPage(context);

  await signUp(page, base, outbox, email, password);

  // Setup: the QR code is inline SVG; the key is beside it.
  await page.getByRole("button", { name: "Set up an authenticator app" }).click();
  result.qrIsSvg = (await page.locator("#qr svg").count()) === 1;
  const key = base32((await page.locator("#totp-secret").textContent()).trim());
  let step = Math.floor(Date.now() / 1000 / 30);
  await page.getByLabel("6-digit code from the app").fill(totp(key, step));
  await page.getByRole("button", { name: "Turn on" }).click();
  await page.waitForSelector("#backup-codes");
  const codes = (await page.locator("#backup-codes li").allTextContents()).map((c) => c.trim());
  result.backupCodes = codes.length;
  const download = await page.locator("#download-codes").getAttribute("href");
  result.downloadHasCodes = decodeURIComponent(download).includes(codes[0]);

  // Sign in with the next code of the app.
  await signOut(page);
  await passwordStep(page);
  result.secondStepTitle = (await page.locator("h1").textContent()).trim();
  step += 1;
  await page.getByLabel("6-digit code from your authenticator app").fill(totp(key, step));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/security/);
  result.statusAfterCode = (await page.locator("#mfa-status").textContent()).trim();

  // Sign in with a backup code, trusting this browser.
  await signOut(page);
  await passwordStep(page);
  await page.getByText("Use a backup code instead").click();
  await page.getByLabel("Backup code").fill(codes[0]);
  await page.getByLabel("Trust this browser for 30 days").check();
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/security/);
  result.statusAfterBackupCode = (await page.locator("#mfa-status").textContent()).trim();
  result.trustedDevices = await page.locator("#trusted-devices tbody tr").count();

  // The trusted browser skips the second step.
  await signOut(page);
  await passwordStep(page);
  result.trustedSkipsTo = new URL(page.url()).pathname;
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });

  // Deletion needs the address typed out.
  await page.getByLabel("To delete your account and everything of yours, type its email address").fill(email);
  await page.getByRole("button", { name: "Delete my account" }).click();
  await page.waitForURL(/\/signup/);
  result.afterDeletion = (await page.locator(".notice").textContent())?.trim();
  expectStatus(401);
  await passwordStep(page);
  result.signInAfterDeletion = (await page.locator(".error").textContent())?.trim();
} catch (error) {
  result.error = String(error);
} finally {
  result.problems = problems;
  console.log(JSON.stringify(result));
  await browser.close();
}
