// The Burrow page: model picker and download, chat, settings, storage, install and offline state.
// Replies are untrusted: they are rendered as Markdown with raw HTML off (web/markdown.js), and
// everything else a person or a model wrote is only ever set with textContent.

import { Burrow, DEFAULT_MODEL } from './burrow.js';
import { CATALOGUE, downloadSize } from './catalogue.js';
import * as store from './store.js';
import * as conversations from './conversations.js';
import { renderMarkdown, renderMarkdownSoon } from './markdown.js';
import { checkDevice } from './device.js';
import { dataUrl, imageSize, imageType, READABLE_FORMATS } from './images.js';

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
const SYSTEM_PROMPT_KEY = 'burrow.systemPrompt';
const PHOTO_DETAIL_KEY = 'burrow.photoDetail';
// The most tokens a photo becomes, by the "Photo detail" setting, for models that size photos to a
// budget (Qwen2.5-VL; SmolVLM's tiles are fixed). Standard leaves the engine's phone default
// (1024 tokens, about 0.8 megapixels); High is llama.cpp's own default.
const PHOTO_DETAIL_TOKENS = { standard: undefined, high: 4096 };
// The conversation open last, reopened on the next visit.
const CONVERSATION_KEY = 'burrow.conversation';
const ENGINE_MISSING_TEXT = 'engine not built (run make serve)';
// Photos one message may carry: each takes up to 1,088 tokens of a SmolVLM context (web/catalogue.js).
const MAX_IMAGES_PER_MESSAGE = 4;
// A photo's first bytes read to tell its format and size (a JPEG's size follows its EXIF data,
// at most 64 KB, and sometimes a colour profile).
const IMAGE_HEADER_BYTES = 256 * 1024;
// Larger photos get a placeholder instead of a preview: decoding one takes hundreds of MB, more
// than a phone's tab can spare (the engine refuses them anyway, at 50 megapixels).
const PREVIEW_MAX_PIXELS = 50_000_000;

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
  attach: $('attach-image'),
  imageInput: $('image-input'),
  pendingImages: $('pending-images'),
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
  systemPrompt: $('system-prompt'),
  photoDetail: $('photo-detail'),
  conversationSystem: $('conversation-system'),
  editing: $('editing'),
  cancelEdit: $('cancel-edit'),
  openConversations: $('open-conversations'),
  conversationsDialog: $('conversations'),
  closeConversations: $('close-conversations'),
  newConversation: $('new-conversation'),
  noConversations: $('no-conversations'),
  conversationList: $('conversation-list'),
  modelHeader: $('model-header'),
  modelName: $('model-name'),
  switchModel: $('switch-model'),
  setup: document.getElementById('setup'),
  welcome: $('welcome'),
  modelCost: $('model-cost'),
};

let engine = null;
let loadController = null;
// The load in progress (a promise), its model's URL and every file it stores (the model, and a
// vision model's projector).
let loading = null;
let loadingUrl = null;
let loadingFiles = [];
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
  // Photos only for a model that reads them.
  ui.attach.hidden = !engine?.model.vision;
  ui.attach.disabled = !enabled;
}

function setGenerating(on) {
  generating = on;
  // Stop takes Send's place while a reply streams.
  ui.stop.hidden = !on;
  ui.send.hidden = on;
  // A new chat cannot start while this one is being answered.
  ui.newChat.disabled = on;
  ui.newConversation.disabled = on;
  setChatEnabled(Boolean(engine));
  updateActions();
}

// The model card and settings, shown in full until a model is ready, then folded into one line
// (name, tokens/s, "Change model") so the chat gets the screen.
function setSetupOpen(open) {
  ui.setup.hidden = !open;
  ui.switchModel.setAttribute('aria-expanded', String(open));
  ui.switchModel.textContent = open ? 'Back to chat' : 'Change';
  ui.switchModel.setAttribute('aria-label', open ? 'Back to chat' : 'Change the model or settings');
}

function setEngine(value) {
  engine = value;
  ui.modelHeader.hidden = !engine;
  ui.modelName.textContent = engine?.model.name ?? '';
  setSetupOpen(!engine);
  setChatEnabled(Boolean(engine));
  updateActions();
}

ui.switchModel.addEventListener('click', () => setSetupOpen(ui.setup.hidden));

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
    option.textContent = `${entry.name} ${entry.quant} (${formatSize(downloadSize(entry))}, ${entry.suits}${entry.vision ? ', reads images' : ''})`;
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

