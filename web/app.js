// The Burrow page: model picker and download, chat, settings, storage, install and offline state.
// Model text is only ever set with textContent: replies are untrusted.

import { Burrow, DEFAULT_MODEL } from './burrow.js';
import { CATALOGUE } from './catalogue.js';
import * as store from './store.js';
import * as conversations from './conversations.js';

const LAST_MODEL_KEY = 'burrow.lastModel';
const TEMPERATURE_KEY = 'burrow.temperature';
const ENGINE_MISSING_TEXT = 'engine not built (run make serve)';

const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);
const ui = {
  offline: $('offline-indicator'),
  install: $('install'),
  modelForm: $('model-form'),
  picker: $('model-picker'),
  modelUrl: $('model-url'),
  load: $('load'),
  download: $('download'),
  progress: $('download-progress'),
  downloadText: $('download-text'),
  cancelDownload: $('cancel-download'),
  status: $('model-status'),
  error: $('error'),
  messages: $('messages'),
  chatForm: $('chat-form'),
  prompt: $('prompt-input'),
  send: $('send'),
  stop: $('stop'),
  newChat: $('new-chat'),
  tokensPerSecond: $('tokens-per-second'),
  temperature: $('temperature'),
  storageUsage: $('storage-usage'),
  persist: $('persist'),
  persistStatus: $('persist-status'),
  storedModels: $('stored-models'),
};

let engine = null;
let loadController = null;
let generating = false;
let conversation = conversations.create();
let installPrompt = null;
// A download that failed because the phone went offline; resumed when it is back online.
let resumeWhenOnline = null;

const defaultUrl = () => new URL(DEFAULT_MODEL.url, location.href).href;
const formatMb = (bytes) => `${store.megabytes(bytes)} MB`;
const GB = 1e9;
const formatSize = (bytes) => (bytes >= GB ? `${(bytes / GB).toFixed(1)} GB` : formatMb(bytes));

// No-break spaces keep "2 s left" and "3.1 MB/s" whole when the line wraps on a phone.
const NBSP = '\u00a0';

function formatEta(seconds) {
  if (seconds === null || !Number.isFinite(seconds)) return '';
  if (seconds < 60) return `${Math.ceil(seconds)}${NBSP}s${NBSP}left`;
  return `${Math.floor(seconds / 60)}${NBSP}min ${Math.ceil(seconds % 60)}${NBSP}s${NBSP}left`;
}

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = !message;
}

function setStatus(text) {
  ui.status.textContent = text;
}

function setChatEnabled(enabled) {
  ui.prompt.disabled = !enabled;
  ui.send.disabled = !enabled || generating;
}

// --- model ---------------------------------------------------------------------------------

// The catalogue's entries in the picker, between the default model and "paste a URL".
function fillPicker() {
  const custom = ui.picker.querySelector('option[value="custom"]');
  CATALOGUE.forEach((entry, index) => {
    const option = document.createElement('option');
    option.value = `catalogue-${index}`;
    option.textContent = `${entry.name} ${entry.quant} (${formatSize(entry.size)}, ${entry.suits})`;
    ui.picker.insertBefore(option, custom);
  });
}

const catalogueEntry = () => CATALOGUE[Number(/^catalogue-(\d+)$/.exec(ui.picker.value)?.[1] ?? NaN)];

function selectedModelUrl() {
  if (ui.picker.value === 'default') return defaultUrl();
  const entry = catalogueEntry();
  if (entry) return entry.url;
  const text = ui.modelUrl.value.trim();
  let url;
  try {
    url = new URL(text, location.href);
  } catch {
    return null;
  }
  return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
}

function showProgress({ phase, bytes, total, mbPerSec, etaSeconds }) {
  ui.download.hidden = false;
  ui.progress.value = total ? bytes / total : 0;
  setStatus(phase === 'engine' ? 'Starting the engine…' : 'Downloading the model…');
  if (phase === 'engine') {
    ui.downloadText.textContent = `Starting the engine: ${formatMb(bytes)} of ${formatMb(total)}`;
    return;
  }
  const rate = mbPerSec ? ` · ${mbPerSec.toFixed(1)}${NBSP}MB/s` : '';
  const eta = formatEta(etaSeconds);
  ui.downloadText.textContent = `${formatMb(bytes)} of ${formatMb(total)}${rate}${eta ? ` · ${eta}` : ''}`;
}

