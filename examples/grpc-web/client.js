// aigw over gRPC-Web, as a browser page would call it: Connect-ES's gRPC-Web transport (fetch), stubs
// generated from proto/ by protoc-gen-es. Calls Generate and StreamGenerate. (InteractiveStream is a
// bidirectional stream, which gRPC-Web cannot carry: browsers use StreamGenerate per turn, or the REST door.)
//
//   npm ci --prefix examples/grpc-web && npm run --prefix examples/grpc-web generate
//   node examples/grpc-web/client.js [--url http://127.0.0.1:50051] [--model gpt-4.1]   # key: $AIGW_KEY
//
// In a browser the same code runs as is; the page's origin must be listed in the gateway's [cors].
import { createClient, ConnectError } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-web';
import { AIService } from './gen/ai_service_pb.js';

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const baseUrl = option('url', 'http://127.0.0.1:50051');
const model = option('model', 'gpt-4.1');
const key = process.env.AIGW_KEY || 'sk-aigw-dev';

const client = createClient(AIService, createGrpcWebTransport({ baseUrl }));
const headers = { authorization: `Bearer ${key}` };
const messages = [{ role: 'user', content: 'Say hello over gRPC-Web.' }];

async function main() {
  const resp = await client.generate(
    { model, messages, config: { maxTokens: 8 } },
    { headers, timeoutMs: 30_000 },
  );
  console.log(`Generate: ${JSON.stringify(resp.content)} finish=${resp.finishReason} tokens=${resp.usage.totalTokens}`);

  let text = '';
  let last = null;
  for await (const chunk of client.streamGenerate({ model, messages }, { headers, timeoutMs: 30_000 })) {
    if (chunk.isComplete) last = chunk;
    else text += chunk.delta;
  }
  if (!last) throw new Error('the stream ended without its final chunk');
  console.log(`StreamGenerate: ${JSON.stringify(text)} finish=${last.finishReason} tokens=${last.usage.totalTokens}`);
}

main().catch((err) => {
  // ConnectError carries the gRPC status: code 16 is UNAUTHENTICATED.
  if (err instanceof ConnectError) console.error(`gRPC-Web error: code=${err.code} ${err.rawMessage}`);
  else console.error(err);
  process.exit(1);
});
