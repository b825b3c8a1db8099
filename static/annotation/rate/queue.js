// The prefetch buffer: items leased to this rater ahead of the one on screen, their media
// decoded already, so the next item shows the moment an answer is given.
import { cfg } from "./config.js";
import * as outbox from "./outbox.js";

const items = []; // leased items, media preloading or ready
const media = new Map(); // url -> decoded HTMLImageElement, kept so the browser keeps it
const known = new Set(); // item ids received, so the held list and refills never double

function urlsOf(item) {
  const urls = [];
  for (const c of item.candidates) {
    // An animation is one file, its frame strip; its frames and animated file stay unfetched.
    if (c.strip_url) urls.push(c.strip_url);
    else if (c.url) urls.push(c.url);
    if (c.source_url) urls.push(c.source_url);
  }
  return urls;
}

/** Starts fetching and decoding the item's media; ``item.ready`` settles when all are done. */
export function preload(item) {
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

/** Adds the items not seen before and not answered in the outbox, and preloads them. */
export function add(received) {
  const pending = outbox.itemIds();
  for (const item of received) {
    if (known.has(item.id) || pending.has(item.id)) continue;
    known.add(item.id);
    preload(item);
    items.push(item);
  }
}

/** The next item to show, or undefined when the buffer is empty. */
export function take() {
  return items.shift();
}

/** Puts an item back in front, when an undo brings an earlier one onto the screen. */
export function putFront(item) {
  items.unshift(item);
}

/** Records an item that reached the screen without passing through ``add``. */
export function know(item) {
  known.add(item.id);
}

/** How many items to ask for: the prefetch size, less those held and the one on screen. */
export function missing(showing) {
  return Math.max(0, cfg.prefetch - items.length - (showing ? 0 : 1));
}

export function snapshot() {
  return items.slice();
}

export function mediaCache() {
  return media;
}
