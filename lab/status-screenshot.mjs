// A screenshot of the service's status page, taken by headless Chromium from inside the lab's network
// namespace (the service trusts the lab's own address only):
//   ip netns exec uod-lab node lab/status-screenshot.mjs http://192.0.2.1:8080/ui status.png [seconds]
// It waits `seconds` (default 3) for live updates before it takes the picture.
import puppeteer from 'puppeteer-core';

const [url, out, wait = '3'] = process.argv.slice(2);
if (!url || !out) {
  console.error('usage: node lab/status-screenshot.mjs <status page URL> <png file> [seconds]');
  process.exit(2);
}
const browser = await puppeteer.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1400, height: 520 });
  await page.goto(url);
  await page.waitForSelector('#live[data-at]', { timeout: 15_000 });
  await new Promise((r) => setTimeout(r, Number(wait) * 1000));
  await page.screenshot({ path: out, fullPage: true });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
}
