// A raw Bayeux POST for the bench scripts: the messages get ids, the browser cookie goes with
// it, and the answer comes back as {status, body (the replies; [] unless 200), cookie (the
// one the server set, if any)}.
let id = 0;

export async function post(url, messages, cookie, { timeout = 30000 } = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(cookie ? { cookie } : {}) },
    body: JSON.stringify(messages.map((m) => ({ id: String(++id), ...m }))),
    signal: AbortSignal.timeout(timeout),
  });
  const set = res.headers.get('set-cookie')?.split(';')[0];
  return { status: res.status, body: res.status === 200 ? await res.json() : [], cookie: set };
}
