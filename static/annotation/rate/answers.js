// The answer sheet of the item on screen and the panel that shows it: one slot per question (per
// question and candidate where the question is asked of each), the answers given so far and
// the highlighted slot, which the option keys answer.
import { cfg, $ } from "./config.js";
import { candidateLabel, markAsked } from "./stage.js";

let sheet = null; // {item, answers, shownAt, slots, active}: null while nothing is shown
let drawnItem = null; // the item whose questions the panel shows

function buildSlots(item) {
  const slots = [];
  for (const q of cfg.schema) {
    if (q.per_candidate) {
      item.candidates.forEach((c, i) => slots.push({ q, cand: c.position, index: i }));
    } else {
      slots.push({ q, cand: null, index: null });
    }
  }
  return slots;
}

function optionsFor(question, item) {
  if (question.type !== "pick") return question.options || [];
  const options = item.candidates.map((c, i) => ({
    value: c.position,
    label: candidateLabel(c, i),
    shortcut: String(i + 1),
  }));
  if (!question.required) options.push({ value: null, label: "None", shortcut: "0" });
  return options;
}

function valueOf(slot) {
  const a = sheet.answers[slot.q.key];
  if (slot.cand === null) return a;
  return a ? a[String(slot.cand)] : undefined;
}

function setValue(slot, value) {
  const answers = sheet.answers;
  if (slot.cand === null) {
    answers[slot.q.key] = value;
  } else {
    answers[slot.q.key] = answers[slot.q.key] || {};
    answers[slot.q.key][String(slot.cand)] = value;
  }
}

function answered(slot) {
  const v = valueOf(slot);
  if (slot.q.type === "text") return typeof v === "string" && v.trim() !== "";
  if (slot.q.type === "multi_choice") return Array.isArray(v) && v.length >= (slot.q.min_choices || 0);
  if (slot.q.type === "pick") return v !== undefined;
  return v !== undefined && v !== null;
}

function missingSlot() {
  return sheet.slots.findIndex((s) => s.q.required && !answered(s));
}

// After a single answer the highlight moves on to the next question that takes a key.
function advance() {
  const slots = sheet.slots;
  for (let i = sheet.active + 1; i < slots.length; i++) {
    if (slots[i].q.type !== "text") {
      sheet.active = i;
      return;
    }
  }
}

function choose(slotIndex, option) {
  const slot = sheet.slots[slotIndex];
  sheet.active = slotIndex;
  if (slot.q.type === "multi_choice") {
    const list = Array.isArray(valueOf(slot)) ? valueOf(slot).slice() : [];
    const at = list.indexOf(option.value);
    if (at >= 0) list.splice(at, 1);
    else list.push(option.value);
    setValue(slot, list);
  } else {
    setValue(slot, option.value);
    advance();
  }
  render();
}

function questionBox(slot, index, cur) {
  const q = slot.q;
  const div = document.createElement("div");
  div.className = "question";
  div.dataset.key = q.key;
  div.dataset.slot = String(index);
  if (slot.cand !== null) div.dataset.candidate = String(slot.cand);
  if (index === cur.active) div.classList.add("active");
  if (answered(slot)) div.classList.add("answered");
  const title = document.createElement("div");
  title.className = "q-label";
  title.id = `q-label-${index}`;
  const label = slot.cand === null ? q.label : `${q.label} (${candidateLabel({}, slot.index) || "#" + (slot.index + 1)})`;
  // Campaigns made before the presets dropped it carry "(optional)" in the label itself.
  const saysOptional = q.required || /\(optional\)\s*$/i.test(q.label);
  title.textContent = label + (saysOptional ? "" : " (optional)");
  if (q.help) title.title = q.help;
  div.append(title);
  // A question asked of each candidate explains itself once, above the first.
  if (q.help && !(slot.cand !== null && slot.index > 0)) {
    const help = document.createElement("div");
    help.className = "q-help";
    help.textContent = q.help;
    div.append(help);
  }
  if (q.type === "text") {
    const hint = document.createElement("div");
    hint.className = "q-help";
    hint.append("Shift+N to write here; Esc leaves the box.");
    div.append(hint);
    const area = document.createElement("textarea");
    area.rows = 2;
    area.setAttribute("aria-label", q.label);
    area.maxLength = q.max_length || 1000;
    area.dataset.slot = String(index);
    area.value = valueOf(slot) || "";
    area.addEventListener("input", () => setValue(slot, area.value));
    area.addEventListener("focus", () => {
      cur.active = index;
      document.querySelectorAll(".question.active").forEach((el) => el.classList.remove("active"));
      div.classList.add("active");
    });
    div.append(area);
  } else {
    const row = document.createElement("div");
    row.className = "options";
    // A screen reader names the options by their question as it enters them.
    row.setAttribute("role", "group");
    row.setAttribute("aria-labelledby", title.id);
    const value = valueOf(slot);
    for (const option of optionsFor(q, cur.item)) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "option";
      const chosen =
        q.type === "multi_choice" ? Array.isArray(value) && value.includes(option.value) : value === option.value;
      if (chosen) b.classList.add("chosen");
      b.setAttribute("aria-pressed", chosen ? "true" : "false");
      const kbd = document.createElement("kbd");
      kbd.textContent = option.shortcut;
      b.append(kbd, document.createTextNode(` ${option.label}`));
      b.addEventListener("click", () => choose(index, option));
      row.append(b);
    }
    div.append(row);
  }
  return div;
}

