// A browser call with up to 3 other people: one RTCPeerConnection per pair (a mesh), each with perfect
// negotiation (the server says which side of each pair is polite), trickle ICE, ICE restart when the
// network changes, audio-only, and call quality from getStats. Descriptions and candidates carry `to`
// (the peer's session); what arrives is routed by its `from`.

// One pair: this page and one peer session.
class PeerLink {
  constructor(call, peerSession, { polite, name, role, staffId }) {
    this.call = call;
    this.peerSession = peerSession;
    this.polite = polite;
    this.name = name || "";
    this.role = role || "";
    this.staffId = staffId ?? null;
    this.mySession = call.signal.session; // our socket when this pair started: the peer talks to that one
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.lastStats = null;
    this.tile = call.takeTile(this);
    const pc = new RTCPeerConnection({ iceServers: call.iceServers, iceTransportPolicy: call.iceTransportPolicy });
    this.pc = pc;
    const send = (msg) => call.signal.send({ ...msg, room: call.room, to: peerSession });
    pc.onnegotiationneeded = async () => {
      try {
        this.makingOffer = true;
        await pc.setLocalDescription();
        send({ type: pc.localDescription.type, sdp: pc.localDescription.sdp });
      } catch (err) {
        console.warn("negotiation failed", err);
      } finally {
        this.makingOffer = false;
      }
    };
    pc.onicecandidate = ({ candidate }) => send({ type: "ice", candidate: candidate ? candidate.toJSON() : null });
    pc.ontrack = ({ track, streams }) => {
      const stream = streams[0] || new MediaStream([track]);
      if (this.tile.video.srcObject !== stream) this.tile.video.srcObject = stream;
    };
    pc.oniceconnectionstatechange = () => {
      const state = pc.iceConnectionState;
      console.debug("call: ice", peerSession, state);
      call.onState(state, this);
      clearTimeout(this.iceTimer);
      if (state === "failed") pc.restartIce();
      if (state === "disconnected") this.iceTimer = setTimeout(() => this.restartIce(), 2000);
    };
    this.send = send;
    // The polite side waits for the first offer before adding its tracks, so the two sides do not
    // both offer at once (glare) every time a pair starts; collisions later are still handled.
    this.tracksPending = true;
    if (polite) this.trackTimer = setTimeout(() => this.addLocalTracks(), 3000);
    else this.addLocalTracks();
    // If ICE has not connected a while after the start, the impolite side restarts it.
    if (!polite) this.watchdog = setTimeout(() => {
      if (this.pc === pc && !["connected", "completed"].includes(pc.iceConnectionState)) pc.restartIce();
    }, 8000);
  }

  addLocalTracks() {
    clearTimeout(this.trackTimer);
    if (!this.pc || !this.tracksPending) return;
    this.tracksPending = false;
    const stream = this.call.stream;
    for (const track of stream ? stream.getTracks() : []) this.pc.addTrack(track, stream);
    if (this.call.audioOnly) this.applyAudioOnly();
  }

  restartIce() {
    if (this.pc && this.pc.connectionState !== "closed") this.pc.restartIce();
  }

  async onDescription(msg) {
    const pc = this.pc;
    if (!pc) return;
    const collision = msg.type === "offer" && (this.makingOffer || pc.signalingState !== "stable");
    this.ignoreOffer = !this.polite && collision;
    if (this.ignoreOffer) return;
    try {
      await pc.setRemoteDescription({ type: msg.type, sdp: msg.sdp }); // implicit rollback when polite
      if (msg.type === "offer") {
        this.addLocalTracks(); // answer with our media in the transceivers the offer created
        await pc.setLocalDescription();
        this.send({ type: "answer", sdp: pc.localDescription.sdp });
      }
    } catch (err) {
      console.warn("description failed", err);
    }
  }

  async onIce(msg) {
    if (!this.pc) return;
    try {
      await this.pc.addIceCandidate(msg.candidate || null);
    } catch (err) {
      if (!this.ignoreOffer) console.warn("candidate failed", err);
    }
  }

  applyAudioOnly() {
    if (!this.pc) return;
    for (const tr of this.pc.getTransceivers()) {
      const kind = (tr.sender.track && tr.sender.track.kind) || (tr.receiver.track && tr.receiver.track.kind);
      if (kind === "video" && tr.direction !== "stopped") tr.direction = this.call.audioOnly ? "inactive" : "sendrecv";
    }
  }

