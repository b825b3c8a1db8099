// Keeps the part of a page that moves while work runs (<div id="live">) fresh, without a
// framework. It asks the live fragment's URL (data-url on the <script> tag) again after 2 s and
// doubles the wait (up to 30 s) each time nothing changed or the request failed, so an object
// waiting hours for raters or a publish costs a request every 30 s; any change brings it back
// to 2 s. The fragment says when to stop: data-finished="1" once the object reached a final
// state. The page reloads then, and also when the fragment's data-phase differs from the one
// the page was drawn with, since its buttons and messages outside the fragment depend on it.
(function () {
  const url = document.currentScript.dataset.url;
  const FIRST = 2000;
  const LONGEST = 30000;
  const drawnPhase = document.getElementById("live")?.dataset.phase;
  let wait = FIRST;
  async function tick() {
    const live = document.getElementById("live");
    if (!live || live.dataset.finished === "1") return;
    let changed = false;
    try {
      const res = await fetch(url, { credentials: "same-origin" });
      if (res.ok) {
        const before = live.outerHTML;
        live.outerHTML = await res.text();
        const now = document.getElementById("live");
        if (now.dataset.finished === "1" || now.dataset.phase !== drawnPhase) {
          location.reload();
          return;
        }
        changed = now.outerHTML !== before;
      }
    } catch (error) {
      // A network hiccup: try again later, after a longer wait.
    }
    wait = changed ? FIRST : Math.min(wait * 2, LONGEST);
    setTimeout(tick, wait);
  }
  setTimeout(tick, wait);
})();
