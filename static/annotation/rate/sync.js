// The one loop that talks to the step endpoint. It sends the outbox one submission at a time,
// oldest first, each with a request for as many new items as the prefetch buffer lacks; with an
// empty outbox it only refills the buffer. While the server cannot be reached it retries with a
// doubling delay; when the server has no more items it asks again after a while.
import { cfg } from "./config.js";
import { post, describe } from "./http.js";
import * as outbox from "./outbox.js";
import * as queue from "./queue.js";
import * as answers from "./answers.js";
import { countAnswer, flash, setOnline } from "./bar.js";

const RETRY_MAX_MS = 15000;
const EMPTY_RECHECK_MS = 15000;
let pumping = false;
let retryMs = 0;
let retryTimer = null;
let recheckTimer = null;
let exhausted = null; // why the server had no item for the last request ("" if it said not)
let showNext = () => {};

/** ``hooks.showNext`` puts the next item on screen (or says why there is none); called when
 * nothing is shown. */
export function connect(hooks) {
  showNext = hooks.showNext;
}

/** Why no more items come: null while they may, else the server's message ("" for none). */
export function exhaustion() {
  return exhausted;
}

/** The network is back: try again now rather than after the pending delay. */
export function reconnect() {
  retryMs = 0;
  pump();
}

function scheduleRetry() {
  retryMs = Math.min(RETRY_MAX_MS, retryMs ? retryMs * 2 : 1000);
  clearTimeout(retryTimer);
  retryTimer = setTimeout(pump, retryMs);
}

function noMoreItems(message) {
  exhausted = message || "";
  if (!answers.isOpen()) showNext();
  clearTimeout(recheckTimer);
  recheckTimer = setTimeout(() => {
    exhausted = null;
    pump();
  }, EMPTY_RECHECK_MS);
}

export async function pump() {
  if (pumping) return;
  pumping = true;
  clearTimeout(retryTimer);
  try {
    for (;;) {
      const sub = outbox.oldest();
      const want = queue.missing(answers.isOpen());
      if (!sub && (want === 0 || exhausted !== null)) break;
      const body = { fetch: want };
      if (sub) body.submit = sub;
      outbox.sending(sub ? sub.client_id : null);
      let response;
      try {
        response = await post(cfg.urls.step, body);
      } catch (e) {
        setOnline(false);
        scheduleRetry();
        break;
      } finally {
        outbox.sending(null);
      }
      if (response.status >= 500) {
        setOnline(false);
        scheduleRetry();
        break;
      }
      setOnline(true);
      retryMs = 0;
      const data = await response.json().catch(() => ({}));
      if (sub) outbox.acknowledge();
      if (response.ok) {
        if (sub && !data.replayed) countAnswer(1, Boolean(sub.skipped));
        queue.add(data.items || []);
        if (want > 0 && !(data.items || []).length) noMoreItems(data.message);
      } else {
        // 400, 403 or 409: the server stored nothing and a resend would not change that.
        flash(sub ? `Item ${sub.item}: ${describe(data)}` : describe(data), "error");
        if (!sub) {
          noMoreItems(describe(data));
          break;
        }
      }
      if (!answers.isOpen()) showNext();
      if (!sub) break;
    }
  } finally {
    pumping = false;
  }
}
