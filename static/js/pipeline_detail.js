// While the pipeline runs, refresh its status and stages table. It asks again after 2 s, and
// doubles the wait (up to 30 s) each time nothing changed or the request failed, so a pipeline
// waiting hours for a publish costs a request every 30 s; any change brings it back to 2 s.
// Once the pipeline stops running the page reloads, for its messages and buttons. The
// <script> tag carries the live fragment's URL in data-url.
(function () {
  const url = document.currentScript.dataset.url;
  const FIRST = 2000;
  const LONGEST = 30000;
  let wait = FIRST;
  async function tick() {
    const live = document.getElementById("live");
    if (!live || live.dataset.finished === "1") return;
    let changed = false;
    try {
      const res = await fetch(url, { credentials: "same-origin" });
      if (res.ok) {
        const before = live.dataset.state;
        live.outerHTML = await res.text();
        const now = document.getElementById("live");
        if (now.dataset.finished === "1") {
          location.reload();
          return;
        }
        changed = now.dataset.state !== before;
      }
    } catch (error) {
      // A network hiccup: try again later, after a longer wait.
    }
    wait = changed ? FIRST : Math.min(wait * 2, LONGEST);
    setTimeout(tick, wait);
  }
  setTimeout(tick, wait);
})();
