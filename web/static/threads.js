// Care messages (staff messages about a patient): the inbox with unread counts, and one thread with its
// replies. Kept live by the socket's `thread_message` (it carries no text: the page re-reads over HTTP).
import { Signal, signedOut, strings } from "./signal.js";
import { api, chime, notify, setTitleCount } from "./escalation_common.js";

const t = strings();
const $ = (id) => document.getElementById(id);
const threadId = document.body.dataset.thread || null;

function setUnread(count) {
  if ($("unread")) $("unread").textContent = count ? t("{count} unread", { count }) : "";
  const nav = $("nav-threads");
  if (nav) nav.textContent = count ? String(count) : "";
  setTitleCount(count);
}

function item(r) {
  const li = $("thread-item").content.firstElementChild.cloneNode(true);
  li.dataset.thread = r.id;
  li.dataset.unread = String(r.unread);
  if (r.unread) li.classList.add("unread");
  const a = li.querySelector(".thread-link");
  a.href = `/staff/threads/${r.id}`;
  const topic = [r.context_text, r.reason_text].filter(Boolean).join(" · ");
  a.textContent = `${r.patient_name} · ${r.facility}${topic ? " · " + topic : ""}${r.unread ? " (" + r.unread + ")" : ""}`;
  li.querySelector(".thread-last").textContent = `${r.last_at_text} · ${r.last_author}: ${r.last_body}`;
  const mark = li.querySelector(".mark-read");
  mark.hidden = !r.unread;
  mark.addEventListener("click", async () => {
    const answer = await api("POST", `/api/threads/${r.id}/read`);
    setUnread(answer.unread);
    refreshInbox();
  });
  return li;
}

async function refreshInbox() {
  const data = await api("GET", "/api/threads");
  const list = $("threads");
  list.replaceChildren(...data.threads.map(item));
  if (!data.threads.length) list.append(Object.assign(document.createElement("li"), { textContent: t("No messages yet."), className: "muted" }));
  setUnread(data.unread);
}

function messageItem(m) {
  const li = document.createElement("li");
  li.dataset.message = String(m.id);
  if (m.mine) li.className = "mine";
  const who = Object.assign(document.createElement("p"), { className: "muted" });
  who.textContent = `${m.mine ? t("you") : m.author} · ${m.author_facility} · ${m.at_text}`;
  const body = Object.assign(document.createElement("p"), { className: "prewrap" });
  body.textContent = m.body;
  li.append(who, body);
  return li;
}

async function refreshThread() {
  const data = await api("GET", `/api/threads/${threadId}`);
  $("messages").replaceChildren(...data.messages.map(messageItem));
  if (!document.hidden) {
    const answer = await api("POST", `/api/threads/${threadId}/read`);
    setUnread(answer.unread);
  }
}

if ($("reply-form")) {
  $("reply-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("reply").value;
    if (!text.trim()) { $("reply-status").textContent = t("Write the message."); return; }
    $("reply-status").textContent = t("Sending…");
    try {
      await api("POST", `/api/threads/${threadId}/messages`, { text });
      $("reply").value = "";
      $("reply-status").textContent = "";
      await refreshThread();
    } catch (err) {
      $("reply-status").textContent = t("Could not send: {error}", { error: err.message });
    }
  });
}
document.addEventListener("visibilitychange", () => { if (!document.hidden && threadId) refreshThread(); });

const refresh = () => (threadId ? refreshThread() : refreshInbox());
const signal = new Signal({
  onStatus: (s) => { $("conn").textContent = s === "open" ? t("Connected") : s === "connecting" ? t("Connecting…") : t("Reconnecting…"); document.body.dataset.conn = s; },
  onEnded: () => signedOut(t, $("conn")),
  onMessage: (msg) => {
    if (msg.type === "welcome") { refresh(); return; }
    if (msg.type !== "thread_message") return;
    if (!threadId || msg.thread === threadId) refresh();
    if (!threadId || msg.thread !== threadId || document.hidden) {
      chime(false);
      notify(t("New message about a patient"), false);
    }
  },
});
signal.connect();