/** Draws the questions of the sheet, the highlighted one marked, and enables Submit when done. */
export function render() {
  const cur = sheet;
  // An option clicked, or activated by a screen reader, keeps the focus on its redrawn self
  // while the item stays: otherwise the focus, and a screen reader's place, would fall back to
  // the page's start. Answers given with keys leave the focus where it was (on the page).
  const focused = document.activeElement;
  let kept = null;
  if (cur.item === drawnItem && focused && focused.matches("#questions .option")) {
    const slot = focused.closest(".question").dataset.slot;
    kept = { slot, at: [...focused.parentNode.children].indexOf(focused) };
  }
  $("questions").replaceChildren(...cur.slots.map((slot, index) => questionBox(slot, index, cur)));
  drawnItem = cur.item;
  if (kept) {
    const row = $("questions").querySelector(`.question[data-slot="${kept.slot}"] .options`);
    row.children[kept.at].focus();
  }
  const slot = cur.slots[cur.active];
  markAsked(slot && slot.cand !== null ? slot.cand : null);
  $("submit").disabled = missingSlot() !== -1;
}

/** A fresh sheet for ``item``, filled with ``given`` answers (copied), the first slot highlighted. */
export function open(item, given) {
  sheet = {
    item,
    answers: JSON.parse(JSON.stringify(given || {})),
    shownAt: performance.now(),
    slots: buildSlots(item),
    active: 0,
  };
}

export function close() {
  sheet = null;
}

export function isOpen() {
  return sheet !== null;
}

/** The item on screen, or null. */
export function item() {
  return sheet ? sheet.item : null;
}

export function secondsOnItem() {
  return Math.round(performance.now() - sheet.shownAt) / 1000;
}

/** Highlights the first required question left unanswered and returns its label; null if none. */
export function highlightMissing() {
  const missing = missingSlot();
  if (missing === -1) return null;
  sheet.active = missing;
  render();
  return sheet.slots[missing].q.label;
}

/** The answers to send: text left blank is left out. */
export function cleaned() {
  const out = {};
  for (const q of cfg.schema) {
    const v = sheet.answers[q.key];
    if (v === undefined) continue;
    if (q.type === "text" && (typeof v !== "string" || v.trim() === "")) continue;
    out[q.key] = v;
  }
  return out;
}

/** Answers the highlighted question with the option whose shortcut is ``key``: true if one was. */
export function press(key) {
  const slot = sheet.slots[sheet.active];
  if (!slot || slot.q.type === "text") return false;
  const option = optionsFor(slot.q, sheet.item).find((o) => o.shortcut.toLowerCase() === key);
  if (!option) return false;
  choose(sheet.active, option);
  return true;
}

/** Moves the highlight ``step`` questions on (or back). The focus stays where it is: a text
 * box is highlighted, never entered, so the keys that follow still answer questions; only
 * Shift+N (``writeNote``) puts the focus in it. */
export function move(step) {
  const next = sheet.active + step;
  if (next < 0 || next >= sheet.slots.length) return;
  sheet.active = next;
  render();
}

/** Puts the focus in the highlighted text box, or the first one: true if there is one. */
export function writeNote() {
  const slots = sheet.slots;
  let index = slots[sheet.active] && slots[sheet.active].q.type === "text" ? sheet.active : -1;
  if (index < 0) index = slots.findIndex((s) => s.q.type === "text");
  if (index < 0) return false;
  sheet.active = index;
  render();
  document.querySelector(`textarea[data-slot="${index}"]`).focus();
  return true;
}

export function snapshot() {
  return sheet && { item: sheet.item, answers: sheet.answers, active: sheet.active };
}
