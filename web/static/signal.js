// The signaling socket: hello on every (re)connect, automatic reconnect with backoff, typed handlers.
// Keeps the server-assigned session across reconnects so a blip does not reset a working call.

export function strings() {
  const el = document.getElementById("strings");
  const table = el ? JSON.parse(el.textContent) : {};
  return (text, values) => {
    let out = table[text] || text;
    for (const [k, v] of Object.entries(values || {})) out = out.replace("{" + k + "}", v);
    return out;
  };
}

// Close codes after which reconnecting cannot help (docs/protocol.md): the staff session ended (signed
// out, expired, account deactivated, password changed) or the station revoked the patient's link.
export const SESSION_ENDED = 4401;
export const LINK_REVOKED = 4410;

// A staff page whose session ended: say so where the connection state is shown, then go to sign-in.
export function signedOut(t, statusElement) {
  if (statusElement) statusElement.textContent = t("You have been signed out. Taking you to the sign-in page…");
  document.body.dataset.conn = "signed-out";
  setTimeout(() => location.assign(`/staff/login?next=${encodeURIComponent(location.pathname)}`), 1500);
}

// A Signal's onStatus for a staff page: the state in `statusElement` (`openText` once connected) and in
// body[data-conn] for styles and tests.
export function connectionStatus(t, statusElement, openText = "") {
  return (s) => {
    statusElement.textContent = s === "open" ? openText : s === "connecting" ? t("Connecting…") : t("Reconnecting…");
    document.body.dataset.conn = s;
  };
}

export class Signal {
  // How many sockets this page has opened: the nav bar's opinions badge (staff_nav.js) opens one only
  // when the page has none of its own, and follows every page's messages through `dh-signal`.
  static count = 0;

  constructor({ token = null, onMessage, onStatus, onEnded }) {
    Signal.count += 1;
    this.token = token;
    this.onMessage = onMessage;
    this.onStatus = onStatus || (() => {});
    this.onEnded = onEnded || (() => {});
    this.ws = null;
    this.ready = false;
    this.stopped = false;
    this.session = null;
    this.backoff = 500;
    this.seq = 0;
    this.pending = [];           // messages worth sending after a reconnect (chat)
    this.lastSeen = 0;
    window.addEventListener("online", () => this.kick());
    document.addEventListener("visibilitychange", () => { if (!document.hidden) this.kick(); });
  }

  nextId() { return `${Date.now().toString(36)}-${(++this.seq).toString(36)}`; }

  connect() {
    if (this.stopped) return;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    const ws = new WebSocket(url);
    this.ws = ws;
    this.ready = false;
    this.onStatus("connecting");
    ws.onopen = () => {
      const hello = { type: "hello", id: this.nextId() };
      if (this.token) hello.token = this.token;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (event) => {
      this.lastSeen = Date.now();
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      // Page-wide listeners (the staff menu's care-messages count) see every message without owning the socket.
      window.dispatchEvent(new CustomEvent("dh-signal", { detail: msg }));
      if (msg.type === "welcome") {
        this.ready = true;
        this.backoff = 500;
        this.session = msg.session;
        this.onStatus("open");
        const queued = this.pending.splice(0);
        for (const m of queued) this.send(m, true);
      }
      this.onMessage(msg);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ready = false;
      if (this.stopped) return;
      if (event.code === SESSION_ENDED || event.code === LINK_REVOKED) {
        this.stop();
        this.onEnded(event.code);
        return;
      }
      this.onStatus("reconnecting");
      const delay = this.backoff;
      this.backoff = Math.min(this.backoff * 2, 5000);
      this.timer = setTimeout(() => this.connect(), delay);
    };
    ws.onerror = () => { /* onclose follows */ };
    clearInterval(this.pinger);
    // An application ping every 15 s: a dead mobile connection is noticed and replaced quickly.
    this.pinger = setInterval(() => {
      if (this.ready && Date.now() - this.lastSeen > 30000) { ws.close(); return; }
      if (this.ready) this.send({ type: "ping" });
    }, 15000);
  }

  kick() {
    if (this.stopped) return;
    if (!this.ws || this.ws.readyState === WebSocket.CLOSED) {
      clearTimeout(this.timer);
      this.backoff = 500;
      this.connect();
    }
  }

  // Send now if possible; `keep` messages wait for the next connection instead of being lost.
  send(msg, keep = false) {
    if (!msg.id) msg.id = this.nextId();
    if (this.ready && this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(msg));
      return true;
    }
    if (keep) this.pending.push(msg);
    return false;
  }

  stop() {
    this.stopped = true;
    clearInterval(this.pinger);
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
  }
}
