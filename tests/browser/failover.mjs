// Keeps a stream's watch page open in headless Chromium over WebRTC, hls.js
// and dash.js while a node dies under it, and prints what each viewer saw,
// as one JSON line per player: whether its video played on after the node
// died (media seconds played since), the longest time its picture stood
// still, and whether the page was reloaded (it must not be: players
// recover by themselves).
//
//   node failover.mjs BASE_URL STREAM_ID ARTIFACT_DIR WATCH_PATH
//
// It prints {"ready":true} once every player plays, then waits for a line
// on stdin (the test kills the node and brings the publisher back), then
// watches until the WebRTC and hls.js players have played 6 s more (dash.js
// is reported as it is then), or 45 s have passed.
import { chromium } from 'playwright-core';
import path from 'node:path';
import readline from 'node:readline';

const [base, , artifacts, watchPath] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
    '--disable-features=WebRtcHideLocalIpsWithMdns'],
});

const sample = page => page.evaluate(() => {
  const v = document.querySelector('video');
  const g = window.glasscast || {};
  return v ? { t: v.currentTime, ready: v.readyState, w: v.videoWidth, protocol: g.protocol || null, status: g.status || null } : null;
});

try {
  const players = [];
  for (const [name, query] of [['webrtc', ''], ['hlsjs', '?protocol=hls'], ['dashjs', '?protocol=dash']]) {
    const page = await browser.newPage();
    const p = { name, page, loads: 0, errors: [], console: [] };
    page.on('load', () => { p.loads++; });
    page.on('console', m => { if (m.type() === 'error' || m.type() === 'warning') p.console.push(`${new Date().toISOString().slice(11, 23)} ${m.text()}`.slice(0, 300)); });
    page.on('pageerror', e => p.errors.push(e.message));
    await page.goto(`${base}/watch/${watchPath}${query}`);
    players.push(p);
  }
  // Every player plays (2 s of media) before the node dies.
  const t0 = Date.now();
  for (const p of players) {
    let first = null;
    for (;;) {
      const s = await sample(p.page);
      if (s && s.ready >= 2 && s.w > 0) {
        if (!first) first = s;
        else if (s.t - first.t >= 2) break;
      }
      if (Date.now() - t0 > 60000) throw new Error(`${p.name} does not play`);
      await p.page.waitForTimeout(200);
    }
  }
  console.log(JSON.stringify({ ready: true }));
  await new Promise(resolve => readline.createInterface({ input: process.stdin }).once('line', resolve));

  const killed = Date.now();
  for (const p of players) {
    const s = await sample(p.page);
    p.atKill = s ? s.t : 0;
    p.last = p.atKill;
    p.lastMove = Date.now();
    p.stall = 0;
    p.loadsAtKill = p.loads;
  }
  // Sampled in turn every 100 ms: each player's time since its picture
  // last moved, and how far it got.
  while (Date.now() - killed < 45000 && players.some(p => p.name !== "dashjs" && p.last - p.atKill < 6)) {
    for (const p of players) {
      const s = await sample(p.page);
      const now = Date.now();
      if (s && s.t > p.last) {
        p.stall = Math.max(p.stall, now - p.lastMove);
        p.last = s.t;
        p.lastMove = now;
      }
      p.protocol = s && s.protocol;
      p.status = s && s.status;
    }
    await new Promise(r => setTimeout(r, 100));
  }
  for (const p of players) {
    p.stall = Math.max(p.stall, p.last - p.atKill < 6 ? Date.now() - p.lastMove : 0);
    await p.page.screenshot({ path: path.join(artifacts, `failover-${p.name}.png`) });
    console.log(JSON.stringify({ player: p.name, playedAfter: p.last - p.atKill, longestStallMs: p.stall,
      reloaded: p.loads > p.loadsAtKill, protocol: p.protocol, status: p.status, pageErrors: p.errors,
      console: p.console.slice(-12) }));
  }
} finally {
  await browser.close();
}
