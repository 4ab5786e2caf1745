// One side of a browser-to-browser call: perfect negotiation (polite/impolite roles from the server),
// trickle ICE, ICE restart when the network changes, audio-only, and call quality from getStats.

export class Call {
  constructor({ signal, room, polite, iceServers, iceTransportPolicy, remoteVideo, onState, onQuality }) {
    this.signal = signal;
    this.room = room;
    this.polite = polite;
    this.iceServers = iceServers || [];
    // "relay" (DONGHANH_ICE_TRANSPORT_POLICY) keeps media on TURN: no host or reflexive path is tried.
    this.iceTransportPolicy = iceTransportPolicy || "all";
    this.remoteVideo = remoteVideo;
    this.onState = onState || (() => {});
    this.onQuality = onQuality || (() => {});
    this.stream = null;
    this.pc = null;
    this.peerSession = null;
    this.audioOnly = false;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.lastStats = null;
    this.statsTimer = setInterval(() => this.sampleStats(), 2000);
    window.addEventListener("online", () => this.restartIce());
    if (navigator.connection && navigator.connection.addEventListener) {
      navigator.connection.addEventListener("change", () => this.restartIce());
    }
  }

  setStream(stream) { this.stream = stream; }

  // A (new) peer is in the room: start a fresh connection unless this one already serves that peer.
  start(peerSession) {
    if (this.pc && this.peerSession === peerSession && peerSession &&
        ["connected", "completed", "checking", "new"].includes(this.pc.iceConnectionState)) {
      return; // the signaling socket blipped; media is fine
    }
    this.close();
    console.debug("call: new connection for peer", peerSession, "polite", this.polite);
    this.peerSession = peerSession;
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, iceTransportPolicy: this.iceTransportPolicy });
    this.pc = pc;
    this.makingOffer = false;
    this.ignoreOffer = false;
    pc.onicegatheringstatechange = () => console.debug("call: gathering", pc.iceGatheringState);
    pc.onnegotiationneeded = async () => {
      try {
        this.makingOffer = true;
        await pc.setLocalDescription();
        this.signal.send({ type: pc.localDescription.type, room: this.room, sdp: pc.localDescription.sdp });
      } catch (err) {
        console.warn("negotiation failed", err);
      } finally {
        this.makingOffer = false;
      }
    };
    pc.onicecandidate = ({ candidate }) => {
      console.debug("call: local candidate", candidate ? candidate.candidate.split(" ").slice(4, 8).join(" ") : "end");
      this.signal.send({ type: "ice", room: this.room, candidate: candidate ? candidate.toJSON() : null });
    };
    pc.ontrack = ({ track, streams }) => {
      const stream = streams[0] || new MediaStream([track]);
      if (this.remoteVideo.srcObject !== stream) this.remoteVideo.srcObject = stream;
    };
    pc.oniceconnectionstatechange = () => {
      const state = pc.iceConnectionState;
      console.debug("call: ice", state);
      this.onState(state);
      clearTimeout(this.iceTimer);
      if (state === "failed") pc.restartIce();
      if (state === "disconnected") this.iceTimer = setTimeout(() => this.restartIce(), 2000);
    };
    // The polite side waits for the first offer before adding its tracks, so the two sides do not
    // both offer at once (glare) every time a call starts; collisions later are still handled.
    this.tracksPending = true;
    if (this.polite) this.trackTimer = setTimeout(() => this.addLocalTracks(), 3000);
    else this.addLocalTracks();
    // If ICE has not connected a while after the start, the impolite side restarts it.
    if (!this.polite) this.watchdog = setTimeout(() => {
      if (this.pc === pc && !["connected", "completed"].includes(pc.iceConnectionState)) pc.restartIce();
    }, 8000);
  }

  addLocalTracks() {
    clearTimeout(this.trackTimer);
    if (!this.pc || !this.tracksPending) return;
    this.tracksPending = false;
    for (const track of this.stream ? this.stream.getTracks() : []) this.pc.addTrack(track, this.stream);
    if (this.audioOnly) this.applyAudioOnly();
  }

  restartIce() {
    if (this.pc && this.pc.connectionState !== "closed") this.pc.restartIce();
  }

  async onDescription(msg) {
    const pc = this.pc;
    if (!pc || (msg.from && this.peerSession && msg.from !== this.peerSession)) return; // stale
    const description = { type: msg.type, sdp: msg.sdp };
    const collision = msg.type === "offer" && (this.makingOffer || pc.signalingState !== "stable");
    console.debug("call:", msg.type, "in", pc.signalingState, collision ? "(collision)" : "");
    this.ignoreOffer = !this.polite && collision;
    if (this.ignoreOffer) return;
    try {
      await pc.setRemoteDescription(description); // implicit rollback when polite
      if (msg.type === "offer") {
        this.addLocalTracks(); // answer with our media in the transceivers the offer created
        await pc.setLocalDescription();
        this.signal.send({ type: "answer", room: this.room, sdp: pc.localDescription.sdp });
      }
    } catch (err) {
      console.warn("description failed", err);
    }
  }

  async onIce(msg) {
    const pc = this.pc;
    console.debug("call: remote candidate", msg.candidate ? msg.candidate.candidate.split(" ").slice(4, 8).join(" ") : "end", pc && pc.signalingState);
    if (!pc || (msg.from && this.peerSession && msg.from !== this.peerSession)) return;
    try {
      await pc.addIceCandidate(msg.candidate || null);
    } catch (err) {
      if (!this.ignoreOffer) console.warn("candidate failed", err);
    }
  }

  setMuted(muted) {
    for (const t of this.stream ? this.stream.getAudioTracks() : []) t.enabled = !muted;
  }

  setCameraOff(off) {
    for (const t of this.stream ? this.stream.getVideoTracks() : []) t.enabled = !off;
  }

  // Audio-only stops video in both directions (transceiver inactive): what a poor 3G link needs.
  setAudioOnly(on) {
    this.audioOnly = on;
    this.applyAudioOnly();
  }

  applyAudioOnly() {
    if (!this.pc) return;
    for (const tr of this.pc.getTransceivers()) {
      const kind = (tr.sender.track && tr.sender.track.kind) || (tr.receiver.track && tr.receiver.track.kind);
      if (kind === "video" && tr.direction !== "stopped") tr.direction = this.audioOnly ? "inactive" : "sendrecv";
    }
  }

  async sampleStats() {
    if (!this.pc || this.pc.connectionState !== "connected") return;
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
    if (!prev) return;
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
    this.onQuality(quality);
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
    this.peerSession = null;
    this.lastStats = null;
    if (this.remoteVideo) this.remoteVideo.srcObject = null;
  }

  destroy() {
    clearInterval(this.statsTimer);
    this.close();
    for (const t of this.stream ? this.stream.getTracks() : []) t.stop();
  }
}

