// Moves the progress bars of unfinished exports; a finished one reloads the page for its files.
// Its <script> tag carries the progress API's URL in data-url.
pollProgress({
  key: "export",
  url: document.currentScript.dataset.url,
  every: 1500,
  update(row, e) {
    const pct = e.total ? Math.floor((100 * e.done) / e.total) : 0;
    row.querySelector("[data-field=bar]").dataset.percent = e.status === "succeeded" ? 100 : pct;
    row.querySelector("[data-field=counts]").textContent = `${e.done} / ${e.total}`;
    const status = row.querySelector("[data-field=status]");
    status.textContent = e.status;
    status.className = `status status-${e.status}`;
    row.querySelector("[data-field=error]").textContent = e.error;
    if (e.status === "succeeded" || e.status === "failed") {
      row.dataset.finished = "1";
      window.location.reload();
    }
  },
});
