// Moves the counters of unfinished batches (the batch list). Its <script> tag carries the
// progress API's URL in data-url.
pollProgress({
  key: "batch",
  url: document.currentScript.dataset.url,
  every: 1500,
  update(row, b) {
    const pct = b.total ? Math.floor((100 * (b.done_count + b.failed_count)) / b.total) : 0;
    row.querySelector("[data-field=bar]").dataset.percent = pct;
    row.querySelector("[data-field=counts]").textContent =
      `${b.done_count} / ${b.total}` + (b.failed_count ? ` (${b.failed_count} failed)` : "");
    const status = row.querySelector("[data-field=status]");
    status.textContent = b.status;
    status.className = `status status-${b.status}`;
    if (["succeeded", "partial", "failed", "cancelled"].includes(b.status)) {
      row.dataset.finished = "1";
    }
  },
});
