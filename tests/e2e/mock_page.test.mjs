// Page-level browser test of the dashboard against tests/e2e/mock_server.mjs (a fake of the
// `ktl serve` API): fast, needs no C++ build. The real end-to-end test is dashboard.test.mjs.
//   node tests/e2e/mock_page.test.mjs      (exit 77 = skipped: no chromium / playwright-core)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  missingPrerequisite,
  skipFileOrReason,
  launchBrowser,
  watchPage,
  screenshot,
  submitTrainingJob,
  waitForChartPoints,
  waitForSamples,
  generateInPlayground,
  waitForJobStatus,
} from './lib.mjs';
import { startMockServer } from './mock_server.mjs';

const missing = await missingPrerequisite();
if (missing) {
  test('dashboard page (mock server)', { skip: skipFileOrReason(missing) }, () => {});
} else {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
  });

  async function openPage(srv, viewport = { width: 1366, height: 900 }) {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    const problems = watchPage(page, srv.url);
    await page.goto(`${srv.url}/`);
    await page.waitForSelector('#job-list', { state: 'attached' });
    return { context, page, problems };
  }

  test('jobs, live curves, samples and playground work against the fake API', async () => {
    const srv = await startMockServer({ stepMs: 40 });
    try {
      const { context, page, problems } = await openPage(srv);
      await page.waitForSelector('#jobs-empty:not([hidden])');

      const id = await submitTrainingJob(page, { name: '작은-모델', maxSteps: 150, evalSteps: 25, sampleSteps: 25 });
      const spec = srv.jobs.get(Number(id)).spec;
      assert.equal(spec.kind, 'pipeline');
      assert.equal(spec.options.train.max_steps, 150);
      assert.equal(spec.options.train.sample_steps, 25);
      assert.deepEqual(spec.options.prepare_data, { default_corpus: true, vocab_size: 8000 });
      assert.equal(spec.options.train.model_config, 'configs/model_tiny.yaml');
      assert.equal(spec.options.train.warmup_steps, 15);

      // Live: the point count keeps growing from the events stream while the job runs.
      const first = await waitForChartPoints(page, id, { min: 3 });
      await page.waitForFunction((n) => Number(document.querySelector('[data-chart="chart-loss"]').dataset.points) > n, first, { timeout: 10000 });
      assert.ok(Number(await page.getAttribute('[data-chart="chart-tps"]', 'data-points')) > 0);
      // Log scale and smoothing redraw without losing points.
      await page.check('#curves-log');
      await page.$eval('#curves-smoothing', (el) => {
        el.value = '0.9';
        el.dispatchEvent(new Event('input'));
      });
      await page.waitForTimeout(400);
      assert.ok(Number(await page.getAttribute('[data-chart="chart-loss"]', 'data-points')) > first);
      await page.waitForSelector('#curves-stats .stat-ppl .mono:not(:text("–"))');
      // Task accuracy appears beside the loss once the job reports it.
      await page.waitForFunction(() => Number(document.querySelector('[data-chart="chart-task"]').dataset.points) > 0, null, { timeout: 10000 });
      assert.equal(await page.$eval('[data-chart="chart-task"]', (el) => el.hidden), false);
      await page.waitForSelector('#curves-stats .stat-task .mono:not(:text("–"))');
      await screenshot(page, 'mock-curves.png');

      const samples = await waitForSamples(page, id);
      assert.ok(samples.some((s) => /[가-힣]/.test(s)), `Korean sample text expected: ${samples}`);

      assert.equal(await waitForJobStatus(page, id, ['succeeded'], 20000), 'succeeded');
      await page.waitForSelector(`.job-row[data-job-id="${id}"] .job-eta:has-text("took")`);
      await screenshot(page, 'mock-jobs.png');

      const gen = await generateInPlayground(page, { prompt: '대한민국의 수도는', maxTokens: 20 });
      assert.ok(gen.chunks >= 2, `several streamed chunks expected, got ${gen.chunks}`);
      assert.ok(gen.text.length > 0);
      assert.match(gen.ttft, /ms$/);
      assert.equal(gen.tokens, '20');
      assert.equal(gen.finish, 'length');
      await screenshot(page, 'mock-playground.png');

      await page.click('a[data-view=serving]');
      await page.waitForSelector('#serving-model:text("ktl-tiny-ko")');
      // Speculative decoding's counters in the serving panel.
      await page.waitForSelector('#serving-spec-length:text("2.5")');
      assert.equal(await page.textContent('#serving-spec-acceptance'), '75% of 40');

      assert.deepEqual(problems.console, []);
      assert.deepEqual(problems.external, []);
      await context.close();
    } finally {
      await srv.close();
    }
  });

  test('cancel, resume and load buttons call the job API', async () => {
    const srv = await startMockServer({ stepMs: 200 });
    try {
      const { context, page, problems } = await openPage(srv);
      const id = await submitTrainingJob(page, { name: 'cancel-me', maxSteps: 500, saveSteps: 2 });
      await waitForJobStatus(page, id, ['running'], 10000);
      // "Load model" appears once the running job has written a checkpoint.
      await page.waitForSelector(`.job-row[data-job-id="${id}"] [data-action=load]`, { timeout: 10000 });
      await page.click(`.job-row[data-job-id="${id}"] [data-action=cancel]`);
      await waitForJobStatus(page, id, ['cancelled'], 10000);
      await page.click(`.job-row[data-job-id="${id}"] [data-action=resume]`);
      await waitForJobStatus(page, id, ['running', 'queued'], 10000);
      await page.click(`.job-row[data-job-id="${id}"] [data-action=cancel]`);
      await waitForJobStatus(page, id, ['cancelled'], 10000);
      await page.click(`.job-row[data-job-id="${id}"] [data-action=load]`);
      await page.waitForSelector(`#serving-chip:has-text("job-${id}-cancel-me")`, { timeout: 10000 });
      assert.deepEqual(problems.console, []);
      await context.close();
    } finally {
      await srv.close();
    }
  });

  test('LoRA: a job’s adapter checkpoints are served, picked in the playground and unloaded', async () => {
    const srv = await startMockServer({ seedJobs: true });
    try {
      const { context, page, problems } = await openPage(srv);
      const lora = [...srv.jobs.values()].find((j) => j.name === 'chat-lora');
      const row = `.job-row[data-job-id="${lora.id}"]`;
      // The LoRA settings and one line per adapter checkpoint (newest first); no "Load model".
      await page.waitForSelector(`${row} .job-lora .adapter-ckpt`);
      assert.match(await page.textContent(`${row} .lora-config`), /r 16 · α 32 · q,k,v,o/);
      assert.deepEqual(await page.$$eval(`${row} .adapter-ckpt`, (els) => els.map((e) => e.dataset.step)), ['200', '100']);
      assert.equal(await page.$(`${row} [data-action=load]`), null);
      const full = [...srv.jobs.values()].find((j) => j.name === 'baseline-tiny');
      assert.equal(await page.$(`.job-row[data-job-id="${full.id}"] .job-lora`), null, 'a full run has no LoRA line');

      // Serve step 200 under an edited name; the row then says it is served.
      const ck200 = `${row} .adapter-ckpt[data-step="200"]`;
      assert.equal(await page.inputValue(`${ck200} .adapter-name`), `job${lora.id}-step200`);
      await page.fill(`${ck200} .adapter-name`, 'chat-r16');
      await page.click(`${ck200} [data-action=serve-adapter]`);
      await page.waitForSelector(`${ck200} .served:has-text("chat-r16")`, { timeout: 10000 });
      assert.equal(srv.adapters.get('chat-r16').path, lora.checkpoints.find((c) => c.step === 200).path);
      // The same name again (step 100): the API's 409 is shown on the row.
      const ck100 = `${row} .adapter-ckpt[data-step="100"]`;
      await page.fill(`${ck100} .adapter-name`, 'chat-r16');
      await page.click(`${ck100} [data-action=serve-adapter]`);
      await page.waitForSelector(`${ck100} .adapter-error:not([hidden]):has-text("409")`);
      assert.match(await page.textContent(`${ck100} .adapter-error:last-child`), /already loaded/);

      // Playground: the adapter is a choice labelled with its base, and requests name it.
      await page.click('a[data-view=playground]');
      await page.waitForSelector('#pg-model option[value="chat-r16"]', { state: 'attached', timeout: 10000 });
      assert.equal(await page.textContent('#pg-model option[value="chat-r16"]'), 'chat-r16 · adapter of ktl-tiny-ko');
      await page.selectOption('#pg-model', 'chat-r16');
      await generateInPlayground(page, { maxTokens: 4 });
      assert.equal(srv.requestedModels.at(-1), 'chat-r16');
      await page.selectOption('#pg-model', 'ktl-tiny-ko');
      await generateInPlayground(page, { maxTokens: 4 });
      assert.equal(srv.requestedModels.at(-1), 'ktl-tiny-ko');

      // The Adapters card lists it with its rank and requests; the load form loads step 100.
      await page.waitForSelector('#pg-adapters tr[data-adapter="chat-r16"] .adapter-requests:text("1")', { timeout: 10000 });
      await page.fill('#pg-adapter-name', 'bad name');
      await page.fill('#pg-adapter-path', lora.checkpoints[0].path);
      await page.click('#pg-adapter-load');
      await page.waitForSelector('#pg-adapter-error:not([hidden]):has-text("400")');
      await page.fill('#pg-adapter-name', 'early');
      await page.fill('#pg-adapter-path', '/tmp/mock/nowhere');
      await page.click('#pg-adapter-load');
      await page.waitForSelector('#pg-adapter-error:not([hidden]):has-text("404")');
      await page.fill('#pg-adapter-path', lora.checkpoints[0].path);
      await page.click('#pg-adapter-load');
      await page.waitForSelector('#pg-adapters tr[data-adapter="early"]', { timeout: 10000 });
      assert.equal(await page.isHidden('#pg-adapter-error'), true);
      await screenshot(page, 'mock-playground-adapters.png');

      // Serving: the count and the same card; Unload there removes it everywhere.
      await page.click('a[data-view=serving]');
      await page.waitForSelector('#serving-adapter-count:text("2")', { timeout: 10000 });
      await page.click('#serving-adapters tr[data-adapter="chat-r16"] [data-action=unload-adapter]');
      await page.waitForSelector('#serving-adapters tr[data-adapter="chat-r16"]', { state: 'detached', timeout: 10000 });
      assert.equal(srv.adapters.has('chat-r16'), false);
      await page.click('a[data-view=playground]');
      await page.waitForSelector('#pg-model option[value="chat-r16"]', { state: 'detached', timeout: 10000 });

      // Failed resource loads (the 409/400/404 above) are the browser's own log lines.
      assert.deepEqual(problems.console.filter((m) => !/status of (400|404|409)/.test(m)), []);
      assert.deepEqual(problems.external, []);
      await context.close();
    } finally {
      await srv.close();
    }
  });

  test('no model and no jobs: the page says so and the playground waits', async () => {
    const srv = await startMockServer({ model: '' });
    try {
      const { context, page, problems } = await openPage(srv);
      await page.waitForSelector('#jobs-empty:not([hidden])');
      await page.click('a[data-view=playground]');
      await page.waitForSelector('#pg-nomodel:not([hidden])');
      assert.match(await page.textContent('#pg-nomodel'), /No model loaded yet/);
      assert.equal(await page.isDisabled('#pg-generate'), true);
      await page.click('a[data-view=curves]');
      await page.waitForSelector('#curves-empty:not([hidden])');
      await page.click('a[data-view=samples]');
      await page.waitForSelector('#samples-list .empty');
      assert.match(await page.textContent('#serving-chip'), /no model/);
      // A training job shows up in the no-model notice.
      await submitTrainingJob(page, { name: 'quickstart', maxSteps: 300 });
      await page.click('a[data-view=playground]');
      await page.waitForSelector('#pg-nomodel:text("is training")');
      assert.deepEqual(problems.console, []);
      await context.close();
    } finally {
      await srv.close();
    }
  });

  test('with an API key the page asks for it, stores it and sends it', async () => {
    const srv = await startMockServer({ apiKey: 'sekret-k' });
    try {
      const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
      const page = await context.newPage();
      await page.goto(`${srv.url}/`);
      await page.waitForSelector('#key-dialog[open]');
      await page.fill('#key-input', 'sekret-k');
      await page.click('#key-save');
      await page.waitForSelector('#serving-chip:has-text("ktl-tiny-ko")');
      assert.equal(await page.evaluate(() => localStorage.getItem('ktl.apiKey')), 'sekret-k');
      const gen = await generateInPlayground(page, { maxTokens: 5 });
      assert.ok(gen.chunks >= 2);
      // Reload: the stored key is used without asking again.
      await page.reload();
      await page.waitForSelector('#serving-chip:has-text("ktl-tiny-ko")');
      assert.equal(await page.isVisible('#key-dialog[open]'), false);
      await context.close();
    } finally {
      await srv.close();
    }
  });

  test('phone width: nothing overflows sideways', async () => {
    const srv = await startMockServer({ seedJobs: true, stepMs: 40 });
    try {
      const { context, page, problems } = await openPage(srv, { width: 390, height: 844 });
      await page.waitForSelector('#job-list .job-row');
      for (const view of ['jobs', 'curves', 'samples', 'playground', 'serving']) {
        await page.click(`a[data-view=${view}]`);
        await page.waitForTimeout(300);
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 0, `${view} overflows by ${overflow}px at 390px`);
      }
      await page.click('a[data-view=jobs]');
      await screenshot(page, 'mock-jobs-phone.png');
      assert.deepEqual(problems.console, []);
      await context.close();
    } finally {
      await srv.close();
    }
  });
}
