// The Centrifugo SDK for JavaScript (npm `centrifuge`, the one browsers use)
// against Panal's realtime, in Node with the `ws` package as its WebSocket.
// Run by crates/realtime/tests/api/main.rs:
//   node sdk.mjs WS_URL PUBLISH_URL SERVICE_TOKEN USER_ID ACCESS_TOKEN
// Live publications in order, then a disconnect, 20 publications missed, and a
// reconnect that recovers exactly those. Prints `ok` or what failed (exit 1).
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';

const [ws, publishUrl, service, user, token] = process.argv.slice(2);
const channel = `user:${user}`;
const failures = [];
const received = [];
const subscribed = [];

const publish = async (data) => {
  const r = await fetch(publishUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${service}` },
    body: JSON.stringify({ channel, data }),
  });
  if (r.status !== 200) failures.push(`publish answered ${r.status}`);
};
const until = async (predicate, what) => {
  for (let i = 0; i < 200; i++) {
    if (predicate()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  failures.push(`timed out: ${what}`);
};

const client = new Centrifuge(ws, { token, websocket: WebSocket });
const sub = client.newSubscription(channel);
sub.on('publication', (ctx) => received.push(ctx.data.n));
sub.on('subscribed', (ctx) => subscribed.push(ctx));
client.connect();
sub.subscribe();
await until(() => subscribed.length === 1, 'subscribed');

for (let n = 1; n <= 3; n++) await publish({ n });
await until(() => received.length === 3, 'three live publications');
if (received.join() !== '1,2,3') failures.push(`live: ${received}`);

client.disconnect();
for (let n = 4; n <= 23; n++) await publish({ n });
client.connect();
await until(() => subscribed.length === 2 && received.length === 23, 'the missed publications');
const again = subscribed[1];
if (!(again.wasRecovering && again.recovered)) failures.push(`not recovered: ${JSON.stringify(again)}`);
const expected = Array.from({ length: 23 }, (_, i) => i + 1).join();
if (received.join() !== expected) failures.push(`received ${received}`);

client.disconnect();
if (failures.length) {
  console.log(failures.join('\n'));
  process.exit(1);
}
console.log('ok');