async function loadModel(url) {
  if (engine) {
    await engine.unload();
    engine = null;
  }
  localStorage.setItem(LAST_MODEL_KEY, url);
  showError('');
  setChatEnabled(false);
  ui.load.disabled = true;
  ui.progress.value = 0;
  ui.downloadText.textContent = 'Connecting…';
  ui.download.hidden = false;
  setStatus('Loading…');
  loadController = new AbortController();
  try {
    const entry = CATALOGUE.find((e) => e.url === url);
    engine = await Burrow.create({
      model: url,
      name: entry && `${entry.name} ${entry.quant}`,
      size: entry?.size,
      onProgress: showProgress,
      signal: loadController.signal,
    });
    setStatus(`${engine.model.name} is ready.`);
    setChatEnabled(true);
  } catch (error) {
    if (error.code === 'engine-missing') {
      setStatus(`Model stored; ${ENGINE_MISSING_TEXT}.`);
    } else {
      if (error.code === 'network' && !navigator.onLine) resumeWhenOnline = url;
      showError(error.message);
      const meta = await store.get(url);
      if (meta && !meta.complete) showPaused(meta);
      else setStatus('No model loaded.');
    }
  } finally {
    loadController = null;
    ui.load.disabled = false;
    ui.download.hidden = true;
    refreshStorage();
  }
}

// On start: reload the last model if it is stored, or say how far its download got.
async function restoreModel() {
  const url = localStorage.getItem(LAST_MODEL_KEY);
  if (!url) return;
  const index = CATALOGUE.findIndex((entry) => entry.url === url);
  if (index >= 0) {
    ui.picker.value = `catalogue-${index}`;
  } else if (url !== defaultUrl()) {
    ui.picker.value = 'custom';
    ui.modelUrl.hidden = false;
    ui.modelUrl.value = url;
  }
  const meta = await store.get(url);
  if (meta?.complete) await loadModel(url);
  else if (meta) showPaused(meta);
}

function showPaused(meta) {
  const done = Math.min(meta.size, meta.chunksDone * meta.chunkSize);
  setStatus(`Download paused at ${formatMb(done)} of ${formatMb(meta.size)}. Press Load to resume.`);
}

ui.picker.addEventListener('change', () => {
  ui.modelUrl.hidden = ui.picker.value !== 'custom';
  if (!ui.modelUrl.hidden) ui.modelUrl.focus();
});

ui.modelForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const url = selectedModelUrl();
  if (!url) {
    showError('Enter an http(s) URL of a .gguf file.');
    return;
  }
  loadModel(url);
});

ui.cancelDownload.addEventListener('click', () => loadController?.abort());

// --- chat ----------------------------------------------------------------------------------

function renderMessage(message) {
  const item = document.createElement('li');
  item.className = `message ${message.role}`;
  item.dataset.testid = `${message.role}-message`;
  item.textContent = message.content;
  ui.messages.append(item);
  item.scrollIntoView({ block: 'end' });
  return item;
}

function renderConversation() {
  ui.messages.replaceChildren();
  for (const message of conversation.messages) renderMessage(message);
}

async function sendPrompt() {
  const text = ui.prompt.value.trim();
  if (!text || !engine || generating) return;
  ui.prompt.value = '';
  conversation.messages.push({ role: 'user', content: text });
  renderMessage({ role: 'user', content: text });
  conversation = await conversations.save(conversation);

  const reply = { role: 'assistant', content: '' };
  const item = renderMessage(reply);
  generating = true;
  setChatEnabled(true);
  ui.stop.hidden = false;
  ui.tokensPerSecond.textContent = '';
  try {
    const stream = await engine.chat.completions.create({
      messages: conversation.messages.map(({ role, content }) => ({ role, content })),
      stream: true,
      temperature: Number(ui.temperature.value),
    });
    for await (const chunk of stream) {
      reply.content += chunk.choices[0].delta.content ?? '';
      item.textContent = reply.content;
      if (chunk.tokens_per_second) ui.tokensPerSecond.textContent = `${chunk.tokens_per_second.toFixed(1)} tokens/s`;
      // A stable hook for external checks: the reply's token ids.
      if (chunk.token_ids) item.dataset.tokenIds = chunk.token_ids.join(',');
    }
  } catch (error) {
    showError(error.message);
  } finally {
    generating = false;
    ui.stop.hidden = true;
    setChatEnabled(Boolean(engine));
    if (reply.content) {
      conversation.messages.push(reply);
      conversation = await conversations.save(conversation);
    } else {
      item.remove();
    }
  }
}

