// Plays a glasscast stream in headless Chromium and prints, as one JSON line
// per run, what a viewer would see: whether the video's time advances, its
// size, whether it has audio, which protocol played, the latency the page
// measured. Screenshots go to the artifacts dir.
//
//   node play.mjs BASE_URL STREAM_ID ARTIFACT_DIR
import { chromium } from 'playwright-core';
import path from 'node:path';

const [base, id, artifacts] = process.argv.slice(2);

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
        fallbacks: g.fallbacks || [], status: g.status || null };
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
    fallbacks: last && last.fallbacks, status: last && last.status, error: last && last.error, pageErrors: errors }));
}

try {
  for (const [name, query] of [['webrtc', ''], ['hlsjs', '?protocol=hls'], ['dashjs', '?protocol=dash']]) {
    const page = await browser.newPage();
    await page.goto(`${base}/watch/${id}${query}`);
    await watch(name, page);
    await page.close();
  }
} finally {
  await browser.close();
}
