// The unread count of care messages beside the staff menu's link, read once when a page opens (the care
// messages pages keep it live themselves).
const badge = document.getElementById("nav-threads");
if (badge && !document.body.dataset.thread && !document.getElementById("inbox")) {
  fetch("/api/threads", { headers: { Accept: "application/json" } })
    .then((r) => (r.ok ? r.json() : null))
    .then((data) => { if (data && data.unread) badge.textContent = String(data.unread); })
    .catch(() => { /* the menu works without the count */ });
}
