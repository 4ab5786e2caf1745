// The coordinator's dashboard: re-read every 15 s and on any escalation event on the socket; overdue rows in red.
import { Signal, strings } from "./signal.js";
import { api } from "./escalation_common.js";

const t = strings();
const TITLES = { waiting: "Waiting patients by level", calls: "Calls in progress", open_requests: "Open requests for an opinion",
  referrals: "Referrals in transit", on_duty: "Specialists on duty", stats: "Last 30 days, per urgency" };
const EMPTY = { waiting: "Nobody is waiting.", calls: "No call in progress.", open_requests: "No open request for an opinion.",
  referrals: "No referral in transit.", on_duty: "No specialist is on duty now.", stats: "No request in the last 30 days." };

// The server sends each table ready to show: translated headers, labels, yes/no, percentages, durations.
async function refresh() {
  const data = await api("GET", "/api/coordination");
  for (const [name, { columns, rows }] of Object.entries(data)) {
    document.getElementById(`title-${name}`).textContent = t(TITLES[name]);
    const table = document.getElementById(`table-${name}`);
    if (!rows.length) {
      table.replaceChildren(Object.assign(document.createElement("caption"), { textContent: t(EMPTY[name]), className: "muted empty" }));
      continue;
    }
    const head = document.createElement("tr");
    for (const label of columns) head.append(Object.assign(document.createElement("th"), { textContent: label, scope: "col" }));
    const body = rows.map((r) => {
      const tr = document.createElement("tr");
      if (r.overdue) tr.className = "overdue";
      r.cells.forEach((text, i) => {
        const td = Object.assign(document.createElement("td"), { textContent: text });
        td.dataset.label = columns[i];  // the header, shown beside the value when the table stacks at 360 px
        tr.append(td);
      });
      return tr;
    });
    const thead = document.createElement("thead");
    thead.append(head);
    const tbody = document.createElement("tbody");
    tbody.append(...body);
    table.replaceChildren(thead, tbody);
  }
}

let timer = null;
const soon = () => { clearTimeout(timer); timer = setTimeout(refresh, 200); };  // coalesce bursts
new Signal({ onMessage: (msg) => { if (msg.type === "welcome" || msg.type.startsWith("escalation_") || msg.type === "queue_list") soon(); } }).connect();
setInterval(refresh, 15000);
refresh();
