// Plays a glasscast stream in headless Chromium and prints, as one JSON line
// per player, what a viewer would see: whether the video's time advances,
// its size, and whether it has audio. Screenshots go to the artifacts dir.
//
//   node play.mjs BASE_URL STREAM_ID ARTIFACT_DIR
import { chromium } from 'playwright-core';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const [base, id, artifacts] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const dashScript = path.join(here, 'node_modules/dashjs/dist/modern/umd/dash.all.min.js');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
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
      return { t: v.currentTime, ready: v.readyState, w: v.videoWidth, h: v.videoHeight, paused: v.paused,
        error: v.error ? v.error.message : null,
        audio: (v.audioTracks && v.audioTracks.length) || (v.webkitAudioDecodedByteCount || 0) > 0 || (v.mozHasAudio || false) };
    });
    if (last && last.ready >= 3 && last.w > 0) {
      if (!first) first = last;
      else if (last.t - first.t >= span) break;
    }
    await page.waitForTimeout(250);
  }
  await page.screenshot({ path: path.join(artifacts, `${name}.png`) });
  const played = first && last ? last.t - first.t : 0;
  console.log(JSON.stringify({ player: name, played, width: last && last.w, height: last && last.h,
    audio: !!(last && last.audio), error: last && last.error, pageErrors: errors }));
}

try {
  const hls = await browser.newPage();
  await hls.goto(`${base}/watch/${id}`);
  await watch('hlsjs', hls);

  const dash = await browser.newPage();
  await dash.goto(`${base}/watch/${id}/status`); // same origin, any page
  await dash.setContent('<video muted autoplay playsinline style="width:640px"></video>');
  await dash.addScriptTag({ path: dashScript });
  await dash.evaluate(mpd => {
    const p = dashjs.MediaPlayer().create();
    p.initialize(document.querySelector('video'), mpd, true);
  }, `${base}/dash/${id}/manifest.mpd`);
  await watch('dashjs', dash);
} finally {
  await browser.close();
}
