// Shared helpers of the dashboard browser tests: launching Debian's chromium through
// playwright-core, skipping cleanly when the browser or the npm modules are absent, and the
// page-level steps (submit a job, wait for chart points, samples, a streamed generation).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '../..');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const SKIP_CODE = 77; // ctest SKIP_RETURN_CODE
export const SCREENSHOT_DIR = process.env.KTL_E2E_ARTIFACTS || path.join(ROOT, 'build', 'e2e');

const LAUNCH_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** Why the browser tests cannot run here (null when they can). */
export async function missingPrerequisite() {
  if (!fs.existsSync(CHROMIUM)) return `no browser at ${CHROMIUM} (apt-get install chromium)`;
  try {
    await import('playwright-core');
  } catch {
    return `playwright-core is not installed (cd tests/e2e && npm install)`;
  }
  return null;
}

/**
 * Skips the whole file: exit 77 for ctest when run as `node file.mjs`; under `node --test` the
 * runner treats non-zero exits as failures, so there the caller registers a skipped test.
 */
export function skipFileOrReason(reason) {
  if (!process.env.NODE_TEST_CONTEXT) {
    console.log(`1..0 # SKIP ${reason}`);
    process.exit(SKIP_CODE);
  }
  return reason;
}

export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: LAUNCH_ARGS });
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Records console errors, uncaught page errors and requests to hosts other than `base`. */
export function watchPage(page, base) {
  const problems = { console: [], external: [] };
  const origin = new URL(base).origin;
  page.on('console', (m) => {
    if (m.type() === 'error') problems.console.push(`${m.text()} @ ${m.location()?.url || ''}`);
  });
  page.on('pageerror', (e) => problems.console.push(`uncaught: ${e.message}`));
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith('data:') && !u.startsWith('blob:') && new URL(u).origin !== origin) problems.external.push(u);
  });
  return problems;
}

export async function screenshot(page, name) {
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, name);
  const vp = page.viewportSize();
  if (vp) await page.mouse.move(vp.width - 2, vp.height - 2); // no hover highlight in the shot
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/**
 * Fills and submits the "New training job" form; returns the id of the job row that appears.
 * opts: {name, dataPath?, model?, maxSteps, batchSize?, learningRate?, vocabSize?, valFraction?,
 * seqLength?, warmupSteps?, logSteps?, evalSteps?, sampleSteps?, saveSteps?}
 */
export async function submitTrainingJob(page, opts) {
  await page.click('a[data-view=jobs]');
  const before = await page.$$eval('#job-list .job-row', (rows) => rows.map((r) => r.dataset.jobId));
  await page.fill('#job-name', opts.name);
  if (opts.dataPath) {
    await page.check('#job-corpus-path');
    await page.fill('#job-data-path', opts.dataPath);
  } else {
    await page.check('#job-corpus-default');
  }
  if (opts.model) await page.selectOption('#job-model', opts.model);
  const numbers = {
    '#job-max-steps': opts.maxSteps,
    '#job-batch-size': opts.batchSize,
    '#job-lr': opts.learningRate,
  };
  const advanced = {
    '#job-vocab-size': opts.vocabSize,
    '#job-val-fraction': opts.valFraction,
    '#job-seq-length': opts.seqLength,
    '#job-warmup-steps': opts.warmupSteps,
    '#job-log-steps': opts.logSteps,
    '#job-eval-steps': opts.evalSteps,
    '#job-sample-steps': opts.sampleSteps,
    '#job-save-steps': opts.saveSteps,
  };
  for (const [sel, v] of Object.entries(numbers)) if (v !== undefined) await page.fill(sel, String(v));
  if (Object.values(advanced).some((v) => v !== undefined)) {
    await page.click('.advanced summary');
    for (const [sel, v] of Object.entries(advanced)) if (v !== undefined) await page.fill(sel, String(v));
  }
  const response = page.waitForResponse((r) => r.url().endsWith('/v1/jobs') && r.request().method() === 'POST');
  await page.click('#job-submit');
  const res = await response;
  if (res.status() !== 201) throw new Error(`POST /v1/jobs answered ${res.status()}: ${await res.text()}`);
  const job = await res.json();
  await page.waitForSelector(`#job-list .job-row[data-job-id="${job.id}"]`, { timeout: 10000 });
  if (before.includes(String(job.id))) throw new Error(`job ${job.id} was already listed`);
  return String(job.id);
}

/** Waits until a job row shows one of `statuses`; returns the status. */
export async function waitForJobStatus(page, id, statuses, timeout) {
  await page.click('a[data-view=jobs]');
  const sel = statuses.map((s) => `#job-list .job-row[data-job-id="${id}"][data-status="${s}"]`).join(', ');
  const row = await page.waitForSelector(sel, { timeout });
  return row.getAttribute('data-status');
}

