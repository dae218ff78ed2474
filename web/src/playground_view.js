// Playground: prompt + sampling controls, output streamed token by token from /v1/completions,
// with time to first token and decode tokens/s. Chat mode: a system prompt and a message list
// sent to /v1/chat/completions (the server renders the checkpoint's chat template and stops at
// its end-of-turn token); each answer streams into the list and joins the conversation.
// The model selector lists the base and each LoRA adapter loaded beside it; the choice is sent
// as "model" (the server routes the request to that adapter). The Adapters card loads/unloads.
import * as api from './api.js';
import { store } from './store.js';
import { h, clear, fmtNum, toast } from './util.js';
import { AdaptersCard } from './adapters_card.js';

const PROMPT_KEY = 'ktl.playground';

export class PlaygroundView {
  constructor(root) {
    this.root = root;
    this.ctrl = null;
    this.build();
    this.restore();
    store.on('models', () => this.renderModels());
    store.on('jobs', () => this.renderModels());
  }

  build() {
    const range = (id, label, min, max, step, value) => {
      const out = h('output', { class: 'mono' }, String(value));
      const input = h('input', { id, type: 'range', min, max, step, value, oninput: () => (out.textContent = input.value) });
      return h('label', { class: 'field' }, h('span', { class: 'field-row' }, label, out), input);
    };
    const num = (id, label, value, attrs = {}) => h('label', { class: 'field' }, h('span', {}, label), h('input', { id, type: 'number', value, ...attrs }));
    this.model = h('select', { id: 'pg-model', 'aria-label': 'Model' });
    this.history = []; // chat mode: [{role, content}] of the finished turns
    this.mode = h(
      'select',
      { id: 'pg-mode', 'aria-label': 'Mode', onchange: () => this.renderMode() },
      h('option', { value: 'completion' }, 'Completion'),
      h('option', { value: 'chat' }, 'Chat'),
    );
    this.system = h('textarea', { id: 'pg-system', class: 'ko', rows: 2, spellcheck: 'false', placeholder: '시스템 프롬프트 (선택)' });
    this.systemField = h('label', { class: 'field', hidden: true }, h('span', {}, 'System prompt'), this.system);
    this.messages = h('div', { class: 'pg-messages ko', id: 'pg-messages', hidden: true });
    this.clearButton = h('button', { type: 'button', class: 'btn btn-ghost', id: 'pg-clear', hidden: true, onclick: () => this.clearChat() }, 'Clear chat');
    this.prompt = h('textarea', { id: 'pg-prompt', class: 'ko', rows: 5, spellcheck: 'false', placeholder: '프롬프트를 입력하세요…' });
    this.prompt.value = '대한민국의 수도는';
    this.prompt.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) this.generate();
    });
    this.genButton = h('button', { type: 'button', class: 'btn btn-primary', id: 'pg-generate', onclick: () => this.generate() }, 'Generate');
    this.stopButton = h('button', { type: 'button', class: 'btn btn-ghost', id: 'pg-stop', disabled: true, onclick: () => this.stop() }, 'Stop');
    this.noModel = h('div', { class: 'notice', id: 'pg-nomodel', hidden: true });
    this.outPrompt = h('span', { class: 'pg-prompt' });
    this.outText = h('span', { class: 'pg-text', id: 'pg-text' });
    this.output = h('div', { class: 'pg-output ko', id: 'pg-output', 'data-chunks': '0', 'aria-live': 'polite' }, this.outPrompt, this.outText);
    const stat = (id, label) => h('div', { class: 'metric' }, h('span', { class: 'muted small' }, label), h('span', { class: 'mono', id }, '–'));
    this.adapters = new AdaptersCard('pg');
    this.root.append(
      this.noModel,
      h(
        'div',
        { class: 'pg-grid' },
        h(
          'div',
          { class: 'card pg-controls' },
          h('div', { class: 'card-head' }, h('h2', {}, 'Playground'), h('div', { class: 'controls' }, this.mode, this.model)),
          this.systemField,
          h('label', { class: 'field' }, h('span', { id: 'pg-prompt-label' }, 'Prompt'), this.prompt),
          h(
            'div',
            { class: 'form-grid' },
            range('pg-temperature', 'Temperature', 0, 2, 0.05, 0.8),
            range('pg-top-p', 'Top-p', 0, 1, 0.01, 0.95),
            num('pg-top-k', 'Top-k', 40, { min: 0, step: 1 }),
            num('pg-max-tokens', 'Max tokens', 64, { min: 1, step: 1 }),
            num('pg-seed', 'Seed', '', { placeholder: 'random', step: 1 }),
            h('label', { class: 'field' }, h('span', {}, 'Stop (one per line)'), h('textarea', { id: 'pg-stop-seqs', rows: 1, spellcheck: 'false' })),
          ),
          h('div', { class: 'row-end' }, h('span', { class: 'muted small hint' }, 'Ctrl+Enter'), this.clearButton, this.stopButton, this.genButton),
        ),
        h(
          'div',
          { class: 'card pg-result' },
          h('div', { class: 'card-head' }, h('h2', {}, 'Output'), h('span', { class: 'muted small', id: 'pg-state' }, '')),
          this.messages,
          this.output,
          h('div', { class: 'metrics-row' }, stat('pg-ttft', 'TTFT'), stat('pg-tps', 'tokens/s'), stat('pg-tokens', 'tokens'), stat('pg-finish', 'finish')),
        ),
      ),
      this.adapters.el,
    );
  }

  chatMode() {
    return this.mode.value === 'chat';
  }

  renderMode() {
    const chat = this.chatMode();
    this.systemField.hidden = !chat;
    this.messages.hidden = !chat;
    this.clearButton.hidden = !chat;
    this.output.hidden = chat;
    this.root.querySelector('#pg-prompt-label').textContent = chat ? 'Message' : 'Prompt';
    this.genButton.textContent = chat ? 'Send' : 'Generate';
    this.renderMessages();
  }

  clearChat() {
    this.history = [];
    this.renderMessages();
  }

  /** The conversation so far, plus the turn being answered (`pending`: {user, answer}). */
  renderMessages(pending) {
    const bubble = (role, text, extra = {}) => h('div', { class: `pg-msg pg-msg-${role}`, 'data-role': role, ...extra }, h('div', { class: 'pg-msg-role muted small' }, role), h('div', { class: 'pg-msg-text' }, text));
    clear(this.messages);
    if (this.system.value.trim()) this.messages.append(bubble('system', this.system.value.trim()));
    for (const m of this.history) this.messages.append(bubble(m.role, m.content));
    if (pending) {
      this.messages.append(bubble('user', pending.user));
      this.pendingText = bubble('assistant', pending.answer, { id: 'pg-pending' });
      this.messages.append(this.pendingText);
    }
    if (!this.messages.childElementCount) this.messages.append(h('div', { class: 'muted small' }, 'No messages yet: write one and press Send.'));
  }

  restore() {
    try {
      const saved = JSON.parse(localStorage.getItem(PROMPT_KEY) || 'null');
      if (saved && typeof saved.prompt === 'string') this.prompt.value = saved.prompt;
    } catch {
      /* nothing saved */
    }
  }

  show() {
    this.renderModels();
  }

  renderModels() {
    const models = store.models;
    const current = this.model.value;
    const sig = JSON.stringify(store.modelChoices);
    if (sig !== this.modelSig) {
      // Rebuilt only on change: an open <select> would close under the user every poll.
      this.modelSig = sig;
      clear(this.model).append(...store.modelChoices.map((m) => h('option', { value: m.id, selected: m.id === current, 'data-parent': m.parent || null }, m.label)));
    }
    this.model.hidden = models.length === 0;
    const none = models.length === 0;
    this.noModel.hidden = !none;
    if (none) {
      const training = store.jobs.find((j) => j.status === 'running' || j.status === 'queued');
      clear(this.noModel).append(
        h('strong', {}, 'No model loaded yet'),
        training
          ? ` — job #${training.id} “${training.name}” is training; ${/quickstart/i.test(training.name) ? 'it will appear here when it finishes.' : 'load its checkpoint from Jobs (“Load model”) and it will appear here.'}`
          : h('span', {}, ' — train one in ', h('a', { href: '#jobs' }, 'Jobs'), ' and press “Load model”, or start the server with ', h('code', {}, 'ktl serve --model DIR'), '.'),
      );
    }
    this.genButton.disabled = none || !!this.ctrl;
  }

  params() {
    const v = (id) => this.root.querySelector(`#${id}`).value.trim();
    const p = {
      model: this.model.value || undefined,
      prompt: this.prompt.value,
      max_tokens: Number(v('pg-max-tokens')) || 64,
      temperature: Number(v('pg-temperature')),
      top_p: Number(v('pg-top-p')),
      top_k: Number(v('pg-top-k')) || 0,
    };
    if (v('pg-seed') !== '') p.seed = Number(v('pg-seed'));
    const stops = this.root.querySelector('#pg-stop-seqs').value.split('\n').filter((s) => s !== '');
    if (stops.length) p.stop = stops.map((s) => s.replace(/\\n/g, '\n'));
    return p;
  }

  setStat(id, text) {
    this.root.querySelector(`#${id}`).textContent = text;
  }

  async generate() {
    if (this.ctrl || this.genButton.disabled) return;
    const params = this.params();
    if (!params.prompt) {
      toast(this.chatMode() ? 'Write a message first.' : 'Write a prompt first.', 'error');
      return;
    }
    const chat = this.chatMode();
    const userText = params.prompt;
    if (chat) {
      const system = this.system.value.trim();
      params.messages = [...(system ? [{ role: 'system', content: system }] : []), ...this.history, { role: 'user', content: userText }];
      delete params.prompt;
    }
    try {
      localStorage.setItem(PROMPT_KEY, JSON.stringify({ prompt: params.prompt }));
    } catch {
      /* storage disabled */
    }
    const ctrl = new AbortController();
    this.ctrl = ctrl;
    this.genButton.disabled = true;
    this.stopButton.disabled = false;
    this.output.classList.add('streaming');
    this.output.classList.remove('error');
    this.outPrompt.textContent = chat ? '' : params.prompt;
    this.outText.textContent = '';
    let answer = '';
    if (chat) this.renderMessages({ user: userText, answer: '' });
    this.output.dataset.chunks = '0';
    for (const id of ['pg-ttft', 'pg-tps', 'pg-tokens', 'pg-finish']) this.setStat(id, '–');
    this.setStat('pg-state', 'waiting for the first token…');

    const t0 = performance.now();
    let first = null;
    let last = null;
    let tokens = 0;
    let chunks = 0;
    let finish = null;
    let usage = null;
    const update = () => {
      this.setStat('pg-tokens', String(usage?.completion_tokens ?? tokens));
      if (first !== null) this.setStat('pg-ttft', `${fmtNum(first - t0, 3)} ms`);
      const n = usage?.completion_tokens ?? tokens;
      if (n > 1 && last > first) this.setStat('pg-tps', fmtNum(((n - 1) * 1000) / (last - first), 3));
    };
    try {
      await this.refreshModelIfStale(params);
      await (chat ? api.streamChat : api.streamCompletion)(
        params,
        (c) => {
          if (c.usage) usage = c.usage;
          if (c.finishReason) finish = c.finishReason;
          if (c.text) {
            const now = performance.now();
            if (first === null) {
              first = now;
              this.setStat('pg-state', 'streaming…');
            }
            last = now;
            tokens++;
            chunks++;
            this.outText.textContent += c.text;
            answer += c.text;
            if (chat) this.pendingText.querySelector('.pg-msg-text').textContent = answer;
            this.output.dataset.chunks = String(chunks);
          }
          update();
        },
        ctrl.signal,
      );
      this.setStat('pg-finish', finish || '–');
      if (chat) {
        this.history.push({ role: 'user', content: userText }, { role: 'assistant', content: answer });
        this.prompt.value = '';
        this.renderMessages();
      }
      this.setStat('pg-state', `done in ${fmtNum((performance.now() - t0) / 1000, 3)} s`);
    } catch (e) {
      if (ctrl.signal.aborted) {
        this.setStat('pg-finish', 'stopped');
        this.setStat('pg-state', 'stopped');
      } else {
        this.output.classList.add('error');
        this.setStat('pg-state', `error: ${e.message}`);
        toast(`Generation failed: ${e.message}`, 'error');
      }
    } finally {
      update();
      this.output.classList.remove('streaming');
      this.ctrl = null;
      this.stopButton.disabled = true;
      this.renderModels();
    }
  }

  /** Right after a model switch the list may lag: ask again before naming a model. */
  async refreshModelIfStale(params) {
    const served = store.serving && store.serving.model;
    if (!params.model || !served || served === params.model) return;
    const choice = store.modelChoices.find((m) => m.id === params.model);
    if (choice && choice.parent === served) return; // an adapter of the served base
    const models = await store.refreshModels().catch(() => store.models);
    if (!models.includes(params.model)) params.model = models[0];
  }

  stop() {
    if (this.ctrl) this.ctrl.abort();
  }
}
