// Conversations kept in IndexedDB (same database as the models) so a reload, or reopening the
// installed app offline, brings the chat back. A message's photos are kept in it as Blobs
// (`images: [{blob, type, name, width, height}]`), so they go (and are deleted) with it.

import { CONVERSATIONS, openDatabase, requestResult, transactionDone } from './store.js';

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
export async function save(conversation, { touch = true } = {}) {
  const revision = conversation.revision ?? 0;
  const record = {
    ...conversation,
    updatedAt: touch ? Date.now() : conversation.updatedAt,
    revision: revision + 1,
  };
  const db = await openDatabase();
  const tx = db.transaction(CONVERSATIONS, 'readwrite');
  const conversations = tx.objectStore(CONVERSATIONS);
  const stored = await requestResult(conversations.get(conversation.id));
  if ((stored?.revision ?? 0) !== revision) {
    tx.abort();
    throw new ConversationError('conflict', 'This conversation was changed in another tab; reload the page to see that version.');
  }
  conversations.put(record);
  await transactionDone(tx);
  return record;
}

// The most recently updated conversation, or null.
export async function latest() {
  const db = await openDatabase();
  const index = db.transaction(CONVERSATIONS).objectStore(CONVERSATIONS).index('updatedAt');
  const cursor = await requestResult(index.openCursor(null, 'prev'));
  return cursor?.value ?? null;
}

// Every saved conversation, the most recently updated first.
export async function list() {
  const db = await openDatabase();
  const index = db.transaction(CONVERSATIONS).objectStore(CONVERSATIONS).index('updatedAt');
  return (await requestResult(index.getAll())).reverse();
}

export async function get(id) {
  const db = await openDatabase();
  return (await requestResult(db.transaction(CONVERSATIONS).objectStore(CONVERSATIONS).get(id))) ?? null;
}

export async function remove(id) {
  const db = await openDatabase();
  const tx = db.transaction(CONVERSATIONS, 'readwrite');
  tx.objectStore(CONVERSATIONS).delete(id);
  await transactionDone(tx);
}
