// A team as people build it, in Debian's headless Chromium: the owner (two-factor already
// on: the test computes the codes) signs in and invites someone by email; the invitee signs up in a second browser,
// follows the link from the outbox and joins; the owner promotes them, then creates an API
// key (shown once) and revokes it. Reports one JSON line of what happened, with every
// console error, failed response and CSP violation seen on the way.
// Usage: node team-flow.mjs BASE_URL OUTBOX_DIR SCREENSHOT.png OWNER_EMAIL OWNER_TOTP_KEY
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { base32, launch, openPage, problems, signUp, totp } from "./lib.mjs";

const [base, outbox, screenshot, ownerEmail, ownerKey] = process.argv.slice(2);
const invitee = "invitee@example.test";
const password = "correct horse battery staple";

/// The invitation link mailed to `email` (quoted-printable soft breaks undone).
async function invitationLink(email) {
  for (let i = 0; i < 100; i++) {
    for (const name of readdirSync(outbox)) {
      const raw = readFileSync(join(outbox, name), "utf8");
      if (!raw.includes(`To: ${email}`) || !raw.includes("You are invited")) continue;
      const text = raw.replace(/=\r?\n/g, "").replace(/=3D/g, "=");
      const match = text.match(/https?:\/\/[^\s"<>]+\/invitations\/accept\?token=[A-Za-z0-9_-]+/);
      if (match) return match[0];
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("no invitation in the outbox");
}

const browser = await launch();
const result = {};
try {
  const ownerContext = await browser.newContext();
  const owner = await openPage(ownerContext);
  await owner.goto(`${base}/signin`);
  await owner.getByLabel("Email").fill(ownerEmail);
  await owner.getByLabel("Password").fill(password);
  await owner.getByRole("button", { name: "Sign in" }).click();
  // The setup spent this step's code: the app's next one.
  const step = Math.floor(Date.now() / 1000 / 30) + 1;
  await owner.getByLabel("6-digit code from your authenticator app").fill(totp(base32(ownerKey), step));
  await owner.getByRole("button", { name: "Sign in" }).click();
  await owner.waitForURL(/\/security/);

  await owner.goto(`${base}/team`);
  await owner.getByLabel("Email").fill(invitee);
  await owner.getByRole("button", { name: "Send invitation" }).click();
  await owner.waitForURL(/\/team\?notice=/);
  result.pending = await owner.locator("#invitations tbody tr").count();

  const inviteeContext = await browser.newContext({ userAgent: "Invitee browser" });
  const page = await openPage(inviteeContext);
  await signUp(page, base, outbox, invitee, password);

  await page.goto(await invitationLink(invitee));
  await page.getByLabel(/Leave my current organization/).check();
  await page.getByRole("button", { name: "Accept the invitation" }).click();
  await page.waitForURL(/\/team/);
  result.inviteeRole = (await page.locator("#your-role").textContent()).trim();

  await owner.goto(`${base}/team`);
  result.members = await owner.locator("#members tbody tr").count();
  const row = owner.locator(`#members tbody tr[data-member="${invitee}"]`);
  await row.getByLabel(`Role of ${invitee}`).selectOption("admin");
  await row.getByRole("button", { name: "Change role" }).click();
  await owner.waitForURL(/\/team\?notice=/);
  result.promotedTo = (await owner.locator(`#members tbody tr[data-member="${invitee}"] td.role`).textContent()).trim();

  await owner.goto(`${base}/api-keys`);
  await owner.getByLabel("Name").fill("ci");
  await owner.getByLabel("verify").check();
  await owner.getByRole("button", { name: "Create key" }).click();
  const key = (await owner.locator("#new-key").textContent()).trim();
  result.keyShape = /^mr_live_[0-9A-Za-z]{12}_[0-9A-Za-z]{32}$/.test(key);
  result.keysListed = await owner.locator("#api-keys tbody tr").count();
  await owner.goto(`${base}/api-keys`);
  result.keyShownAgain = (await owner.content()).includes(key);
  await owner.locator('#api-keys tbody tr[data-key="ci"]').getByRole("button", { name: "Revoke" }).click();
  await owner.waitForURL(/\/api-keys\?notice=/);
  result.keysAfterRevoke = await owner.locator("#api-keys tbody tr").count();
  const response = await owner.request.get(`${base}/v1/usage`, { headers: { authorization: `Bearer ${key}` } });
  result.revokedKeyStatus = response.status();
  if (screenshot) await owner.screenshot({ path: screenshot, fullPage: true });
} catch (error) {
  result.error = String(error);
} finally {
  result.problems = problems;
  console.log(JSON.stringify(result));
  await browser.close();
}
