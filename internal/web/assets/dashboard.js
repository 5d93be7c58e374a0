// glasscast's dashboard: the streams and sessions, updated live from the
// admin API's event stream (GET /api/v1/events, server-sent events read
// with fetch so the token goes in a header).
(function () {
  'use strict';
  var login = document.getElementById('login');
  var board = document.getElementById('board');
  var tokenInput = document.getElementById('token');
  var loginError = document.getElementById('loginError');
  var rows = document.getElementById('streams');
  var summary = document.getElementById('summary');
  var recRows = document.getElementById('recordings');
  window.glasscastDashboard = { snapshots: 0, last: null };

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text != null) { e.textContent = text; }
    if (cls) { e.className = cls; }
    return e;
  }

  function count(n, noun) { return n + ' ' + noun + (n === 1 ? '' : 's'); }

  function render(snap) {
    window.glasscastDashboard.snapshots++;
    window.glasscastDashboard.last = snap;
    summary.textContent = [count(snap.streams.length, 'stream'), count(snap.users, 'user'),
      count(snap.glassesConnections, 'glasses connection'), count(snap.appSessions, 'app session')].join(' · ');
    rows.textContent = '';
    snap.streams.forEach(function (s) {
      var tr = el('tr');
      tr.dataset.id = s.id;
      var pic = el('td');
      if (s.status === 'live' && s.playback.thumbnail) {
        var img = el('img', null, 'thumb');
        img.alt = '';
        // The server keeps a thumbnail 5 s; ask for a new one as often.
        img.src = s.playback.thumbnail + '?t=' + Math.floor(Date.now() / 5000);
        pic.appendChild(img);
      }
      tr.appendChild(pic);
      var name = el('td');
      name.appendChild(el('div', s.name || s.id));
      name.appendChild(el('small', s.id, 'muted'));
      tr.appendChild(name);
      var st = el('td');
      st.appendChild(el('span', s.status, 'pill ' + s.status));
      if (s.lastError) { st.appendChild(el('div', s.lastError, 'err')); }
      tr.appendChild(st);
      tr.appendChild(el('td', s.width ? s.width + '×' + s.height + ' ' + Math.round(s.fps) + ' fps ' + s.videoCodec : '—'));
      tr.appendChild(el('td', s.audioCodec ? s.audioCodec + ' ' + s.audioSampleRate / 1000 + ' kHz ' + s.audioChannels + ' ch' : '—'));
      tr.appendChild(el('td', s.bitrate ? Math.round(s.bitrate / 1000) + ' kbit/s' : '—'));
      var v = s.viewers || {};
      tr.appendChild(el('td', (v.webrtc || 0) + ' WebRTC · ' + (v.llhls || 0) + ' LL-HLS · ' + (v.dash || 0) + ' DASH'));
      tr.appendChild(el('td', s.framesIn + ' frames, ' + s.droppedFrames + ' dropped'));
      var outs = el('td');
      (s.outputs || []).forEach(function (o) {
        var line = el('div', null, 'output');
        line.appendChild(el('span', o.status, 'pill ' + o.status));
        line.appendChild(document.createTextNode(' ' + (o.name || o.url.replace(/\/[^/]*$/, '/…')) +
          (o.bitrate ? ' ' + Math.round(o.bitrate / 1000) + ' kbit/s' : '') + (o.mode && o.mode !== 'passthrough' ? ' (' + o.mode + ')' : '')));
        if (o.error && o.status !== 'active') { line.appendChild(el('div', o.error, 'err')); }
        outs.appendChild(line);
      });
      if (!s.outputs || s.outputs.length === 0) { outs.textContent = '—'; }
      tr.appendChild(outs);
      var w = el('td');
      if (s.status !== 'ended') {
        var a = el('a', 'watch');
        a.href = s.playback.watch;
        w.appendChild(a);
      }
      tr.appendChild(w);
      rows.appendChild(tr);
    });
    renderRecordings(snap.recordings || []);
  }

  function size(bytes) {
    if (bytes >= 1 << 30) { return (bytes / (1 << 30)).toFixed(1) + ' GiB'; }
    return (bytes / (1 << 20)).toFixed(1) + ' MiB';
  }

  function length(secs) {
    var m = Math.floor(secs / 60), s = Math.floor(secs % 60);
    return m + ':' + (s < 10 ? '0' : '') + s;
  }

  function renderRecordings(list) {
    document.getElementById('recordingsNone').hidden = list.length > 0;
    document.getElementById('recordingsTable').hidden = list.length === 0;
    recRows.textContent = '';
    list.forEach(function (r) {
      var tr = el('tr');
      tr.dataset.id = r.id;
      var name = el('td');
      name.appendChild(el('div', r.name || r.id));
      name.appendChild(el('small', r.id, 'muted'));
      tr.appendChild(name);
      var st = el('td');
      st.appendChild(el('span', r.status, 'pill ' + r.status));
      tr.appendChild(st);
      tr.appendChild(el('td', new Date(r.startedAt).toLocaleString()));
      tr.appendChild(el('td', length(r.duration)));
      tr.appendChild(el('td', size(r.bytes)));
      tr.appendChild(el('td', String(r.gaps)));
      var links = el('td');
      var hls = el('a', 'HLS');
      hls.href = r.hls;
      links.appendChild(hls);
      if (r.status !== 'recording') {
        links.appendChild(document.createTextNode(' · '));
        var mp4 = el('a', 'MP4');
        mp4.href = r.mp4;
        links.appendChild(mp4);
      }
      tr.appendChild(links);
      recRows.appendChild(tr);
    });
  }

  function connect(token) {
    fetch('/api/v1/events', { headers: { Authorization: 'Bearer ' + token } }).then(function (r) {
      if (r.status === 401) {
        sessionStorage.removeItem('glasscastToken');
        board.hidden = true;
        login.hidden = false;
        loginError.textContent = 'That token is not valid.';
        return;
      }
      login.hidden = true;
      board.hidden = false;
      var reader = r.body.getReader();
      var decoder = new TextDecoder();
      var buf = '';
      function pump() {
        return reader.read().then(function (res) {
          if (res.done) { throw new Error('closed'); }
          buf += decoder.decode(res.value, { stream: true });
          var i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            var block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            block.split('\n').forEach(function (line) {
              if (line.indexOf('data: ') === 0) { render(JSON.parse(line.slice(6))); }
            });
          }
          return pump();
        });
      }
      return pump();
    }).catch(function () {
      setTimeout(function () { connect(token); }, 2000);
    });
  }

  login.addEventListener('submit', function (e) {
    e.preventDefault();
    sessionStorage.setItem('glasscastToken', tokenInput.value);
    connect(tokenInput.value);
  });
  var saved = sessionStorage.getItem('glasscastToken') || new URLSearchParams(location.hash.slice(1)).get('token');
  if (saved) { connect(saved); } else { login.hidden = false; }
})();
