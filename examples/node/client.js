// aigw from Node.js: @grpc/grpc-js with the contract loaded from proto/ at run time. Calls Generate,
// StreamGenerate and a two-turn InteractiveStream session, printing what comes back.
//
//   npm ci --prefix examples/node
//   node examples/node/client.js [--target 127.0.0.1:50051] [--model gpt-4.1]   # key: $AIGW_KEY or the dev key
//
// Plaintext by default; --tls uses the system's trust store (add --ca FILE for a private CA).
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const target = option('target', '127.0.0.1:50051');
const model = option('model', 'gpt-4.1');
const key = process.env.AIGW_KEY || 'sk-aigw-dev';

const definition = protoLoader.loadSync(path.join(__dirname, '..', '..', 'proto', 'ai_service.proto'), {
  keepCase: false, // fields in lowerCamelCase, as in JSON
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { AIService } = grpc.loadPackageDefinition(definition).holysheepai;

let credentials = grpc.credentials.createInsecure();
if (process.argv.includes('--tls')) {
  const ca = option('ca', null);
  credentials = grpc.credentials.createSsl(ca ? fs.readFileSync(ca) : null);
}
const client = new AIService(target, credentials);

function metadata() {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${key}`);
  return md;
}

const deadline = () => new Date(Date.now() + 30_000);
const messages = [{ role: 'user', content: 'Say hello in one short sentence.' }];

function generate() {
  return new Promise((resolve, reject) => {
    client.Generate({ model, messages, config: { maxTokens: 16 } }, metadata(), { deadline: deadline() },
      (err, resp) => {
        if (err) return reject(err);
        console.log(`Generate: ${JSON.stringify(resp.content)} (${resp.finishReason}, ` +
          `${resp.usage.totalTokens} tokens)`);
        resolve();
      });
  });
}

function streamGenerate() {
  return new Promise((resolve, reject) => {
    const call = client.StreamGenerate({ model, messages, config: { maxTokens: 16 } }, metadata(),
      { deadline: deadline() });
    let text = '';
    let chunks = 0;
    let final = null;
    call.on('data', (chunk) => {
      if (chunk.isComplete) {
        final = chunk;
      } else {
        chunks += 1;
        text += chunk.delta;
      }
    });
    call.on('error', reject);
    call.on('end', () => {
      // A stream that ends without its final chunk did not succeed, whatever the status said.
      if (!final) return reject(new Error('StreamGenerate ended without its final chunk'));
      console.log(`StreamGenerate: ${chunks} chunks, ${JSON.stringify(text)} (${final.finishReason}, ` +
        `${final.usage.totalTokens} tokens)`);
      resolve();
    });
  });
}

function interactive() {
  return new Promise((resolve, reject) => {
    const call = client.InteractiveStream(metadata(), { deadline: deadline() });
    const turns = ['Hello!', 'And again?'];
    let sent = 0;
    const answers = {};
    call.on('data', (msg) => {
      if (msg.started) {
        console.log(`InteractiveStream: session started on ${msg.started.model}`);
      } else if (msg.delta) {
        answers[msg.turn] = (answers[msg.turn] || '') + msg.delta.delta;
      } else if (msg.complete) {
        console.log(`InteractiveStream: turn ${msg.turn} complete: ${JSON.stringify(answers[msg.turn] || '')}`);
        // The next turn goes only after the last one completed.
        if (sent < turns.length) {
          call.write({ turn: { content: turns[sent++] } });
        } else {
          call.end();
        }
      } else if (msg.error) {
        reject(new Error(`turn ${msg.turn} failed: ${msg.error.message}`));
      }
    });
    call.on('error', reject);
    call.on('end', resolve);
    call.write({ start: { model, config: { maxTokens: 16 }, systemPrompt: 'Be brief.' } });
    call.write({ turn: { content: turns[sent++] } });
  });
}

(async () => {
  try {
    await generate();
    await streamGenerate();
    await interactive();
    client.close();
  } catch (err) {
    console.error(`error: ${err.code !== undefined ? `${grpc.status[err.code]}: ` : ''}${err.details || err.message}`);
    client.close();
    process.exit(1);
  }
})();
