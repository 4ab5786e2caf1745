// The unread count of care messages beside the staff menu's link: read when a page opens, and again when
// the page's socket (if it has one: the queue, a call, the opinions) brings a `thread_message`.
const badge = document.getElementById("nav-threads");

function load() {
  fetch("/api/threads", { headers: { Accept: "application/json" } })
    .then((r) => (r.ok ? r.json() : null))
    .then((data) => { if (data) badge.textContent = data.unread ? String(data.unread) : ""; })
    .catch(() => { /* the menu works without the count */ });
}

// The care-messages pages keep the count themselves (static/threads.js).
if (badge && !document.body.dataset.thread && !document.getElementById("inbox")) {
  load();
  window.addEventListener("dh-signal", (event) => { if (event.detail.type === "thread_message") load(); });
}
