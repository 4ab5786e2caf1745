// The staff nav bar's badge on every staff page: requests offered to me now and opinions I asked for
// that I have not read yet. Read over HTTP at load and on every (re)connect of the page's socket, then
// kept live by `escalation_badge` pushes (docs/protocol.md). The number is text in a bordered pill; what
// it counts is in its title and, for screen readers, in a polite live region.
import { Signal } from "./signal.js";

const badge = document.querySelector("[data-badge]");
const live = document.querySelector("[data-badge-text]");

function show({ offers, unread }) {
  const total = offers + unread;
  const parts = [];
  if (offers > 0) parts.push(live.dataset.offers.replace("{n}", offers));
  if (unread > 0) parts.push(live.dataset.unread.replace("{n}", unread));
  const text = parts.join(". ");
  badge.textContent = total > 0 ? String(total) : "";
  badge.title = text;
  badge.hidden = total === 0;
  badge.dataset.offers = offers;
  badge.dataset.unread = unread;
  if (live.textContent !== text) live.textContent = text;
}

async function refresh() {
  try {
    const r = await fetch("/api/staff/badge", { credentials: "same-origin" });
    if (r.ok) show(await r.json());
  } catch { /* offline: the next welcome reads it again */ }
}

if (badge && live) {
  window.addEventListener("dh-signal", ({ detail: msg }) => {
    if (msg.type === "welcome") refresh();
    else if (msg.type === "escalation_badge") show(msg);
  });
  refresh();
  // Pages with a socket of their own created it already (their module ran first); the others get one.
  if (Signal.count === 0) new Signal({ onMessage: () => {} }).connect();
}
