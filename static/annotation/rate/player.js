// Animations on the stage: each shows one frame of its frame strip at a time, the frame moved
// on a timer, so they can pause, step and change speed. Every animation on screen shows the same
// frame number.
import { $ } from "./config.js";

const SPEEDS = [0.25, 0.5, 1, 2, 4];
const stage = $("stage");
let playing = true;
let speed = 2; // index into SPEEDS
let frame = 0;
let timer = null;
let shown = false; // an animation is on the stage

function animations() {
  return Array.from(stage.querySelectorAll("img.animation"));
}

/** Frame ``frame`` of an animation of ``n`` frames, counting round in both directions. */
function frameOf(n) {
  return ((frame % n) + n) % n;
}

function drawFrame() {
  const imgs = animations();
  for (const img of imgs) {
    const n = Number(img.dataset.frameCount) || 1;
    // The box shows one frame's width of the strip (object-fit: cover); a position of p% puts
    // the strip's p% point on the box's, so frame i of n sits at i / (n - 1).
    const x = n > 1 ? (frameOf(n) * 100) / (n - 1) : 0;
    img.style.objectPosition = `${x}% 0%`;
    img.dataset.frame = String(frameOf(n));
  }
  if (imgs.length) {
    const n = Number(imgs[0].dataset.frameCount) || 1;
    $("frame-info").textContent = `frame ${frameOf(n) + 1}/${n}`;
  }
  $("speed-info").textContent = `${SPEEDS[speed]}×`;
}

function start() {
  stop();
  $("anim-controls").querySelector(".play-toggle").dataset.playing = playing ? "1" : "0";
  drawFrame();
  if (!playing) return;
  const first = animations()[0];
  const fps = first ? Number(first.dataset.fps) || 8 : 8;
  timer = setInterval(() => {
    frame += 1;
    drawFrame();
  }, 1000 / (fps * SPEEDS[speed]));
}

export function stop() {
  clearInterval(timer);
  timer = null;
}

/** Nothing is on the stage any more. */
export function unload() {
  shown = false;
  stop();
}

/** A new item is on the stage: play its animations from the first frame, if it has any. */
export function load(animated) {
  frame = 0;
  shown = animated;
  if (animated) start();
  else stop();
}

/** Whether an animation is on screen: the player's keys and buttons apply only then. */
export function isShown() {
  return shown;
}

/** One of the player's keys or buttons: play, prev-frame, next-frame, slower or faster. */
export function control(action) {
  if (action === "play") playing = !playing;
  if (action === "prev-frame" || action === "next-frame") {
    playing = false;
    frame += action === "next-frame" ? 1 : -1;
  }
  if (action === "slower") speed = Math.max(0, speed - 1);
  if (action === "faster") speed = Math.min(SPEEDS.length - 1, speed + 1);
  start();
}
