// Plays a stream with an adaptive bitrate ladder in headless Chromium and
// prints, as one JSON line per player, what the viewer got: the levels
// hls.js found in the multivariant playlist and the picture heights it
// played as it was switched from one level to another; the video
// representations dash.js found in the manifest and that it played.
//
//   node abr.mjs BASE_URL STREAM_ID ARTIFACT_DIR
import { chromium } from 'playwright-core';
import path from 'node:path';

// watchPath is the watch page's path element: the stream's playback token.
const [base, id, artifacts, watchPath] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
});

// playsAt waits until the video shows pictures `height` tall and its time
// has advanced a second at that height. again, when given, is run every
// ten seconds the picture is not that tall yet (a switch asked for again:
// on a busy machine a rung may not have the media the player needs yet).
async function playsAt(page, height, again, deadlineMs = 45000) {
  const t0 = Date.now();
  let start = null;
  let asked = t0;
  while (Date.now() - t0 < deadlineMs) {
    const s = await page.evaluate(() => {
      const v = document.querySelector('video');
      return { t: v.currentTime, h: v.videoHeight, ready: v.readyState };
    });
    if (s.h === height && s.ready >= 2) {
      if (start == null) start = s.t;
      else if (s.t - start >= 1) return true;
    } else if (again && Date.now() - asked > 10000) {
      await again();
      asked = Date.now();
    }
    await page.waitForTimeout(200);
  }
  return false;
}

try {
  // hls.js: every level, switched to in turn, plays at its own size.
  {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', e => errors.push(e.message));
    await page.goto(`${base}/watch/${watchPath}?protocol=hls`);
    let levels = [];
    try {
      await page.waitForFunction(() => window.glasscast && window.glasscast.hls && window.glasscast.hls.levels.length >= 3, null, { timeout: 30000 });
      levels = await page.evaluate(() => window.glasscast.hls.levels.map(l => ({ height: l.height, bitrate: l.bitrate })));
    } catch { /* reported as no levels */ }
    await page.evaluate(() => {
      window.abrSwitched = [];
      window.abrErrors = [];
      const hls = window.glasscast.hls;
      if (hls) {
        hls.on('hlsLevelSwitched', (_, d) => window.abrSwitched.push(hls.levels[d.level].height));
        hls.on('hlsError', (_, d) => window.abrErrors.push(`${d.type} ${d.details}${d.fatal ? ' (fatal)' : ''}`));
      }
    });
    const played = [];
    // Lowest first, then the source: a switch down and a switch up.
    const order = levels.map((l, i) => i).sort((a, b) => levels[a].height - levels[b].height);
    for (const i of [order[0], order[order.length - 1]]) {
      if (i === undefined) break;
      const ask = () => page.evaluate(i => { window.glasscast.hls.currentLevel = i; }, i);
      await ask();
      if (await playsAt(page, levels[i].height, ask)) played.push(levels[i].height);
      await page.screenshot({ path: path.join(artifacts, `abr-hls-${levels[i].height}p.png`) });
    }
    const { switched, hlsErrors } = await page.evaluate(() => ({ switched: window.abrSwitched, hlsErrors: window.abrErrors }));
    console.log(JSON.stringify({ player: 'hlsjs', levels: levels.map(l => l.height), played, switched, hlsErrors, pageErrors: errors }));
    await page.close();
  }
  // dash.js: the manifest's video representations, and the lowest one plays.
  {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', e => errors.push(e.message));
    await page.goto(`${base}/watch/${watchPath}?protocol=dash`);
    let heights = [];
    const played = [];
    try {
      await page.waitForFunction(() => {
        const p = window.glasscast && window.glasscast.dash;
        return p && p.getRepresentationsByType && p.getRepresentationsByType('video').length >= 3;
      }, null, { timeout: 30000 });
      heights = await page.evaluate(() => window.glasscast.dash.getRepresentationsByType('video').map(r => r.height));
      const low = Math.min(...heights);
      await page.evaluate(low => {
        const p = window.glasscast.dash;
        p.updateSettings({ streaming: { abr: { autoSwitchBitrate: { video: false } } } });
        const reps = p.getRepresentationsByType('video');
        p.setRepresentationForTypeById('video', reps.find(r => r.height === low).id, true);
      }, low);
      if (await playsAt(page, low)) played.push(low);
      await page.screenshot({ path: path.join(artifacts, `abr-dash-${low}p.png`) });
    } catch (e) { errors.push(String(e)); }
    console.log(JSON.stringify({ player: 'dashjs', levels: heights, played, pageErrors: errors }));
    await page.close();
  }
} finally {
  await browser.close();
}
