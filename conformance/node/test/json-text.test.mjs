// JSON as JavaScript writes it, with the OFFICIAL CometD client over long-polling and
// websocket: a string holding an unpaired UTF-16 surrogate (a chat message cut in the middle of
// an emoji) is published by one client and received by another exactly as sent, code unit by
// code unit, in data and in ext; a batch carrying such a message loses nothing else.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEnv } from '../lib/fixture.mjs';
import { notifyChange, until } from '../lib/client.mjs';

const TEST_TIMEOUT = 30000;
const HIGH = '\ud83d';
const LOW = '\ude00';
const CUT = `half: ${HIGH}, other half: ${LOW}, pair: ${HIGH}${LOW}, reversed: ${LOW}${HIGH}`;

const units = (s) => Array.from({ length: s.length }, (_, i) => s.charCodeAt(i));

for (const transport of ['long-polling', 'websocket']) {
  describe(`lone surrogates over ${transport}`, { timeout: 60000 }, () => {
    test('published and received exactly, in data, keys and ext', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await startEnv(t);
      const websocket = transport === 'websocket';
      const subscriber = await env.connected({ name: 'subscriber', websocket });
      const collector = await subscriber.collect('/cut');
      const publisher = await env.connected({ name: 'publisher', websocket });
      const data = { text: CUT, [`key ${HIGH}`]: [LOW, `${LOW}${LOW}`], plain: 'é' };
      const reply = await new Promise((resolve) => {
        publisher.cometd.publish('/cut', data, { ext: { note: HIGH } }, resolve);
      });
      assert.equal(reply.successful, true, JSON.stringify(reply));
      const [got] = await collector.waitFor(1);
      assert.deepEqual(units(got.data.text), units(CUT));
      assert.deepEqual(got.data, data);
      assert.equal(got.ext?.note, HIGH);
    });

    test('a batch with such a message keeps every message of it', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await startEnv(t);
      const websocket = transport === 'websocket';
      const client = await env.connected({ name: 'batcher', websocket });
      const collector = await client.collect('/batch');
      const replies = [];
      client.cometd.batch(() => {
        for (const text of ['before', CUT, 'after']) {
          client.cometd.publish('/batch', { text }, (r) => {
            replies.push(r);
            notifyChange();
          });
        }
      });
      await collector.waitFor(3);
      await until(() => replies.length === 3, { what: 'the three publish replies' });
      assert.deepEqual(collector.messages.map((m) => m.data.text), ['before', CUT, 'after']);
      assert.deepEqual(replies.map((r) => r.successful), [true, true, true]);
    });
  });
}
