// End-to-end browser test of the dashboard against a real `ktl serve`:
// the test makes a small Korean corpus, a tokenizer and a randomly initialised tiny model, starts
// the server on a free loopback port, and drives headless chromium through the page: it loads
// with no console errors, a tiny training job submitted through the form appears and its loss
// chart gets points, its samples appear, its checkpoint loads, and a playground generation
// streams text into the page. Screenshots go to build/e2e/ (CI artifacts).
//
//   node tests/e2e/dashboard.test.mjs   (KTL_BIN = path of ktl; exit 77 = skipped)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  ROOT,
  SCREENSHOT_DIR,
  missingPrerequisite,
  skipFileOrReason,
  launchBrowser,
  freePort,
  watchPage,
  screenshot,
  submitTrainingJob,
  waitForJobStatus,
  waitForChartPoints,
  waitForSamples,
  generateInPlayground,
  koreanSentences,
} from './lib.mjs';

const KTL_BIN = path.resolve(process.env.KTL_BIN || path.join(ROOT, 'build', 'ktl'));
const TRAIN_TIMEOUT_MS = Number(process.env.KTL_E2E_TRAIN_TIMEOUT_S || 480) * 1000;
const TRAIN_STEPS = 24;
const VOCAB = 512; // the generated corpus is small: a bigger BPE vocabulary cannot be filled

