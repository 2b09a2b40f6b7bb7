// Progressive enhancement only: every page works without this script. It runs because the
// page's <script> tag carries the response's CSP nonce; the mark below lets tests see that.
document.documentElement.dataset.enhanced = "true";
