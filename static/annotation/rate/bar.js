// The bar above the item: the rater's counters (judged today and in all, items left for them,
// the campaign's progress, answers not yet sent), whether the server can be reached, and a
// passing message.
//
// The counters are the server's (RaterProgressApi), read when the page opens and again every
// minute, when the queue runs dry and after an undo; in between, each answer the server
// acknowledges moves them here, so they never reset on a new visit and never wait for a request.
import { cfg, $ } from "./config.js";
import * as outbox from "./outbox.js";

const MESSAGE_MS = 6000;
const REFRESH_MS = 60000;
const SETTLE_MS = 3000;
let progress = JSON.parse($("rate-progress").textContent);
let acknowledged = 0; // answers acknowledged since the page opened: a refresh that saw one land
let messageTimer = null;
let refreshTimer = null;

function leftText() {
  return progress.left_capped ? `${progress.left}+` : String(progress.left);
}

// The counters in a sentence, for the end-of-queue screen.
function summary() {
  const unsent = outbox.size();
  return (
    `You judged ${progress.judged_today} item(s) today and ${progress.judged_total} in all here. ` +
    `The campaign has ${progress.campaign.items_done} of ${progress.campaign.items} items done.` +
    (unsent ? ` ${unsent} answer(s) are still on their way to the server.` : "")
  );
}

export function showCounts() {
  const c = progress.campaign;
  $("judged-today").textContent = String(progress.judged_today);
  $("judged-total").textContent = String(progress.judged_total);
  $("left-count").textContent = leftText();
  // Whole percents, rounded down: 100% only when every item is done.
  $("campaign-progress").textContent = `${c.items_done} of ${c.items} items done (${Math.floor(c.percent_done)}%)`;
  $("outbox-count").textContent = String(outbox.size());
  $("empty-summary").textContent = summary();
}

/** The server stored an answer (``delta`` 1) or took one back on undo (``delta`` -1). */
export function countAnswer(delta, skipped) {
  acknowledged += 1;
  if (skipped) progress.skipped_total = Math.max(0, progress.skipped_total + delta);
  else {
    progress.judged_today = Math.max(0, progress.judged_today + delta);
    progress.judged_total = Math.max(0, progress.judged_total + delta);
  }
  if (!progress.left_capped) progress.left = Math.max(0, progress.left - delta);
  showCounts();
}

function schedule(ms) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshProgress, ms);
}

/** Reads the counters again in a minute, and every minute after. */
export function keepCurrent() {
  schedule(REFRESH_MS);
}

/** Reads the counters from the server. A figure read while an answer was on its way may or may
 * not count it, so such a reading is dropped and taken again a little later. */
export async function refreshProgress() {
  const seen = acknowledged;
  if (outbox.size()) {
    schedule(SETTLE_MS);
    return;
  }
  schedule(REFRESH_MS);
  if (document.hidden) return; // a tab in the background asks nothing of the server
  let data;
  try {
    const response = await fetch(cfg.urls.progress, { credentials: "same-origin" });
    if (!response.ok) return;
    data = await response.json();
  } catch (e) {
    return; // offline: the local counts stand until the next reading
  }
  if (seen !== acknowledged || outbox.size()) {
    schedule(SETTLE_MS);
    return;
  }
  progress = data;
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