// One file's progress at a time: a vision model's two files say which one each is.
function showProgress({ phase, file, bytes, total, mb_per_sec: mbPerSec, eta_seconds: etaSeconds }) {
  ui.download.hidden = false;
  ui.progress.value = total ? bytes / total : 0;
  const projector = file === 'mmproj';
  const which = loadingFiles.length > 1 ? (projector ? 'Vision projector: ' : 'Model: ') : '';
  if (phase === 'engine') {
    setStatus('Starting the engine…');
    ui.downloadText.textContent = `Starting the engine: ${projector ? 'vision projector, ' : ''}${formatMb(bytes)} of ${formatMb(total)}`;
    return;
  }
  setStatus(projector ? 'Downloading the vision projector…' : 'Downloading the model…');
  const rate = mbPerSec ? ` · ${mbPerSec.toFixed(1)}${NBSP}MB/s` : '';
  const eta = formatEta(etaSeconds);
  ui.downloadText.textContent = `${which}${formatMb(bytes)} of ${formatMb(total)}${rate}${eta ? ` · ${eta}` : ''}`;
}

function loadModel(url) {
  loading = startModel(url).finally(() => {
    loading = null;
    loadingUrl = null;
    loadingFiles = [];
  });
  return loading;
}

async function startModel(url) {
  // A reply in progress is stopped and saved before its engine goes.
  await stopReply();
  if (engine) {
    await engine.unload();
    setEngine(null);
  }
  const entry = CATALOGUE.find((e) => e.url === url);
  const mmproj = entry?.mmproj;
  loadingUrl = url;
  loadingFiles = mmproj ? [url, mmproj.url] : [url];
  localStorage.setItem(LAST_MODEL_KEY, url);
  showError('');
  ui.reloadModel.hidden = true;
  ui.welcome.hidden = true;
  setChatEnabled(false);
  ui.load.disabled = true;
  ui.progress.value = 0;
  ui.downloadText.textContent = 'Connecting…';
  ui.download.hidden = false;
  setStatus('Loading…');
  loadController = new AbortController();
  const wasStored = (await Promise.all(loadingFiles.map(store.get))).every((meta) => meta?.complete);
  try {
    let created = null;
    created = await Burrow.create({
      model: url,
      name: entry && `${entry.name} ${entry.quant}`,
      size: entry?.size,
      mmproj: mmproj?.url,
      mmprojSize: mmproj?.size,
      contextLength: entry?.contextLength,
      onProgress: (progress) => {
        if (progress.phase === 'engine') localStorage.setItem(STARTING_KEY, url);
        showProgress(progress);
      },
      onLost: (error) => engineLost(created, error, url),
      signal: loadController.signal,
    });
    setEngine(created);
    setStatus(engine.model.vision ? `${engine.model.name} is ready; it reads photos.` : `${engine.model.name} is ready.`);
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
      const partial = (await Promise.all(loadingFiles.map(store.get))).find((meta) => meta && !meta.complete);
      if (partial) showPaused(partial);
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
  setEngine(null);
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
  // A vision model starts by itself only with its projector stored too: nothing is downloaded
  // without the person pressing Load.
  const projector = CATALOGUE[index]?.mmproj ? await store.get(CATALOGUE[index].mmproj.url) : undefined;
  if (meta?.complete && crashed === url) {
    setStatus(`${meta.name} was not loaded automatically: the page closed while it was starting last time. Press Load to try again.`);
  } else if (meta?.complete && projector !== undefined && !projector?.complete) {
    if (projector) showPaused(projector);
    else setStatus(`${meta.name} is stored, but not its vision projector. Press Load to download it.`);
  } else if (meta?.complete) {
    await loadModel(url);
  } else if (meta) {
    showPaused(meta);
  }
}

function showPaused(meta) {
  const done = Math.min(meta.size, meta.chunksDone * meta.chunkSize);
  const what = store.isProjector(meta) ? 'The vision projector\'s download' : 'Download';
  setStatus(`${what} paused at ${formatMb(done)} of ${formatMb(meta.size)}. Press Load to resume.`);
}

ui.picker.addEventListener('change', () => {
  ui.modelUrl.hidden = ui.picker.value !== 'custom';
  if (!ui.modelUrl.hidden) ui.modelUrl.focus();
  updateWelcome();
});

// The first visit (no model stored, none loading): what Burrow is, what the chosen model costs and
// whether this device can run it, then one button.
let welcomeCheck = 0;
async function updateWelcome() {
  const check = ++welcomeCheck;
  const first = !engine && !loading && (await store.list()).length === 0;
  if (check !== welcomeCheck) return;
  ui.welcome.hidden = !first;
  ui.load.textContent = first ? 'Download and start' : 'Load';
  if (!first) return;
  const entry = catalogueEntry();
  const isDefault = ui.picker.value === 'default';
  const size = isDefault ? DEFAULT_MODEL.size : entry && downloadSize(entry);
  const name = isDefault ? DEFAULT_MODEL.name : entry ? `${entry.name} ${entry.quant}` : 'A pasted model';
  const [verdict, { usage = 0, quota = 0 }] = await Promise.all([checkDevice(size), store.estimate()]);
  if (check !== welcomeCheck) return;
  const parts = entry?.mmproj ? ' (the model and its vision projector, to read photos)' : '';
  const cost = size ? `${name} is a ${formatSize(size)} download${parts}, stored once` : `${name}'s size is checked before anything is stored`;
  if (verdict.code) ui.modelCost.textContent = `${cost}. ${verdict.message}`;
  else if (size && quota && quota - usage < size) ui.modelCost.textContent = `${cost}, but this browser lets Burrow store only ${formatSize(quota - usage)} more.`;
  else if (verdict.cpuAdapter) ui.modelCost.textContent = `${cost}; this device can run it, slowly: the browser offers no GPU here, only a software one.`;
  else ui.modelCost.textContent = `${cost}; this device can run it.`;
}

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

// The view follows a streaming reply unless the person scrolled up from its end by more than this.
const FOLLOW_SLACK_PX = 48;
// How long "Copied" shows on a reply's Copy button.
const COPIED_MS = 1500;
let following = true;

const scroller = () => document.scrollingElement;
window.addEventListener('scroll', () => {
  const view = scroller();
  following = view.scrollHeight - view.scrollTop - view.clientHeight <= FOLLOW_SLACK_PX;
}, { passive: true });

function followReply() {
  if (following) scroller().scrollTop = scroller().scrollHeight;
}

// A reply's text to the clipboard (its Markdown, as written).
async function copyText(button, text) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = 'Copy'; }, COPIED_MS);
  } catch (error) {
    showError(`Could not copy: ${error.message}`);
  }
}

