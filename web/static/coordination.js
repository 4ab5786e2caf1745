// The coordinator's dashboard: re-read every 15 s and on any escalation event on the socket; overdue rows in red.
import { Signal, strings } from "./signal.js";
import { api } from "./escalation_common.js";

const t = strings();
const TITLES = { waiting: "Waiting patients by level", calls: "Calls in progress", open_requests: "Open requests for an opinion",
  referrals: "Referrals in transit", on_duty: "Specialists on duty", stats: "Last 30 days, per urgency" };

async function refresh() {
  const data = await api("GET", "/api/coordination");
  for (const [name, rows] of Object.entries(data)) {
    document.getElementById(`title-${name}`).textContent = t(TITLES[name]);
    const table = document.getElementById(`table-${name}`);
    if (!rows.length) { table.replaceChildren(Object.assign(document.createElement("caption"), { textContent: "—" })); continue; }
    const head = document.createElement("tr");
    for (const key of Object.keys(rows[0])) head.append(Object.assign(document.createElement("th"), { textContent: key, scope: "col" }));
    const body = rows.map((r) => {
      const tr = document.createElement("tr");
      if (r.overdue) tr.className = "overdue";
      for (const v of Object.values(r)) tr.append(Object.assign(document.createElement("td"), { textContent: v === null ? "—" : String(v) }));
      return tr;
    });
    table.replaceChildren(Object.assign(document.createElement("thead")), head, ...body);
  }
}

let timer = null;
const soon = () => { clearTimeout(timer); timer = setTimeout(refresh, 200); };  // coalesce bursts
new Signal({ onMessage: (msg) => { if (msg.type === "welcome" || msg.type.startsWith("escalation_") || msg.type === "queue_list") soon(); } }).connect();
setInterval(refresh, 15000);
refresh();
