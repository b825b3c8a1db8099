// Moves the progress bars of unfinished jobs (the training job list). Its <script> tag carries
// the progress API's URL in data-url.
(function () {
  const finished = ["succeeded", "failed", "cancelled"];
  pollProgress({
    key: "job",
    url: document.currentScript.dataset.url,
    every: 2000,
    update(row, j) {
      const pct = j.status === "succeeded" ? 100 : Math.floor((100 * j.step) / j.total_steps);
      row.querySelector("[data-field=bar]").dataset.percent = pct;
      row.querySelector("[data-field=steps]").textContent = `${j.step} / ${j.total_steps}`;
      const losses = Object.entries(j.last_loss || {}).sort().map(([r, v]) => `${r} ${Number(v).toFixed(4)}`);
      row.querySelector("[data-field=loss]").textContent = losses.join(", ") || "—";
      row.querySelector("[data-field=eta]").textContent =
        j.eta_seconds && !finished.includes(j.status) ? `${Math.round(j.eta_seconds)} s` : "—";
      const status = row.querySelector("[data-field=status]");
      status.textContent = j.status;
      status.className = `status status-${j.status}`;
      // A job can succeed while its evaluation is skipped or fails: say so, as the page does.
      const troubled = ["skipped", "failed"].includes(j.evaluation_status);
      if (troubled && !row.querySelector("[data-evaluation]")) {
        const warning = document.createElement("span");
        warning.className = "tag warning";
        warning.dataset.evaluation = j.evaluation_status;
        warning.textContent = `evaluation ${j.evaluation_status}: ${j.evaluation_error}`;
        status.after(document.createElement("br"), warning);
      }
      if (finished.includes(j.status)) row.dataset.finished = "1";
    },
  });
})();