function actionButton(testid, text, label, onClick) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'small secondary';
  button.dataset.testid = testid;
  button.textContent = text;
  button.setAttribute('aria-label', label);
  button.addEventListener('click', onClick);
  return button;
}

// --- photos --------------------------------------------------------------------------------

// Object URLs of the thumbnails shown in the conversation, freed when it is drawn again.
const thumbnailUrls = new Set();
// Photos chosen for the next message: {id, blob, type, name, width, height} (as stored with it,
// web/conversations.js), and the object URLs of their previews.
let pendingImages = [];
const previewUrls = new Set();

// A photo's thumbnail: the stored bytes shown by the browser (decoded off the main thread, sized by
// CSS, so the box never moves), or for a photo too large to decode here (or no longer stored) a
// placeholder that says so.
function thumbnail(image, testid, urls) {
  const label = `Photo: ${image.name}`;
  const tooLarge = image.width * image.height > PREVIEW_MAX_PIXELS;
  if (tooLarge || !image.blob) {
    const placeholder = document.createElement('span');
    placeholder.className = 'thumb placeholder';
    placeholder.dataset.testid = testid;
    placeholder.setAttribute('role', 'img');
    const why = tooLarge ? `${image.width} × ${image.height} pixels, too large to preview` : 'no longer stored on this device';
    placeholder.setAttribute('aria-label', `${label}, ${why}`);
    placeholder.textContent = tooLarge ? `${image.width} × ${image.height}` : 'missing';
    return placeholder;
  }
  const img = document.createElement('img');
  img.className = 'thumb';
  img.dataset.testid = testid;
  img.alt = label;
  img.decoding = 'async';
  const url = URL.createObjectURL(image.blob);
  urls.add(url);
  img.src = url;
  return img;
}

function freeUrls(urls) {
  for (const url of urls) URL.revokeObjectURL(url);
  urls.clear();
}

