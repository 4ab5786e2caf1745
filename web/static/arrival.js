// Arrival alerts on the doctor's queue page, like doxy.me's: a chime (WebAudio, no sound file), a system
// notification while the page is hidden, and the number waiting in the tab title. Danger signs get a louder,
// longer, harsher chime and a notification that stays until it is dismissed.
// The switch is remembered in localStorage; notification permission is asked once, from a click.

const SWITCH_KEY = "dh_arrival_alerts";   // "on" | "off"; absent = on
const ASKED_KEY = "dh_notify_asked";      // "1" once the browser's permission question was shown

// Two soft rising tones for an arrival; six loud alternating square beeps for danger signs.
const CHIMES = {
  normal: { wave: "sine", peak: 0.25, length: 0.3, notes: [[660, 0], [880, 0.16]] },
  danger: { wave: "square", peak: 0.9, length: 0.15,
    notes: [[880, 0], [1320, 0.18], [880, 0.36], [1320, 0.54], [880, 0.72], [1320, 0.9]] },
};

export class ArrivalAlerts {
  constructor({ t, checkbox, state, allow }) {
    this.t = t;
    this.checkbox = checkbox;
    this.state = state;
    this.allow = allow;
    this.baseTitle = document.title;
    this.known = null; // entry ids seen on this page; null until the first list (no alert for those)
    this.ctx = null;
    checkbox.checked = this.enabled;
    checkbox.addEventListener("change", () => this.setEnabled(checkbox.checked));
    allow.addEventListener("click", () => this.askPermission(true));
    // Browsers start audio only after a gesture on the page: unlock it on the first one.
    const unlock = () => { if (this.enabled) this.audio(); };
    document.addEventListener("pointerdown", unlock, { once: true, capture: true });
    document.addEventListener("keydown", unlock, { once: true, capture: true });
    this.showState();
  }

  get enabled() { return localStorage.getItem(SWITCH_KEY) !== "off"; }

  setEnabled(on) {
    localStorage.setItem(SWITCH_KEY, on ? "on" : "off");
    if (on) {
      this.audio();
      this.askPermission(false);
    }
    this.showState();
  }

  // Asked from a click (the switch or the button), and by the switch only once: the browser remembers
  // the answer, and a dismissed question is not repeated at every toggle.
  askPermission(fromButton) {
    if (!("Notification" in window) || Notification.permission !== "default") return;
    if (!fromButton && localStorage.getItem(ASKED_KEY) === "1") return;
    localStorage.setItem(ASKED_KEY, "1");
    Promise.resolve(Notification.requestPermission()).then(() => this.showState(), () => this.showState());
  }

  showState() {
    const t = this.t;
    const supported = "Notification" in window;
    const permission = supported ? Notification.permission : "unsupported";
    this.allow.hidden = !(this.enabled && permission === "default");
    this.state.textContent = !this.enabled ? t("Alerts are off.")
      : permission === "granted" ? t("Notifications are on.")
        : permission === "denied" ? t("Notifications are blocked in this browser's settings.")
          : permission === "unsupported" ? t("This browser cannot show notifications.") : "";
    document.body.dataset.alerts = this.enabled ? "on" : "off";
  }

  audio() {
    if (!this.ctx) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return null;
      this.ctx = new Ctx();
    }
    if (this.ctx.state === "suspended") this.ctx.resume().catch(() => {});
    return this.ctx;
  }

  chime(kind) {
    const ctx = this.audio();
    if (!ctx) return;
    const c = CHIMES[kind];
    for (const [frequency, at] of c.notes) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = c.wave;
      osc.frequency.value = frequency;
      const start = ctx.currentTime + 0.02 + at;
      gain.gain.setValueAtTime(0.0001, start);
      gain.gain.exponentialRampToValueAtTime(c.peak, start + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + c.length);
      osc.connect(gain).connect(ctx.destination);
      osc.start(start);
      osc.stop(start + c.length + 0.05);
    }
  }

  notify(entry, danger, total) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const t = this.t;
    // No patient name: system notifications show on lock screens and stay in the notification centre.
    const title = danger ? t("DANGER SIGNS: a patient is waiting ({level})", { level: entry.level })
      : t("New patient waiting ({level})", { level: entry.level });
    try {
      const n = new Notification(title, { body: t("Patients waiting: {count}", { count: total }),
        tag: "dh-arrival", renotify: true, requireInteraction: danger });
      n.onclick = () => { window.focus(); n.close(); };
    } catch (err) {
      console.warn("notification failed", err); // e.g. Android Chrome wants a service worker
    }
  }

  // A new queue list: the title always shows the count; new entries chime (and notify when hidden).
  update(entries, total) {
    const danger = entries.some((e) => e.danger_signs.length || e.level === "NC4");
    document.title = total ? `(${total}${danger ? " !" : ""}) ${this.baseTitle}` : this.baseTitle;
    const ids = entries.map((e) => e.entry);
    if (this.known === null) { this.known = new Set(ids); return; }
    const arrived = entries.filter((e) => !this.known.has(e.entry));
    for (const id of ids) this.known.add(id);
    if (!arrived.length || !this.enabled) return;
    const urgent = arrived.find((e) => e.danger_signs.length || e.level === "NC4");
    this.chime(urgent ? "danger" : "normal");
    if (document.visibilityState === "hidden") this.notify(urgent || arrived[0], Boolean(urgent), total);
  }
}
