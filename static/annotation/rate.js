// The rating screen. Keeps PREFETCH items leased and their media decoded ahead of the rater, so
// the next item shows the moment an answer is given; answers wait in an outbox (saved in
// localStorage) with client-generated ids until the server acknowledges them, so a lost
// connection loses nothing and a resend is stored once. Every text from the server is set with
// textContent: prompts and labels are never parsed as HTML.
(function () {
  "use strict";

  const cfg = JSON.parse(document.getElementById("rate-config").textContent);
  const $ = (id) => document.getElementById(id);
  const root = $("rater");
  const stage = $("stage");
  const STORE = `stickerloop.outbox.${cfg.campaign.id}.${cfg.user}`;
  const BACKGROUNDS = ["checker", "white", "dark"];
  const SPEEDS = [0.25, 0.5, 1, 2, 4];
  const RETRY_MAX_MS = 15000;
  const EMPTY_RECHECK_MS = 15000;

  const state = {
    queue: [], // leased items, media preloading or ready
    current: null, // {item, answers, shownAt, slots, active, note}
    outbox: loadOutbox(), // submissions not yet acknowledged, oldest first
    inFlight: null, // the client_id being sent
    last: null, // {sub, item}: what U undoes
    pumping: false,
    retryMs: 0,
    retryTimer: null,
    recheckTimer: null,
    exhausted: false,
    done: 0,
    bg: 0,
    overlay: null,
    promptHidden: false,
    anim: { playing: true, speed: 2, frame: 0, timer: null },
  };
  const media = new Map(); // url -> decoded HTMLImageElement, kept so the browser keeps it
  const known = new Set(); // item ids received, so the held list and refills never double

  // Storage and network -----------------------------------------------------------------------

  function loadOutbox() {
    try {
      return JSON.parse(localStorage.getItem(STORE) || "[]");
    } catch (e) {
      return [];
    }
  }

  function saveOutbox() {
    try {
      localStorage.setItem(STORE, JSON.stringify(state.outbox));
    } catch (e) {
      /* private mode: the outbox still lives in memory */
    }
    renderCounts();
  }

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  function describe(data) {
    if (!data || typeof data !== "object") return "The server refused the answer.";
    if (data.detail) return String(data.detail);
    return Object.entries(data)
      .map(([field, problems]) => `${field}: ${[].concat(problems).join(" ")}`)
      .join(" · ");
  }

  function setOnline(online) {
    const net = $("net");
    net.dataset.online = online ? "1" : "0";
    net.textContent = online ? "online" : "offline: answers are kept and sent when the network is back";
  }

  function scheduleRetry() {
    state.retryMs = Math.min(RETRY_MAX_MS, state.retryMs ? state.retryMs * 2 : 1000);
    clearTimeout(state.retryTimer);
    state.retryTimer = setTimeout(pump, state.retryMs);
  }

  // Sends the outbox one submission at a time, oldest first, each with a request for as many
  // new items as the prefetch buffer lacks; with an empty outbox it only refills the buffer.
  async function pump() {
    if (state.pumping) return;
    state.pumping = true;
    clearTimeout(state.retryTimer);
    try {
      for (;;) {
        const sub = state.outbox[0];
        const want = Math.max(0, cfg.prefetch - state.queue.length - (state.current ? 0 : 1));
        if (!sub && (want === 0 || state.exhausted)) break;
        const body = { fetch: want };
        if (sub) body.submit = sub;
        state.inFlight = sub ? sub.client_id : null;
        let response;
        try {
          response = await post(cfg.urls.step, body);
        } catch (e) {
          setOnline(false);
          scheduleRetry();
          break;
        } finally {
          state.inFlight = null;
        }
        if (response.status >= 500) {
          setOnline(false);
          scheduleRetry();
          break;
        }
        setOnline(true);
        state.retryMs = 0;
        const data = await response.json().catch(() => ({}));
        if (sub) {
          state.outbox.shift();
          saveOutbox();
        }
        if (response.ok) {
          if (sub && !data.replayed) state.done += 1;
          addItems(data.items || []);
          if (want > 0 && !(data.items || []).length) noMoreItems(data.message);
        } else {
          // 400, 403 or 409: the server stored nothing and a resend would not change that.
          flash(sub ? `Item ${sub.item}: ${describe(data)}` : describe(data), "error");
          if (!sub) {
            noMoreItems(describe(data));
            break;
          }
        }
        if (!state.current) showNext();
        if (!sub) break;
      }
    } finally {
      state.pumping = false;
      renderCounts();
    }
  }

  function noMoreItems(message) {
    state.exhausted = true;
    if (!state.current && !state.queue.length) {
      $("empty-text").textContent = message || "No more items for you right now.";
    }
    clearTimeout(state.recheckTimer);
    state.recheckTimer = setTimeout(() => {
      state.exhausted = false;
      pump();
    }, EMPTY_RECHECK_MS);
  }

  // Items and media ---------------------------------------------------------------------------

  function urlsOf(item) {
    const urls = [];
    for (const c of item.candidates) {
      if (c.frames && c.frames.length) urls.push(...c.frames);
      else if (c.url) urls.push(c.url);
      if (c.source_url) urls.push(c.source_url);
    }
    return urls;
  }

  function preload(item) {
    item.ready = Promise.all(
      urlsOf(item).map((url) => {
        let img = media.get(url);
        if (!img) {
          img = new Image();
          img.decoding = "async";
          img.src = url;
          media.set(url, img);
        }
        return img.decode().catch(() => undefined);
      }),
    );
  }

  function addItems(items) {
    const pending = new Set(state.outbox.map((s) => s.item));
    for (const item of items) {
      if (known.has(item.id) || pending.has(item.id)) continue;
      known.add(item.id);
      preload(item);
      state.queue.push(item);
    }
    renderCounts();
  }

  function forgetMedia(item) {
    const still = new Set(state.queue.flatMap(urlsOf));
    if (state.current) urlsOf(state.current.item).forEach((u) => still.add(u));
    for (const url of urlsOf(item)) if (!still.has(url)) media.delete(url);
  }

  // Questions ---------------------------------------------------------------------------------

  function optionsFor(question, item) {
    if (question.type !== "pick") return question.options || [];
    const options = item.candidates.map((c, i) => ({
      value: c.id,
      label: candidateLabel(c, i),
      shortcut: String(i + 1),
    }));
    if (!question.required) options.push({ value: null, label: "None", shortcut: "0" });
    return options;
  }

  function candidateLabel(candidate, index) {
    if (cfg.campaign.kind === "pair") return index === 0 ? "Left" : "Right";
    return cfg.campaign.kind === "single" ? "" : `#${index + 1}`;
  }

  function buildSlots(item) {
    const slots = [];
    for (const q of cfg.schema) {
      if (q.per_candidate) {
        item.candidates.forEach((c, i) => slots.push({ q, cand: c.id, index: i }));
      } else {
        slots.push({ q, cand: null, index: null });
      }
    }
    return slots;
  }

  function valueOf(slot) {
    const a = state.current.answers[slot.q.key];
    if (slot.cand === null) return a;
    return a ? a[String(slot.cand)] : undefined;
  }

  function setValue(slot, value) {
    const answers = state.current.answers;
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
    return state.current.slots.findIndex((s) => s.q.required && !answered(s));
  }

  function choose(slotIndex, option) {
    const slot = state.current.slots[slotIndex];
    state.current.active = slotIndex;
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
    renderQuestions();
  }

  function advance() {
    const slots = state.current.slots;
    for (let i = state.current.active + 1; i < slots.length; i++) {
      if (slots[i].q.type !== "text") {
        state.current.active = i;
        return;
      }
    }
  }

  function move(step) {
    const slots = state.current.slots;
    const next = state.current.active + step;
    if (next < 0 || next >= slots.length) return;
    state.current.active = next;
    renderQuestions();
    if (slots[next].q.type === "text") {
      const area = document.querySelector(`textarea[data-slot="${next}"]`);
      if (area) area.focus();
    }
  }

  function cleanAnswers() {
    const out = {};
    for (const q of cfg.schema) {
      const v = state.current.answers[q.key];
      if (v === undefined) continue;
      if (q.type === "text" && (typeof v !== "string" || v.trim() === "")) continue;
      out[q.key] = v;
    }
    return out;
  }

  // Showing an item ---------------------------------------------------------------------------

  function showNext() {
    const item = state.queue.shift();
    if (!item) {
      state.current = null;
      stopAnimation();
      root.dataset.state = "empty";
      stage.dataset.item = "";
      $("empty").hidden = false;
      if (!state.exhausted) $("empty-text").textContent = "Loading…";
      renderCounts();
      pump();
      return;
    }
    show(item, {});
    pump();
  }

  function show(item, answers) {
    state.current = {
      item,
      answers: JSON.parse(JSON.stringify(answers || {})),
      shownAt: performance.now(),
      slots: buildSlots(item),
      active: 0,
    };
    root.dataset.state = "rating";
    $("empty").hidden = true;
    renderStage();
    renderQuestions();
    renderCounts();
  }

  function mediaImg(url, cls, alt) {
    const img = document.createElement("img");
    img.className = cls;
    img.alt = alt;
    img.draggable = false;
    img.src = url; // decoded already by preload(): no request, no flash
    return img;
  }

  function renderStage() {
    const item = state.current.item;
    stage.dataset.item = String(item.id);
    stage.className = `stage bg-${BACKGROUNDS[state.bg]} kind-${cfg.campaign.kind} n-${item.candidates.length}`;
    stage.replaceChildren();
    let animated = false;
    item.candidates.forEach((c, i) => {
      const fig = document.createElement("figure");
      fig.className = "shown";
      fig.dataset.candidate = String(c.id);
      const label = candidateLabel(c, i);
      if (c.source_url) {
        const src = document.createElement("div");
        src.className = "source";
        src.append(mediaImg(c.source_url, "sticker source-sticker", "source sticker"));
        const cap = document.createElement("span");
        cap.textContent = "source";
        src.append(cap);
        fig.append(src);
      }
      const main = document.createElement("div");
      main.className = "main";
      if (c.frames && c.frames.length) {
        const img = mediaImg(c.frames[0], "sticker animation", `animation ${label}`.trim());
        img.dataset.frames = JSON.stringify(c.frames);
        img.dataset.fps = String(c.fps || 8);
        main.append(img);
        animated = true;
      } else {
        main.append(mediaImg(c.url, "sticker", `candidate ${label}`.trim()));
      }
      fig.append(main);
      if (label) {
        const cap = document.createElement("figcaption");
        cap.textContent = cfg.campaign.kind === "pair" ? label : `${label}  (${i + 1})`;
        fig.append(cap);
      }
      stage.append(fig);
    });
    const prompt = $("prompt");
    prompt.replaceChildren();
    const first = item.candidates[0];
    const p = document.createElement("p");
    p.className = "prompt-text";
    p.textContent = first ? first.prompt : "";
    prompt.append(p);
    if (first && first.motion_prompt && first.motion_prompt !== first.prompt) {
      const m = document.createElement("p");
      m.className = "motion-prompt";
      m.textContent = `Motion: ${first.motion_prompt}`;
      prompt.append(m);
    }
    prompt.hidden = state.promptHidden;
    $("anim-controls").hidden = !animated;
    state.anim.frame = 0;
    if (animated) startAnimation();
    else stopAnimation();
  }

  function renderQuestions() {
    const box = $("questions");
    box.replaceChildren();
    const cur = state.current;
    cur.slots.forEach((slot, index) => {
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
      const label = slot.cand === null ? q.label : `${q.label} (${candidateLabel({}, slot.index) || "#" + (slot.index + 1)})`;
      title.textContent = label + (q.required ? "" : " (optional)");
      if (q.help) title.title = q.help;
      div.append(title);
      if (q.help) {
        const help = document.createElement("div");
        help.className = "q-help";
        help.textContent = q.help;
        div.append(help);
      }
      if (q.type === "text") {
        const area = document.createElement("textarea");
        area.rows = 2;
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
      box.append(div);
    });
    stage.querySelectorAll("figure.shown").forEach((fig) => {
      const slot = cur.slots[cur.active];
      fig.classList.toggle("asked", !!slot && slot.cand !== null && fig.dataset.candidate === String(slot.cand));
    });
    $("submit").disabled = missingSlot() !== -1;
  }

  function renderCounts() {
    $("done-count").textContent = String(state.done);
    $("queue-count").textContent = String(state.queue.length);
    $("outbox-count").textContent = String(state.outbox.length);
  }

  function flash(text, tone) {
    const m = $("message");
    m.textContent = text;
    m.className = tone || "";
    clearTimeout(flash.timer);
    flash.timer = setTimeout(() => {
      m.textContent = "";
    }, 6000);
  }

  // Animations: frames swapped on a timer, so they can pause, step and change speed -------------

  function animations() {
    return Array.from(stage.querySelectorAll("img.animation"));
  }

  function drawFrame() {
    for (const img of animations()) {
      const frames = JSON.parse(img.dataset.frames);
      img.src = frames[((state.anim.frame % frames.length) + frames.length) % frames.length];
    }
    const first = animations()[0];
    if (first) {
      const n = JSON.parse(first.dataset.frames).length;
      $("frame-info").textContent = `frame ${(((state.anim.frame % n) + n) % n) + 1}/${n}`;
    }
    $("speed-info").textContent = `${SPEEDS[state.anim.speed]}×`;
  }

  function startAnimation() {
    stopAnimation();
    drawFrame();
    if (!state.anim.playing) return;
    const first = animations()[0];
    const fps = first ? Number(first.dataset.fps) || 8 : 8;
    state.anim.timer = setInterval(() => {
      state.anim.frame += 1;
      drawFrame();
    }, 1000 / (fps * SPEEDS[state.anim.speed]));
  }

  function stopAnimation() {
    clearInterval(state.anim.timer);
    state.anim.timer = null;
  }

  // Actions -----------------------------------------------------------------------------------

  function submit() {
    if (!state.current) return;
    const missing = missingSlot();
    if (missing !== -1) {
      state.current.active = missing;
      renderQuestions();
      flash(`Answer “${state.current.slots[missing].q.label}” first.`, "error");
      return;
    }
    send({ answers: cleanAnswers() });
  }

  function skip(reason) {
    closeOverlay();
    if (!state.current) return;
    send({ answers: {}, skipped: true, skip_reason: reason });
  }

  function send(fields) {
    const cur = state.current;
    const sub = {
      item: cur.item.id,
      client_id: uuid(),
      seconds_on_item: Math.round(performance.now() - cur.shownAt) / 1000,
      ...fields,
    };
    state.outbox.push(sub);
    saveOutbox();
    state.last = { sub, item: cur.item };
    forgetMedia(cur.item);
    showNext();
  }

  async function undo() {
    const last = state.last;
    if (!last) {
      flash("Nothing to undo.", "error");
      return;
    }
    const at = state.outbox.findIndex((s) => s.client_id === last.sub.client_id);
    if (at >= 0 && state.inFlight !== last.sub.client_id) {
      // Not sent yet: take it back here, the server never saw it.
      state.outbox.splice(at, 1);
      saveOutbox();
      state.last = null;
      putBack(last.item, last.sub.skipped ? {} : last.sub.answers);
      return;
    }
    while (state.outbox.some((s) => s.client_id === last.sub.client_id)) {
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
    state.last = null;
    state.done = Math.max(0, state.done - 1);
    preload(data.item);
    putBack(data.item, data.skipped ? {} : data.answers);
  }

  function putBack(item, answers) {
    if (state.current) state.queue.unshift(state.current.item);
    known.add(item.id);
    show(item, answers);
    flash("Undone: your last answer is back.", "");
  }

  function cycleBackground() {
    state.bg = (state.bg + 1) % BACKGROUNDS.length;
    stage.className = stage.className.replace(/bg-\w+/, `bg-${BACKGROUNDS[state.bg]}`);
  }

  function openOverlay(id) {
    closeOverlay();
    state.overlay = id;
    $(id).hidden = false;
  }

  function closeOverlay() {
    if (state.overlay) $(state.overlay).hidden = true;
    state.overlay = null;
  }

  function toggleOverlay(id) {
    if (state.overlay === id) closeOverlay();
    else openOverlay(id);
  }

  function animate(action) {
    if (action === "play") state.anim.playing = !state.anim.playing;
    if (action === "prev-frame" || action === "next-frame") {
      state.anim.playing = false;
      state.anim.frame += action === "next-frame" ? 1 : -1;
    }
    if (action === "slower") state.anim.speed = Math.max(0, state.anim.speed - 1);
    if (action === "faster") state.anim.speed = Math.min(SPEEDS.length - 1, state.anim.speed + 1);
    startAnimation();
  }

  const ACTIONS = {
    submit,
    skip: () => openOverlay("skip-dialog"),
    undo,
    help: () => toggleOverlay("help"),
    guidelines: () => toggleOverlay("guidelines"),
    background: cycleBackground,
    play: () => animate("play"),
    "prev-frame": () => animate("prev-frame"),
    "next-frame": () => animate("next-frame"),
    slower: () => animate("slower"),
    faster: () => animate("faster"),
  };

  root.addEventListener("click", (e) => {
    const button = e.target.closest("[data-action]");
    if (button && ACTIONS[button.dataset.action]) {
      button.blur();
      ACTIONS[button.dataset.action]();
      return;
    }
    const reason = e.target.closest("[data-reason]");
    if (reason) skip(reason.dataset.reason);
    if (e.target.classList.contains("overlay")) closeOverlay();
  });

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

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if (state.overlay) {
      if (key === "Escape" || (state.overlay === "help" && key === "?") || (state.overlay === "guidelines" && key === "g")) {
        e.preventDefault();
        closeOverlay();
      } else if (state.overlay === "skip-dialog" && /^[1-9]$/.test(key)) {
        const button = document.querySelectorAll("#skip-dialog [data-reason]")[Number(key) - 1];
        if (button) {
          e.preventDefault();
          skip(button.dataset.reason);
        }
      }
      return;
    }
    if (e.target.matches && e.target.matches("textarea, input")) {
      if (key === "Escape") {
        e.preventDefault();
        e.target.blur();
      } else if (key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        e.target.blur();
        submit();
      }
      return;
    }
    if (key === "Enter") {
      e.preventDefault();
      submit();
      return;
    }
    if (state.current && (key === "Tab" || key === "ArrowDown" || key === "ArrowUp")) {
      e.preventDefault();
      move(key === "ArrowUp" || (key === "Tab" && e.shiftKey) ? -1 : 1);
      return;
    }
    if (state.current) {
      const slot = state.current.slots[state.current.active];
      if (slot && slot.q.type !== "text") {
        const option = optionsFor(slot.q, state.current.item).find((o) => o.shortcut.toLowerCase() === key);
        if (option) {
          e.preventDefault();
          choose(state.current.active, option);
          return;
        }
      }
    }
    if (key === "p") {
      e.preventDefault();
      state.promptHidden = !state.promptHidden;
      $("prompt").hidden = state.promptHidden;
      return;
    }
    if (KEYS[key]) {
      e.preventDefault();
      ACTIONS[KEYS[key]]();
    }
  });

  window.addEventListener("online", () => {
    state.retryMs = 0;
    pump();
  });

  // Start: resume the leases this rater holds (minus answers still in the outbox), then refill.
  async function start() {
    renderCounts();
    if (root.dataset.canRate !== "1") {
      root.dataset.state = "empty";
      $("empty").hidden = false;
      $("empty-text").textContent =
        cfg.membership.status === "paused"
          ? `Your work on this campaign is paused${cfg.membership.reason ? ": " + cfg.membership.reason : "."}`
          : `This campaign is ${cfg.campaign.status}.`;
      if (state.outbox.length) pump();
      return;
    }
    try {
      const response = await fetch(cfg.urls.held, { credentials: "same-origin" });
      if (response.ok) addItems((await response.json()).items || []);
    } catch (e) {
      setOnline(false);
    }
    showNext();
  }

  window.stickerloopRater = { state, media }; // for the browser tests and for debugging
  start();
})();