// The previews above the composer, each with its Remove button.
function setPending(images) {
  pendingImages = images;
  freeUrls(previewUrls);
  ui.pendingImages.replaceChildren(...images.map((image, index) => {
    const item = document.createElement('li');
    item.dataset.testid = 'pending-image';
    const remove = actionButton('remove-image', '✕', `Remove ${image.name}`, () => {
      setPending(pendingImages.filter((_, i) => i !== index));
      ui.prompt.focus();
    });
    item.append(thumbnail(image, 'pending-preview', previewUrls), remove);
    return item;
  }));
  ui.pendingImages.hidden = images.length === 0;
}

// Photos chosen with Attach join the message, read once into memory (the bytes sent are the
// bytes chosen, even if the file changes later). A file that is not a photo the engine reads is
// refused at once, with its name.
async function attachFiles(files) {
  const refused = [];
  const added = [];
  for (const file of files) {
    if (pendingImages.length + added.length >= MAX_IMAGES_PER_MESSAGE) {
      refused.push(`A message takes at most ${MAX_IMAGES_PER_MESSAGE} photos.`);
      break;
    }
    try {
      const head = new Uint8Array(await file.slice(0, IMAGE_HEADER_BYTES).arrayBuffer());
      const type = imageType(head);
      if (!type) {
        refused.push(`${file.name} is not a photo Burrow can read (${READABLE_FORMATS}).`);
        continue;
      }
      const size = imageSize(head);
      const blob = new Blob([await file.arrayBuffer()], { type });
      added.push({ id: crypto.randomUUID(), blob, type, name: file.name, width: size?.width ?? null, height: size?.height ?? null });
    } catch (error) {
      refused.push(`${file.name} could not be read (${error.message}).`);
    }
  }
  setPending([...pendingImages, ...added]);
  if (refused.length) showError(refused.join(' '));
  else if (added.length) showError('');
}

ui.attach.addEventListener('click', () => ui.imageInput.click());
ui.imageInput.addEventListener('change', async () => {
  const files = [...ui.imageInput.files];
  // The same file can be chosen again after it is removed.
  ui.imageInput.value = '';
  await attachFiles(files);
  ui.prompt.focus();
});

// Each photo's data: URL (its exact bytes), made once per stored Blob.
const dataUrls = new WeakMap();
function imageUrl(blob) {
  if (!dataUrls.has(blob)) dataUrls.set(blob, dataUrl(blob));
  return dataUrls.get(blob);
}

// A saved message as the API takes it: a message with photos as content parts, the photos first
// (where `burrow generate --image` puts them), then its text.
async function apiMessage({ role, content, images }) {
  if (!images?.length) return { role, content };
  if (images.some((image) => !image.blob)) {
    throw new Error('A photo of this conversation is no longer stored on this device (the browser removed it); start a new chat to go on.');
  }
  const urls = await Promise.all(images.map((image) => imageUrl(image.blob)));
  const parts = urls.map((url) => ({ type: 'image_url', image_url: { url } }));
  return { role, content: content ? [...parts, { type: 'text', text: content }] : parts };
}

// Why the loaded model cannot answer a turn with `images` (the composer's) after the messages
// `prefix`, or null. A model without vision is not sent the photos' text alone: its answer would
// read as if it had seen them, so the person is told and chooses (a new chat, or a model that
// reads images).
function visionProblem(images, prefix) {
  if (engine.model.vision) return null;
  const other = 'load a model that reads images (“reads images” in the model list)';
  if (images.length) return `${engine.model.name} does not read images. Remove the photos to send your message, or ${other}.`;
  if (prefix.some((message) => message.images?.length)) {
    return `${engine.model.name} does not read images, and this conversation has photos it cannot see. Start a new chat, or ${other}.`;
  }
  return null;
}

// --- messages ------------------------------------------------------------------------------

// One message: its photos and text (a reply as Markdown) and, under a reply, Copy for every reply
// and Regenerate / Edit for the last turn. The row is there from the start (hidden while the reply
// streams), so nothing moves when it appears.
function messageItem(message) {
  const item = document.createElement('li');
  item.className = `message ${message.role}`;
  if (message.images?.length) {
    const images = document.createElement('div');
    images.className = 'images';
    images.append(...message.images.map((image) => thumbnail(image, 'message-image', thumbnailUrls)));
    item.append(images);
  }
  const body = document.createElement('div');
  body.className = 'body';
  body.dataset.testid = `${message.role}-message`;
  if (message.role === 'assistant') renderMarkdown(body, message.content);
  else body.textContent = message.content;
  // A photo sent without words has no text bubble.
  body.hidden = message.role === 'user' && !message.content && Boolean(message.images?.length);
  item.append(body);
  if (message.role === 'assistant') {
    const actions = document.createElement('div');
    actions.className = 'actions';
    const copy = actionButton('copy-reply', 'Copy', 'Copy this reply', () => copyText(copy, message.content));
    actions.append(
      copy,
      actionButton('regenerate', 'Regenerate', 'Write this reply again', regenerate),
      actionButton('edit-prompt', 'Edit prompt', 'Edit your last message and send it again', editLastPrompt),
    );
    item.append(actions);
  }
  return item;
}

