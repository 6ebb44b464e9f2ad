// k6 load script for aigw over gRPC (k6's own gRPC module, stubs compiled from proto/ai_service.proto).
//
//   k6 run bench/k6/aigw.js                               # 30 s against 127.0.0.1:50051 with the dev key
//   k6 run -e AIGW_TARGET=host:443 -e AIGW_TLS=1 -e AIGW_KEY=... -e RATE=200 -e DURATION=1m bench/k6/aigw.js
//
// Two scenarios run side by side: Generate at a fixed arrival rate, and StreamGenerate from a few VUs reading
// every chunk. The thresholds fail the run (exit code 99) when a call fails, or, with -e P99_MS=N, when the
// gateway is slower than that.
import grpc from 'k6/net/grpc';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';

const target = __ENV.AIGW_TARGET || '127.0.0.1:50051';
const key = __ENV.AIGW_KEY || 'sk-aigw-dev';
const model = __ENV.AIGW_MODEL || 'gpt-4.1';
const duration = __ENV.DURATION || '30s';
const params = { metadata: { authorization: `Bearer ${key}` }, timeout: '30s' };

const client = new grpc.Client();
client.load(['../../proto'], 'ai_service.proto');

const chunks = new Counter('aigw_stream_chunks');
const streamsOk = new Counter('aigw_streams_complete');
const streamTime = new Trend('aigw_stream_duration', true);

export const options = {
  scenarios: {
    generate: {
      executor: 'constant-arrival-rate',
      exec: 'generate',
      rate: Number(__ENV.RATE || 20),
      timeUnit: '1s',
      duration,
      preAllocatedVUs: Number(__ENV.VUS || 20),
    },
    stream: {
      executor: 'constant-vus',
      exec: 'stream',
      vus: Number(__ENV.STREAM_VUS || 2),
      duration,
    },
  },
  thresholds: Object.assign(
    { checks: ['rate==1'], aigw_streams_complete: ['count>0'] },
    // A latency bound only when asked for (-e P99_MS=...): the smoke run in the test command checks behaviour,
    // never speed.
    __ENV.P99_MS ? { 'grpc_req_duration{scenario:generate}': [`p(99)<${__ENV.P99_MS}`] } : {},
  ),
};

function connect() {
  if (__ITER === 0) {
    client.connect(target, { plaintext: !__ENV.AIGW_TLS, timeout: '5s' });
  }
}

const messages = [{ role: 'user', content: 'Say hello in one short sentence.' }];

export function generate() {
  connect();
  const res = client.invoke('holysheepai.AIService/Generate', { model, messages }, params);
  check(res, {
    'Generate is OK': (r) => r && r.status === grpc.StatusOK,
    'Generate has content': (r) => r && r.message && r.message.content.length > 0,
    'Generate reports usage': (r) => r && r.message && r.message.usage && r.message.usage.totalTokens > 0,
  });
}

export function stream() {
  connect();
  const started = Date.now();
  let complete = false;
  let failed = null;
  const s = new grpc.Stream(client, 'holysheepai.AIService/StreamGenerate', params);
  s.on('data', (chunk) => {
    if (chunk.delta) chunks.add(1);
    if (chunk.isComplete) complete = true;
  });
  s.on('error', (e) => {
    failed = e;
  });
  s.on('end', () => {
    streamTime.add(Date.now() - started);
    if (complete) streamsOk.add(1);
    check(failed, { 'StreamGenerate ends with a final chunk and no error': (f) => f === null && complete });
  });
  s.write({ model, messages });
  s.end();
}
