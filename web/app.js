// The Burrow page: model picker and download, chat, settings, storage, install and offline state.
// Replies are untrusted: they are rendered as Markdown with raw HTML off (web/markdown.js), and
// everything else a person or a model wrote is only ever set with textContent.

import { Burrow, DEFAULT_MODEL } from './burrow.js';
import { CATALOGUE } from './catalogue.js';
import * as store from './store.js';
import * as conversations from './conversations.js';
import { renderMarkdown, renderMarkdownSoon } from './markdown.js';

const LAST_MODEL_KEY = 'burrow.lastModel';
// Set while a stored model starts in the engine, cleared when that ends either way: found set on
// start, the last start crashed the tab, so it is not repeated automatically.
const STARTING_KEY = 'burrow.startingModel';
// How often a streaming reply is saved (a tab closed mid-reply keeps what was shown).
const SAVE_INTERVAL_MS = 1000;
// What the person reads when the engine is gone, by its code; reloading reads the stored file.
const LOST_TEXT = {
  'gpu-lost': 'The GPU was reset — reload the model.',
  'too-large': 'The GPU ran out of memory — reload the model, or pick a smaller one.',
  'engine-crashed': 'The engine stopped unexpectedly — reload the model.',
};
const TEMPERATURE_KEY = 'burrow.temperature';
const ENGINE_MISSING_TEXT = 'engine not built (run make serve)';

const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);
const ui = {
  offline: $('offline-indicator'),
  install: $('install'),
  update: $('update-ready'),
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
  reloadModel: $('reload-model'),
  contextNote: $('context-note'),
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
  deleteAll: $('delete-all-data'),
};

let engine = null;
let loadController = null;
// The load in progress (a promise) and its URL.
let loading = null;
let loadingUrl = null;
let generating = false;
// The reply in progress (a promise that settles once it is saved or rolled back).
let replying = null;
let conversation = conversations.create();
let installPrompt = null;
// A download that failed because the phone went offline; resumed when it is back online.
let resumeWhenOnline = null;
// A download that stopped because storage was full; resumed when a model is deleted.
let resumeWhenSpace = null;

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

function setGenerating(on) {
  generating = on;
  ui.stop.hidden = !on;
  // A new chat cannot start while this one is being answered.
  ui.newChat.disabled = on;
  setChatEnabled(Boolean(engine));
}

// Stops the reply in progress, if any, and waits until it is saved.
async function stopReply() {
  if (!replying) return;
  engine?.abort();
  await replying;
}

const describe = (error) => LOST_TEXT[error.code] ?? error.message;

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