// Regenerate and Edit only on the last reply, and only while a model is ready and idle.
function updateActions() {
  const replies = ui.messages.querySelectorAll('.message.assistant');
  replies.forEach((item, index) => {
    for (const button of item.querySelectorAll('[data-testid="regenerate"], [data-testid="edit-prompt"]')) {
      button.hidden = index !== replies.length - 1;
      button.disabled = !engine || generating;
    }
  });
}

function renderConversation() {
  freeUrls(thumbnailUrls);
  ui.messages.replaceChildren(...conversation.messages.map(messageItem));
  ui.conversationSystem.textContent = conversation.system ? `System prompt: ${conversation.system}` : '';
  ui.conversationSystem.hidden = !conversation.system;
  updateActions();
  following = true;
  followReply();
}

// Saves `record` as the current conversation; a failure is shown, not swallowed.
async function saveConversation(record) {
  try {
    conversation = await conversations.save(record);
    localStorage.setItem(CONVERSATION_KEY, conversation.id);
  } catch (error) {
    showError(`This conversation could not be saved: ${error.message}`);
  }
}

// Editing the last prompt: its text is in the composer, and Send replaces that turn.
let editing = false;
function setEditing(on) {
  editing = on;
  ui.editing.hidden = !on;
  const items = [...ui.messages.children];
  items.forEach((item, index) => item.classList.toggle('being-edited', on && index >= items.length - 2));
}

// The last prompt and its photos go back to the composer.
function editLastPrompt() {
  const last = conversation.messages.at(-2);
  if (!engine || generating || last?.role !== 'user') return;
  setEditing(true);
  ui.prompt.value = last.content;
  setPending([...(last.images ?? [])]);
  ui.prompt.focus();
}

ui.cancelEdit.addEventListener('click', () => {
  setEditing(false);
  ui.prompt.value = '';
  setPending([]);
});

function sendPrompt() {
  const text = ui.prompt.value.trim();
  const images = pendingImages;
  if ((!text && images.length === 0) || !engine || generating) return null;
  const replaced = editing ? 2 : 0;
  const prefix = conversation.messages.slice(0, conversation.messages.length - replaced);
  const problem = visionProblem(images, prefix);
  if (problem) {
    // Nothing is sent and nothing is cleared.
    showError(problem);
    return null;
  }
  ui.prompt.value = '';
  setPending([]);
  setEditing(false);
  return startReply(text, images, prefix, { returnText: true });
}

function regenerate() {
  const last = conversation.messages.at(-2);
  if (!engine || generating || last?.role !== 'user') return;
  const prefix = conversation.messages.slice(0, -2);
  // The turn's own photos are the conversation's, not ones being sent.
  const problem = visionProblem([], [...prefix, last]);
  if (problem) {
    showError(problem);
    return;
  }
  setEditing(false);
  startReply(last.content, last.images ?? [], prefix, { returnText: false });
}

function startReply(text, images, prefix, options) {
  replying = reply(text, images, prefix, options).finally(() => {
    replying = null;
  });
  return replying;
}

