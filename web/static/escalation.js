// One request for an opinion: summary, timeline, thread, opinion; accept / decline / sign for the
// specialist, cancel / close for the requester. Re-read whenever the socket says this request changed.
import { connectionStatus, Signal, signedOut, strings } from "./signal.js";
import { api, chime, csrfToken, notify } from "./escalation_common.js";

const t = strings();
const $ = (id) => document.getElementById(id);
const id = document.body.dataset.escalation;
const me = Number(document.body.dataset.me);
const STATUS = { requested: "Looking for a specialist", offered: "Offered to a specialist", accepted: "Accepted",
  answered: "Answered", closed: "Closed", overdue: "Overdue", cancelled: "Cancelled" };
const EVENTS = { requested: "Request sent", offered: "Offered to {name}", rerouted: "Re-routed to {name}",
  reoffered: "Offered again to {name} (nobody else has answered)",
  declined: "{name} declined: {reason}", offer_expired: "{name} did not answer in time",
  no_candidate: "No specialist on duty yet; it will be offered as soon as one is", accepted: "Accepted by {name}",
  answered: "Opinion signed by {name}", message: "New message from {name}",
  overdue: "The deadline passed without an answer", cancelled: "Cancelled by the requester",
  closed: "Closed by the requester", referred: "Referral sent",
  referral_acknowledged: "Referral acknowledged by the receiving facility",
  referral_arrived: "The patient arrived at the receiving facility" };

function li(text, extra) {
  const el = document.createElement("li");
  el.textContent = text;
  if (extra) Object.assign(el.dataset, extra);
  return el;
}

function showError(err) {
  $("error").textContent = err.message || t("Something went wrong. Please try again.");
  $("error").hidden = false;
}

async function refresh() {
  const e = await api("GET", `/api/escalations/${id}`);
  $("status").textContent = t(STATUS[e.status]);
  $("status").dataset.status = e.status;
  $("summary").replaceChildren(...Object.entries(e.summary || {}).filter(([, v]) => v && typeof v !== "object")
    .flatMap(([k, v]) => [Object.assign(document.createElement("dt"), { textContent: k }),
      Object.assign(document.createElement("dd"), { textContent: String(v) })]));
  $("timeline").replaceChildren(...e.timeline.map((x) => li(
    `${x.at_text} · ${t(EVENTS[x.kind] || x.kind, { name: x.staff_name || "", reason: (x.details || {}).reason || "" })}`,
    { kind: x.kind })));
  $("thread").replaceChildren(...e.messages.map((m) => li(`${m.author_name}: ${m.body}`)));
  if (e.opinion) {
    const o = e.opinion;
    const div = document.createElement("div");
    div.id = "opinion-signed";
    for (const line of [o.assessment, o.recommendation, o.follow_up, `${o.author_name} · ${o.signed_at_text} · sha256 ${o.content_sha256.slice(0, 12)}…`]) {
      if (line) div.append(Object.assign(document.createElement("p"), { textContent: line }));
    }
    $("opinion").replaceChildren(div);
  }
  $("offer-actions").hidden = !(e.status === "offered" && e.offered_to === me);
  $("opinion-form").hidden = !(e.accepted_by === me && (e.status === "accepted" || e.status === "overdue"));
  if ($("refer")) $("refer").hidden = !(e.opinion && e.opinion.transfer);
  if ($("close")) {
    $("close").hidden = !(e.status === "answered" || e.status === "overdue");
    $("cancel").hidden = ["answered", "closed", "cancelled"].includes(e.status);
  }
  if (e.status === "overdue" && e.urgency === "urgent") {
    $("overdue").textContent = t("Urgent request not accepted in time: transfer the patient or call 115.");
  }
}

async function refreshAttachments() {
  const data = await api("GET", `/api/escalations/${id}/attachments`);
  $("attachments").replaceChildren(...data.attachments.map((a) => {
    const el = document.createElement("li");
    el.dataset.kind = a.kind;
    if (a.thumbnail_url) {
      const img = Object.assign(document.createElement("img"), { src: a.thumbnail_url, alt: a.file_name, className: "thumb" });
      el.append(img, " ");
    }
    el.append(Object.assign(document.createElement("a"), { href: a.url, textContent: a.file_name, target: "_blank", rel: "noopener" }));
    if (a.thumbnail_url && !a.enhanced_of) {
      const b = Object.assign(document.createElement("button"), { type: "button", className: "button secondary", textContent: t("Enhance") });
      b.addEventListener("click", async () => {
        try { await api("POST", `${a.url}/enhance`); await refreshAttachments(); } catch (err) { showError(err); }
      });
      el.append(" ", b);
    }
    return el;
  }));
}

$("attach").addEventListener("change", async () => {
  const file = $("attach").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file, file.name);
  $("error").hidden = true;
  const r = await fetch(`/api/escalations/${id}/attachments`, { method: "POST", body: form, headers: { "X-CSRF-Token": csrfToken() } });
  if (!r.ok) { const d = await r.json().catch(() => ({})); showError(new Error(d.error ? d.error.message : r.statusText)); }
  $("attach").value = "";
  await refreshAttachments();
});

async function act(path, body, notice) {
  $("error").hidden = true;
  try {
    const result = await api("POST", `/api/escalations/${id}/${path}`, body);
    // Asked from a live call (urgent or priority): accepting puts the specialist in that call (issue 9.4).
    if (result && result.join_call) { location.assign(`/staff/c/${result.join_call}`); return; }
    if (notice) $("notice").textContent = t(notice);
    await refresh();
  } catch (err) { showError(err); }
}

$("accept").addEventListener("click", () => act("accept", undefined, "Accepted. Write your opinion below."));
$("decline").addEventListener("click", () => {
  const reason = $("decline-reason").value.trim();
  if (!reason) { showError(new Error(t("Say why you decline (the requester reads it)."))); return; }
  act("decline", { reason });
});
$("opinion-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const transfer = $("transfer").checked;
  act("opinion", {
    assessment: $("assessment").value, recommendation: $("recommendation").value, follow_up: $("follow-up").value,
    transfer, transfer_urgency: transfer ? ($("transfer-urgency").value || null) : null,
    avoided_visit: $("avoided-visit").checked,
  }, "The opinion is signed.");
});
$("message-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const body = $("message").value.trim();
  if (!body) return;
  act("messages", { body }, "Sent.").then(() => { $("message").value = ""; });
});
if ($("cancel")) $("cancel").addEventListener("click", () => act("cancel"));
if ($("close")) $("close").addEventListener("click", () => act("close"));
if ($("refer")) $("refer").addEventListener("click", () => act("referral", {}, "Referral sent"));

const signal = new Signal({
  onStatus: connectionStatus(t, $("conn"), t("Connected")),
  onEnded: () => signedOut(t, $("conn")),
  onMessage: (msg) => {
    if (msg.type === "welcome") { refresh(); refreshAttachments(); return; }
    if (!msg.type.startsWith("escalation_") || msg.escalation !== id) return;
    if (msg.type === "escalation_answered") { chime(false); notify(t("Opinion signed by {name}", { name: "" }), false); }
    if (msg.type === "escalation_withdrawn") $("notice").textContent = t("This request is no longer offered to you.");
    if (msg.type === "escalation_offer") $("notice").textContent = "";  // offered (again) to me now
    refresh();
  },
});
signal.connect();