  // Quality of this pair since the last sample (null on the first sample or when not connected).
  async sampleStats() {
    if (!this.pc || this.pc.connectionState !== "connected") return null;
    const report = await this.pc.getStats();
    let rtt = null, bytes = 0, lost = 0, received = 0, framesDecoded = 0;
    report.forEach((s) => {
      if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) rtt = s.currentRoundTripTime;
      if (s.type === "inbound-rtp") {
        bytes += s.bytesReceived || 0;
        lost += s.packetsLost || 0;
        received += s.packetsReceived || 0;
        if (s.kind === "video") framesDecoded += s.framesDecoded || 0;
      }
    });
    const now = performance.now();
    const prev = this.lastStats;
    this.lastStats = { now, bytes, lost, received, framesDecoded };
    if (!prev) return null;
    const seconds = (now - prev.now) / 1000;
    const dLost = Math.max(0, lost - prev.lost), dRecv = Math.max(0, received - prev.received);
    const quality = {
      rttMs: rtt === null ? null : Math.round(rtt * 1000),
      lossPct: dLost + dRecv ? Math.round((100 * dLost) / (dLost + dRecv)) : 0,
      kbps: Math.round((8 * (bytes - prev.bytes)) / 1000 / seconds),
      framesDecoded,
    };
    quality.level = quality.lossPct > 8 || (quality.rttMs || 0) > 600 ? "poor"
      : quality.lossPct > 3 || (quality.rttMs || 0) > 300 ? "fair" : "good";
    return quality;
  }

  close() {
    clearTimeout(this.iceTimer);
    clearTimeout(this.trackTimer);
    clearTimeout(this.watchdog);
    if (this.pc) {
      this.pc.onnegotiationneeded = this.pc.onicecandidate = this.pc.ontrack = null;
      this.pc.oniceconnectionstatechange = null;
      this.pc.close();
    }
    this.pc = null;
    this.call.releaseTile(this.tile);
  }
}

const LEVELS = ["good", "fair", "poor"];

// A staff member's camera and microphone (640x480 at most); microphone only when the camera is refused
// or missing; null when neither is available (they can still watch, listen and chat).
export async function staffMedia() {
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: { ideal: 640 }, height: { ideal: 480 } } });
  } catch {
    try { return await navigator.mediaDevices.getUserMedia({ audio: true }); } catch { return null; }
  }
}

export class Call {
  // The server's `welcome` says which ICE servers to use and whether media must stay on TURN.
  configure(welcome) {
    this.iceServers = welcome.ice_servers || [];
    this.iceTransportPolicy = welcome.ice_transport_policy || "all";
  }

  // `remoteVideo` is the first tile's video (in the page's markup); more tiles are made beside it.
  constructor({ signal, room, polite, iceServers, iceTransportPolicy, remoteVideo, onState, onQuality, onPeers }) {
    this.signal = signal;
    this.room = room;
    this.polite = polite; // the default for a peer the server did not say (a server before pairwise roles)
    this.iceServers = iceServers || [];
    // "relay" (DONGHANH_ICE_TRANSPORT_POLICY) keeps media on TURN: no host or reflexive path is tried.
    this.iceTransportPolicy = iceTransportPolicy || "all";
    this.onState = onState || (() => {});
    this.onQuality = onQuality || (() => {});
    this.onPeers = onPeers || (() => {});
    this.stream = null;
    this.audioOnly = false;
    this.links = new Map(); // peer session → PeerLink
    this.tiles = remoteVideo ? [{ el: remoteVideo.closest(".tile") || remoteVideo, video: remoteVideo, link: null }] : [];
    this.statsTimer = setInterval(() => this.sampleStats(), 2000);
    window.addEventListener("online", () => this.restartIce());
    if (navigator.connection && navigator.connection.addEventListener) {
      navigator.connection.addEventListener("change", () => this.restartIce());
    }
  }

  setStream(stream) { this.stream = stream; }

  // The first pair's connection (the two-person call's only one).
  get pc() { const first = this.links.values().next().value; return first ? first.pc : null; }

  // A peer is in the room: start a fresh connection unless one already serves that peer session.
  start(peerSession, info = {}) {
    if (!peerSession) return;
    const link = this.links.get(peerSession);
    if (link && link.pc && ["connected", "completed", "checking", "new"].includes(link.pc.iceConnectionState)) {
      Object.assign(link, { name: info.name || link.name, role: info.role || link.role });
      this.renderTile(link);
      return; // the signaling socket blipped; media is fine
    }
    if (link) this.drop(peerSession);
    const polite = typeof info.polite === "boolean" ? info.polite : this.polite;
    console.debug("call: new connection for peer", peerSession, "polite", polite);
    const fresh = new PeerLink(this, peerSession, { ...info, polite });
    this.links.set(peerSession, fresh);
    this.renderTile(fresh);
    this.onPeers([...this.links.values()]);
  }

  // A peer left: close its connection; the others go on.
  drop(peerSession) {
    const link = this.links.get(peerSession);
    if (!link) return;
    this.links.delete(peerSession);
    link.close();
    this.onPeers([...this.links.values()]);
  }