// One turn after the messages `prefix` (the whole conversation for a new prompt; without its last
// turn for Regenerate and Edit, which replace it): the question and its reply are saved together
// as the reply streams. A turn that produced nothing (an error, a stop before the first token, a
// prompt too long, a photo the engine cannot read) is taken back: the conversation shows as saved,
// and a typed prompt and its photos return to the composer.
async function reply(text, images, prefix, { returnText }) {
  const turn = { role: 'user', content: text, ...(images.length ? { images } : {}) };
  const answer = { role: 'assistant', content: '' };
  // Messages after the prefix are replaced by this turn.
  [...ui.messages.children].slice(prefix.length).forEach((item) => item.remove());
  const item = messageItem(answer);
  const body = item.querySelector('.body');
  item.classList.add('pending');
  body.setAttribute('aria-busy', 'true');
  ui.messages.append(messageItem(turn), item);
  following = true;
  followReply();
  const record = () => ({ ...conversation, messages: [...prefix, turn, { ...answer }] });
  let saving = Promise.resolve();
  const save = () => {
    saving = saving.then(() => saveConversation(record()));
    return saving;
  };
  let savedAt = Date.now();
  showError('');
  ui.contextNote.hidden = true;
  setGenerating(true);
  try {
    const system = conversation.system ? [{ role: 'system', content: conversation.system }] : [];
    const stream = await engine.chat.completions.create({
      messages: await Promise.all([...system, ...prefix, turn].map(apiMessage)),
      stream: true,
      temperature: Number(ui.temperature.value),
      ...(engine.model.vision && PHOTO_DETAIL_TOKENS[ui.photoDetail.value] ? { image_max_tokens: PHOTO_DETAIL_TOKENS[ui.photoDetail.value] } : {}),
    });
    for await (const chunk of stream) {
      answer.content += chunk.choices[0].delta.content ?? '';
      renderMarkdownSoon(body, answer.content, followReply);
      if (answer.content && Date.now() - savedAt >= SAVE_INTERVAL_MS) {
        savedAt = Date.now();
        save();
      }
      if (chunk.tokens_per_second) ui.tokensPerSecond.textContent = `${chunk.tokens_per_second.toFixed(1)} tokens/s`;
      // A stable hook for external checks: the reply's token ids.
      if (chunk.token_ids) body.dataset.tokenIds = chunk.token_ids.join(',');
      if (chunk.dropped_messages) {
        ui.contextNote.textContent = `The ${chunk.dropped_messages} oldest messages no longer fit in the model's context, so this reply did not see them.`;
        ui.contextNote.hidden = false;
      }
    }
  } catch (error) {
    if (error.code === 'bad-image') {
      // The photo comes back to the composer with the prompt, to be removed there.
      const remove = returnText ? ' Remove it (✕ on its preview) to send your message.' : '';
      showError(`The photo could not be used: ${error.message.replace(/\.$/, '')}.${remove}`);
    } else {
      showError(describe(error));
    }
  } finally {
    renderMarkdown(body, answer.content);
    body.removeAttribute('aria-busy');
    item.classList.remove('pending');
    setGenerating(false);
    if (answer.content) {
      await save();
    } else {
      await saving;
      renderConversation();
      if (returnText && !ui.prompt.value) ui.prompt.value = text;
      if (returnText && pendingImages.length === 0) setPending(images);
    }
    updateActions();
    followReply();
    refreshConversations();
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

// The system prompt set in Settings, for conversations started from now on.
const systemPrompt = () => ui.systemPrompt.value.trim();

function openConversation(record) {
  conversation = record;
  setEditing(false);
  ui.contextNote.hidden = true;
  renderConversation();
  if (record.messages.length) localStorage.setItem(CONVERSATION_KEY, record.id);
}

function newChat() {
  if (generating) return;
  openConversation(conversations.create(systemPrompt()));
}

ui.newChat.addEventListener('click', newChat);

ui.temperature.value = localStorage.getItem(TEMPERATURE_KEY) ?? ui.temperature.value;
ui.temperature.addEventListener('change', () => {
  const value = Number(ui.temperature.value);
  if (Number.isFinite(value) && value >= 0) localStorage.setItem(TEMPERATURE_KEY, String(value));
});

ui.photoDetail.value = localStorage.getItem(PHOTO_DETAIL_KEY) ?? ui.photoDetail.value;
ui.photoDetail.addEventListener('change', () => localStorage.setItem(PHOTO_DETAIL_KEY, ui.photoDetail.value));

ui.systemPrompt.value = localStorage.getItem(SYSTEM_PROMPT_KEY) ?? '';
ui.systemPrompt.addEventListener('change', () => {
  localStorage.setItem(SYSTEM_PROMPT_KEY, systemPrompt());
  // A conversation not started yet takes it too.
  if (conversation.messages.length === 0) openConversation(conversations.create(systemPrompt()));
});

// --- conversations -------------------------------------------------------------------------

const timeFormat = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });
const dayFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
// Today's conversations by their time, older ones by their day.
const when = (time) => (new Date(time).toDateString() === new Date().toDateString() ? timeFormat : dayFormat).format(time);

async function refreshConversations() {
  let all = [];
  try {
    all = await conversations.list();
  } catch (error) {
    showError(`The saved conversations could not be read: ${error.message}`);
  }
  ui.noConversations.hidden = all.length > 0;
  ui.conversationList.replaceChildren(...all.map(conversationItem));
}

