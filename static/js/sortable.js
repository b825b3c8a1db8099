// Click a column header to sort the rater table (again to reverse). No network, no library.
document.querySelectorAll("table.sortable th[data-sort]").forEach((th, index) => {
  th.addEventListener("click", () => {
    const body = th.closest("table").tBodies[0];
    const numeric = th.dataset.sort === "num";
    const ascending = th.dataset.dir !== "asc";
    th.dataset.dir = ascending ? "asc" : "desc";
    const key = (row) => {
      const cell = row.cells[index];
      const raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
      return numeric ? (raw === "" ? -Infinity : parseFloat(raw)) : raw.toLowerCase();
    };
    const rows = Array.from(body.rows).sort((a, b) => {
      const [x, y] = [key(a), key(b)];
      return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
    });
    rows.forEach((row) => body.appendChild(row));
  });
});
