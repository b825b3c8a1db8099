// Polls a progress endpoint for the unfinished rows of a list page and moves them.
// Rows are tr[data-<key>="<id>"][data-finished="0"]; every `every` ms the page asks `url` for
// their ids (?ids=1,2,3) and hands each answer to update(row, answer), which sets the row's
// cells and marks it data-finished="1" once it is done. Stops when no unfinished row is left.
window.pollProgress = function ({ key, url, every, update }) {
  const rows = () => Array.from(document.querySelectorAll(`tr[data-${key}][data-finished='0']`));
  async function tick() {
    const pending = rows();
    if (!pending.length) return;
    const ids = pending.map((r) => r.dataset[key]).join(",");
    try {
      const res = await fetch(`${url}?ids=${ids}`, { credentials: "same-origin" });
      if (res.ok) {
        for (const answer of await res.json()) {
          const row = document.querySelector(`tr[data-${key}='${answer.id}']`);
          if (!row) continue;
          update(row, answer);
        }
      }
    } finally {
      setTimeout(tick, every);
    }
  }
  setTimeout(tick, 1000);
};
