// The bar above the item: how many answers were judged, are ready and are unsent, whether the
// server can be reached, and a passing message.
import { $ } from "./config.js";
import * as outbox from "./outbox.js";
import * as queue from "./queue.js";

const MESSAGE_MS = 6000;
let judged = 0; // answers the server stored in this visit, less those undone
let messageTimer = null;

export function showCounts() {
  $("done-count").textContent = String(judged);
  $("queue-count").textContent = String(queue.size());
  $("outbox-count").textContent = String(outbox.size());
}

export function countJudged(delta) {
  judged = Math.max(0, judged + delta);
  showCounts();
}

export function setOnline(online) {
  const net = $("net");
  net.dataset.online = online ? "1" : "0";
  net.textContent = online ? "online" : "offline: answers are kept and sent when the network is back";
}

export function flash(text, tone) {
  const m = $("message");
  m.textContent = text;
  m.className = tone || "";
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => {
    m.textContent = "";
  }, MESSAGE_MS);
}
