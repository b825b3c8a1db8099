// The page's configuration, written by the template with json_script, and a lookup by id.
// Nothing here changes after load.
export const cfg = JSON.parse(document.getElementById("rate-config").textContent);

export const $ = (id) => document.getElementById(id);
