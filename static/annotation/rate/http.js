// Requests to the rating API: same-origin JSON posts carrying the CSRF token, and the server's
// refusals in words.

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export function post(url, body) {
  return fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

export function describe(data) {
  if (!data || typeof data !== "object") return "The server refused the answer.";
  if (data.detail) return String(data.detail);
  return Object.entries(data)
    .map(([field, problems]) => `${field}: ${[].concat(problems).join(" ")}`)
    .join(" · ");
}
