// Answers the server has not acknowledged yet, oldest first. They are saved in localStorage per
// campaign and rater, so a lost connection or a reload loses nothing, and each carries a
// client-generated id, so a resend is stored once.
import { cfg } from "./config.js";

const STORE = `stickerloop.outbox.${cfg.campaign.id}.${cfg.user}`;
const entries = load();
const listeners = [];
let inFlight = null; // the client_id being sent

function load() {
  try {
    return JSON.parse(localStorage.getItem(STORE) || "[]");
  } catch (e) {
    return [];
  }
}

function save() {
  try {
    localStorage.setItem(STORE, JSON.stringify(entries));
  } catch (e) {
    /* private mode: the outbox still lives in memory */
  }
  listeners.forEach((listener) => listener());
}

function uuid() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Calls ``listener`` after every change. */
export function onChange(listener) {
  listeners.push(listener);
}

/** Queues an answer for ``itemId`` and returns the submission as it will be sent. */
export function add(itemId, secondsOnItem, fields) {
  const sub = { item: itemId, client_id: uuid(), seconds_on_item: secondsOnItem, ...fields };
  entries.push(sub);
  save();
  return sub;
}

export function oldest() {
  return entries[0];
}

/** The oldest submission reached the server, which stored it or refused it for good. */
export function acknowledge() {
  entries.shift();
  save();
}

/** Marks the submission being sent (``null`` once the request is over). */
export function sending(clientId) {
  inFlight = clientId;
}

/** Removes a submission the server has not seen: true if it was waiting and not being sent. */
export function takeBack(clientId) {
  const at = entries.findIndex((s) => s.client_id === clientId);
  if (at < 0 || inFlight === clientId) return false;
  entries.splice(at, 1);
  save();
  return true;
}

export function holds(clientId) {
  return entries.some((s) => s.client_id === clientId);
}

export function itemIds() {
  return new Set(entries.map((s) => s.item));
}

export function size() {
  return entries.length;
}

export function snapshot() {
  return entries.slice();
}
