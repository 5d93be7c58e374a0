// Opens the watch page of a stream that has ended and prints, as one JSON
// line, what a viewer sees and what the page asks the server for: no player
// spinning, no WebRTC offers, no favicon, the recording linked.
//
//   node ended.mjs BASE_URL STREAM_ID ARTIFACT_DIR WATCH_PATH
import { chromium } from 'playwright-core';
import path from 'node:path';

const [base, , artifacts, watchPath] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', e => errors.push(e.message));
  const requests = [];
  page.on('request', r => requests.push(r.method() + ' ' + new URL(r.url()).pathname));
  await page.goto(`${base}/watch/${watchPath}`);
  let status = null;
  try {
    await page.waitForFunction(() => window.glasscast && window.glasscast.status === 'ended', null, { timeout: 15000 });
    status = 'ended';
  } catch { /* reported as null */ }
  // Past two of the page's 2 s status polls: nothing more should be asked.
  const settled = requests.length;
  await page.waitForTimeout(4500);
  const seen = await page.evaluate(() => ({
    videoHidden: document.getElementById('video').hidden,
    protocolHidden: document.getElementById('protocol').hidden,
    recording: document.getElementById('recording') ? document.getElementById('recording').href : null,
  }));
  await page.screenshot({ path: path.join(artifacts, 'ended.png') });
  console.log(JSON.stringify({ status, ...seen, requests, after: requests.slice(settled), pageErrors: errors }));
} finally {
  await browser.close();
}
