// The dialog open over the screen (help, guidelines or the skip reasons), at most one at a time.
import { $ } from "./config.js";

let open = null; // the id of the open dialog

export function current() {
  return open;
}

export function show(id) {
  close();
  open = id;
  $(id).hidden = false;
}

export function close() {
  if (open) $(open).hidden = true;
  open = null;
}

export function toggle(id) {
  if (open === id) close();
  else show(id);
}