function showProgress({ phase, bytes, total, mb_per_sec: mbPerSec, eta_seconds: etaSeconds }) {
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

function loadModel(url) {
  loading = startModel(url).finally(() => {
    loading = null;
    loadingUrl = null;
  });
  return loading;
}

async function startModel(url) {
  // A reply in progress is stopped and saved before its engine goes.
  await stopReply();
  if (engine) {
    await engine.unload();
    engine = null;
  }
  loadingUrl = url;
  localStorage.setItem(LAST_MODEL_KEY, url);
  showError('');
  ui.reloadModel.hidden = true;
  setChatEnabled(false);
  ui.load.disabled = true;
  ui.progress.value = 0;
  ui.downloadText.textContent = 'Connecting…';
  ui.download.hidden = false;
  setStatus('Loading…');
  loadController = new AbortController();
  const wasStored = (await store.get(url))?.complete;
  try {
    const entry = CATALOGUE.find((e) => e.url === url);
    let created = null;
    created = await Burrow.create({
      model: url,
      name: entry && `${entry.name} ${entry.quant}`,
      size: entry?.size,
      onProgress: (progress) => {
        if (progress.phase === 'engine') localStorage.setItem(STARTING_KEY, url);
        showProgress(progress);
      },
      onLost: (error) => engineLost(created, error, url),
      signal: loadController.signal,
    });
    engine = created;
    setStatus(`${engine.model.name} is ready.`);
    setChatEnabled(true);
    // After the first download: ask the browser to keep the models (and the conversations that
    // share their storage) when space runs low; the storage panel says whether it agreed.
    if (!wasStored) await store.persist().catch(() => false);
  } catch (error) {
    if (error.code === 'engine-missing') {
      setStatus(`Model stored; ${ENGINE_MISSING_TEXT}.`);
    } else {
      if (error.code === 'network' && !navigator.onLine) resumeWhenOnline = url;
      if (error.code === 'quota') resumeWhenSpace = url;
      showError(describe(error));
      const meta = await store.get(url);
      if (meta && !meta.complete) showPaused(meta);
      else setStatus('No model loaded.');
    }
  } finally {
    localStorage.removeItem(STARTING_KEY);
    loadController = null;
    ui.load.disabled = false;
    ui.download.hidden = true;
    refreshStorage();
  }
}

// The engine is gone (GPU reset, out of GPU memory, a crash): say so in one sentence and offer
// to load the model again, from storage.
function engineLost(lostEngine, error, url) {
  if (!lostEngine || engine !== lostEngine) return;
  engine = null;
  setChatEnabled(false);
  setStatus('No model loaded.');
  showError(describe(error));
  ui.reloadModel.hidden = false;
  ui.reloadModel.onclick = () => loadModel(url);
}

// On start: reload the last model if it is stored, or say how far its download got. Not after
// a start that never ended: it may have crashed the tab, and would again on every launch.
async function restoreModel() {
  const url = localStorage.getItem(LAST_MODEL_KEY);
  const crashed = localStorage.getItem(STARTING_KEY);
  localStorage.removeItem(STARTING_KEY);
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
  if (meta?.complete && crashed === url) {
    setStatus(`${meta.name} was not loaded automatically: the page closed while it was starting last time. Press Load to try again.`);
  } else if (meta?.complete) {
    await loadModel(url);
  } else if (meta) {
    showPaused(meta);
  }
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
  if (message.role === 'assistant') renderMarkdown(item, message.content);
  else item.textContent = message.content;
  ui.messages.append(item);
  item.scrollIntoView({ block: 'end' });
  return item;
}

function renderConversation() {
  ui.messages.replaceChildren();
  for (const message of conversation.messages) renderMessage(message);
}

// Saves `record` as the current conversation; a failure is shown, not swallowed.
async function saveConversation(record) {
  try {
    conversation = await conversations.save(record);
  } catch (error) {
    showError(`This conversation could not be saved: ${error.message}`);
  }
}

function sendPrompt() {
  const text = ui.prompt.value.trim();
  if (!text || !engine || generating) return null;
  ui.prompt.value = '';
  replying = reply(text).finally(() => {
    replying = null;
  });
  return replying;
}

// One turn: the question and its reply are saved together as the reply streams. A turn that
// produced nothing (an error, a stop before the first token, a prompt too long) is taken back,
// its text returned to the composer, so the saved roles keep alternating.
async function reply(text) {
  const base = conversation;
  const turn = { role: 'user', content: text };
  const answer = { role: 'assistant', content: '' };
  const turnItem = renderMessage(turn);
  const item = renderMessage(answer);
  const record = () => ({ ...conversation, messages: [...base.messages, turn, { ...answer }] });
  let saving = Promise.resolve();
  const save = () => {
    saving = saving.then(() => saveConversation(record()));
    return saving;
  };
  let savedAt = Date.now();
  showError('');
  ui.contextNote.hidden = true;
  ui.tokensPerSecond.textContent = '';
  setGenerating(true);
  try {
    const stream = await engine.chat.completions.create({
      messages: [...base.messages, turn].map(({ role, content }) => ({ role, content })),
      stream: true,
      temperature: Number(ui.temperature.value),
    });
    for await (const chunk of stream) {
      answer.content += chunk.choices[0].delta.content ?? '';
      renderMarkdownSoon(item, answer.content);
      if (answer.content && Date.now() - savedAt >= SAVE_INTERVAL_MS) {
        savedAt = Date.now();
        save();
      }
      if (chunk.tokens_per_second) ui.tokensPerSecond.textContent = `${chunk.tokens_per_second.toFixed(1)} tokens/s`;
      // A stable hook for external checks: the reply's token ids.
      if (chunk.token_ids) item.dataset.tokenIds = chunk.token_ids.join(',');
      if (chunk.dropped_messages) {
        ui.contextNote.textContent = `The ${chunk.dropped_messages} oldest messages no longer fit in the model's context, so this reply did not see them.`;
        ui.contextNote.hidden = false;
      }
    }
  } catch (error) {
    showError(describe(error));
  } finally {
    renderMarkdown(item, answer.content);
    setGenerating(false);
    if (answer.content) {
      await save();
    } else {
      await saving;
      turnItem.remove();
      item.remove();
      if (!ui.prompt.value) ui.prompt.value = text;
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
  ui.contextNote.hidden = true;
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
  await stopReply();
  // A download of this model stops first: it must not write its chunks back after the delete.
  const wasLoading = loadingUrl === url;
  if (wasLoading) {
    loadController?.abort();
    await loading;
  }
  if (engine?.model?.url === url) {
    await engine.unload();
    engine = null;
    setChatEnabled(false);
    setStatus('No model loaded.');
  }
  try {
    await store.delete(url);
    if (wasLoading) {
      showError('');
      setStatus('No model loaded.');
    }
  } catch (error) {
    showError(error.message);
  }
  await refreshStorage();
  if (resumeWhenSpace && resumeWhenSpace !== url && !loading) {
    const next = resumeWhenSpace;
    resumeWhenSpace = null;
    loadModel(next);
  }
}

// Everything Burrow keeps on this device (models, conversations, the app's caches and service
// worker, settings) is deleted, once the person confirms. Nothing is reloaded: the page stays
// usable, and the next visit starts as a first one.
ui.deleteAll.addEventListener('click', async () => {
  if (!window.confirm('Delete all of Burrow\'s data on this device: every model, every conversation and the settings? This cannot be undone.')) return;
  await stopReply();
  if (loading) {
    loadController?.abort();
    await loading;
  }
  await engine?.unload();
  engine = null;
  setChatEnabled(false);
  try {
    await store.deleteAll();
    const names = await caches.keys();
    await Promise.all(names.map((name) => caches.delete(name)));
    const registrations = await navigator.serviceWorker?.getRegistrations() ?? [];
    await Promise.all(registrations.map((registration) => registration.unregister()));
    localStorage.clear();
    conversation = conversations.create();
    renderConversation();
    ui.temperature.value = ui.temperature.defaultValue;
    showError('');
    setStatus('All of Burrow\'s data on this device was deleted.');
  } catch (error) {
    showError(`Not everything could be deleted: ${error.message}`);
  }
  await refreshStorage();
});

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

// A new version of the app (its service worker installed and waiting) is offered, and switched to
// only when the person accepts: a reply in progress is stopped and saved first, then the page
// reloads on the new version.
function offerUpdates(registration) {
  const offer = (worker) => {
    // The first install has nothing to replace.
    if (!worker || !navigator.serviceWorker.controller) return;
    ui.update.hidden = false;
    ui.update.onclick = async () => {
      ui.update.disabled = true;
      await stopReply();
      navigator.serviceWorker.addEventListener('controllerchange', () => location.reload(), { once: true });
      worker.postMessage({ type: 'skip-waiting' });
    };
  };
  offer(registration.waiting);
  registration.addEventListener('updatefound', () => {
    const worker = registration.installing;
    worker?.addEventListener('statechange', () => {
      if (worker.state === 'installed') offer(worker);
    });
  });
}

// --- start ---------------------------------------------------------------------------------

async function start() {
  fillPicker();
  updateOnline();
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('web/sw.js', { scope: './' }).then(offerUpdates, (error) => showError(`Offline mode is unavailable: ${error.message}`));
  }
  conversation = (await conversations.latest()) ?? conversation;
  renderConversation();
  await refreshStorage();
  await restoreModel();
}

start().catch((error) => showError(error.message));
