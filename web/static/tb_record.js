// The patient's video-observed dose: record with MediaRecorder (≤ 60 s), then send it in chunks that
// survive a dropped connection (docs/protocol.md, "TB clip upload"). Says "arrived" only when the server
// has stored and checked the clip.
const $ = (id) => document.getElementById(id);
const token = document.body.dataset.token;
const chunkSize = Number(document.body.dataset.chunk) || 262144;
const t = (() => { try { return JSON.parse($("strings").textContent); } catch { return {}; } })();
const say = (key, values = {}) => {
  $("progress").textContent = (t[key] || key).replace(/\{(\w+)\}/g, (_, k) => values[k] ?? "");
};
const auth = { Authorization: `Bearer ${token}` };
const MAX_SECONDS = 60;
let recorder = null;

// A refusal is shown by its code, in the page's language (web/tb_patient.py CLIP_ERRORS): never the
// server's English message.
const RETRY = new Set(["offset_mismatch", "chunk_cut_off"]);
const explain = (code) => t[`error:${code}`] || t["error:internal"] || code;

async function json(response) {
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const code = (data.error && data.error.code) || (response.status >= 500 ? "internal" : "invalid");
    throw Object.assign(new Error(explain(code)), { data, code, status: response.status });
  }
  return data;
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function send(blob) {
  const opened = await json(await fetch("/api/p/tb/uploads", {
    method: "POST", headers: { ...auth, "Content-Type": "application/json" },
    body: JSON.stringify({ size: blob.size }),
  }));
  let offset = opened.offset;
  let wait = 1000;
  for (;;) {
    say("Sending your video… {percent}%", { percent: Math.floor((100 * offset) / blob.size) });
    try {
      const r = await fetch(`/api/p/tb/uploads/${opened.upload}`, {
        method: "PATCH", headers: { ...auth, "Upload-Offset": String(offset) },
        body: blob.slice(offset, offset + chunkSize),
      });
      if (r.status === 409 || r.status === 400) {
        const refusal = await r.clone().json().catch(() => ({}));
        if (r.status === 409 || RETRY.has(refusal.error && refusal.error.code)) {
          // the server has a different count, or the chunk came cut off: ask it where to resume
          offset = (await json(await fetch(`/api/p/tb/uploads/${opened.upload}`, { headers: auth }))).offset;
          continue;
        }
      }
      const state = await json(r);
      if (state.state === "received") return state;
      offset = state.offset;
      wait = 1000;
    } catch (error) {
      if (error.data && !(error.status >= 500)) throw error;  // the server refused the clip: say why
      say("Connection lost. Trying again…");
      await pause(wait);
      wait = Math.min(wait * 2, 30000);
      try {
        offset = (await json(await fetch(`/api/p/tb/uploads/${opened.upload}`, { headers: auth }))).offset;
      } catch { /* still offline: the next round tries again */ }
    }
  }
}

async function record() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: false });
  } catch {
    say("This camera cannot record here. Take your dose at the station.");
    return;
  }
  const preview = $("preview");
  preview.srcObject = stream;
  preview.hidden = false;
  preview.play().catch(() => {});
  const type = ["video/webm;codecs=vp8", "video/webm", "video/mp4"].find((m) => MediaRecorder.isTypeSupported(m));
  recorder = new MediaRecorder(stream, { mimeType: type, videoBitsPerSecond: 250000 });
  const parts = [];
  recorder.ondataavailable = (e) => { if (e.data.size) parts.push(e.data); };
  const started = Date.now();
  const tick = setInterval(() => {
    const seconds = Math.floor((Date.now() - started) / 1000);
    say("Recording… {seconds} s", { seconds });
    if (seconds >= MAX_SECONDS - 1) stop();
  }, 500);
  recorder.onstop = async () => {
    clearInterval(tick);
    for (const track of stream.getTracks()) track.stop();
    preview.hidden = true;
    $("stop").hidden = true;
    try {
      await send(new Blob(parts, { type: recorder.mimeType }));
      say("Your video has arrived. A nurse will check it.");
      document.body.dataset.sent = "true";
    } catch (error) {
      say("The video could not be sent: {message}", { message: error.message });
      $("record").hidden = false;
    }
  };
  recorder.start(1000);
  $("record").hidden = true;
  $("stop").hidden = false;
}

function stop() {
  if (recorder && recorder.state === "recording") recorder.stop();
}

$("record").addEventListener("click", record);
$("stop").addEventListener("click", stop);
