// Conversations kept in IndexedDB (same database as the models) so a reload, or reopening the
// installed app offline, brings the chat back. A message's photos are `images: [{id, blob, type,
// name, width, height}]`: the conversation's record keeps all but the Blob, and each Blob is its
// own record in IMAGES, written once. (In the record, every save while a reply streams, once a
// second, would write every photo of the conversation to disk again.) They are deleted with the
// conversation, or when the turn that had them is replaced.

import { CONVERSATIONS, IMAGES, openDatabase, requestResult, transactionDone } from './store.js';

const TITLE_LENGTH = 60;

export class ConversationError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'ConversationError';
    this.code = code;
  }
}

// A new, unsaved conversation; `system` (a system prompt, or '') is kept with it for its life.
export function create(system = '') {
  return { id: crypto.randomUUID(), title: '', system, messages: [], updatedAt: Date.now(), revision: 0 };
}

// The title a conversation is listed under: its own (renamed), else its first prompt's start, or
// for a photo sent without words the photo's name.
export function titleOf(conversation) {
  const firstUser = conversation.messages.find((message) => message.role === 'user');
  const photo = firstUser?.images?.length ? `Photo: ${firstUser.images[0].name}` : '';
  return conversation.title || (firstUser?.content.slice(0, TITLE_LENGTH).trim() ?? '') || photo || 'New conversation';
}

// Stores `conversation` and returns the stored record. Each save counts a revision: a record
// changed elsewhere (another tab) since `conversation` was read is not overwritten; the save
// fails with code "conflict" instead. `touch: false` keeps its place in the list (a rename).
// Photos' keys: [conversation id, photo id]; all of one conversation's in one range.
const imageRange = (conversationId) => IDBKeyRange.bound([conversationId], [conversationId, []]);
const photosOf = (conversation) => conversation.messages.flatMap((message) => message.images ?? []);
// A message as its record keeps it: its photos without their bytes.
const withoutBlobs = (message) => (message.images
  ? { ...message, images: message.images.map(({ id, type, name, width, height }) => ({ id, type, name, width, height })) }
  : message);

// Stores `conversation` and returns it as stored. Each save counts a revision: a record
// changed elsewhere (another tab) since `conversation` was read is not overwritten; the save
// fails with code "conflict" instead. `touch: false` keeps its place in the list (a rename).
// Photos not stored yet are written, and those no message has any more deleted, in the same
// transaction.
export async function save(conversation, { touch = true } = {}) {
  const revision = conversation.revision ?? 0;
  const saved = {
    ...conversation,
    updatedAt: touch ? Date.now() : conversation.updatedAt,
    revision: revision + 1,
  };
  const db = await openDatabase();
  const tx = db.transaction([CONVERSATIONS, IMAGES], 'readwrite');
  const conversations = tx.objectStore(CONVERSATIONS);
  const images = tx.objectStore(IMAGES);
  const stored = await requestResult(conversations.get(conversation.id));
  if ((stored?.revision ?? 0) !== revision) {
    tx.abort();
    throw new ConversationError('conflict', 'This conversation was changed in another tab; reload the page to see that version.');
  }
  const storedPhotos = new Set((await requestResult(images.getAllKeys(imageRange(conversation.id)))).map(([, id]) => id));
  const photos = photosOf(conversation);
  for (const photo of photos) {
    if (!storedPhotos.has(photo.id)) images.put({ conversation: conversation.id, id: photo.id, blob: photo.blob });
  }
  const kept = new Set(photos.map((photo) => photo.id));
  for (const id of storedPhotos) {
    if (!kept.has(id)) images.delete([conversation.id, id]);
  }
  conversations.put({ ...saved, messages: saved.messages.map(withoutBlobs) });
  await transactionDone(tx);
  return saved;
}

// `record` (a stored conversation, or null) with its photos' Blobs, read in `tx`.
async function withPhotos(tx, record) {
  if (!record || !photosOf(record).length) return record;
  const blobs = new Map((await requestResult(tx.objectStore(IMAGES).getAll(imageRange(record.id)))).map(({ id, blob }) => [id, blob]));
  const messages = record.messages.map((message) => (message.images
    ? { ...message, images: message.images.map((image) => ({ ...image, blob: blobs.get(image.id) ?? null })) }
    : message));
  return { ...record, messages };
}

// The most recently updated conversation (with its photos), or null.
export async function latest() {
  const db = await openDatabase();
  const tx = db.transaction([CONVERSATIONS, IMAGES]);
  const cursor = await requestResult(tx.objectStore(CONVERSATIONS).index('updatedAt').openCursor(null, 'prev'));
  return withPhotos(tx, cursor?.value ?? null);
}

// Every saved conversation, the most recently updated first (their photos without their bytes).
export async function list() {
  const db = await openDatabase();
  const index = db.transaction(CONVERSATIONS).objectStore(CONVERSATIONS).index('updatedAt');
  return (await requestResult(index.getAll())).reverse();
}

// The conversation `id` with its photos, or null.
export async function get(id) {
  const db = await openDatabase();
  const tx = db.transaction([CONVERSATIONS, IMAGES]);
  return withPhotos(tx, (await requestResult(tx.objectStore(CONVERSATIONS).get(id))) ?? null);
}

// Deletes the conversation `id` and its photos.
export async function remove(id) {
  const db = await openDatabase();
  const tx = db.transaction([CONVERSATIONS, IMAGES], 'readwrite');
  tx.objectStore(CONVERSATIONS).delete(id);
  tx.objectStore(IMAGES).delete(imageRange(id));
  await transactionDone(tx);
}
