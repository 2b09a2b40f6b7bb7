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