  // The pair a relayed message belongs to (by its `from`); null for a peer that already left.
  link(msg) {
    if (msg.from) return this.links.get(msg.from) || null;
    return this.links.size === 1 ? this.links.values().next().value : null;
  }

  onDescription(msg) { const l = this.link(msg); if (l) return l.onDescription(msg); } // else stale: a peer that left

  onIce(msg) { const l = this.link(msg); if (l) return l.onIce(msg); }

  // ---- tiles: one video per peer, names on them; the grid fits 1–3 remote videos ----

  takeTile(link) {
    let tile = this.tiles.find((t) => !t.link);
    if (!tile) {
      const el = document.createElement("div");
      el.className = "tile";
      const video = document.createElement("video");
      video.className = "remote";
      video.autoplay = true;
      video.playsInline = true;
      const name = document.createElement("span");
      name.className = "tile-name";
      el.append(video, name);
      const first = this.tiles[0];
      if (first) first.el.parentElement.insertBefore(el, this.tiles[this.tiles.length - 1].el.nextSibling);
      tile = { el, video, link: null };
      this.tiles.push(tile);
    }
    tile.link = link;
    tile.el.hidden = false;
    this.layout();
    return tile;
  }

  releaseTile(tile) {
    if (!tile) return;
    tile.link = null;
    tile.video.srcObject = null;
    const name = tile.el.querySelector(".tile-name");
    if (name) name.textContent = "";
    if (tile !== this.tiles[0]) { tile.el.remove(); this.tiles = this.tiles.filter((t) => t !== tile); }
    this.layout();
  }

  renderTile(link, state = "") {
    const name = link.tile && link.tile.el.querySelector(".tile-name");
    if (name) name.textContent = [link.name, state].filter(Boolean).join(" · ");
    if (link.tile) { link.tile.video.setAttribute("aria-label", link.name || ""); link.tile.el.dataset.role = link.role; }
  }

  layout() {
    const first = this.tiles[0];
    if (first && first.el.parentElement) first.el.parentElement.dataset.count = String(Math.max(1, this.tiles.length));
  }

  // ---- media controls apply to every pair ----

  setMuted(muted) {
    for (const t of this.stream ? this.stream.getAudioTracks() : []) t.enabled = !muted;
  }

  setCameraOff(off) {
    for (const t of this.stream ? this.stream.getVideoTracks() : []) t.enabled = !off;
  }

  // Audio-only stops video in both directions (transceiver inactive): what a poor 3G link needs.
  setAudioOnly(on) {
    this.audioOnly = on;
    for (const link of this.links.values()) link.applyAudioOnly();
  }

  restartIce() { for (const link of this.links.values()) link.restartIce(); }

  // The call's quality line: the worst pair's level, its numbers; framesDecoded summed over pairs.
  async sampleStats() {
    const samples = (await Promise.all([...this.links.values()].map((l) => l.sampleStats()))).filter(Boolean);
    if (!samples.length) return;
    const worst = samples.reduce((a, b) => (LEVELS.indexOf(b.level) > LEVELS.indexOf(a.level) ? b : a));
    this.onQuality({ ...worst, framesDecoded: samples.reduce((n, q) => n + q.framesDecoded, 0) });
  }

  close() {
    for (const session of [...this.links.keys()]) this.drop(session);
  }

  destroy() {
    clearInterval(this.statsTimer);
    this.close();
    for (const t of this.stream ? this.stream.getTracks() : []) t.stop();
  }
}

