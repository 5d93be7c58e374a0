// Measures how far behind live the watch page plays over hls.js and dash.js
// in headless Chromium, as a viewer's page reports it (window.glasscast.latencyMs:
// hls.js from the program date time, dash.js from its live latency), and
// counts stalls (the video's "waiting" events once it has started).
// Prints one JSON line per player.
//
//   node latency.mjs BASE_URL STREAM_ID ARTIFACT_DIR WATCH_PATH [SECONDS]
import { chromium } from 'playwright-core';

const [base, , , watchPath, secondsArg] = process.argv.slice(2);
const seconds = Number(secondsArg || 20);
const warmup = 5;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
});

async function measure(name, query) {
  const page = await browser.newPage();
  await page.goto(`${base}/watch/${watchPath}${query}`);
  await page.waitForFunction(() => {
    const v = document.querySelector('video');
    return v && v.readyState >= 2 && v.currentTime > 0 && window.glasscast && window.glasscast.latencyMs != null;
  }, null, { timeout: 30000 });
  await page.evaluate(() => {
    window.__stalls = 0;
    document.querySelector('video').addEventListener('waiting', () => { window.__stalls++; });
  });
  const samples = [];
  const t0 = Date.now();
  while (Date.now() - t0 < (warmup + seconds) * 1000) {
    const l = await page.evaluate(() => window.glasscast.latencyMs);
    if (Date.now() - t0 >= warmup * 1000 && l != null) samples.push(l);
    await page.waitForTimeout(250);
  }
  const stalls = await page.evaluate(() => window.__stalls);
  await page.close();
  samples.sort((a, b) => a - b);
  const at = q => Math.round(samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]);
  console.log(JSON.stringify({ player: name, samples: samples.length, minMs: at(0), medianMs: at(0.5),
    p95Ms: at(0.95), maxMs: at(1), stalls }));
}

try {
  await measure('hlsjs', '?protocol=hls');
  await measure('dashjs', '?protocol=dash');
} finally {
  await browser.close();
}