const missing = await missingPrerequisite();
if (missing) {
  test('dashboard end to end', { skip: skipFileOrReason(missing) }, () => {});
} else {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ktl-e2e-'));
  const dataDir = path.join(tmp, 'data');
  const corpus = path.join(dataDir, 'corpus', 'ko.txt');
  let server = null;
  let serverLog = '';
  let base = '';
  let browser = null;
  let page = null;
  let problems = null;
  let jobId = null;

  const ktl = (args, timeout = 300000) => {
    try {
      return execFileSync(KTL_BIN, args, { encoding: 'utf8', timeout, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      throw new Error(`ktl ${args.join(' ')} failed (${e.status ?? e.signal}):\n${e.stdout || ''}${e.stderr || ''}`);
    }
  };
  /** Flags a command's --help mentions (so the test follows renamed optional flags). */
  const helpFlags = (cmd) => {
    let text = '';
    try {
      text = execFileSync(KTL_BIN, [cmd, '--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      text = `${e.stdout || ''}${e.stderr || ''}`;
    }
    return new Set([...text.matchAll(/--([a-z][a-z0-9-]*)/g)].map((m) => m[1]));
  };
  const logTail = () => serverLog.split('\n').slice(-40).join('\n');

  async function waitForHealth(timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      if (server.exitCode !== null) throw new Error(`ktl serve exited with ${server.exitCode}:\n${logTail()}`);
      try {
        const res = await fetch(`${base}/health`);
        const body = await res.json().catch(() => ({}));
        last = `${res.status} ${JSON.stringify(body)}`;
        if (res.ok && body.status === 'ok') return;
      } catch (e) {
        last = e.message;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`ktl serve not ready after ${timeoutMs} ms (last /health: ${last}):\n${logTail()}`);
  }

  async function stopServer() {
    if (!server || server.exitCode !== null) return;
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    const timer = setTimeout(() => server.exitCode === null && server.kill('SIGKILL'), 15000);
    await exited;
    clearTimeout(timer);
  }

  /** Rejects (with the job's error) as soon as the job ends badly, so a broken run fails fast. */
  function failWhenJobFails(id) {
    let timer = null;
    let stopped = false;
    const failed = new Promise((_, reject) => {
      const check = async () => {
        try {
          const job = await (await fetch(`${base}/v1/jobs/${id}`)).json();
          if (['failed', 'cancelled', 'interrupted'].includes(job.status)) {
            return reject(new Error(`job ${id} ${job.status}: ${job.error || ''}`));
          }
        } catch {
          /* the server may be busy: look again */
        }
        if (!stopped) timer = setTimeout(check, 1000);
      };
      timer = setTimeout(check, 1000);
    });
    failed.catch(() => {});
    return {
      failed,
      stop: () => {
        stopped = true;
        clearTimeout(timer);
      },
    };
  }

  before(async () => {
    assert.ok(fs.existsSync(KTL_BIN), `no ktl binary at ${KTL_BIN} (build it, or set KTL_BIN)`);
    fs.mkdirSync(path.dirname(corpus), { recursive: true });
    fs.writeFileSync(corpus, `${koreanSentences(4000).join('\n')}\n`);
    // Job specs name config files relative to --data-dir: keep copies of configs/ there.
    fs.mkdirSync(path.join(dataDir, 'configs'), { recursive: true });
    fs.cpSync(path.join(ROOT, 'configs'), path.join(dataDir, 'configs'), { recursive: true }); // with recipes/, sweeps/

    // A tokenizer and a random tiny model, so the playground has a model from the start.
    const tokDir = path.join(tmp, 'tokenizer');
    const tokFlags = helpFlags('train-tokenizer');
    const tokArgs = ['train-tokenizer', '--input', corpus, '--output', tokDir];
    if (tokFlags.has('vocab-size')) tokArgs.push('--vocab-size', String(VOCAB));
    ktl(tokArgs);
    const modelDir = path.join(dataDir, 'models', 'init');
    ktl(['init-model', '--model-config', path.join(ROOT, 'configs', 'model_tiny.yaml'), '--tokenizer', tokDir, '--out', modelDir]);

    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const serveFlags = helpFlags('serve');
    const args = ['serve', '--host', '127.0.0.1', '--port', String(port), '--data-dir', dataDir, '--model', modelDir];
    for (const f of ['web-root', 'web-dir', 'web']) {
      if (serveFlags.has(f)) {
        args.push(`--${f}`, path.join(ROOT, 'web'));
        break;
      }
    }
    if (serveFlags.has('configs-dir')) args.push('--configs-dir', path.join(ROOT, 'configs'));
    server = spawn(KTL_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OMP_WAIT_POLICY: 'PASSIVE' } });
    const collect = (d) => {
      serverLog += d.toString();
      if (serverLog.length > 200000) serverLog = serverLog.slice(-100000);
    };
    server.stdout.on('data', collect);
    server.stderr.on('data', collect);
    await waitForHealth(120000);

    browser = await launchBrowser();
    const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
    page = await context.newPage();
    problems = watchPage(page, base);
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await stopServer();
    // The server's log is an artifact beside the screenshots.
    fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
    fs.writeFileSync(path.join(SCREENSHOT_DIR, 'ktl-serve.log'), serverLog);
    if (!process.env.KTL_E2E_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
    else console.log(`# kept ${tmp}`);
  });

  test('the dashboard loads from ktl serve with no console errors', async () => {
    await page.goto(`${base}/`);
    await page.waitForSelector('#job-list', { state: 'attached' });
    await page.waitForSelector('#serving-chip.on', { timeout: 15000 });
    for (const view of ['curves', 'samples', 'playground', 'serving', 'jobs']) {
      await page.click(`a[data-view=${view}]`);
      await page.waitForSelector(`#view-${view}:not([hidden])`);
    }
    assert.deepEqual(problems.console, [], 'console errors');
    assert.deepEqual(problems.external, [], 'requests to other hosts');
  });

  test('a tiny training job submitted from the form appears and its loss chart gets points', async () => {
    jobId = await submitTrainingJob(page, {
      name: 'e2e-작은-모델',
      dataPath: corpus,
      model: 'tiny',
      vocabSize: VOCAB,
      valFraction: 0.05,
      seqLength: 64,
      maxSteps: TRAIN_STEPS,
      batchSize: 2,
      learningRate: 0.002,
      warmupSteps: 2,
      logSteps: 2,
      evalSteps: 8,
      sampleSteps: 8,
      saveSteps: 8,
    });
    const watcher = failWhenJobFails(jobId);
    let points;
    try {
      points = await Promise.race([waitForChartPoints(page, jobId, { min: 2, timeout: TRAIN_TIMEOUT_MS }), watcher.failed]);
    } finally {
      watcher.stop();
    }
    assert.ok(points >= 2, `loss chart points: ${points}`);
    const status = await waitForJobStatus(page, jobId, ['succeeded', 'failed', 'cancelled', 'interrupted'], TRAIN_TIMEOUT_MS);
    assert.equal(status, 'succeeded', `job ${jobId} ended ${status}: ${await page.textContent(`.job-row[data-job-id="${jobId}"]`)}`);
    // Every logged step is on the chart once the job is done.
    const final = await waitForChartPoints(page, jobId, { min: points });
    assert.ok(final >= points);
    await page.click('a[data-view=jobs]');
    await page.waitForSelector(`.job-row[data-job-id="${jobId}"] .job-eta:has-text("took")`);
    await screenshot(page, 'jobs.png');
    await page.goto(`${base}/#curves/${jobId}`);
    await page.waitForTimeout(500);
    await screenshot(page, 'curves.png');
  });

  test('the job’s samples appear', async () => {
    assert.ok(jobId, 'needs the training job');
    const samples = await waitForSamples(page, jobId, 30000);
    assert.ok(samples.length > 0);
    await screenshot(page, 'samples.png');
  });

  test('a playground generation streams text into the page', async () => {
    const gen = await generateInPlayground(page, { prompt: '나는 학교에서', maxTokens: 24, seed: 11 });
    assert.ok(gen.chunks >= 2, `streamed chunks: ${gen.chunks} (${JSON.stringify(gen)})`);
    assert.ok(gen.text.length > 0, 'generated text');
    assert.match(gen.ttft, /ms$/);
    await screenshot(page, 'playground.png');
  });

  test('playground chat mode: system prompt, two turns stream into the message list', async () => {
    await page.click('a[data-view=playground]');
    await page.selectOption('#pg-mode', 'chat');
    await page.waitForSelector('#pg-messages:not([hidden])');
    await page.fill('#pg-system', '짧게 대답하세요');
    await page.fill('#pg-max-tokens', '12');
    await page.fill('#pg-seed', '5');
    for (const [i, msg] of ['안녕하세요', '오늘 날씨는 어때요'].entries()) {
      await page.fill('#pg-prompt', msg);
      await page.click('#pg-generate');
      await page.waitForFunction(
        (n) => document.querySelectorAll('#pg-messages .pg-msg-assistant').length === n && !document.querySelector('#pg-pending'),
        i + 1,
        { timeout: 60000, polling: 100 },
      );
    }
    const roles = await page.$$eval('#pg-messages .pg-msg', (els) => els.map((e) => e.dataset.role));
    assert.deepEqual(roles, ['system', 'user', 'assistant', 'user', 'assistant']);
    assert.match(await page.textContent('#pg-finish'), /stop|length/);
    assert.equal(await page.inputValue('#pg-prompt'), '', 'the sent message leaves the box');
    await screenshot(page, 'playground-chat.png');
    await page.click('#pg-clear');
    assert.equal(await page.$$eval('#pg-messages .pg-msg-user', (els) => els.length), 0);
    await page.selectOption('#pg-mode', 'completion');
  });

  test('the finished job’s checkpoint loads into the server and generates', async () => {
    assert.ok(jobId, 'needs the training job');
    await page.click('a[data-view=jobs]');
    const before = await page.textContent('#serving-chip');
    const loadDone = page.waitForResponse((r) => r.url().endsWith('/v1/models/load'));
    await page.click(`.job-row[data-job-id="${jobId}"] [data-action=load]`);
    const res = await loadDone;
    assert.ok(res.ok(), `POST /v1/models/load answered ${res.status()}: ${await res.text()}`);
    // The server loads in the background; the header chip names the new model once it serves.
    try {
      await page.waitForFunction((b) => {
        const t = document.querySelector('#serving-chip').textContent;
        return t !== b && !t.includes('loading') && document.querySelector('#serving-chip.on');
      }, before, { timeout: 60000 });
    } catch (e) {
      // Same display name for both models: then the server must at least say it is ready.
      const s = await (await fetch(`${base}/v1/serving`)).json();
      assert.equal(s.model_state, 'ready', `${e.message}; /v1/serving: ${JSON.stringify(s)}`);
    }
    const gen = await generateInPlayground(page, { prompt: '우리는', maxTokens: 16, seed: 3 });
    assert.ok(gen.chunks >= 1 && gen.text.length > 0, JSON.stringify(gen));
  });

  test('phone width renders without sideways overflow', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const view of ['playground', 'curves', 'jobs']) {
      await page.click(`a[data-view=${view}]`);
      await page.waitForTimeout(300);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${view} overflows by ${overflow}px`);
    }
    await screenshot(page, 'jobs-phone.png');
    await page.click('a[data-view=playground]');
    await screenshot(page, 'playground-phone.png');
  });

  test('no console errors and no outside requests during the whole session', () => {
    assert.deepEqual(problems.console, []);
    assert.deepEqual(problems.external, []);
  });
}