function conversationItem(record) {
  const item = document.createElement('li');
  item.dataset.testid = 'conversation-item';
  item.dataset.id = record.id;
  const current = record.id === conversation.id;
  const title = conversations.titleOf(record);
  const open = document.createElement('button');
  open.type = 'button';
  open.className = 'open';
  open.dataset.testid = 'open-conversation';
  if (current) open.setAttribute('aria-current', 'true');
  const name = document.createElement('span');
  name.className = 'title';
  name.textContent = title;
  const date = document.createElement('span');
  date.className = 'muted';
  date.textContent = when(record.updatedAt);
  open.append(name, date);
  open.addEventListener('click', () => switchConversation(record.id));
  // The conversation being answered is renamed or deleted once its reply ends.
  const busy = current && generating;
  const rename = actionButton('rename-conversation', 'Rename', `Rename “${title}”`, () => startRename(item, record));
  const remove = actionButton('delete-conversation', 'Delete', `Delete “${title}”`, () => deleteConversation(record));
  rename.disabled = busy;
  remove.disabled = busy;
  item.append(open, rename, remove);
  return item;
}

async function switchConversation(id) {
  ui.conversationsDialog.close();
  if (id === conversation.id) return;
  await stopReply();
  const record = await conversations.get(id);
  if (record) openConversation(record);
  else showError('That conversation is no longer saved (deleted in another tab?).');
  refreshConversations();
}

// Rename in place: Enter or Save keeps the title, Escape or Cancel leaves it; an empty title goes
// back to the first prompt's.
function startRename(item, record) {
  const form = document.createElement('form');
  form.className = 'row nowrap rename';
  const input = document.createElement('input');
  input.type = 'text';
  input.dataset.testid = 'conversation-title';
  input.setAttribute('aria-label', 'Conversation title');
  input.value = conversations.titleOf(record);
  const saveButton = actionButton('save-title', 'Save', 'Save the title', () => {});
  saveButton.type = 'submit';
  const cancel = actionButton('cancel-rename', 'Cancel', 'Keep the old title', () => refreshConversations());
  form.append(input, saveButton, cancel);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    await renameConversation(record.id, input.value.trim());
  });
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      // Escape leaves the rename, not the dialog.
      event.preventDefault();
      event.stopPropagation();
      refreshConversations();
    }
  });
  item.replaceChildren(form);
  input.focus();
  input.select();
}

async function renameConversation(id, title) {
  try {
    const stored = await conversations.get(id);
    if (stored) {
      const saved = await conversations.save({ ...stored, title }, { touch: false });
      if (id === conversation.id) conversation = { ...conversation, title: saved.title, revision: saved.revision };
    }
  } catch (error) {
    showError(`The conversation could not be renamed: ${error.message}`);
  }
  await refreshConversations();
  ui.conversationList.querySelector(`[data-id="${CSS.escape(id)}"] [data-testid="open-conversation"]`)?.focus();
}

async function deleteConversation(record) {
  if (!window.confirm(`Delete “${conversations.titleOf(record)}”? This cannot be undone.`)) return;
  if (record.id === conversation.id) await stopReply();
  try {
    await conversations.remove(record.id);
    if (record.id === conversation.id) {
      localStorage.removeItem(CONVERSATION_KEY);
      openConversation(conversations.create(systemPrompt()));
    }
  } catch (error) {
    showError(`The conversation could not be deleted: ${error.message}`);
  }
  await refreshConversations();
}

ui.openConversations.addEventListener('click', async () => {
  await refreshConversations();
  ui.conversationsDialog.showModal();
});
ui.closeConversations.addEventListener('click', () => ui.conversationsDialog.close());
// A tap on the backdrop (the dialog itself, outside its content) closes it.
ui.conversationsDialog.addEventListener('click', (event) => {
  if (event.target === ui.conversationsDialog) ui.conversationsDialog.close();
});
ui.newConversation.addEventListener('click', () => {
  ui.conversationsDialog.close();
  newChat();
});

// --- storage -------------------------------------------------------------------------------

