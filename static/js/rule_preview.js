// Keeps the rule form's preview funnel (<div id="live-preview">) current as the settings
// change, without a framework: 400 ms after the last input it posts the whole form (its CSRF
// token included) to the preview URL (data-url on the <script> tag), which answers the funnel,
// or what stops the rule from running, as HTML to put in place. Only the newest answer is
// shown: an older one arriving late is dropped. Nothing is saved.
(function () {
  const url = document.currentScript.dataset.url;
  const form = document.querySelector("form.rule-form");
  const target = document.getElementById("live-preview");
  if (!form || !target) return;
  const QUIET = 400;
  let timer = null;
  let sent = 0;
  async function refresh() {
    const mine = ++sent;
    target.setAttribute("aria-busy", "true");
    try {
      const res = await fetch(url, {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
      });
      if (res.ok && mine === sent) target.innerHTML = await res.text();
    } catch (error) {
      // A network hiccup: the next change asks again.
    } finally {
      if (mine === sent) target.removeAttribute("aria-busy");
    }
  }
  function soon() {
    clearTimeout(timer);
    timer = setTimeout(refresh, QUIET);
  }
  form.addEventListener("input", soon);
  form.addEventListener("change", soon);
  refresh();
})();
