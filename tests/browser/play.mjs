// Plays a glasscast stream in headless Chromium and prints, as one JSON line
// per run, what a viewer would see: whether the video's time advances, its
// size, whether it has audio, which protocol played, the latency the page
// measured. Screenshots go to the artifacts dir.
//
// Then it opens the dashboard, signs in with the admin token (a wrong one
// first) and prints what the stream's row shows while a WebRTC viewer watches
// (its thumbnail loaded at the source's width included).
//
//   GLASSCAST_TOKEN=admin-token node play.mjs BASE_URL STREAM_ID ARTIFACT_DIR WATCH_PATH [players]
//
// With "players" last, only the players run (no dashboard).
import { chromium } from 'playwright-core';
import path from 'node:path';

// watchPath is the watch page's path element: the stream's playback token.
const [base, id, artifacts, watchPath, only] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
    '--disable-features=WebRtcHideLocalIpsWithMdns'],
});

// watch waits until the page's video has played at least `span` seconds of
// media in real time, or the deadline passes.
async function watch(name, page, span = 3, deadlineMs = 30000) {
  const errors = [];
  page.on('pageerror', e => errors.push(e.message));
  const t0 = Date.now();
  let first = null, last = null;
  while (Date.now() - t0 < deadlineMs) {
    last = await page.evaluate(() => {
      const v = document.querySelector('video');
      if (!v) return null;
      const g = window.glasscast || {};
      const src = v.srcObject;
      return { t: v.currentTime, ready: v.readyState, w: v.videoWidth, h: v.videoHeight,
        error: v.error ? v.error.message : null,
        audio: !!(src && src.getAudioTracks().length > 0) || (v.webkitAudioDecodedByteCount || 0) > 0,
        protocol: g.protocol || null, latencyMs: g.latencyMs == null ? null : g.latencyMs,
        fallbacks: g.fallbacks || [], status: g.status || null,
        recording: document.getElementById('recording') ? document.getElementById('recording').href : null };
    });
    if (last && last.ready >= 2 && last.w > 0) {
      if (!first) first = last;
      else if (last.t - first.t >= span && last.latencyMs != null) break;
    }
    await page.waitForTimeout(250);
  }
  await page.screenshot({ path: path.join(artifacts, `${name}.png`) });
  const played = first && last ? last.t - first.t : 0;
  console.log(JSON.stringify({ player: name, played, width: last && last.w, height: last && last.h,
    audio: !!(last && last.audio), protocol: last && last.protocol, latencyMs: last && last.latencyMs,
    fallbacks: last && last.fallbacks, status: last && last.status, recording: last && last.recording,
    error: last && last.error, pageErrors: errors }));
}

try {
  for (const [name, query] of [['webrtc', ''], ['hlsjs', '?protocol=hls'], ['dashjs', '?protocol=dash']]) {
    const page = await browser.newPage();
    await page.goto(`${base}/watch/${watchPath}${query}`);
    await watch(name, page);
    await page.close();
  }
  if (only !== 'players') await dashboard();
} finally {
  await browser.close();
}

async function dashboard() {
  const viewer = await browser.newPage();
  await viewer.goto(`${base}/watch/${watchPath}`);
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', e => errors.push(e.message));
  await page.goto(`${base}/`);
  await page.fill('#token', 'not-the-token');
  await page.click('#login button');
  let rejected = null;
  try {
    await page.waitForFunction(() => document.getElementById('loginError').textContent !== '', null, { timeout: 10000 });
    rejected = await page.textContent('#loginError');
  } catch { /* reported as null */ }
  await page.fill('#token', process.env.GLASSCAST_TOKEN || '');
  await page.click('#login button');
  let row = null;
  try {
    const sel = `tr[data-id="${id}"]`;
    await page.waitForFunction(sel => {
      const tr = document.querySelector(sel);
      return tr && tr.querySelector('.pill').textContent === 'live' && /^[1-9]\d* WebRTC/.test(tr.cells[6].textContent) &&
        tr.querySelector('img.thumb') !== null && tr.querySelector('img.thumb').naturalWidth === 1280 &&
        document.querySelector(`#recordings ${sel} .pill`) !== null &&
        document.querySelector(`#recordings ${sel} .pill`).textContent === 'recording';
    }, sel, { timeout: 30000 });
    row = await page.$eval(`#streams ${sel}`, tr => Array.from(tr.cells).slice(1).map(c => c.textContent));
  } catch { /* reported as null */ }
  const summary = await page.textContent('#summary');
  await page.screenshot({ path: path.join(artifacts, 'dashboard.png') });
  console.log(JSON.stringify({ player: 'dashboard', rejected, row, summary, pageErrors: errors }));
  await page.close();
  await viewer.close();
}