async function refreshStorage() {
  const [{ usage = 0, quota = 0 }, persisted, models] = await Promise.all([store.estimate(), store.persisted(), store.list()]);
  ui.storageUsage.textContent = `${formatSize(usage)} used of ${formatSize(quota)} available to Burrow.`;
  ui.persistStatus.textContent = persisted ? 'Models are kept even when space runs low.' : 'The browser may remove models when space runs low.';
  ui.persist.hidden = persisted;
  // A vision model is one entry: its projector is listed under it, with its own Delete. A projector
  // whose model is not stored is listed on its own.
  const isModel = (meta) => !store.isProjector(meta);
  const projectors = models.filter(store.isProjector);
  const orphans = projectors.filter((meta) => !models.some((model) => isModel(model) && model.url === meta.projectorFor));
  ui.storedModels.replaceChildren(
    ...models.filter(isModel).map((meta) => storedItem(meta, projectors.filter((projector) => projector.projectorFor === meta.url))),
    ...orphans.map((meta) => storedItem(meta, [])),
  );
  await updateWelcome();
}

const storedState = (meta) => (meta.complete ? formatMb(meta.size) : `partial: ${formatMb(Math.min(meta.size, meta.chunksDone * meta.chunkSize))} of ${formatMb(meta.size)}`);
const storedLabel = (meta) => `${store.isProjector(meta) ? 'Vision projector ' : ''}${meta.name} (${storedState(meta)})`;

// A stored model (or a projector on its own) and the projectors stored for it. Its Delete deletes
// them all; a projector's deletes only that file.
function storedItem(meta, projectors) {
  const item = document.createElement('li');
  item.dataset.testid = 'stored-model';
  item.dataset.url = meta.url;
  const label = document.createElement('span');
  label.textContent = storedLabel(meta);
  const also = projectors.length ? ' and its vision projector' : '';
  const remove = actionButton('delete-model', 'Delete', `Delete ${meta.name}${also}`, () => deleteModel(meta.url));
  item.append(label, remove);
  for (const projector of projectors) {
    const file = document.createElement('div');
    file.className = 'file';
    file.dataset.testid = 'stored-projector';
    file.dataset.url = projector.url;
    const name = document.createElement('span');
    name.textContent = storedLabel(projector);
    file.append(name, actionButton('delete-projector', 'Delete', `Delete the vision projector ${projector.name}`, () => deleteFiles([projector.url])));
    item.append(file);
  }
  return item;
}

// Deletes a model and the projectors stored for it.
async function deleteModel(url) {
  const projectors = (await store.projectorsOf(url)).map((meta) => meta.url);
  await deleteFiles([url, ...projectors]);
}

async function deleteFiles(urls) {
  await stopReply();
  // A download of these files stops first: it must not write its chunks back after the delete.
  const wasLoading = loadingFiles.some((url) => urls.includes(url));
  if (wasLoading) {
    loadController?.abort();
    await loading;
  }
  if (engine && urls.some((url) => url === engine.model.url || url === engine.model.mmproj?.url)) {
    await engine.unload();
    setEngine(null);
    setStatus('No model loaded.');
  }
  try {
    for (const url of urls) await store.delete(url);
    if (wasLoading) {
      showError('');
      setStatus('No model loaded.');
    }
  } catch (error) {
    showError(error.message);
  }
  await refreshStorage();
  if (resumeWhenSpace && !urls.includes(resumeWhenSpace) && !loading) {
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
  setEngine(null);
  try {
    await store.deleteAll();
    const names = await caches.keys();
    await Promise.all(names.map((name) => caches.delete(name)));
    const registrations = await navigator.serviceWorker?.getRegistrations() ?? [];
    await Promise.all(registrations.map((registration) => registration.unregister()));
    localStorage.clear();
    ui.temperature.value = ui.temperature.defaultValue;
    ui.photoDetail.value = 'standard';
    ui.systemPrompt.value = '';
    setPending([]);
    openConversation(conversations.create());
    await refreshConversations();
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

// Where the browser does not shrink the page for the on-screen keyboard (Safari), the part of the
// page the keyboard covers lifts the composer (--keyboard in web/app.css).
window.visualViewport?.addEventListener('resize', () => {
  const view = window.visualViewport;
  const covered = Math.max(0, window.innerHeight - view.height - view.offsetTop);
  document.documentElement.style.setProperty('--keyboard', `${Math.round(covered)}px`);
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
  const last = localStorage.getItem(CONVERSATION_KEY);
  openConversation((last && await conversations.get(last)) ?? (await conversations.latest()) ?? conversations.create(systemPrompt()));
  await refreshStorage();
  await restoreModel();
}

start().catch((error) => showError(error.message));
