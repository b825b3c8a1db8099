// The item on screen: its candidates with their source stickers and animations, the prompt, the
// background behind them, and the empty state when there is nothing to rate. Every text from
// the server is set with textContent: prompts and labels are never parsed as HTML.
import { cfg, $ } from "./config.js";
import * as player from "./player.js";

const BACKGROUNDS = ["checker", "white", "dark"];
const root = $("rater");
const stage = $("stage");
let bg = 0; // index into BACKGROUNDS
let promptHidden = false;

/** How a candidate is named on screen and in questions: Left/Right, #n, or nothing for one. */
export function candidateLabel(candidate, index) {
  if (cfg.campaign.kind === "pair") return index === 0 ? "Left" : "Right";
  return cfg.campaign.kind === "single" ? "" : `#${index + 1}`;
}

function mediaImg(url, cls, alt) {
  const img = document.createElement("img");
  img.className = cls;
  img.alt = alt;
  img.draggable = false;
  img.src = url; // decoded already by the queue's preload: no request, no flash
  return img;
}

function candidateFigure(c, i) {
  const fig = document.createElement("figure");
  fig.className = "shown";
  fig.dataset.candidate = String(c.position);
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
  if (c.strip_url) {
    // One image per animation: its frames side by side; the box keeps one frame's shape and
    // the player slides the strip through it (object-position), frame by frame.
    const img = mediaImg(c.strip_url, "sticker animation", `animation ${label}`.trim());
    img.dataset.frameCount = String(c.frame_count);
    img.dataset.fps = String(c.fps || 8);
    // Through CSSOM: the Content-Security-Policy ignores style attributes, not these.
    img.style.aspectRatio = `${c.width} / ${c.height}`;
    main.append(img);
  } else {
    main.append(mediaImg(c.url, "sticker", `candidate ${label}`.trim()));
  }
  fig.append(main);
  if (label) {
    const cap = document.createElement("figcaption");
    cap.textContent = cfg.campaign.kind === "pair" ? label : `${label}  (${i + 1})`;
    fig.append(cap);
  }
  return fig;
}

function renderPrompt(item) {
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
  prompt.hidden = promptHidden;
}

/** Puts ``item`` on the stage and starts its animations. */
export function showItem(item) {
  root.dataset.state = "rating";
  $("empty").hidden = true;
  stage.dataset.item = String(item.id);
  stage.className = `stage bg-${BACKGROUNDS[bg]} kind-${cfg.campaign.kind} n-${item.candidates.length}`;
  stage.replaceChildren(...item.candidates.map(candidateFigure));
  renderPrompt(item);
  const animated = item.candidates.some((c) => c.strip_url);
  $("anim-controls").hidden = !animated;
  player.load(animated);
}

function clearScreen(state, title, text) {
  player.unload();
  root.dataset.state = state;
  stage.dataset.item = "";
  // Nothing of the last item stays behind the message: not its media, questions or Submit.
  stage.replaceChildren();
  $("questions").replaceChildren();
  $("prompt").replaceChildren();
  $("anim-controls").hidden = true;
  $("submit").disabled = true;
  $("empty-title").textContent = title;
  $("empty-text").textContent = text;
  $("empty").hidden = false;
}

/** Nothing on screen yet: the next items are on their way. */
export function showWaiting() {
  clearScreen("loading", "Loading the next item…", "");
}

/** Nothing left to rate (``title``), and why (``text``): the end of the queue, a paused
 * membership or a campaign that is not running. */
export function showDone(title, text) {
  clearScreen("done", title, text);
}

/** Highlights the candidate the highlighted question is about (``null``: none). */
export function markAsked(candidateId) {
  stage.querySelectorAll("figure.shown").forEach((fig) => {
    fig.classList.toggle("asked", candidateId !== null && fig.dataset.candidate === String(candidateId));
  });
}

export function cycleBackground() {
  bg = (bg + 1) % BACKGROUNDS.length;
  stage.className = stage.className.replace(/bg-\w+/, `bg-${BACKGROUNDS[bg]}`);
}

export function togglePrompt() {
  promptHidden = !promptHidden;
  $("prompt").hidden = promptHidden;
}
