// Keys and buttons. Everything on the screen has a key; the buttons carry the same actions in
// data-action, and the skip dialog's reasons answer to their numbers.
import { $ } from "./config.js";
import * as answers from "./answers.js";
import * as overlay from "./overlay.js";
import * as player from "./player.js";
import * as stage from "./stage.js";

const KEYS = {
  s: "skip",
  u: "undo",
  "?": "help",
  g: "guidelines",
  b: "background",
  " ": "play",
  ",": "prev-frame",
  ".": "next-frame",
  "[": "slower",
  "]": "faster",
};

function onOverlayKey(e, key, skip) {
  const open = overlay.current();
  if (key === "Escape" || (open === "help" && key === "?") || (open === "guidelines" && key === "g")) {
    e.preventDefault();
    overlay.close();
  } else if (open === "skip-dialog" && /^[1-9]$/.test(key)) {
    const button = document.querySelectorAll("#skip-dialog [data-reason]")[Number(key) - 1];
    if (button) {
      e.preventDefault();
      skip(button.dataset.reason);
    }
  }
}

// In a text box keys type, except Escape (leave the box), Enter (leave and submit; Shift+Enter
// starts a new line) and Tab (leave the box and highlight the next question).
function onTextKey(e, key, submit) {
  if (key === "Escape") {
    e.preventDefault();
    e.target.blur();
  } else if (key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    e.target.blur();
    submit();
  } else if (key === "Tab" && answers.isOpen()) {
    e.preventDefault();
    e.target.blur();
    answers.move(e.shiftKey ? -1 : 1);
  }
}

const PLAYER_ACTIONS = new Set(["play", "prev-frame", "next-frame", "slower", "faster"]);

/** Listens for keys and clicks on the rating screen; ``submit``, ``skip(reason)`` and ``undo``
 * are the screen's own actions. */
export function bind({ submit, skip, undo }) {
  const actions = {
    submit,
    skip: () => overlay.show("skip-dialog"),
    undo,
    help: () => overlay.toggle("help"),
    guidelines: () => overlay.toggle("guidelines"),
    background: stage.cycleBackground,
    play: () => player.control("play"),
    "prev-frame": () => player.control("prev-frame"),
    "next-frame": () => player.control("next-frame"),
    slower: () => player.control("slower"),
    faster: () => player.control("faster"),
  };

  $("rater").addEventListener("click", (e) => {
    const button = e.target.closest("[data-action]");
    if (button && actions[button.dataset.action]) {
      button.blur();
      actions[button.dataset.action]();
      return;
    }
    const reason = e.target.closest("[data-reason]");
    if (reason) skip(reason.dataset.reason);
    if (e.target.classList.contains("overlay")) overlay.close();
  });

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if (overlay.current()) {
      onOverlayKey(e, key, skip);
      return;
    }
    if (e.target.matches && e.target.matches("textarea, input")) {
      onTextKey(e, key, submit);
      return;
    }
    if (key === "Enter") {
      e.preventDefault();
      submit();
      return;
    }
    // Shift+N, not N: n answers "No" on yes/no questions.
    if (answers.isOpen() && e.shiftKey && key === "n") {
      if (answers.writeNote()) e.preventDefault();
      return;
    }
    if (answers.isOpen() && (key === "Tab" || key === "ArrowDown" || key === "ArrowUp")) {
      e.preventDefault();
      answers.move(key === "ArrowUp" || (key === "Tab" && e.shiftKey) ? -1 : 1);
      return;
    }
    if (answers.isOpen() && answers.press(key)) {
      e.preventDefault();
      return;
    }
    if (key === "p") {
      e.preventDefault();
      stage.togglePrompt();
      return;
    }
    // The player's keys do nothing while no animation is on screen.
    if (KEYS[key] && !(PLAYER_ACTIONS.has(KEYS[key]) && !player.isShown())) {
      e.preventDefault();
      actions[KEYS[key]]();
    }
  });
}