// Shared call-page wiring (patient and doctor): controls, chat, quality line, status overlay.
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
  const shown = new Set();
  function addChat(m) {
    if (shown.has(m.id)) return;
    shown.add(m.id);
    const li = document.createElement("li");
    li.className = m.sender === mySide ? "mine" : "theirs";
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = m.sender === mySide ? t("You") : peerLabel;
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
  return {
    addChat,
    // The room messages every call page handles alike; true when `msg` was one of them.
    handle(msg, { absentText, peerLeftText }) {
      switch (msg.type) {
        case "joined":
          (msg.chat || []).forEach(addChat);
          if (msg.peer_present) { this.status(""); call.start(msg.peer_session); this.peerMedia(msg.peer_media); }
          else this.status(absentText);
          return true;
        case "peer_joined":
          this.status("");
          call.start(msg.peer_session);
          this.peerMedia(msg.peer_media);
          return true;
        case "peer_left": call.close(); this.status(peerLeftText); return true;
        case "peer_media": this.peerMedia(msg); return true;
        case "offer": case "answer": call.onDescription(msg); return true;
        case "ice": call.onIce(msg); return true;
        case "chat": addChat(msg.message); return true;
        default: return false;
      }
    },
    status(text) { $("call-status").textContent = text || ""; $("call-status").hidden = !text; },
    peerMedia(m) {
      if (!m) return;
      const parts = [];
      if (!m.audio) parts.push(t("Muted"));
      if (!m.video) parts.push(t("Camera off"));
      $("call-status").textContent = parts.join(" · ");
      $("call-status").hidden = !parts.length;
    },
  };
}
