// Progressive enhancement only: every page works without this script. It runs because the
// page's <script> tag carries the response's CSP nonce; the mark below lets tests see that.
document.documentElement.dataset.enhanced = "true";

// "Copy" buttons (a new API key): copy the text of the element they name.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const text = document.getElementById(button.dataset.copy)?.textContent ?? "";
  navigator.clipboard?.writeText(text).then(
    () => { button.textContent = "Copied"; },
    () => { button.textContent = "Select the key and copy it"; },
  );
});

// Bulk verification: a chosen CSV file goes to the API as it is (the form alone sends only
// the typed addresses), then the page shows the new job.
document.getElementById("bulk-upload")?.addEventListener("submit", async (event) => {
  const form = event.currentTarget;
  const file = form.querySelector("#bulk-file")?.files?.[0];
  if (!file) return;
  event.preventDefault();
  const smtp = form.querySelector("input[name=smtp]")?.checked ? "true" : "false";
  const response = await fetch(`/v1/verify/jobs?smtp=${smtp}`, {
    method: "POST",
    headers: { "content-type": "text/csv" },
    body: await file.text(),
    credentials: "same-origin",
  });
  if (response.status === 202) {
    window.location.assign("/verification/jobs?notice=job_queued");
    return;
  }
  const problem = await response.json().catch(() => ({}));
  let error = form.querySelector("p.error");
  if (!error) {
    error = document.createElement("p");
    error.className = "error";
    error.setAttribute("role", "alert");
    form.prepend(error);
  }
  error.textContent = problem.detail ?? `The upload failed (${response.status}).`;
});

// Jobs still running: their progress, polled until they end. One request a tick for every
// row (the account's API requests are rate-limited, per user).
const followed = () =>
  [...document.querySelectorAll("tr[data-job]")].filter((row) => ["queued", "running"].includes(row.dataset.status));
const follow = async () => {
  if (followed().length === 0) return;
  const response = await fetch("/v1/verify/jobs", { credentials: "same-origin" });
  if (!response.ok) return;
  const { jobs } = await response.json();
  for (const row of followed()) {
    const job = jobs.find((job) => job.id === row.dataset.job);
    if (!job) continue;
    row.dataset.status = job.status;
    row.querySelector("td.status").textContent = job.error ? `${job.status} (${job.error})` : job.status;
    const bar = row.querySelector("progress");
    bar.value = job.done;
    bar.max = job.total;
    row.querySelector("span.done").textContent = `${job.done} of ${job.total}`;
    const c = job.counts;
    row.querySelector("td.counts").textContent =
      `${c.deliverable} deliverable, ${c.undeliverable} undeliverable, ${c.risky} risky, ${c.unknown} unknown`;
  }
  setTimeout(follow, 1000);
};
follow();
