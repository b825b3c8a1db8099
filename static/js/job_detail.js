// While the job runs, refresh the moving parts (progress, loss curve, log tail) every 2 s. Its
// <script> tag carries the live fragment's URL in data-url.
(function () {
  const url = document.currentScript.dataset.url;
  async function tick() {
    const live = document.getElementById("live");
    if (!live || live.dataset.finished === "1") return;
    try {
      const res = await fetch(url, { credentials: "same-origin" });
      if (res.ok) {
        live.outerHTML = await res.text();
        if (document.getElementById("live").dataset.finished === "1") { location.reload(); return; }
      }
    } finally {
      setTimeout(tick, 2000);
    }
  }
  setTimeout(tick, 2000);
})();
