// Conversations kept in IndexedDB (same database as the models) so a reload, or reopening the
// installed app offline, brings the chat back.

import { CONVERSATIONS, openDatabase, requestResult, transactionDone } from './store.js';

const TITLE_LENGTH = 60;

export function create() {
  return { id: crypto.randomUUID(), title: '', messages: [], updatedAt: Date.now() };
}

export async function save(conversation) {
  const firstUser = conversation.messages.find((message) => message.role === 'user');
  const record = {
    ...conversation,
    title: conversation.title || (firstUser?.content.slice(0, TITLE_LENGTH) ?? ''),
    updatedAt: Date.now(),
  };
  const db = await openDatabase();
  const tx = db.transaction(CONVERSATIONS, 'readwrite');
  tx.objectStore(CONVERSATIONS).put(record);
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

export async function remove(id) {
  const db = await openDatabase();
  const tx = db.transaction(CONVERSATIONS, 'readwrite');
  tx.objectStore(CONVERSATIONS).delete(id);
  await transactionDone(tx);
}
