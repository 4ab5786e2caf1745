// Shared by the escalation pages: JSON calls with the CSRF header, and the offer alert (a chime, a
// browser notification when allowed, the count in the tab title), like arrival.js on the queue page.

const csrf = (document.cookie.match(/(?:^|; )dh_csrf=([^;]+)/) || [])[1] || "";

export function csrfToken() { return csrf; }

export async function api(method, path, body) {
  const r = await fetch(path, {
    method, headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error(data.error ? data.error.message : r.statusText), { data, status: r.status });
  return data;
}

let ctx = null;
export function chime(urgent) {
  try {
    ctx = ctx || new AudioContext();
    const notes = urgent ? [[880, 0], [1320, 0.18], [880, 0.36], [1320, 0.54]] : [[660, 0], [880, 0.16]];
    for (const [freq, at] of notes) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = urgent ? "square" : "sine";
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(urgent ? 0.6 : 0.25, ctx.currentTime + at);
      gain.gain.exponentialRampToValueAtTime(0.001, ctx.currentTime + at + 0.3);
      osc.connect(gain).connect(ctx.destination);
      osc.start(ctx.currentTime + at);
      osc.stop(ctx.currentTime + at + 0.3);
    }
  } catch { /* no audio before a gesture: the title and the notification still tell */ }
}

export function notify(title, urgent) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  try { new Notification(title, { requireInteraction: urgent, tag: "dh-escalation" }); } catch { /* not allowed here */ }
}

export function setTitleCount(count) {
  const base = document.title.replace(/^\(\d+\) /, "");
  document.title = count > 0 ? `(${count}) ${base}` : base;
}
