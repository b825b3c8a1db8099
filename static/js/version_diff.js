// "Compare with": go to the diff against the chosen version. The form's data-diff-url is the
// diff URL for version 0; the chosen version's id replaces that last 0.
document.querySelectorAll("form[data-diff-url]").forEach((form) => {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.href = form.dataset.diffUrl.replace(/0\/$/, `${form.elements.other.value}/`);
  });
});
