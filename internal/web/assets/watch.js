// glasscast's watch page: WebRTC (WHEP) first, then LL-HLS (hls.js, or
// Safari's own), then DASH (dash.js). It shows the stream's status, its
// viewers and the latency it measures: from the SEI send time the glasses'
// test source puts in every frame (WebRTC, where the browser lets us read
// encoded frames), or from the playlist's program date time (HLS, DASH).
// ?protocol=webrtc|hls|dash picks one.
function glasscastWatch(urls) {
  'use strict';
  var video = document.getElementById('video');
  var statusEl = document.getElementById('status');
  var protocolEl = document.getElementById('protocol');
  var latencyEl = document.getElementById('latency');
  var info = document.getElementById('info');
  var unmute = document.getElementById('unmute');
  var state = window.glasscast = { protocol: null, latencyMs: null, errors: [], fallbacks: [] };
  var forced = new URLSearchParams(location.search).get('protocol');

  unmute.hidden = false;
  unmute.onclick = function () { video.muted = false; unmute.hidden = true; video.play().catch(function () {}); };

  function setProtocol(p) { state.protocol = p; protocolEl.textContent = p; state.lastMove = Date.now(); }
  function note(err) { state.errors.push(String(err && err.message || err)); }

  // ---- WebRTC ----
  var SEI_UUID = 'GLASSCAST:SENTAT';

  // seiSentAt finds the source's send time (ms) in an Annex B frame.
  function seiSentAt(buf) {
    var b = new Uint8Array(buf);
    for (var i = 0; i + 4 < b.length; i++) {
      if (b[i] !== 0 || b[i + 1] !== 0 || b[i + 2] !== 1 || (b[i + 3] & 0x1f) !== 6) { continue; }
      // Unescape the NAL unit (emulation prevention) as far as we need.
      var out = [];
      var zeros = 0;
      for (var j = i + 4; j < b.length && out.length < 64; j++) {
        if (zeros >= 2 && b[j] === 3) { zeros = 0; continue; }
        if (zeros >= 2 && b[j] <= 1) { break; } // the next start code
        out.push(b[j]);
        zeros = b[j] === 0 ? zeros + 1 : 0;
      }
      if (out.length < 3 + 24 || out[0] !== 5 || out[1] !== 24) { continue; }
      var uuid = String.fromCharCode.apply(null, out.slice(2, 18));
      if (uuid !== SEI_UUID) { continue; }
      var ns = 0;
      for (var k = 18; k < 26; k++) { ns = ns * 256 + out[k]; }
      return ns / 1e6;
    }
    return 0;
  }

  function tapSEI(receiver) {
    if (!receiver.createEncodedStreams) { return; }
    var streams = receiver.createEncodedStreams();
    streams.readable.pipeThrough(new TransformStream({
      transform: function (frame, controller) {
        var sent = seiSentAt(frame.data);
        if (sent) { state.latencyMs = Date.now() - sent; }
        controller.enqueue(frame);
      }
    })).pipeTo(streams.writable).catch(note);
  }

  // offerWHEP posts the offer; a busy server (429 or 503 with Retry-After:
  // many viewers starting at once from one address, say) is asked again
  // after the time it gave, until the deadline.
  function offerWHEP(sdp, deadline) {
    return fetch(urls.whep, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: sdp }).then(function (r) {
      var wait = parseInt(r.headers.get('Retry-After') || '', 10);
      if ((r.status === 429 || r.status === 503) && wait >= 0 && wait <= 60 && Date.now() + wait * 1000 < deadline) {
        note('WebRTC busy: again in ' + wait + ' s');
        return new Promise(function (resolve) { setTimeout(resolve, wait * 1000); }).then(function () { return offerWHEP(sdp, deadline); });
      }
      return r;
    });
  }

  function playWebRTC() {
    var insertable = !!(window.RTCRtpReceiver && RTCRtpReceiver.prototype.createEncodedStreams);
    var pc = new RTCPeerConnection(insertable ? { encodedInsertableStreams: true } : {});
    var media = new MediaStream();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.ontrack = function (e) {
      media.addTrack(e.track);
      if (e.track.kind === 'video' && insertable) { tapSEI(e.receiver); }
    };
    video.srcObject = media;
    state.pc = pc;
    return pc.createOffer().then(function (offer) {
      return pc.setLocalDescription(offer);
    }).then(function () {
      return new Promise(function (resolve) {
        if (pc.iceGatheringState === 'complete') { return resolve(); }
        pc.onicegatheringstatechange = function () { if (pc.iceGatheringState === 'complete') { resolve(); } };
        setTimeout(resolve, 2000);
      });
    }).then(function () {
      return offerWHEP(pc.localDescription.sdp, Date.now() + 10000);
    }).then(function (r) {
      if (r.status !== 201) { throw new Error('WHEP answered ' + r.status); }
      state.whepSession = r.headers.get('Location');
      return r.text();
    }).then(function (sdp) {
      return pc.setRemoteDescription({ type: 'answer', sdp: sdp });
    }).then(function () {
      return new Promise(function (resolve, reject) {
        var t = setTimeout(function () { reject(new Error('WebRTC did not connect')); }, 6000);
        pc.onconnectionstatechange = function () {
          if (pc.connectionState === 'connected') { clearTimeout(t); resolve(); }
          if (pc.connectionState === 'failed') { clearTimeout(t); reject(new Error('WebRTC failed')); }
        };
      });
    }).then(function () {
      setProtocol('webrtc');
      video.play().catch(function () {});
      if (!state.pagehide) {
        state.pagehide = true;
        window.addEventListener('pagehide', function () {
          if (state.whepSession) { fetch(state.whepSession, { method: 'DELETE', keepalive: true }); }
        });
      }
      // A session that dies (its node went away, the network moved) is
      // offered again while the stream is not over: the stream may be
      // live again on another node, at the same URL.
      pc.onconnectionstatechange = function () {
        if (pc.connectionState === 'failed' || pc.connectionState === 'closed') { reofferWebRTC(pc); }
        if (pc.connectionState === 'disconnected') {
          setTimeout(function () { if (pc.connectionState === 'disconnected') { reofferWebRTC(pc); } }, 3000);
        }
      };
    }).catch(function (err) {
      pc.close();
      video.srcObject = null;
      throw err;
    });
  }

  // reofferWebRTC replaces a dead WebRTC session with a new one, every
  // 2 s while the stream is not over; after 30 s without one, HLS plays.
  function reofferWebRTC(dead) {
    if (state.pc !== dead || state.ended) { return; }
    dead.onconnectionstatechange = null;
    dead.close();
    state.pc = null;
    state.whepSession = null;
    state.reoffers = (state.reoffers || 0) + 1;
    var giveUp = Date.now() + 30000;
    (function again() {
      if (state.ended) { return; }
      playWebRTC().catch(function (err) {
        note(err);
        if (Date.now() < giveUp) { setTimeout(again, 2000); return; }
        state.fallbacks.push('webrtc');
        playHLS().catch(note);
      });
    })();
  }

  // ---- LL-HLS ----
  function playHLS() {
    if (window.Hls && Hls.isSupported()) {
      // Low-latency mode plays PART-HOLD-BACK behind live (see the catch-up
      // below).
      var hls = new Hls({ lowLatencyMode: true, backBufferLength: 30 });
      state.hls = hls;
      hls.on(Hls.Events.ERROR, function (_, d) {
        note(d.details);
        if (d.fatal && !state.ended) { setTimeout(function () { if (!state.ended) { hls.destroy(); playHLS(); } }, 2000); }
      });
      hls.loadSource(urls.hls);
      hls.attachMedia(video);
      setProtocol('ll-hls');
      video.play().catch(function () {});
      return Promise.resolve();
    }
    if (video.canPlayType('application/vnd.apple.mpegurl')) {
      video.src = urls.hls; // Safari plays LL-HLS itself
      setProtocol('native-hls');
      video.play().catch(function () {});
      return Promise.resolve();
    }
    return Promise.reject(new Error('no HLS player'));
  }

  // ---- DASH ----
  function playDASH() {
    if (!window.dashjs) { return Promise.reject(new Error('no DASH player')); }
    var player = dashjs.MediaPlayer().create();
    // The segment in progress is listed and streams as it is made
    // (low-latency DASH): play 1.2 s behind live, and catch up by playing a
    // little faster when behind.
    player.updateSettings({ streaming: {
      delay: { liveDelay: 1.2 },
      liveCatchup: { enabled: true, maxDrift: 1.5, playbackRate: { min: -0.2, max: 0.2 } },
    } });
    player.initialize(video, urls.dash, true);
    state.dash = player;
    setProtocol('dash');
    return Promise.resolve();
  }

  var players = { webrtc: playWebRTC, hls: playHLS, dash: playDASH };
  var order = forced && players[forced] ? [forced] : ['webrtc', 'hls', 'dash'];
  // The players start once the status says the stream is not over.
  function startPlayers() {
    (function next(i) {
      if (state.ended) { return; }
      if (i >= order.length) { setProtocol('none'); return; }
      players[order[i]]().catch(function (err) {
        note(err);
        state.fallbacks.push(order[i]);
        next(i + 1);
      });
    })(0);
  }

  // stopPlayers lets go of everything once the stream has ended: no
  // spinner, no more requests.
  function stopPlayers() {
    if (state.pc) {
      state.pc.close();
      if (state.whepSession) { fetch(state.whepSession, { method: 'DELETE', keepalive: true }).catch(function () {}); }
    }
    if (state.hls) { state.hls.destroy(); }
    if (state.dash) { state.dash.reset(); }
    state.pc = state.hls = state.dash = null;
    video.srcObject = null;
    video.removeAttribute('src');
    video.load();
    video.hidden = true;
    unmute.hidden = true;
    protocolEl.hidden = true;
    latencyEl.textContent = '';
  }

  // Latency of the segment-based players, from the program date time.
  // hls.js catches up only with more than a second buffered, which a
  // low-latency player never has: a player that started (or fell) behind
  // its target plays 10 % faster until it is back.
  setInterval(function () {
    if (state.hls && state.hls.playingDate) {
      state.latencyMs = Date.now() - state.hls.playingDate.getTime();
      var behind = state.hls.latency - state.hls.targetLatency;
      if (behind > 0.1 && !video.paused) { video.playbackRate = 1.1; } else if (behind < 0.03) { video.playbackRate = 1; }
    } else if (state.dash && state.dash.getCurrentLiveLatency) {
      var l = state.dash.getCurrentLiveLatency();
      if (l > 0) { state.latencyMs = l * 1000; }
    }
    latencyEl.textContent = state.latencyMs != null ? 'latency ' + Math.round(state.latencyMs) + ' ms' : '';
    // A WebRTC picture that stands still while the stream is live: its
    // session is likely on a node that died, which the browser would take
    // many seconds more to call disconnected. It is offered again (a
    // session that was fine costs a reconnect).
    if (state.pc && state.protocol === 'webrtc' && !video.paused) {
      if (video.currentTime !== state.lastTime) {
        state.lastTime = video.currentTime;
        state.lastMove = Date.now();
      } else if (state.status === 'live' && Date.now() - state.lastMove > 2500) {
        state.lastMove = Date.now();
        reofferWebRTC(state.pc);
      }
    }
  }, 500);

  function poll() {
    fetch(urls.status).then(function (r) { return r.ok ? r.json() : null; }).then(function (s) {
      if (!s) { return; }
      state.status = s.status;
      if (s.status === 'ended') {
        if (!state.ended) { state.ended = true; stopPlayers(); }
      } else if (!state.started) {
        state.started = true;
        startPlayers();
      }
      statusEl.textContent = s.status;
      statusEl.className = 'pill ' + s.status;
      var parts = [];
      if (s.width) { parts.push(s.width + '×' + s.height); }
      if (s.fps) { parts.push(s.fps.toFixed(0) + ' fps'); }
      if (s.bitrate) { parts.push((s.bitrate / 1000).toFixed(0) + ' kbit/s'); }
      parts.push((s.viewers || 0) + ' viewer' + (s.viewers === 1 ? '' : 's'));
      info.textContent = parts.join(' · ');
      if (s.recording) {
        // Recorded: the recording plays as it grows, and as a whole once
        // the stream has ended.
        var a = document.getElementById('recording') || document.createElement('a');
        a.id = 'recording';
        a.href = s.recording;
        a.textContent = s.status === 'ended' ? ' · the recording' : ' · recording';
        info.appendChild(a);
      }
    }).catch(function () {}).finally(function () { if (!state.ended) { setTimeout(poll, 2000); } });
  }
  poll();
}