ui.chatForm.addEventListener('submit', (event) => {
  event.preventDefault();
  sendPrompt();
});

ui.prompt.addEventListener('keydown', (event) => {
  // Enter sends, Shift+Enter adds a line (as in most chat apps).
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendPrompt();
  }
});

ui.stop.addEventListener('click', () => engine?.abort());

ui.newChat.addEventListener('click', () => {
  if (generating) return;
  conversation = conversations.create();
  renderConversation();
});

ui.temperature.value = localStorage.getItem(TEMPERATURE_KEY) ?? ui.temperature.value;
ui.temperature.addEventListener('change', () => {
  const value = Number(ui.temperature.value);
  if (Number.isFinite(value) && value >= 0) localStorage.setItem(TEMPERATURE_KEY, String(value));
});

// --- storage -------------------------------------------------------------------------------

async function refreshStorage() {
  const [{ usage = 0, quota = 0 }, persisted, models] = await Promise.all([store.estimate(), store.persisted(), store.list()]);
  ui.storageUsage.textContent = `${formatSize(usage)} used of ${formatSize(quota)} available to Burrow.`;
  ui.persistStatus.textContent = persisted ? 'Models are kept even when space runs low.' : 'The browser may remove models when space runs low.';
  ui.persist.hidden = persisted;
  ui.storedModels.replaceChildren(...models.map((meta) => {
    const item = document.createElement('li');
    item.dataset.testid = 'stored-model';
    item.dataset.url = meta.url;
    const label = document.createElement('span');
    const state = meta.complete ? formatMb(meta.size) : `partial: ${formatMb(Math.min(meta.size, meta.chunksDone * meta.chunkSize))} of ${formatMb(meta.size)}`;
    label.textContent = `${meta.name} (${state})`;
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'small secondary';
    remove.dataset.testid = 'delete-model';
    remove.textContent = 'Delete';
    remove.addEventListener('click', () => deleteModel(meta.url));
    item.append(label, remove);
    return item;
  }));
}

async function deleteModel(url) {
  if (engine?.model?.url === url) {
    await engine.unload();
    engine = null;
    setChatEnabled(false);
    setStatus('No model loaded.');
  }
  await store.delete(url);
  await refreshStorage();
}

ui.persist.addEventListener('click', async () => {
  await store.persist();
  await refreshStorage();
});

// --- install and offline -------------------------------------------------------------------

window.addEventListener('beforeinstallprompt', (event) => {
  // Keep the browser's prompt for our own button, shown only when installing is possible.
  event.preventDefault();
  installPrompt = event;
  ui.install.hidden = false;
});

ui.install.addEventListener('click', async () => {
  if (!installPrompt) return;
  installPrompt.prompt();
  await installPrompt.userChoice;
  installPrompt = null;
  ui.install.hidden = true;
});

window.addEventListener('appinstalled', () => {
  ui.install.hidden = true;
});

function updateOnline() {
  ui.offline.hidden = navigator.onLine;
}
window.addEventListener('online', () => {
  updateOnline();
  const url = resumeWhenOnline;
  resumeWhenOnline = null;
  if (url && !loadController) loadModel(url);
});
window.addEventListener('offline', updateOnline);

// --- start ---------------------------------------------------------------------------------

async function start() {
  fillPicker();
  updateOnline();
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('web/sw.js', { scope: './' }).catch((error) => showError(`Offline mode is unavailable: ${error.message}`));
  }
  conversation = (await conversations.latest()) ?? conversation;
  renderConversation();
  await refreshStorage();
  await restoreModel();
}

start().catch((error) => showError(error.message));
