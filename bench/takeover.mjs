// How long a session takes to move when its node goes: a raw long-polling subscriber with the
// ack extension on node A, a publisher on node B sending 200 messages per second; once the
// subscriber has 100 messages, A is killed (`kill`) or drained (`drain`, SIGUSR1). The
// subscriber's connects then go to B at once (as a balancer would send them). Prints one JSON
// line: the time from the kill (or drain) to the first delivery from B, and whether every
// message arrived once.
// Usage: node takeover.mjs kill|drain URL_A URL_B PID_A
import { post } from './raw-post.mjs';

const [how, urlA, urlB, pidA] = process.argv.slice(2);

async function session(url, ext) {
  const hs = await post(url, [{ channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'], ext }]);
  const clientId = hs.body[0].clientId;
  await post(url, [{ channel: '/meta/connect', clientId, connectionType: 'long-polling', advice: { timeout: 0 }, ext: { ack: 0 } }], hs.cookie);
  return { clientId, cookie: hs.cookie };
}

const sub = await session(urlA, { ack: true });
await post(urlA, [{ channel: '/meta/subscribe', clientId: sub.clientId, subscription: '/t' }], sub.cookie);
const pub = await session(urlB, {});

let publishing = true;
let sent = 0;
const publisher = (async () => {
  while (publishing) {
    await post(urlB, [{ channel: '/t', clientId: pub.clientId, data: sent++ }], pub.cookie);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
})();

const received = [];
let node = urlA;
let batch = 0;
let hitAt = null;
let firstAfter = null;
while (received.length < 600) {
  let reply;
  try {
    reply = await post(node, [{ channel: '/meta/connect', clientId: sub.clientId, connectionType: 'long-polling', ext: { ack: batch } }], sub.cookie);
  } catch {
    node = urlB;
    continue;
  }
  const connect = reply.body.find((m) => m.channel === '/meta/connect');
  if (!connect || !connect.successful) {
    node = urlB;
    continue;
  }
  batch = connect.ext?.ack ?? batch;
  const data = reply.body.filter((m) => m.channel === '/t').map((m) => m.data);
  if (data.length > 0 && hitAt !== null && firstAfter === null && node === urlB) {
    firstAfter = performance.now();
  }
  received.push(...data);
  if (hitAt === null && received.length >= 100) {
    hitAt = performance.now();
    process.kill(Number(pidA), how === 'kill' ? 'SIGKILL' : 'SIGUSR1');
    if (how === 'kill') node = urlB;
  }
}
publishing = false;
await publisher;
const unique = new Set(received);
const contiguous = received.every((v, i) => v === i);
console.log(JSON.stringify({
  how,
  takeover_ms: firstAfter === null ? null : Math.round(firstAfter - hitAt),
  received: received.length,
  duplicates: received.length - unique.size,
  in_order_no_gap: contiguous,
}));