/** Opens the curves of job `id` and waits for at least `min` points on chart `chart`. */
export async function waitForChartPoints(page, id, { chart = 'chart-loss', min = 1, timeout = 60000 } = {}) {
  await page.goto(`${new URL(page.url()).origin}/#curves/${id}`);
  await page.waitForFunction(
    ([c, n]) => Number(document.querySelector(`[data-chart="${c}"]`)?.dataset.points || 0) >= n,
    [chart, min],
    { timeout, polling: 250 },
  );
  return Number(await page.getAttribute(`[data-chart="${chart}"]`, 'data-points'));
}

/** Opens the samples of job `id` and waits for at least one; returns the sample texts. */
export async function waitForSamples(page, id, timeout = 60000) {
  await page.goto(`${new URL(page.url()).origin}/#samples/${id}`);
  await page.waitForSelector('#samples-list .sample', { timeout });
  return page.$$eval('#samples-list .sample', (els) => els.map((e) => e.textContent));
}

/**
 * Runs a generation in the playground; resolves once the stream finished, with the streamed
 * text, the number of SSE chunks that carried text, and the shown TTFT / tokens/s.
 */
export async function generateInPlayground(page, { prompt, maxTokens = 24, seed = 7, temperature, timeout = 60000 } = {}) {
  await page.click('a[data-view=playground]');
  await page.waitForSelector('#pg-generate:not([disabled])', { timeout });
  if (prompt !== undefined) await page.fill('#pg-prompt', prompt);
  await page.fill('#pg-max-tokens', String(maxTokens));
  await page.fill('#pg-seed', String(seed));
  if (temperature !== undefined) await page.$eval('#pg-temperature', (el, v) => (el.value = v), String(temperature));
  await page.click('#pg-generate');
  await page.waitForFunction(
    () => {
      const out = document.querySelector('#pg-output');
      return !out.classList.contains('streaming') && (document.querySelector('#pg-finish').textContent !== '–' || out.classList.contains('error'));
    },
    null,
    { timeout, polling: 100 },
  );
  if (await page.$('#pg-output.error')) throw new Error(`playground: ${await page.textContent('#pg-state')}`);
  return page.evaluate(() => ({
    text: document.querySelector('#pg-text').textContent,
    chunks: Number(document.querySelector('#pg-output').dataset.chunks),
    ttft: document.querySelector('#pg-ttft').textContent,
    tps: document.querySelector('#pg-tps').textContent,
    tokens: document.querySelector('#pg-tokens').textContent,
    finish: document.querySelector('#pg-finish').textContent,
    state: document.querySelector('#pg-state').textContent,
  }));
}

/** Deterministic, varied Korean sentences (the same scheme as tests/support/korean_fixture.h). */
export function koreanSentences(n, seed = 7) {
  const subj = ['나는', '우리는', '친구가', '선생님께서', '학생들이', '어머니는', '그 남자는', '고양이가', '작은 아이가', '회사 사람들이', '할머니께서', '동생이', '이웃집 강아지가', '기자들이'];
  const place = ['학교에서', '서울에서', '도서관에서', '집 앞에서', '바닷가에서', '시장에서', '공원에서', '부산역 근처에서', '카페에서', '회의실에서', '산 위에서', '지하철 안에서'];
  const obj = ['책을', '밥을', '커피를', '영화를', '편지를', '노래를', '사진을', '숙제를', '김치찌개를', '새 컴퓨터를', '한국어를', '축구를', '그림을', '뉴스를'];
  const verb = ['읽었다.', '먹었어요.', '마셨습니다.', '보았다.', '썼어요.', '불렀습니다.', '찍었다.', '했어요.', '끓였습니다.', '샀다.', '배웠어요.', '좋아합니까?', '그렸습니다!', '들었다.'];
  const extra = ['', '', '', ' 정말 재미있었다.', ' 날씨가 좋았다.', ' 그래서 기분이 좋아요.', ' 내일도 할 거예요.', ' 2024년 3월 15일이었다.', ' 시간은 오후 7시 30분이었다.', ' 다들 웃었다 ㅋㅋ', ' 너무 슬펐어요 ㅠㅠ', ' 가격은 12,500원이었다.'];
  let state = seed >>> 0 || 1;
  const rand = () => {
    // xorshift32: deterministic across platforms
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
  const pick = (a) => a[rand() % a.length];
  const out = [];
  for (let i = 0; i < n; i++) out.push(`${pick(subj)} ${pick(place)} ${pick(obj)} ${pick(verb)}${pick(extra)}`);
  return out;
}
