// The rating screen. Keeps the next items leased and their media decoded ahead of the rater
// (queue.js), so the next item shows the moment an answer is given; answers wait in an outbox
// (outbox.js) until the server acknowledges them (sync.js). This module moves items on and off
// the screen and holds what U undoes.
import { cfg, $ } from "./config.js";
import { describe, post } from "./http.js";
import * as answers from "./answers.js";
import { bind } from "./keys.js";
import * as outbox from "./outbox.js";
import * as overlay from "./overlay.js";
import * as queue from "./queue.js";
import * as stage from "./stage.js";
import * as sync from "./sync.js";
import {
  countAnswer,
  flash,
  keepCurrent,
  refreshProgress,
  setOnline,
  showCounts,
} from "./bar.js";

let last = null; // {sub, item}: the answer U takes back

function show(item, given) {
  answers.open(item, given);
  stage.showItem(item);
  answers.render();
}

// The end of the queue: nothing of the last item stays on screen, the counters are read again
// so they are final, and U (or the button) can still take the last answer back.
function showDone(message) {
  stage.showDone("All done for now", message || "No more items for you in this campaign right now.");
  $("empty-undo").hidden = last === null;
  refreshProgress();
}

function showNext() {
  const item = queue.take();
  if (item) {
    show(item, {});
  } else {
    answers.close();
    const why = sync.exhaustion();
    if (why === null) stage.showWaiting();
    else showDone(why);
  }
  sync.pump();
}

function send(fields) {
  const item = answers.item();
  const sub = outbox.add(item.id, answers.secondsOnItem(), fields);
  last = { sub, item };
  showNext();
}

function submit() {
  if (!answers.isOpen()) return;
  const missing = answers.highlightMissing();
  if (missing !== null) {
    flash(`Answer “${missing}” first.`, "error");
    return;
  }
  send({ answers: answers.cleaned() });
}

function skip(reason) {
  overlay.close();
  if (!answers.isOpen()) return;
  send({ answers: {}, skipped: true, skip_reason: reason });
}

function putBack(item, given) {
  const shown = answers.item();
  if (shown) queue.putFront(shown);
  queue.know(item);
  show(item, given);
  flash("Undone: your last answer is back.", "");
}

async function undo() {
  const taken = last;
  if (!taken) {
    flash("Nothing to undo.", "error");
    return;
  }
  if (outbox.takeBack(taken.sub.client_id)) {
    // Not sent yet: taken back here, the server never saw it.
    last = null;
    putBack(taken.item, taken.sub.skipped ? {} : taken.sub.answers);
    return;
  }
  while (outbox.holds(taken.sub.client_id)) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  let response;
  try {
    response = await post(cfg.urls.undo);
  } catch (e) {
    flash("Undo needs the network; try again when it is back.", "error");
    return;
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    flash(describe(data), "error");
    return;
  }
  last = null;
  countAnswer(-1, Boolean(data.skipped));
  refreshProgress();
  queue.preload(data.item);
  putBack(data.item, data.skipped ? {} : data.answers);
}

// Start: resume the leases this rater holds (minus answers still in the outbox), then refill.
async function start() {
  showCounts();
  keepCurrent();
  if ($("rater").dataset.canRate !== "1") {
    stage.showDone(
      "Nothing to rate",
      cfg.membership.status === "paused"
        ? `Your work on this campaign is paused${cfg.membership.reason ? ": " + cfg.membership.reason : "."}`
        : `This campaign is ${cfg.campaign.status}.`,
    );
    if (outbox.size()) sync.pump();
    return;
  }
  try {
    const response = await fetch(cfg.urls.held, { credentials: "same-origin" });
    if (response.ok) queue.add((await response.json()).items || []);
  } catch (e) {
    setOnline(false);
  }
  showNext();
}

outbox.onChange(showCounts);
sync.connect({ showNext });
bind({ submit, skip, undo });
window.addEventListener("online", () => sync.reconnect());

// Read-only views for the browser tests and for debugging.
window.stickerloopRater = {
  state: {
    get queue() {
      return queue.snapshot();
    },
    get outbox() {
      return outbox.snapshot();
    },
    get current() {
      return answers.snapshot();
    },
  },
  get media() {
    return queue.mediaCache();
  },
};

start();
