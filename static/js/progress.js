// Polls the counters of unfinished batches on the page and moves their progress bars.
(function () {
  const rows = () => Array.from(document.querySelectorAll("tr[data-batch][data-finished='0']"));
  async function tick() {
    const pending = rows();
    if (!pending.length) return;
    const ids = pending.map((r) => r.dataset.batch).join(",");
    try {
      const res = await fetch(`${window.PROGRESS_URL}?ids=${ids}`, { credentials: "same-origin" });
      if (res.ok) {
        for (const b of await res.json()) {
          const row = document.querySelector(`tr[data-batch='${b.id}']`);
          if (!row) continue;
          const pct = b.total ? Math.floor((100 * (b.done_count + b.failed_count)) / b.total) : 0;
          row.querySelector("[data-field=bar]").style.width = `${pct}%`;
          row.querySelector("[data-field=counts]").textContent =
            `${b.done_count} / ${b.total}` + (b.failed_count ? ` (${b.failed_count} failed)` : "");
          const status = row.querySelector("[data-field=status]");
          status.textContent = b.status;
          status.className = `status status-${b.status}`;
          if (["succeeded", "partial", "failed", "cancelled"].includes(b.status)) {
            row.dataset.finished = "1";
          }
        }
      }
    } finally {
      setTimeout(tick, 1500);
    }
  }
  setTimeout(tick, 1000);
})();
