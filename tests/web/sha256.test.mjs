// The pure-JS incremental SHA-256 against node's crypto, across block boundaries and resumed state.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Sha256 } from '../../web/sha256.js';

const nodeHex = (data) => createHash('sha256').update(data).digest('hex');

test('matches node crypto for lengths around the padding boundaries', () => {
  for (const length of [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 1000, 4096 + 7]) {
    const data = randomBytes(length);
    assert.equal(new Sha256().update(data).hex(), nodeHex(data), `length ${length}`);
  }
});

test('incremental updates in uneven pieces equal one digest', () => {
  const data = randomBytes(1 << 20);
  const hasher = new Sha256();
  let offset = 0;
  while (offset < data.length) {
    const size = 1 + Math.floor(Math.random() * 70000);
    hasher.update(data.subarray(offset, offset + size));
    offset += size;
  }
  assert.equal(hasher.hex(), nodeHex(data));
});

test('saved state resumes hashing, and hex() leaves the state usable', () => {
  const data = randomBytes(300001);
  const first = new Sha256().update(data.subarray(0, 123457));
  first.hex();
  const state = structuredClone(first.state());
  const resumed = new Sha256(state).update(data.subarray(123457));
  assert.equal(resumed.hex(), nodeHex(data));
  assert.equal(first.update(data.subarray(123457)).hex(), nodeHex(data));
});
