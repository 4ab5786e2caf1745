// The escalation inbox: offers to me (soonest deadline first), my facility's requests, the on-duty switch;
// kept live by the socket's escalation_* messages.
import { connectionStatus, Signal, signedOut, strings } from "./signal.js";
import { api, chime, notify, setTitleCount } from "./escalation_common.js";

const t = strings();
const $ = (id) => document.getElementById(id);
const URGENCY = { urgent: "Urgent: a specialist accepts within 15 minutes and joins live",
  priority: "Priority: answered within 4 hours", routine: "Routine: answered within 3 days" };
const STATUS = { requested: "Looking for a specialist", offered: "Offered to a specialist", accepted: "Accepted",
  answered: "Answered", closed: "Closed", overdue: "Overdue", cancelled: "Cancelled" };

function item(r, who) {
  const li = document.createElement("li");
  li.dataset.status = r.status;
  li.dataset.urgency = r.urgency;
  if (r.status === "overdue") li.className = "overdue";
  const a = document.createElement("a");
  a.href = `/staff/escalations/${r.id}`;
  // specialty_text and due_text come from the server: the specialty's name, the time in the facility's zone.
  a.textContent = `${t(STATUS[r.status])} · ${t(URGENCY[r.urgency]).split(":")[0]} · ${r.specialty_text} · ${who(r)} · ${t("due {time}", { time: r.due_text })}`;
  li.append(a);
  return li;
}

async function refresh() {
  const data = await api("GET", "/api/escalations");
  if ($("offered")) {
    $("offered").replaceChildren(...data.offered.map((r) => item(r, (x) => x.requester_facility)));
    if (!data.offered.length) $("offered").append(Object.assign(document.createElement("li"), { textContent: t("Nothing waiting for you."), className: "muted" }));
  }
  $("asked").replaceChildren(...data.asked.map((r) => item(r, (x) => x.patient_name)));
  if (!data.asked.length) $("asked").append(Object.assign(document.createElement("li"), { textContent: t("No requests yet."), className: "muted" }));
  $("badge").textContent = data.badge ? String(data.badge) : "";
  setTitleCount(data.badge);
}

if ($("on-duty")) {
  $("on-duty").addEventListener("change", async () => {
    const r = await api("POST", "/api/staff/duty", { on_duty: $("on-duty").checked });
    $("duty-state").textContent = r.on_duty ? t("On duty") : t("Away");
  });
  $("notify-allow").addEventListener("click", () => { if ("Notification" in window) Notification.requestPermission(); chime(false); });
}

const signal = new Signal({
  onStatus: connectionStatus(t, $("conn"), t("Connected")),
  onEnded: () => signedOut(t, $("conn")),
  onMessage: (msg) => {
    if (msg.type === "welcome") { refresh(); return; }
    if (!msg.type.startsWith("escalation_")) return;
    if (msg.type === "escalation_offer") {
      chime(msg.urgency === "urgent");
      notify(t("New request for your opinion"), msg.urgency === "urgent");
    } else if (msg.type === "escalation_answered") {
      chime(false);
      notify(t("A specialist answered your request"), false);
    } else if (msg.type === "escalation_overdue" && msg.urgency === "urgent") {
      $("overdue").textContent = t("Urgent request not accepted in time: transfer the patient or call 115.");
    }
    refresh();
  },
});
signal.connect();