// Shared call-page wiring (patient, doctor, invited specialist): controls, chat, quality line, status
// overlay, the names of who is in the call.
export function wireCallUi({ call, signal, t, room, mySide, peerLabel, onHangup }) {
  const $ = (id) => document.getElementById(id);
  const toggle = (btn, fn) => btn.addEventListener("click", () => {
    const on = btn.getAttribute("aria-pressed") !== "true";
    btn.setAttribute("aria-pressed", String(on));
    fn(on);
  });
  toggle($("btn-mute"), (on) => { call.setMuted(on); sendMedia(); });
  toggle($("btn-camera"), (on) => { call.setCameraOff(on); sendMedia(); });
  toggle($("btn-audio-only"), (on) => { call.setAudioOnly(on); sendMedia(); });
  $("btn-hangup").addEventListener("click", onHangup);
  function sendMedia() {
    signal.send({ type: "media", room, audio: $("btn-mute").getAttribute("aria-pressed") !== "true",
      video: $("btn-camera").getAttribute("aria-pressed") !== "true" && $("btn-audio-only").getAttribute("aria-pressed") !== "true" });
  }
  let myStaffId = null; // a staff page's own id (from `welcome`): tells its own chat lines from a colleague's
  const staffNames = new Map(); // staff id → name, for chat lines of the doctor and invited staff
  const shown = new Set();
  function addChat(m) {
    if (shown.has(m.id)) return;
    shown.add(m.id);
    const mine = m.sender === mySide && (mySide !== "staff" || myStaffId === null || m.staff_id === myStaffId);
    const li = document.createElement("li");
    li.className = mine ? "mine" : "theirs";
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = mine ? t("You") : m.sender === "staff" ? (staffNames.get(m.staff_id) || peerLabel)
      : mySide === "staff" ? t("Patient") : peerLabel;
    const text = document.createElement("span");
    text.textContent = m.text;
    li.append(who, text);
    $("chat-log").append(li);
    li.scrollIntoView({ block: "nearest" });
  }
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("chat-text");
    const text = input.value.trim();
    if (!text) return;
    signal.send({ type: "chat", room, text }, true);
    input.value = "";
  });
  call.onQuality = (q) => {
    const label = q.level === "good" ? t("Call quality: good") : q.level === "fair" ? t("Call quality: fair")
      : t("Call quality: poor — try audio only");
    const el = $("quality");
    el.textContent = `${label} · ${q.rttMs ?? "–"} ms · ${q.lossPct}% · ${q.kbps} kbps`;
    el.dataset.level = q.level;
    el.dataset.framesDecoded = String(q.framesDecoded);
  };
  // Who else is in the call, by name (the doctor's page sees a specialist arrive and leave).
  call.onPeers = (links) => {
    const el = $("call-members");
    if (!el) return;
    const names = links.map((l) => l.name).filter(Boolean);
    el.textContent = names.length ? t("In the call: {names}", { names: names.join(", ") }) : "";
    el.dataset.count = String(links.length);
  };
  const mediaText = (m) => [m && !m.audio ? t("Muted") : "", m && !m.video ? t("Camera off") : ""].filter(Boolean).join(" · ");
  function startPeer(p) {
    if (p.staff_id != null) staffNames.set(p.staff_id, p.name);
    call.start(p.peer_session, { polite: p.polite, name: p.name, role: p.role, staffId: p.staff_id });
    const link = call.links.get(p.peer_session);
    if (link && p.peer_media) call.renderTile(link, mediaText(p.peer_media));
  }
  return {
    addChat,
    setMe(staff) { myStaffId = staff ? staff.id : null; },
    // The room messages every call page handles alike; true when `msg` was one of them.
    handle(msg, { absentText, peerLeftText }) {
      switch (msg.type) {
        case "joined": {
          // `peers`: everyone else in the room (a server without it had at most the one `peer_*`).
          const peers = msg.peers || (msg.peer_present ? [{ peer_session: msg.peer_session, polite: msg.polite,
            peer_media: msg.peer_media, name: msg.peer_name }] : []);
          for (const p of peers) if (p.staff_id != null) staffNames.set(p.staff_id, p.name);
          (msg.chat || []).forEach(addChat);
          // After our socket reconnected (a new session), every peer was told we left and starts afresh with
          // the new session, so our connections from before are dropped too; a join again on the same socket
          // (a call back) keeps the ones that still serve a peer in the room.
          for (const [session, link] of [...call.links]) {
            if (link.mySession !== signal.session || !peers.some((p) => p.peer_session === session)) call.drop(session);
          }
          peers.forEach(startPeer);
          if (peers.length) { this.status(""); this.peerMedia(msg.peer_present ? msg.peer_media : null); }
          else this.status(absentText);
          return true;
        }
        case "peer_joined":
          if (msg.replaces) call.drop(msg.replaces); // that member's older socket (another tab, a reload)
          this.status("");
          startPeer({ ...msg, name: msg.name || "" });
          if (call.links.size === 1) this.peerMedia(msg.peer_media);
          return true;
        case "peer_left":
          if (msg.peer_session) call.drop(msg.peer_session); else call.close();
          if (!call.links.size) this.status(peerLeftText);
          else this.status(msg.name ? t("{name} left the call.", { name: msg.name }) : "");
          return true;
        case "peer_media": {
          const link = msg.peer_session ? call.links.get(msg.peer_session) : null;
          if (link) call.renderTile(link, mediaText(msg));
          if (call.links.size <= 1) this.peerMedia(msg);
          return true;
        }
        case "participant_added":
          this.status(t("{name} was invited into the call.", { name: msg.staff.name }));
          return true;
        case "offer": case "answer": call.onDescription(msg); return true;
        case "ice": call.onIce(msg); return true;
        case "chat": addChat(msg.message); return true;
        default: return false;
      }
    },
    status(text) { $("call-status").textContent = text || ""; $("call-status").hidden = !text; },
    peerMedia(m) {
      if (!m) return;
      const text = mediaText(m);
      $("call-status").textContent = text;
      $("call-status").hidden = !text;
    },
  };
}
